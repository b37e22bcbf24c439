//! Garbage collection against a real server with real clients: what the
//! pointers reach survives (every file reads back whole), what nothing
//! reaches is freed (counted in blocks and bytes), and uploads that run
//! while it collects lose nothing.

use std::sync::Arc;

use futures::StreamExt;
use peergos_blockstore::{PutBlocks, SignedBlock};
use peergos_core::{NetworkAccess, UserContext};
use peergos_ipld::Codec;
use peergos_keys::{PublicKeyHash, SigningKeyPair};
use peergos_server::{Config, Server};
use peergos_testkit::cryptree::data;

/// Blocks in the store and their bytes.
async fn stored(server: &Server) -> (u64, u64) {
    let blocks = server.blocks();
    let mut list = blocks.list();
    let (mut count, mut bytes) = (0, 0);
    while let Some(cid) = list.next().await {
        let cid = cid.unwrap();
        count += 1;
        bytes += blocks.size(&cid).await.unwrap().unwrap();
    }
    (count, bytes)
}

async fn setup(dir: &std::path::Path) -> (Arc<Server>, Arc<dyn NetworkAccess>) {
    let server = Server::open(Config::new(dir)).await.unwrap();
    let net: Arc<dyn NetworkAccess> = server.clone();
    (server, net)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_blocks_are_freed_and_reachable_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (server, net) = setup(dir.path()).await;
    let alice = UserContext::signup(Arc::clone(&net), "alice", "pw", None)
        .await
        .unwrap();
    let bob = UserContext::signup(Arc::clone(&net), "bob", "pw", None)
        .await
        .unwrap();
    // Nothing is garbage yet but what signup replaced.
    let first = server.collect_garbage().await.unwrap();
    assert_eq!(first.protected, 0);
    let (count, bytes) = stored(&server).await;
    assert_eq!(
        count, first.reachable,
        "after a collection only reachable blocks remain"
    );

    let fs = alice.fs();
    fs.mkdir("/docs").await.unwrap();
    fs.write_file("/docs/keep.bin", &data(1, 2 << 20))
        .await
        .unwrap();
    fs.write_file("/docs/gone.bin", &data(2, 3 << 20))
        .await
        .unwrap();
    fs.write_file("/docs/edited.txt", b"version one")
        .await
        .unwrap();
    bob.fs()
        .write_file("/bob.bin", &data(3, 6 << 20))
        .await
        .unwrap();
    // Garbage: a deleted 3 MiB file, and an overwritten version.
    fs.rm("/docs/gone.bin").await.unwrap();
    fs.write_file("/docs/edited.txt", b"version two")
        .await
        .unwrap();
    let (before_count, before_bytes) = stored(&server).await;
    assert!(before_count > count && before_bytes > bytes);

    let report = server.collect_garbage().await.unwrap();
    let (after_count, after_bytes) = stored(&server).await;
    assert_eq!(after_count, before_count - report.deleted);
    assert_eq!(after_bytes, before_bytes - report.freed_bytes);
    assert_eq!(after_count, report.reachable);
    assert!(
        report.freed_bytes >= 3 << 20,
        "the deleted file's 3 MiB were freed (freed {})",
        report.freed_bytes
    );
    assert_eq!(report.protected, 0);
    assert_eq!(server.last_gc(), Some(report.clone()));

    // Everything reachable reads back, for a fresh login too.
    let again = UserContext::login(Arc::clone(&net), "alice", "pw")
        .await
        .unwrap();
    assert_eq!(
        again.fs().read("/docs/keep.bin", 0, 4 << 20).await.unwrap(),
        data(1, 2 << 20)
    );
    assert_eq!(
        again.fs().read("/docs/edited.txt", 0, 100).await.unwrap(),
        b"version two"
    );
    assert_eq!(
        bob.fs().read("/bob.bin", 0, 8 << 20).await.unwrap(),
        data(3, 6 << 20)
    );
    // The PKI survived too: names still resolve for new logins.
    UserContext::login(Arc::clone(&net), "bob", "pw")
        .await
        .unwrap();

    // A second collection finds nothing more.
    let idle = server.collect_garbage().await.unwrap();
    assert_eq!((idle.deleted, idle.freed_bytes), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_transactions_protect_their_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let (server, net) = setup(dir.path()).await;
    let alice = UserContext::signup(Arc::clone(&net), "alice", "pw", None)
        .await
        .unwrap();
    server.collect_garbage().await.unwrap();
    let _ = alice;
    // A block put in a transaction that is still open, linked from nothing
    // (straight into the store, as an upload in progress leaves it).
    let keys = SigningKeyPair::random();
    let owner = PublicKeyHash::of(&keys.public());
    let store = server.blocks();
    let tx = store.start_transaction(&owner).await.unwrap();
    let block = SignedBlock::sign(&keys, Codec::Raw, data(9, 4096));
    let cids = store
        .put(PutBlocks {
            owner,
            writer: owner,
            transaction: tx,
            blocks: vec![block],
        })
        .await
        .unwrap();
    let kept = server.collect_garbage().await.unwrap();
    assert_eq!((kept.protected, kept.deleted), (1, 0));
    assert!(store.has(&cids[0]).await.unwrap());
    // Closed and still unlinked: now it is garbage.
    store.close_transaction(&owner, &tx).await.unwrap();
    let freed = server.collect_garbage().await.unwrap();
    assert_eq!((freed.deleted, freed.freed_bytes), (1, 4096));
    assert!(!store.has(&cids[0]).await.unwrap());
}

/// The block files under the server's data directory.
fn block_files(dir: &std::path::Path) -> std::collections::BTreeSet<std::path::PathBuf> {
    std::fs::read_dir(dir.join("blocks").join("blocks"))
        .unwrap()
        .flat_map(|shard| std::fs::read_dir(shard.unwrap().path()).unwrap())
        .map(|entry| entry.unwrap().path())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_reachable_fragment_stops_the_collection_before_any_delete() {
    let dir = tempfile::tempdir().unwrap();
    let (server, net) = setup(dir.path()).await;
    let alice = UserContext::signup(Arc::clone(&net), "alice", "pw", None)
        .await
        .unwrap();
    let before = block_files(dir.path());
    alice
        .fs()
        .write_file("/keep.bin", &data(1, 2 << 20))
        .await
        .unwrap();
    // A fragment of the kept file (a raw block, which the collection only
    // checks is there) goes missing from the disk.
    let lost = block_files(dir.path())
        .into_iter()
        .find(|path| !before.contains(path))
        .unwrap();
    std::fs::remove_file(&lost).unwrap();
    // And there is garbage it would otherwise free.
    alice
        .fs()
        .write_file("/gone.bin", &data(2, 1 << 20))
        .await
        .unwrap();
    alice.fs().rm("/gone.bin").await.unwrap();
    let (count, _) = stored(&server).await;

    let err = server.collect_garbage().await.unwrap_err().to_string();
    let name = lost.file_name().unwrap().to_str().unwrap();
    assert!(err.contains(name) && err.contains("missing"), "{err}");
    assert_eq!(stored(&server).await.0, count, "nothing was deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_during_a_collection_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (server, net) = setup(dir.path()).await;
    let alice = Arc::new(
        UserContext::signup(Arc::clone(&net), "alice", "pw", None)
            .await
            .unwrap(),
    );
    // Garbage to collect while uploads run.
    for i in 0..20u8 {
        alice
            .fs()
            .write_file(&format!("/old{i}"), &data(i, 300_000))
            .await
            .unwrap();
        alice.fs().rm(&format!("/old{i}")).await.unwrap();
    }
    // The uploads and the collections run interleaved on one task (the
    // filesystem's futures are not `Send`); each awaits I/O at every step.
    let done = std::sync::atomic::AtomicBool::new(false);
    let uploads = async {
        // A large file (its chunks are put one by one, then linked in one
        // commit at the end) and many small ones.
        alice
            .fs()
            .write_file("/big.bin", &data(50, 12 << 20))
            .await
            .unwrap();
        for i in 0..40u8 {
            alice
                .fs()
                .write_file(&format!("/new{i}"), &data(100 + i, 50_000))
                .await
                .unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let collections = async {
        let (mut freed, mut runs, mut protected) = (0, 0, 0);
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            let report = server.collect_garbage().await.unwrap();
            freed += report.freed_bytes;
            protected += report.protected;
            runs += 1;
            tokio::task::yield_now().await;
        }
        (freed, runs, protected)
    };
    let ((), (freed, runs, protected)) = tokio::join!(uploads, collections);
    assert!(
        protected > 0,
        "some collection ran while an upload was open"
    );
    assert!(runs >= 1);
    assert!(
        freed >= 20 * 300_000,
        "the deleted files were freed ({freed})"
    );

    // Every file written during the collections reads back whole.
    let check = UserContext::login(Arc::clone(&net), "alice", "pw")
        .await
        .unwrap();
    assert_eq!(
        check.fs().read("/big.bin", 0, 16 << 20).await.unwrap(),
        data(50, 12 << 20)
    );
    for i in 0..40u8 {
        assert_eq!(
            check
                .fs()
                .read(&format!("/new{i}"), 0, 100_000)
                .await
                .unwrap(),
            data(100 + i, 50_000),
            "/new{i}"
        );
    }
    let last = server.collect_garbage().await.unwrap();
    assert_eq!(stored(&server).await.0, last.reachable);
}
