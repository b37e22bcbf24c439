//! The shared conformance suite against the file store.

use peergos_blockstore::FileStore;

peergos_testkit::blockstore_conformance!(|| async {
    // The directory lives as long as the test process; tempfile removes it
    // when the process exits normally.
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    FileStore::open(dir.path()).unwrap()
});
