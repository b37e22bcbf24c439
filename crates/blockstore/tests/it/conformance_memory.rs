//! The shared conformance suite against the in-memory store.

use peergos_blockstore::MemoryStore;

peergos_testkit::blockstore_conformance!(|| async { MemoryStore::new() });
