//! The filesystem API end to end over the in-memory stores: directories,
//! streaming files at chunk boundaries, ranged reads and writes, renames,
//! copies and deletes.

use peergos_blockstore::LocalBlockStore as _;
use std::sync::Arc;

use bytes::Bytes;

use peergos_blockstore::MemoryStore;
use peergos_cryptree::node::CHUNK_SIZE;
use peergos_cryptree::{Error, Filesystem, Kind, UploadOptions};
use peergos_pointers::MemoryPointerStore;
use peergos_testkit::blockstore::Watched;
use peergos_testkit::cryptree::{data, memory_fs, new_fs, read_all};
use peergos_testkit::pointers::Counting;

/// Compares without printing megabytes on failure.
#[track_caller]
fn assert_same(got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "lengths differ");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("first difference at byte {i} of {}", got.len());
    }
}

fn names(entries: &[peergos_cryptree::Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.name.as_str()).collect()
}

#[tokio::test]
async fn directories_nest_list_and_refuse_duplicates() {
    let fs = memory_fs().await;
    assert!(fs.ls("/").await.unwrap().is_empty());
    fs.mkdir("/docs").await.unwrap();
    fs.mkdir("/docs/2026").await.unwrap();
    fs.mkdir("/music").await.unwrap();
    assert_eq!(names(&fs.ls("/").await.unwrap()), ["docs", "music"]);
    assert_eq!(names(&fs.ls("/docs").await.unwrap()), ["2026"]);
    let stat = fs.stat("/docs/2026").await.unwrap();
    assert_eq!((stat.kind, stat.name.as_str()), (Kind::Dir, "2026"));
    assert!(matches!(
        fs.mkdir("/docs").await,
        Err(Error::AlreadyExists { path }) if path == "/docs"
    ));
    assert!(matches!(
        fs.mkdir("/nope/x").await,
        Err(Error::NotFound { path }) if path == "/nope"
    ));
    assert!(matches!(
        fs.mkdir("/a/../b").await,
        Err(Error::BadPath { .. })
    ));
    fs.write_file("/f", b"x").await.unwrap();
    assert!(matches!(
        fs.mkdir("/f/sub").await,
        Err(Error::NotADirectory { path }) if path == "/f"
    ));
    assert!(matches!(
        fs.ls("/f").await,
        Err(Error::NotADirectory { .. })
    ));
}

#[tokio::test]
async fn files_round_trip_at_chunk_and_page_boundaries() {
    let fs = memory_fs().await;
    let chunk = CHUNK_SIZE as usize;
    for (i, len) in [
        0,
        1,
        4095,
        4096,
        4097,
        chunk - 1,
        chunk,
        chunk + 1,
        2 * chunk + 12345,
    ]
    .into_iter()
    .enumerate()
    {
        let path = format!("/file-{i}");
        let content = data(i as u8, len);
        let entry = fs
            .upload(&path, content.as_slice(), UploadOptions::default())
            .await
            .unwrap();
        assert_eq!(entry.size, len as u64);
        assert_eq!(fs.stat(&path).await.unwrap().size, len as u64);
        assert_same(&read_all(&fs, &path).await, &content);
    }
}

#[tokio::test]
async fn fragments_are_named_with_blake3_and_nodes_with_sha256() {
    use futures::StreamExt;
    use peergos_blockstore::BlockStore;
    use peergos_ipld::{Cid, Codec, HashFn};
    let blocks = Arc::new(MemoryStore::new());
    let fs = new_fs(
        Arc::clone(&blocks),
        Arc::new(MemoryPointerStore::default()),
        "alice",
    )
    .await;
    let content = data(7, CHUNK_SIZE as usize + 300_000);
    fs.write_file("/f", &content).await.unwrap();
    fs.write_at("/f", 1000, b"changed in place").await.unwrap();
    let cids: Vec<Cid> = blocks.list().map(|c| c.unwrap()).collect().await;
    let (mut raw, mut cbor) = (0, 0);
    for cid in &cids {
        let bytes = blocks.get_trusted(cid).await.unwrap().unwrap();
        cid.verify(&bytes).unwrap();
        match cid.codec() {
            Some(Codec::Raw) => {
                raw += 1;
                assert_eq!(cid.hash_fn(), Some(HashFn::Blake3), "{cid}");
            }
            _ => {
                cbor += 1;
                assert_eq!(cid.hash_fn(), Some(HashFn::Sha2_256), "{cid}");
            }
        }
    }
    // Six 1 MiB fragments (and the rewritten one), and a tree of nodes.
    assert!(raw >= 6 && cbor > 3, "{raw} raw, {cbor} structured");
    let mut want = content;
    want[1000..1016].copy_from_slice(b"changed in place");
    assert_same(&read_all(&fs, "/f").await, &want);
}

#[tokio::test]
async fn chunks_a_write_covers_whole_are_sealed_from_it_and_later_writes_win() {
    let fs = memory_fs().await;
    let chunk = CHUNK_SIZE as usize;
    let mut model = data(8, 3 * chunk + 500);
    fs.write_file("/f", &model).await.unwrap();

    // `long` covers chunks 1 and 2 whole from inside its buffer, chunk 0
    // from byte 10 and chunk 3 in part, growing the file. `second` then
    // covers chunk 1 whole again and must win there; `dab` lands inside
    // chunk 2, so that chunk is assembled from both writes.
    let long = data(9, 3 * chunk + 700);
    let second = data(10, chunk);
    let dab = data(11, 100);
    let patch = peergos_cryptree::Patch {
        size: None,
        writes: vec![
            (Some(10), Bytes::from(long.clone())),
            (Some(chunk as u64), Bytes::from(second.clone())),
            (Some(2 * chunk as u64 + 50), Bytes::from(dab.clone())),
        ],
        modified: None,
    };
    let entry = fs.patch("/f", &patch).await.unwrap();
    model.resize(10 + long.len(), 0);
    model[10..].copy_from_slice(&long);
    model[chunk..2 * chunk].copy_from_slice(&second);
    model[2 * chunk + 50..2 * chunk + 150].copy_from_slice(&dab);
    assert_eq!(entry.size, model.len() as u64);
    assert_same(&read_all(&fs, "/f").await, &model);

    // A write of exactly two chunks from offset 0: both are sealed
    // straight from it.
    let exact = data(12, 2 * chunk);
    fs.write_at("/f", 0, &exact).await.unwrap();
    model[..2 * chunk].copy_from_slice(&exact);
    assert_same(&read_all(&fs, "/f").await, &model);
}

#[tokio::test]
async fn ranged_reads_cross_fragments_and_chunks() {
    let fs = memory_fs().await;
    let content = data(7, 2 * CHUNK_SIZE as usize + 3000);
    fs.write_file("/big", &content).await.unwrap();
    let mib = 1 << 20;
    for (offset, len) in [
        (0usize, 10usize),
        (mib - 5, 10),
        (CHUNK_SIZE as usize - 100, 200),
        (3 * mib + 17, 2 * mib),
        (content.len() - 10, 100),
        (content.len(), 5),
    ] {
        let got = fs.read("/big", offset as u64, len).await.unwrap();
        let end = (offset + len).min(content.len());
        assert_eq!(got, &content[offset.min(end)..end], "read {offset}+{len}");
    }
}

#[tokio::test]
async fn overwrite_append_and_truncate() {
    let fs = memory_fs().await;
    let mut model = data(1, CHUNK_SIZE as usize + 500);
    fs.write_file("/f", &model).await.unwrap();

    // Overwrite across the chunk boundary.
    let patch = data(2, 1000);
    let at = CHUNK_SIZE as usize - 300;
    fs.write_at("/f", at as u64, &patch).await.unwrap();
    model.resize(at + patch.len(), 0);
    model[at..].copy_from_slice(&patch);
    assert_same(&read_all(&fs, "/f").await, &model);

    fs.append("/f", b"tail").await.unwrap();
    model.extend_from_slice(b"tail");
    assert_same(&read_all(&fs, "/f").await, &model);

    // Writing past the end zero-fills the gap.
    let far = 2 * CHUNK_SIZE + 10;
    fs.write_at("/f", far, b"far").await.unwrap();
    model.resize(far as usize, 0);
    model.extend_from_slice(b"far");
    assert_same(&read_all(&fs, "/f").await, &model);

    fs.truncate("/f", 100).await.unwrap();
    model.truncate(100);
    assert_same(&read_all(&fs, "/f").await, &model);
    assert_eq!(fs.stat("/f").await.unwrap().size, 100);

    fs.truncate("/f", 5000).await.unwrap();
    model.resize(5000, 0);
    assert_same(&read_all(&fs, "/f").await, &model);

    fs.truncate("/f", 0).await.unwrap();
    assert!(read_all(&fs, "/f").await.is_empty());
    assert!(matches!(
        fs.write_at("/", 0, b"x").await,
        Err(Error::IsADirectory { .. })
    ));
}

#[tokio::test]
async fn one_patch_cuts_then_writes_across_chunks_in_one_commit() {
    let fs = memory_fs().await;
    let chunk = CHUNK_SIZE as usize;
    let mut model = data(4, 2 * chunk + 700);
    fs.write_file("/f", &model).await.unwrap();
    let before = fs.versions().await.unwrap();

    // A cut into the second chunk, then three writes: one covering the
    // first chunk whole, one across the second boundary, one at the end.
    let whole = data(5, chunk);
    let across = data(6, 900);
    let tail = data(7, 40);
    let cut = chunk as u64 + 100;
    let at = 2 * chunk - 300;
    let patch = peergos_cryptree::Patch {
        size: Some(cut),
        writes: vec![
            (Some(0), Bytes::from(whole.clone())),
            (Some(at as u64), Bytes::from(across.clone())),
            (None, Bytes::from(tail.clone())),
        ],
        modified: Some(1_234_000),
    };
    let entry = fs.patch("/f", &patch).await.unwrap();
    model.truncate(cut as usize);
    model.resize(at, 0);
    model.extend_from_slice(&across);
    model.extend_from_slice(&tail);
    model[..chunk].copy_from_slice(&whole);
    assert_eq!(entry.size, model.len() as u64);
    assert_eq!(entry.modified, 1_234_000);
    assert_same(&read_all(&fs, "/f").await, &model);
    let stat = fs.stat("/f").await.unwrap();
    assert_eq!((stat.size, stat.modified), (model.len() as u64, 1_234_000));

    // One commit: the writer's pointer moved once.
    let after = fs.versions().await.unwrap();
    assert_eq!(before.len(), 1);
    assert_eq!(after[0].1, before[0].1 + 1);

    // An opened file reads chunk by chunk and keeps what it saw.
    let open = fs.open_file("/f").await.unwrap();
    assert_eq!(open.chunk_count(), 3);
    let mut read = Vec::new();
    for index in 0..open.chunk_count() {
        read.extend_from_slice(&fs.read_open_chunk(&open, index).await.unwrap());
    }
    assert_same(&read, &model);
    fs.truncate("/f", 1).await.unwrap();
    fs.set_modified("/f", 99).await.unwrap();
    assert_eq!(open.size(), model.len() as u64);
    assert_eq!(fs.stat("/f").await.unwrap().modified, 99);
    assert!(matches!(
        fs.read_open_chunk(&open, 3).await,
        Err(Error::MissingChunk { index: 3, .. })
    ));
    assert!(matches!(
        fs.open_file("/").await,
        Err(Error::IsADirectory { .. })
    ));
}

#[tokio::test]
async fn uploads_replace_files_but_not_directories() {
    let fs = memory_fs().await;
    fs.write_file("/f", b"first").await.unwrap();
    fs.write_file("/f", b"second version").await.unwrap();
    assert_eq!(read_all(&fs, "/f").await, b"second version");
    assert_eq!(names(&fs.ls("/").await.unwrap()), ["f"]);
    fs.mkdir("/d").await.unwrap();
    assert!(matches!(
        fs.write_file("/d", b"x").await,
        Err(Error::IsADirectory { .. })
    ));
}

#[tokio::test]
async fn rename_and_move_keep_content() {
    let fs = memory_fs().await;
    fs.mkdir("/a").await.unwrap();
    fs.mkdir("/b").await.unwrap();
    fs.write_file("/a/one", b"1").await.unwrap();
    fs.mkdir("/a/sub").await.unwrap();
    fs.write_file("/a/sub/deep", b"deep").await.unwrap();

    fs.rename("/a/one", "/a/uno").await.unwrap();
    assert_eq!(names(&fs.ls("/a").await.unwrap()), ["sub", "uno"]);
    fs.rename("/a/sub", "/b/moved").await.unwrap();
    assert_eq!(names(&fs.ls("/a").await.unwrap()), ["uno"]);
    assert_eq!(read_all(&fs, "/b/moved/deep").await, b"deep");

    // Replacing a file; refusing to replace a non-empty directory.
    fs.write_file("/b/target", b"old").await.unwrap();
    fs.rename("/a/uno", "/b/target").await.unwrap();
    assert_eq!(read_all(&fs, "/b/target").await, b"1");
    assert!(matches!(
        fs.rename("/b/target", "/b/moved").await,
        Err(Error::DirectoryNotEmpty { .. })
    ));
    assert!(matches!(
        fs.rename("/b", "/b/moved/inside").await,
        Err(Error::BadMove { .. })
    ));
    assert!(matches!(
        fs.rename("/nothing", "/x").await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn copies_are_independent() {
    let fs = memory_fs().await;
    fs.mkdir("/src").await.unwrap();
    let big = data(3, CHUNK_SIZE as usize + 10);
    fs.write_file("/src/big", &big).await.unwrap();
    fs.mkdir("/src/empty").await.unwrap();
    // Several chunks, a chunk boundary and an empty file, through the
    // copy's pipeline.
    let long = data(4, 3 * CHUNK_SIZE as usize + 10);
    let exact = data(5, 2 * CHUNK_SIZE as usize);
    fs.write_file("/src/long", &long).await.unwrap();
    fs.write_file("/src/exact", &exact).await.unwrap();
    fs.write_file("/src/none", b"").await.unwrap();
    fs.copy("/src", "/dst").await.unwrap();
    assert_same(&read_all(&fs, "/dst/big").await, &big);
    assert_same(&read_all(&fs, "/dst/long").await, &long);
    assert_same(&read_all(&fs, "/dst/exact").await, &exact);
    assert!(read_all(&fs, "/dst/none").await.is_empty());
    assert_eq!(
        names(&fs.ls("/dst").await.unwrap()),
        ["big", "empty", "exact", "long", "none"]
    );
    fs.write_at("/dst/big", 0, b"changed").await.unwrap();
    assert_same(&read_all(&fs, "/src/big").await, &big);
    assert!(matches!(
        fs.copy("/src", "/src/inner").await,
        Err(Error::BadMove { .. })
    ));
    assert!(matches!(
        fs.copy("/src", "/dst").await,
        Err(Error::AlreadyExists { .. })
    ));
}

#[tokio::test]
async fn delete_is_recursive_and_rmdir_needs_empty() {
    let fs = memory_fs().await;
    fs.mkdir("/d").await.unwrap();
    fs.mkdir("/d/e").await.unwrap();
    fs.write_file("/d/e/f", &data(4, 100_000)).await.unwrap();
    assert!(matches!(
        fs.rmdir("/d").await,
        Err(Error::DirectoryNotEmpty { .. })
    ));
    fs.rm("/d").await.unwrap();
    assert!(fs.ls("/").await.unwrap().is_empty());
    assert!(matches!(
        fs.stat("/d/e/f").await,
        Err(Error::NotFound { .. })
    ));
    fs.mkdir("/empty").await.unwrap();
    fs.rmdir("/empty").await.unwrap();
    assert!(matches!(fs.rm("/").await, Err(Error::BadPath { .. })));
}

#[tokio::test]
async fn hidden_entries_are_listed_only_on_request() {
    let fs = memory_fs().await;
    let hidden = UploadOptions {
        hidden: true,
        ..UploadOptions::default()
    };
    fs.upload("/.plan", &b"x"[..], hidden.clone())
        .await
        .unwrap();
    fs.mkdir_with("/.cache", &hidden).await.unwrap();
    fs.write_file("/visible", b"y").await.unwrap();
    assert_eq!(names(&fs.ls("/").await.unwrap()), ["visible"]);
    assert_eq!(
        names(&fs.ls_all("/").await.unwrap()),
        [".cache", ".plan", "visible"]
    );
    assert!(fs.stat("/.plan").await.unwrap().hidden);
}

#[tokio::test]
async fn large_directories_split_into_chunks() {
    let fs = memory_fs().await;
    fs.mkdir("/many").await.unwrap();
    for i in 0..1_050 {
        fs.write_file(&format!("/many/f{i:04}"), &[i as u8])
            .await
            .unwrap();
    }
    let listing = fs.ls("/many").await.unwrap();
    assert_eq!(listing.len(), 1_050);
    assert_eq!(listing[1_049].name, "f1049");
    // Removing from the first chunk and adding again refills it.
    fs.rm("/many/f0003").await.unwrap();
    let before = fs.blocks_written();
    fs.write_file("/many/new", b"n").await.unwrap();
    // The file's node and the one directory chunk it lands in (a node and
    // the fragment holding its 500 links): nothing else.
    assert_eq!(fs.blocks_written() - before, 3);
    assert_eq!(fs.ls("/many").await.unwrap().len(), 1_050);
    assert_eq!(read_all(&fs, "/many/f1049").await, [1_049u16 as u8]);
}

#[tokio::test]
async fn reader_streams_as_async_read() {
    use tokio::io::AsyncReadExt;
    let fs = memory_fs().await;
    let content = data(9, CHUNK_SIZE as usize * 2 + 1);
    fs.write_file("/r", &content).await.unwrap();
    let mut reader = fs.reader("/r").await.unwrap();
    let mut back = Vec::new();
    reader.read_to_end(&mut back).await.unwrap();
    assert_same(&back, &content);
}

#[tokio::test]
async fn many_files_in_one_commit() {
    let fs = memory_fs().await;
    fs.mkdir("/bulk").await.unwrap();
    fs.write_file("/bulk/f0007", b"old content").await.unwrap();
    // More files than one directory chunk holds (500 links), sizes from
    // empty through inline to several fragments and two chunks.
    let mut files: Vec<(String, Vec<u8>, UploadOptions)> = (0..1200u32)
        .map(|i| {
            let len = match i % 5 {
                0 => 0,
                1 => 100,
                2 => 5000,
                3 => 70_000,
                _ => 1 + (i as usize * 977) % 3000,
            };
            (
                format!("f{i:04}"),
                data(i as u8, len),
                UploadOptions::default(),
            )
        })
        .collect();
    files.push((
        "big".into(),
        data(1, CHUNK_SIZE as usize + 1234),
        UploadOptions {
            mime: "application/x-test".into(),
            ..UploadOptions::default()
        },
    ));
    let before = fs.blocks_written();
    let entries = fs.write_files("/bulk", files.clone()).await.unwrap();
    assert_eq!(entries.len(), files.len());
    let written = fs.blocks_written() - before;
    let listing = fs.ls("/bulk").await.unwrap();
    assert_eq!(listing.len(), 1201);
    for (name, body, _) in files.iter().step_by(97).chain(files.last()) {
        assert_same(&read_all(&fs, &format!("/bulk/{name}")).await, body);
    }
    // The file that was there is replaced.
    assert_same(&read_all(&fs, "/bulk/f0007").await, &files[7].1);
    assert_eq!(
        fs.stat("/bulk/big").await.unwrap().mime,
        "application/x-test"
    );
    // Far fewer blocks than one upload per file would write (each of those
    // rewrites the directory chunk and the CHAMP path).
    assert!(written < 3000, "{written} blocks for 1201 files");

    // A batch naming a file twice, or a bad name, changes nothing.
    let twice = vec![
        ("a".to_string(), b"1".to_vec(), UploadOptions::default()),
        ("a".to_string(), b"2".to_vec(), UploadOptions::default()),
    ];
    assert!(matches!(
        fs.write_files("/bulk", twice).await,
        Err(Error::BadPath { .. })
    ));
    let bad = vec![("x/y".to_string(), b"1".to_vec(), UploadOptions::default())];
    assert!(fs.write_files("/bulk", bad).await.is_err());
    assert!(matches!(
        fs.write_files(
            "/missing",
            vec![("a".into(), vec![], UploadOptions::default())]
        )
        .await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(fs.ls("/bulk").await.unwrap().len(), 1201);
}

type CountingFs = Filesystem<Watched<MemoryStore>, Counting<MemoryPointerStore>>;

/// A filesystem and a second client of the same space, over stores that
/// count block and pointer reads (each a round trip to a server).
async fn two_clients() -> (
    CountingFs,
    CountingFs,
    Arc<Watched<MemoryStore>>,
    Arc<Counting<MemoryPointerStore>>,
) {
    let blocks = Arc::new(Watched::new(MemoryStore::new()));
    let pointers = Arc::new(Counting::default());
    let fs = new_fs(Arc::clone(&blocks), Arc::clone(&pointers), "home").await;
    let other = Filesystem::open(
        Arc::clone(&blocks),
        Arc::clone(&pointers),
        fs.root().clone(),
    );
    (fs, other, blocks, pointers)
}

fn one_file(name: &str) -> Vec<(String, Vec<u8>, UploadOptions)> {
    vec![(name.to_string(), data(7, 4096), UploadOptions::default())]
}

#[tokio::test]
async fn a_small_file_costs_one_pointer_read_and_no_block_reads() {
    let (fs, _, blocks, pointers) = two_clients().await;
    fs.mkdir("/d").await.unwrap();
    fs.write_files("/d", one_file("warm")).await.unwrap();
    for i in 0..5 {
        let before = (pointers.reads(), blocks.reads());
        fs.write_files("/d", one_file(&format!("f{i}")))
            .await
            .unwrap();
        // Finding the directory reads the pointer; the commit plans with
        // what that read found and starts from the state this client
        // wrote last, so it reads nothing more. The directory's node is
        // the one this client wrote last time, so it is not fetched.
        assert_eq!(pointers.reads() - before.0, 1, "file {i}");
        assert_eq!(blocks.reads() - before.1, 0, "file {i}");
    }
    assert_eq!(fs.ls("/d").await.unwrap().len(), 6);
}

#[tokio::test]
async fn two_clients_adding_files_to_one_directory_lose_none() {
    let (fs, other, _, _) = two_clients().await;
    fs.mkdir("/shared").await.unwrap();
    // Each plans against the directory as it found it; whoever loses a
    // race plans again from what the other stored.
    let adds = |client, who: &'static str| async move {
        let client: &Filesystem<_, _> = client;
        for i in 0..15 {
            client
                .write_files("/shared", one_file(&format!("{who}{i}")))
                .await
                .unwrap();
        }
    };
    tokio::join!(adds(&fs, "a"), adds(&other, "b"));
    let mut names: Vec<String> = fs
        .ls("/shared")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    names.sort();
    let mut want: Vec<String> = (0..15)
        .flat_map(|i| [format!("a{i}"), format!("b{i}")])
        .collect();
    want.sort();
    assert_eq!(names, want);
    assert_eq!(read_all(&other, "/shared/a14").await, data(7, 4096));
}
