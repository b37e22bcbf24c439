//! The shell's integration tests, one binary.

mod shell;
mod social;
