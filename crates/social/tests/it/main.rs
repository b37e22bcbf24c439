//! The social formats' integration tests, one binary.

mod formats;
mod fuzz_seeds;
