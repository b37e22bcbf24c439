//! The POSIX view's integration tests, one binary.

mod vfs;
