//! The block stores' integration tests, one binary: the conformance suite on every backend, and the file store's crash safety.

mod conformance_file;
mod conformance_file_buffered;
mod conformance_memory;
#[cfg(feature = "s3")]
mod conformance_s3;
mod file_store;
