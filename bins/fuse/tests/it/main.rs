//! The mount's integration tests, one binary: real programs on a real mount.

mod mount;
