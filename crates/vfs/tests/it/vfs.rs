//! The vfs layer over in-memory stores: what reaches the stores (the
//! caches' worth), commits per chunk, snapshots, inode numbers, errnos.

use std::ffi::OsStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use peergos_blockstore::MemoryStore;
use peergos_cryptree::node::CHUNK_SIZE;
use peergos_cryptree::{Filesystem, Kind};
use peergos_pointers::MemoryPointerStore;
use peergos_testkit::cryptree::{data, new_fs, read_all};
use peergos_vfs::{Options, Vfs, RENAME_NOREPLACE, ROOT};

/// A pointer store that counts reads (each is a round trip to a server)
/// and can be made slow to commit to, like a distant server.
type Counting = peergos_testkit::pointers::Counting<MemoryPointerStore>;

type Fs = Filesystem<MemoryStore, Counting>;

struct Setup {
    vfs: Vfs<MemoryStore, Counting>,
    blocks: Arc<MemoryStore>,
    /// A second client of the same space.
    other: Fs,
    pointers: Arc<Counting>,
}

async fn setup(options: Options) -> Setup {
    let blocks = Arc::new(MemoryStore::new());
    let pointers = Arc::new(Counting::default());
    let fs: Fs = new_fs(Arc::clone(&blocks), Arc::clone(&pointers), "home").await;
    let other = Filesystem::open(
        Arc::clone(&blocks),
        Arc::clone(&pointers),
        fs.root().clone(),
    );
    Setup {
        vfs: Vfs::new(Arc::new(fs), options),
        blocks,
        other,
        pointers,
    }
}

fn os(name: &str) -> &OsStr {
    OsStr::new(name)
}

#[tokio::test]
async fn repeated_stats_and_reads_do_not_go_back_to_the_server() {
    let s = setup(Options::default()).await;
    s.other.mkdir("/docs").await.unwrap();
    s.other
        .write_file("/docs/a.txt", &data(1, 300_000))
        .await
        .unwrap();
    let docs = s.vfs.lookup(ROOT, os("docs")).await.unwrap();
    let a = s.vfs.lookup(docs.ino, os("a.txt")).await.unwrap();
    assert_eq!((a.kind, a.size), (Kind::File, 300_000));
    let fh = s.vfs.open(a.ino, false, false).await.unwrap();
    assert_eq!(
        s.vfs.read(fh, 0, 4096).await.unwrap(),
        data(1, 300_000)[..4096]
    );

    let before = s.pointers.gets.load(Ordering::Relaxed);
    for _ in 0..100 {
        assert_eq!(s.vfs.getattr(a.ino).await.unwrap().size, 300_000);
        assert_eq!(
            s.vfs.lookup(docs.ino, os("a.txt")).await.unwrap().ino,
            a.ino
        );
        let missing = s.vfs.lookup(docs.ino, os("nope")).await.unwrap_err();
        assert_eq!(missing.errno(), libc::ENOENT);
    }
    let mut read = Vec::new();
    let mut offset = 0;
    while offset < 300_000 {
        let piece = s.vfs.read(fh, offset, 65_536).await.unwrap();
        offset += piece.len() as u64;
        read.extend(piece);
    }
    assert_eq!(read, data(1, 300_000));
    assert_eq!(
        s.pointers.gets.load(Ordering::Relaxed),
        before,
        "cached stats and snapshot reads read no pointer"
    );
    assert_eq!(s.vfs.counters().listings, 2, "one listing per directory");
    s.vfs.release(fh).await.unwrap();
}

#[tokio::test]
async fn a_moved_pointer_drops_the_cache() {
    let s = setup(Options::default()).await;
    s.other.write_file("/a.txt", b"one").await.unwrap();
    let a = s.vfs.lookup(ROOT, os("a.txt")).await.unwrap();
    assert!(
        !s.vfs.refresh().await.unwrap(),
        "the first check sets the baseline"
    );
    assert!(!s.vfs.refresh().await.unwrap(), "nothing moved");

    s.other.write_file("/a.txt", b"three").await.unwrap();
    s.other.write_file("/b.txt", b"b").await.unwrap();
    // Until the next check, the cached answer stands.
    assert_eq!(s.vfs.getattr(a.ino).await.unwrap().size, 3);
    assert!(s.vfs.refresh().await.unwrap());
    assert_eq!(s.vfs.getattr(a.ino).await.unwrap().size, 5);
    assert!(s.vfs.lookup(ROOT, os("b.txt")).await.is_ok());
    assert_eq!(s.vfs.counters().invalidations, 1);
    let fh = s.vfs.open(a.ino, false, false).await.unwrap();
    assert_eq!(s.vfs.read(fh, 0, 100).await.unwrap(), b"three");
}

#[tokio::test]
async fn sequential_writes_commit_a_chunk_at_a_time() {
    let s = setup(Options::default()).await;
    let (attr, fh) = s.vfs.create(ROOT, os("big")).await.unwrap();
    let content = data(3, 2 * CHUNK_SIZE as usize + 123_456);
    let commits = s.vfs.counters().commits;
    for (i, piece) in content.chunks(128 << 10).enumerate() {
        let n = s
            .vfs
            .write(fh, (i * (128 << 10)) as u64, piece)
            .await
            .unwrap();
        assert_eq!(n as usize, piece.len());
    }
    // Two whole chunks were committed in the background (one may still be
    // in flight); the size already counts every byte.
    assert_eq!(
        s.vfs.getattr(attr.ino).await.unwrap().size,
        content.len() as u64
    );
    // Reads through the handle see every byte, committed or not.
    let tail = s
        .vfs
        .read(fh, content.len() as u64 - 1000, 5000)
        .await
        .unwrap();
    assert_eq!(tail, content[content.len() - 1000..]);
    s.vfs.release(fh).await.unwrap();
    assert_eq!(s.vfs.counters().commits - commits, 3);
    assert_eq!(read_all(&s.other, "/big").await, content);
}

#[tokio::test]
async fn writes_gather_while_a_commit_is_in_flight() {
    let s = setup(Options::default()).await;
    // Each commit takes a while, as it does over a network.
    s.pointers.set_delay_ms.store(300, Ordering::Relaxed);
    let (attr, fh) = s.vfs.create(ROOT, os("big")).await.unwrap();
    let chunk = CHUNK_SIZE as usize;
    let content = data(5, 8 * chunk + 777);
    let commits = s.vfs.counters().commits;
    for (i, piece) in content.chunks(1 << 20).enumerate() {
        s.vfs.write(fh, (i << 20) as u64, piece).await.unwrap();
    }
    // The first chunk made the file; the second went into a background
    // commit; the next six gathered behind it and went as one commit.
    assert_eq!(s.vfs.counters().commits - commits, 2);
    assert_eq!(
        s.vfs.getattr(attr.ino).await.unwrap().size,
        content.len() as u64
    );
    // Every byte reads back through the handle, whichever commit has it.
    let across = s
        .vfs
        .read(fh, chunk as u64 - 10, 3 * chunk as u32)
        .await
        .unwrap();
    assert_eq!(across, content[chunk - 10..4 * chunk - 10]);
    s.vfs.release(fh).await.unwrap();
    // The gathered commit and the tail's: four commits for nine chunks.
    assert_eq!(s.vfs.counters().commits - commits, 4);
    assert_eq!(read_all(&s.other, "/big").await, content);
}

/// Raw blocks (file fragments) in the store.
async fn fragments(blocks: &MemoryStore) -> usize {
    use futures::StreamExt as _;
    use peergos_blockstore::LocalBlockStore as _;
    blocks
        .list()
        .filter(|cid| {
            let raw = matches!(cid, Ok(cid) if cid.codec() == Some(peergos_ipld::Codec::Raw));
            async move { raw }
        })
        .count()
        .await
}

#[tokio::test]
async fn background_commits_store_whole_chunks_once() {
    let s = setup(Options::default()).await;
    let before = fragments(&s.blocks).await;
    let (_, fh) = s.vfs.create(ROOT, os("big")).await.unwrap();
    // Writes that do not divide a chunk: a commit starting at any of them
    // would end inside a chunk.
    let content = data(9, 4 * CHUNK_SIZE as usize + (3 << 20));
    for (i, piece) in content.chunks(3 << 20).enumerate() {
        s.vfs
            .write(fh, (i * (3 << 20)) as u64, piece)
            .await
            .unwrap();
    }
    s.vfs.release(fh).await.unwrap();
    assert_eq!(read_all(&s.other, "/big").await, content);
    // One 1 MiB fragment per MiB written: no chunk was stored in part and
    // then read back and stored again.
    assert_eq!(fragments(&s.blocks).await - before, 23);
}

#[tokio::test]
async fn a_handle_keeps_writes_in_order_with_truncation_and_times() {
    let s = setup(Options::default()).await;
    s.other.write_file("/f", &data(4, 10_000)).await.unwrap();
    let f = s.vfs.lookup(ROOT, os("f")).await.unwrap();
    let fh = s.vfs.open(f.ino, true, false).await.unwrap();
    s.vfs.write(fh, 100, b"middle").await.unwrap();
    // A cut after writes commits them first.
    let attr = s
        .vfs
        .setattr(f.ino, Some(fh), Some(50), None)
        .await
        .unwrap();
    assert_eq!(attr.size, 50);
    s.vfs.write(fh, 60, b"end").await.unwrap();
    s.vfs
        .setattr(f.ino, Some(fh), None, Some(1_000_000))
        .await
        .unwrap();
    assert_eq!(s.vfs.getattr(f.ino).await.unwrap().size, 63);
    s.vfs.fsync(fh).await.unwrap();
    let mut expect = data(4, 50);
    expect.resize(60, 0);
    expect.extend_from_slice(b"end");
    assert_eq!(read_all(&s.other, "/f").await, expect);
    assert_eq!(s.other.stat("/f").await.unwrap().modified, 1_000_000);
    s.vfs.release(fh).await.unwrap();

    // Opening with O_TRUNC empties the file on the first commit.
    let fh = s.vfs.open(f.ino, true, true).await.unwrap();
    assert_eq!(s.vfs.getattr(f.ino).await.unwrap().size, 0);
    s.vfs.write(fh, 0, b"fresh").await.unwrap();
    s.vfs.release(fh).await.unwrap();
    assert_eq!(read_all(&s.other, "/f").await, b"fresh");
}

#[tokio::test]
async fn renames_keep_inode_numbers_and_replace_files() {
    let s = setup(Options::default()).await;
    let dir = s.vfs.mkdir(ROOT, os("d")).await.unwrap();
    let (a, fh) = s.vfs.create(dir.ino, os("a")).await.unwrap();
    s.vfs.write(fh, 0, b"aaa").await.unwrap();
    s.vfs.release(fh).await.unwrap();
    let (_, fh) = s.vfs.create(ROOT, os("b")).await.unwrap();
    s.vfs.release(fh).await.unwrap();

    let refused = s
        .vfs
        .rename(dir.ino, os("a"), ROOT, os("b"), RENAME_NOREPLACE)
        .await
        .unwrap_err();
    assert_eq!(refused.errno(), libc::EEXIST);
    s.vfs
        .rename(dir.ino, os("a"), ROOT, os("b"), 0)
        .await
        .unwrap();
    let b = s.vfs.lookup(ROOT, os("b")).await.unwrap();
    assert_eq!(b.ino, a.ino, "the moved file keeps its number");
    assert_eq!(b.size, 3);
    assert_eq!(
        s.vfs.lookup(dir.ino, os("a")).await.unwrap_err().errno(),
        libc::ENOENT
    );
    // A directory moves with what is inside.
    let (inner, fh) = s.vfs.create(dir.ino, os("inner")).await.unwrap();
    s.vfs.release(fh).await.unwrap();
    let top = s.vfs.mkdir(ROOT, os("top")).await.unwrap();
    s.vfs
        .rename(ROOT, os("d"), top.ino, os("d2"), 0)
        .await
        .unwrap();
    assert_eq!(s.vfs.getattr(inner.ino).await.unwrap().ino, inner.ino);
    assert_eq!(
        s.other.stat("/top/d2/inner").await.unwrap().kind,
        Kind::File
    );
}

#[tokio::test]
async fn readdir_offsets_and_errnos() {
    let s = setup(Options::default()).await;
    let files = (0..250)
        .map(|i| (format!("n{i:03}"), vec![i as u8], Default::default()))
        .collect();
    s.other.mkdir("/many").await.unwrap();
    s.other.write_files("/many", files).await.unwrap();
    let many = s.vfs.lookup(ROOT, os("many")).await.unwrap();
    let dh = s.vfs.opendir(many.ino).await.unwrap();
    let mut names = Vec::new();
    let mut offset = 0;
    loop {
        let batch = s.vfs.readdir(dh, offset).unwrap();
        if batch.is_empty() {
            break;
        }
        // The kernel takes a few at a time and asks again from there.
        for entry in batch.iter().take(37) {
            names.push(entry.name.clone());
            offset += 1;
        }
    }
    s.vfs.releasedir(dh);
    assert_eq!(names.len(), 252);
    assert_eq!(&names[..3], [".", "..", "n000"]);
    assert_eq!(names[251], "n249");

    let e = |r: peergos_vfs::Result<()>| r.unwrap_err().errno();
    assert_eq!(e(s.vfs.rmdir(ROOT, os("many")).await), libc::ENOTEMPTY);
    assert_eq!(e(s.vfs.unlink(ROOT, os("many")).await), libc::EISDIR);
    assert_eq!(
        e(s.vfs.mkdir(ROOT, os("many")).await.map(drop)),
        libc::EEXIST
    );
    assert_eq!(
        e(s.vfs.open(many.ino, false, false).await.map(drop)),
        libc::EISDIR
    );
    let n0 = s.vfs.lookup(many.ino, os("n000")).await.unwrap();
    assert_eq!(e(s.vfs.opendir(n0.ino).await.map(drop)), libc::ENOTDIR);
    assert_eq!(
        e(s.vfs.lookup(n0.ino, os("x")).await.map(drop)),
        libc::ENOTDIR
    );
    assert_eq!(e(s.vfs.read(999, 0, 1).await.map(drop)), libc::EBADF);
    let long = "x".repeat(300);
    assert_eq!(
        e(s.vfs.mkdir(ROOT, os(&long)).await.map(drop)),
        libc::ENAMETOOLONG
    );
    let ro = s.vfs.open(n0.ino, false, false).await.unwrap();
    assert_eq!(e(s.vfs.write(ro, 0, b"x").await.map(drop)), libc::EBADF);
}

#[tokio::test]
async fn read_only_mounts_and_single_files() {
    let s = setup(Options {
        read_only: true,
        ..Options::default()
    })
    .await;
    s.other.write_file("/a", b"a").await.unwrap();
    let a = s.vfs.lookup(ROOT, os("a")).await.unwrap();
    assert!(!a.writable);
    let e = |r: peergos_vfs::Result<()>| r.unwrap_err().errno();
    assert_eq!(
        e(s.vfs.open(a.ino, true, false).await.map(drop)),
        libc::EROFS
    );
    assert_eq!(e(s.vfs.create(ROOT, os("b")).await.map(drop)), libc::EROFS);
    assert_eq!(e(s.vfs.unlink(ROOT, os("a")).await), libc::EROFS);
    assert_eq!(
        e(s.vfs.setattr(a.ino, None, Some(0), None).await.map(drop)),
        libc::EROFS
    );

    // A link to one file: the root holds just it, under its name.
    let blocks = Arc::new(MemoryStore::new());
    let pointers = Arc::new(Counting::default());
    let fs: Fs = new_fs(Arc::clone(&blocks), Arc::clone(&pointers), "home").await;
    fs.write_file("/only.txt", b"just me").await.unwrap();
    let cap = fs.capability("/only.txt").await.unwrap();
    let file_fs = Filesystem::open(blocks, pointers, cap);
    let vfs = Vfs::new(
        Arc::new(file_fs),
        Options {
            single_file: Some("only.txt".into()),
            ..Options::default()
        },
    );
    let dh = vfs.opendir(ROOT).await.unwrap();
    let names: Vec<String> = vfs
        .readdir(dh, 0)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, [".", "..", "only.txt"]);
    let only = vfs.lookup(ROOT, os("only.txt")).await.unwrap();
    let fh = vfs.open(only.ino, true, false).await.unwrap();
    vfs.write(fh, 5, b"you").await.unwrap();
    vfs.release(fh).await.unwrap();
    assert_eq!(read_all(&fs, "/only.txt").await, b"just you");
    assert_eq!(
        e(vfs.create(ROOT, os("other")).await.map(drop)),
        libc::EACCES,
        "nothing can be added beside the linked file"
    );
}

#[tokio::test]
async fn statfs_without_a_space_source_reports_nothing() {
    let s = setup(Options::default()).await;
    let st = s.vfs.statfs().await.unwrap();
    assert_eq!((st.blocks, st.free, st.name_max), (0, 0, 255));
}

#[tokio::test]
async fn a_new_file_is_stored_whole_by_its_first_commit() {
    let s = setup(Options::default()).await;
    let commits = s.vfs.counters().commits;
    let (attr, fh) = s.vfs.create(ROOT, os("new.txt")).await.unwrap();
    s.vfs.write(fh, 0, b"hello").await.unwrap();
    // This mount sees it at once; the stored tree does not have it yet.
    assert_eq!(s.vfs.lookup(ROOT, os("new.txt")).await.unwrap().size, 5);
    let dh = s.vfs.opendir(ROOT).await.unwrap();
    assert!(s
        .vfs
        .readdir(dh, 0)
        .unwrap()
        .iter()
        .any(|e| e.name == "new.txt"));
    assert_eq!(s.vfs.read(fh, 1, 10).await.unwrap(), b"ello");
    assert!(s.other.stat("/new.txt").await.is_err());
    assert_eq!(
        s.vfs.create(ROOT, os("new.txt")).await.unwrap_err().errno(),
        libc::EEXIST
    );
    s.vfs.release(fh).await.unwrap();
    assert_eq!(
        s.vfs.counters().commits - commits,
        1,
        "one commit makes the file"
    );
    assert_eq!(read_all(&s.other, "/new.txt").await, b"hello");
    assert_eq!(s.vfs.getattr(attr.ino).await.unwrap().size, 5);

    // An empty file (touch) is stored on close too.
    let (_, fh) = s.vfs.create(ROOT, os("empty")).await.unwrap();
    s.vfs.release(fh).await.unwrap();
    assert_eq!(s.other.stat("/empty").await.unwrap().size, 0);

    // Removed before it was ever stored: nothing reaches the tree.
    let (_, fh) = s.vfs.create(ROOT, os("scratch")).await.unwrap();
    s.vfs.write(fh, 0, b"temporary").await.unwrap();
    s.vfs.unlink(ROOT, os("scratch")).await.unwrap();
    s.vfs.release(fh).await.unwrap();
    assert!(s.other.stat("/scratch").await.is_err());
    assert_eq!(
        s.vfs.lookup(ROOT, os("scratch")).await.unwrap_err().errno(),
        libc::ENOENT
    );

    // A folder moved while a file inside it is being made takes it along.
    let dir = s.vfs.mkdir(ROOT, os("d")).await.unwrap();
    let (_, fh) = s.vfs.create(dir.ino, os("inside")).await.unwrap();
    s.vfs.write(fh, 0, b"in").await.unwrap();
    s.vfs
        .rename(ROOT, os("d"), ROOT, os("moved"), 0)
        .await
        .unwrap();
    s.vfs.write(fh, 2, b"side").await.unwrap();
    s.vfs.release(fh).await.unwrap();
    assert_eq!(read_all(&s.other, "/moved/inside").await, b"inside");
    assert_eq!(
        s.vfs.rmdir(ROOT, os("moved")).await.unwrap_err().errno(),
        libc::ENOTEMPTY
    );

    // A second open of a file being made sees the stored file.
    let (made, fh) = s.vfs.create(ROOT, os("twice")).await.unwrap();
    s.vfs.write(fh, 0, b"first").await.unwrap();
    let second = s.vfs.open(made.ino, false, false).await.unwrap();
    assert_eq!(s.vfs.read(second, 0, 100).await.unwrap(), b"first");
    s.vfs.release(second).await.unwrap();
    s.vfs.release(fh).await.unwrap();
}
