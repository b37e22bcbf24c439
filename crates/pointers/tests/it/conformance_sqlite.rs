//! The pointer conformance suite against the sqlite store.

use std::sync::Arc;

use peergos_pointers::{Durability, Ownership, SqlitePointerStore};

peergos_testkit::pointer_conformance!(|owned: Arc<dyn Ownership>| async move {
    // Lives until the test process exits.
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    SqlitePointerStore::open(dir.path().join("pointers.sqlite"), owned, Durability::Full).unwrap()
});
