//! The pointer stores' integration tests, one binary: the conformance suite on every backend, the caches, the device record, and several processes on one sqlite file.

mod cache_and_codec;
mod conformance_memory;
#[cfg(feature = "postgres")]
mod conformance_postgres;
mod conformance_sqlite;
mod seen;
mod sqlite_processes;
