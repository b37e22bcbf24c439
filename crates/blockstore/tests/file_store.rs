//! File store behaviour beyond the conformance suite: real crashes,
//! corruption on disk, and what a crash leaves behind.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use futures::TryStreamExt;
use peergos_blockstore::{BlockStore, Error, FileStore};
use peergos_ipld::{Cid, Codec};
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
        // every other put holds three blocks, written on threads of their
        // own.
        let blocks: Vec<_> = (0..1 + 2 * (n % 2))
            .map(|i| {
                let len = 1 + (((n + i) * 7919) % (1 << 20) as u64) as usize;
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
                "crash_child_writer",
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

#[tokio::test]
async fn corrupt_block_on_disk_is_reported_not_returned() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let cid = Writer::new().put(&store, &[raw(1, 4096)]).await[0];
    let path = store.path_of(&cid);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
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
async fn half_written_temp_files_never_appear_as_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let (_, data) = raw(9, 10_000);
    let cid = Cid::hash(Codec::Raw, &data);
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
    let cid = Writer::new().put(&store, &[raw(2, 10)]).await[0];
    std::fs::write(dir.path().join("blocks").join("README"), "x").unwrap();
    std::fs::write(store.path_of(&cid).with_file_name("not-a-cid"), "x").unwrap();
    let listed: Vec<Cid> = store.list().try_collect().await.unwrap();
    assert_eq!(listed, vec![cid]);
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
    std::fs::write(again.path_of(&other_cid), b"tampered").unwrap();
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
    let blocks: Vec<_> = (0..24).map(|n| raw(n, 100 + n as usize)).collect();
    let cids: Vec<Cid> = blocks.iter().map(|(c, d)| Cid::hash(*c, d)).collect();
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
