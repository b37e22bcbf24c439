//! The pointer conformance suite against the in-memory store.

use std::sync::Arc;

use peergos_pointers::{MemoryPointerStore, Ownership};

peergos_testkit::pointer_conformance!(|owned: Arc<dyn Ownership>| async move {
    MemoryPointerStore::new(owned)
});
