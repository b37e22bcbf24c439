//! The mount's integration tests, one binary: the real `peergos-fuse`
//! binary against a real daemon, driven by real programs.
//!
//! Needs `/dev/fuse` and `fusermount3` (the `fuse3` package, which
//! `cargo xtask ci` installs). Without them each test says SKIPPED and
//! passes, unless `PEERGOS_REQUIRE_FUSE=1` (set by `cargo xtask ci` when it
//! could install them), which makes a missing FUSE a failure.

mod harness;
mod lifecycle;
mod posix;
mod programs;
mod sharing;
