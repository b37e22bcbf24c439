//! The shared conformance suite against the file store with direct I/O
//! turned off (block files through the page cache), the path a filesystem
//! that refuses `O_DIRECT` falls back to.

use peergos_blockstore::{FileOptions, FileStore};

peergos_testkit::blockstore_conformance!(|| async {
    // The directory lives as long as the test process; tempfile removes it
    // when the process exits normally.
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    let options = FileOptions {
        direct_io: false,
        ..FileOptions::default()
    };
    let store = FileStore::open_with(dir.path(), options).unwrap();
    assert!(!store.direct_io());
    store
});
