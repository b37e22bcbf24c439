//! File store behaviour beyond the conformance suite: real crashes,
//! corruption on disk, what a crash leaves behind, and where blocks of
//! each size live.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use futures::TryStreamExt;
use peergos_blockstore::file::stored_blocks;
use peergos_blockstore::{
    BlockStore, Error, FileOptions, FileStore, LocalBlockStore, SMALL_BLOCK_MAX,
};
use peergos_ipld::{Cid, Codec, HashFn};
use peergos_testkit::blockstore::{raw, Writer};

const CHILD_DIR: &str = "PEERGOS_CRASH_CHILD_DIR";

/// Run by `kill_9_during_writes_loses_nothing_acknowledged` in a child
/// process: writes blocks forever, printing each CID once its put returned.
#[tokio::test]
#[ignore = "helper: run as a child process by the crash test"]
async fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let store = FileStore::open(&dir).unwrap();
    let writer = Writer::new();
    let pid = u64::from(std::process::id());
    for n in 0u64.. {
        // Sizes from 1 byte to 1 MiB so the kill lands mid-write often;
        // every other put holds three blocks, a small one (a database row)
        // and two that are mostly large (files written on threads of their
        // own).
        let blocks: Vec<_> = (0..1 + 2 * (n % 2))
            .map(|i| {
                let range = if i == 0 && n % 4 != 0 {
                    SMALL_BLOCK_MAX
                } else {
                    1 << 20
                };
                let len = 1 + (((n + i) * 7919) % range as u64) as usize;
                raw(pid * 1_000_000 + n * 4 + i, len)
            })
            .collect();
        for cid in writer.put(&store, &blocks).await {
            println!("acked {cid}");
        }
    }
}

#[test]
fn kill_9_during_writes_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: Vec<Cid> = Vec::new();
    for round in 0..6 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "file_store::crash_child_writer",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        // Kill after a different number of acknowledgements each round.
        let wanted = 3 + round * 5;
        let mut seen = 0;
        for line in stdout.lines() {
            let line = line.unwrap();
            if let Some(cid) = line.strip_prefix("acked ") {
                acked.push(cid.parse().unwrap());
                seen += 1;
                if seen == wanted {
                    break;
                }
            }
        }
        assert_eq!(seen, wanted, "child stopped early in round {round}");
        child.kill().unwrap(); // SIGKILL: no destructors, no flushing
        child.wait().unwrap();

        // Reopen as a restarted daemon would.
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let store = FileStore::open(dir.path()).unwrap();
            for cid in &acked {
                let data = store.get(cid, None).await.unwrap();
                assert!(
                    data.is_some(),
                    "acknowledged block {cid} lost in round {round}"
                );
            }
            // Every block under a real name is complete and verifies.
            let listed: Vec<Cid> = store.list().try_collect().await.unwrap();
            assert!(listed.len() >= acked.len());
            for cid in &listed {
                store.get_trusted(cid).await.unwrap().unwrap();
            }
        });
        let leftovers = std::fs::read_dir(dir.path().join("tmp")).unwrap().count();
        assert_eq!(leftovers, 0, "open() must clear temp files");
    }
}

/// Runs `sql` on a store's small-block database from outside the store.
fn tamper(store: &FileStore, sql: &str, params: impl rusqlite::Params) {
    let conn = rusqlite::Connection::open(store.small_db()).unwrap();
    conn.execute(sql, params).unwrap();
}

/// Flips a byte of a block file in place.
fn rot(path: &std::path::Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(path, &bytes).unwrap();
    bytes
}

#[tokio::test]
async fn corrupt_block_on_disk_is_reported_not_returned() {
    let dir = tempfile::tempdir().unwrap();
    let options = FileOptions {
        verify_reads: true,
        ..FileOptions::default()
    };
    let store = FileStore::open_with(dir.path(), options).unwrap();
    let cid = Writer::new()
        .put(&store, &[raw(1, SMALL_BLOCK_MAX + 4096)])
        .await[0];
    let path = store.path_of(&cid);
    let bytes = rot(&path);
    let err = store.get(&cid, None).await.unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains(&cid.to_string()));
    assert!(matches!(
        store.get_trusted(&cid).await,
        Err(Error::Corrupt { .. })
    ));
    // A truncated block is corrupt too.
    std::fs::write(&path, &bytes[..10]).unwrap();
    assert!(matches!(
        store.get(&cid, None).await,
        Err(Error::Corrupt { .. })
    ));
}

#[tokio::test]
async fn by_default_only_raw_block_files_are_read_without_rehashing() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let body = "x".repeat(SMALL_BLOCK_MAX + 4096);
    let blocks = [
        raw(1, SMALL_BLOCK_MAX + 4096),
        peergos_testkit::blockstore::cbor_with_bats(&[], &body),
    ];
    let cids = Writer::new().put(&store, &blocks).await;
    let (raw_cid, node_cid) = (cids[0], cids[1]);
    for cid in &cids {
        rot(&store.path_of(cid));
    }
    // A structured block (which the server parses) is re-hashed on every
    // read.
    assert!(matches!(
        store.get(&node_cid, None).await,
        Err(Error::Corrupt { .. })
    ));
    // A raw one comes back as it lies on the disk: its reader re-hashes
    // it, and so does a scrub.
    let read = store.get_trusted(&raw_cid).await.unwrap().unwrap();
    assert_ne!(read, blocks[0].1);
    assert!(raw_cid.verify(&read).is_err());
    // A scrub's check hashes it whatever the setting.
    assert!(matches!(
        store.check(&raw_cid).await,
        Err(Error::Corrupt { .. })
    ));
    drop(store);
    let options = FileOptions {
        verify_reads: true,
        ..FileOptions::default()
    };
    let checking = FileStore::open_with(dir.path(), options).unwrap();
    assert!(matches!(
        checking.get(&raw_cid, None).await,
        Err(Error::Corrupt { .. })
    ));
}

#[tokio::test]
async fn corrupt_small_block_in_the_database_is_reported_not_returned() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let (codec, data) = raw(1, 4096);
    let cid = Writer::new().put(&store, &[(codec, data.clone())]).await[0];
    let mut bytes = data.to_vec();
    bytes[100] ^= 0xff;
    tamper(
        &store,
        "UPDATE blocks SET data = ?1 WHERE cid = ?2",
        rusqlite::params![bytes, cid.to_bytes()],
    );
    let err = store.get(&cid, None).await.unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains(&cid.to_string()), "{err}");
    assert!(err.to_string().contains("small.sqlite"), "{err}");
    assert!(matches!(
        store.get_trusted(&cid).await,
        Err(Error::Corrupt { .. })
    ));
}

#[tokio::test]
async fn small_blocks_are_database_rows_and_large_blocks_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let sizes = [1, 4096, SMALL_BLOCK_MAX, SMALL_BLOCK_MAX + 1, 1 << 20];
    let blocks: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(i, len)| raw(i as u64, *len))
        .collect();
    let cids = Writer::new().put(&store, &blocks).await;
    for ((cid, (_, data)), len) in cids.iter().zip(&blocks).zip(sizes) {
        assert_eq!(
            store.path_of(cid).exists(),
            len > SMALL_BLOCK_MAX,
            "block of {len} bytes"
        );
        assert_eq!(store.get(cid, None).await.unwrap().unwrap(), data);
        assert_eq!(store.size(cid).await.unwrap(), Some(len as u64));
    }
    let rows: i64 = rusqlite::Connection::open(store.small_db())
        .unwrap()
        .query_row("SELECT count(*) FROM blocks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 3);
    let mut listed: Vec<Cid> = store.list().try_collect().await.unwrap();
    listed.sort();
    let mut expected = cids.clone();
    expected.sort();
    assert_eq!(listed, expected);
    // Deleting works in both places; a reopened store agrees.
    store.delete(&cids[1]).await.unwrap();
    store.delete(&cids[4]).await.unwrap();
    drop(store);
    let store = FileStore::open(dir.path()).unwrap();
    for (i, cid) in cids.iter().enumerate() {
        assert_eq!(store.has(cid).await.unwrap(), i != 1 && i != 4, "block {i}");
    }
    assert_eq!(store.list().try_collect::<Vec<_>>().await.unwrap().len(), 3);
}

#[tokio::test]
async fn small_blocks_an_older_build_stored_as_files_are_still_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let (codec, data) = raw(5, 700);
    let cid = Cid::hash(codec, &data);
    // How a build before the database stored it: a file of its own.
    let path = store.path_of(&cid);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &data).unwrap();
    assert_eq!(store.get(&cid, None).await.unwrap().unwrap(), data);
    assert_eq!(store.size(&cid).await.unwrap(), Some(700));
    // Put again (by a client of that time too), it stays a file and is
    // listed once.
    Writer::new()
        .put_with(&store, Some(HashFn::Sha2_256), &[(codec, data.clone())])
        .await;
    assert_eq!(
        store.list().try_collect::<Vec<_>>().await.unwrap(),
        vec![cid]
    );
    assert_eq!(stored_blocks(dir.path()).unwrap().len(), 1);
    store.delete(&cid).await.unwrap();
    assert!(!path.exists());
    assert!(!store.has(&cid).await.unwrap());
}

#[tokio::test]
async fn stored_blocks_reads_both_places_while_the_store_is_open() {
    let dir = tempfile::tempdir().unwrap();
    assert!(stored_blocks(dir.path()).unwrap().is_empty());
    let store = FileStore::open(dir.path()).unwrap();
    let blocks = [raw(1, 10), raw(2, SMALL_BLOCK_MAX + 10), raw(3, 5000)];
    let cids = Writer::new().put(&store, &blocks).await;
    let mut seen = stored_blocks(dir.path()).unwrap();
    seen.sort();
    let mut expected: Vec<_> = cids
        .iter()
        .zip(&blocks)
        .map(|(cid, (_, data))| (*cid, data.clone()))
        .collect();
    expected.sort();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn a_database_from_a_newer_build_is_refused_with_its_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    tamper(&store, "PRAGMA user_version = 99", []);
    drop(store);
    let err = FileStore::open(dir.path()).err().unwrap();
    assert!(matches!(err, Error::NewerFormat { found: 99, .. }), "{err}");
    assert!(err.to_string().contains("small.sqlite"), "{err}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Blocks of any size on either side of the threshold read back, list
    /// and delete the same, before and after reopening the store.
    #[test]
    fn prop_blocks_of_any_size_round_trip(
        sizes in proptest::collection::vec(0usize..2 * SMALL_BLOCK_MAX, 1..8),
        delete in proptest::collection::vec(proptest::bool::ANY, 8),
    ) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = FileStore::open(dir.path()).unwrap();
            let blocks: Vec<_> = sizes.iter().enumerate().map(|(i, n)| raw(i as u64, *n)).collect();
            let cids = Writer::new().put(&store, &blocks).await;
            for (cid, deleted) in cids.iter().zip(&delete) {
                if *deleted {
                    store.delete(cid).await.unwrap();
                }
            }
            drop(store);
            let store = FileStore::open(dir.path()).unwrap();
            let mut kept = std::collections::BTreeSet::new();
            for ((cid, (_, data)), deleted) in cids.iter().zip(&blocks).zip(&delete) {
                let got = store.get(cid, None).await.unwrap();
                if *deleted {
                    assert_eq!(got, None);
                } else {
                    assert_eq!(got.as_ref(), Some(data));
                    kept.insert(*cid);
                }
            }
            let listed: std::collections::BTreeSet<Cid> =
                store.list().try_collect().await.unwrap();
            assert_eq!(listed, kept);
        });
    }
}

/// A store opened with or without direct I/O.
fn open_as(dir: &std::path::Path, direct_io: bool) -> FileStore {
    let options = FileOptions {
        direct_io,
        ..FileOptions::default()
    };
    FileStore::open_with(dir, options).unwrap()
}

#[tokio::test]
async fn the_default_store_bypasses_the_page_cache_where_the_filesystem_allows() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    if !store.direct_io() {
        eprintln!("SKIPPED: {} refuses O_DIRECT", dir.path().display());
        return;
    }
    // The probe that found out leaves nothing behind.
    let tmp: Vec<_> = std::fs::read_dir(dir.path().join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "{tmp:?}");
    assert!(!open_as(dir.path(), false).direct_io());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(12))]

    /// Block files written with direct I/O read back through the page
    /// cache and the other way round, so the setting can change between
    /// runs of a server.
    #[test]
    fn prop_direct_and_buffered_files_are_interchangeable(
        sizes in proptest::collection::vec(SMALL_BLOCK_MAX + 1..(1usize << 20) + 64, 1..5),
        direct_first in proptest::bool::ANY,
    ) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let blocks: Vec<_> = sizes.iter().enumerate().map(|(i, n)| raw(i as u64, *n)).collect();
            let cids = Writer::new().put(&open_as(dir.path(), direct_first), &blocks).await;
            let store = open_as(dir.path(), !direct_first);
            for (cid, (_, data)) in cids.iter().zip(&blocks) {
                assert_eq!(std::fs::metadata(store.path_of(cid)).unwrap().len(), data.len() as u64);
                assert_eq!(store.get(cid, None).await.unwrap().as_ref(), Some(data));
            }
        });
    }
}

#[tokio::test]
async fn half_written_temp_files_never_appear_as_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let (_, data) = raw(9, 10_000);
    let cid = Cid::hash_with(HashFn::Blake3, Codec::Raw, &data);
    {
        let store = FileStore::open(dir.path()).unwrap();
        drop(store);
    }
    // What a crash between write and rename leaves: a partial temp file.
    let tmp = dir
        .path()
        .join("tmp")
        .join(format!("{cid}.0000000000000001.tmp"));
    std::fs::write(&tmp, &data[..5000]).unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    assert!(!tmp.exists());
    assert!(!store.has(&cid).await.unwrap());
    assert_eq!(store.list().try_collect::<Vec<_>>().await.unwrap(), vec![]);
    // Writing the block for real afterwards works.
    let stored = Writer::new()
        .put(&store, &[(Codec::Raw, data.clone())])
        .await;
    assert_eq!(stored, vec![cid]);
}

#[tokio::test]
async fn foreign_files_in_the_block_tree_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let cids = Writer::new()
        .put(&store, &[raw(2, SMALL_BLOCK_MAX + 10), raw(3, 10)])
        .await;
    std::fs::write(dir.path().join("blocks").join("README"), "x").unwrap();
    std::fs::write(store.path_of(&cids[0]).with_file_name("not-a-cid"), "x").unwrap();
    tamper(
        &store,
        "INSERT INTO blocks (cid, data) VALUES (x'00', x'00')",
        [],
    );
    let mut listed: Vec<Cid> = store.list().try_collect().await.unwrap();
    listed.sort();
    let mut expected = cids.clone();
    expected.sort();
    assert_eq!(listed, expected);
}

#[tokio::test]
async fn unwritable_directory_gives_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let err = FileStore::open(&file).err().unwrap();
    assert!(matches!(err, Error::Io { .. }));
    assert!(err.to_string().contains("plain-file"), "{err}");
}

#[tokio::test]
async fn a_cache_store_keeps_verified_copies_under_the_access_rules() {
    use peergos_ipld::Block;
    let dir = tempfile::tempdir().unwrap();
    let cache = FileStore::open_cache(dir.path()).unwrap();
    let open = Block::new(Codec::Raw, b"a copy of someone's block".to_vec()).unwrap();
    let cid = *open.cid();
    cache.put_verified(vec![open]).await.unwrap();
    assert_eq!(
        cache.get(&cid, None).await.unwrap().unwrap().as_ref(),
        b"a copy of someone's block"
    );
    // Listed and deletable like any block, and still there after reopening.
    let listed: Vec<Cid> = cache.list().try_collect().await.unwrap();
    assert_eq!(listed, vec![cid]);
    drop(cache);
    let again = FileStore::open_cache(dir.path()).unwrap();
    assert!(again.has(&cid).await.unwrap());
    again.delete(&cid).await.unwrap();
    assert!(!again.has(&cid).await.unwrap());
    // Reads check hashes in a cache too.
    let other = Block::new(Codec::Raw, b"another".to_vec()).unwrap();
    let other_cid = *other.cid();
    again.put_verified(vec![other]).await.unwrap();
    tamper(
        &again,
        "UPDATE blocks SET data = x'00' WHERE cid = ?1",
        [other_cid.to_bytes()],
    );
    assert!(matches!(
        again.get(&other_cid, None).await,
        Err(Error::Corrupt { .. })
    ));
}

#[tokio::test]
async fn a_put_with_a_failing_block_fails_whole_and_can_be_retried() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let writer = Writer::new();
    // Large blocks (files) and, after them, small ones (database rows).
    let blocks: Vec<_> = (0..24)
        .map(|n| raw(n, SMALL_BLOCK_MAX + 1 + n as usize))
        .chain((24..30).map(|n| raw(n, 100 + n as usize)))
        .collect();
    let cids: Vec<Cid> = blocks
        .iter()
        .map(|(c, d)| Cid::hash_with(HashFn::for_new(*c), *c, d))
        .collect();
    // One block's shard directory cannot be made: a file has its name.
    let shard = store.path_of(&cids[17]).parent().unwrap().to_path_buf();
    std::fs::write(&shard, b"in the way").unwrap();
    let tx = store.start_transaction(&writer.owner).await.unwrap();
    let e = store.put(writer.request(tx, &blocks)).await.unwrap_err();
    assert!(e.to_string().contains(&shard.display().to_string()), "{e}");
    assert!(!store.has(&cids[17]).await.unwrap());
    // Out of the way, the same put stores every block.
    std::fs::remove_file(&shard).unwrap();
    assert_eq!(store.put(writer.request(tx, &blocks)).await.unwrap(), cids);
    for (cid, (_, data)) in cids.iter().zip(&blocks) {
        assert_eq!(store.get(cid, None).await.unwrap().unwrap(), data);
    }
}
