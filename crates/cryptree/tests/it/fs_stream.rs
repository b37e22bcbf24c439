//! Reading a file as a stream of pieces: whatever the file's size, the
//! pieces are its bytes in order, none empty and none longer than a
//! fragment, and chunk-by-chunk reads agree with them. A stream from an
//! offset is the file's bytes from there.

use futures::TryStreamExt;
use peergos_cryptree::node::{chunk_count, CHUNK_SIZE, FRAGMENT_SIZE};
use peergos_testkit::cryptree::{data, memory_fs};
use proptest::prelude::*;

/// Sizes on and around every boundary the reader cuts at.
fn edge_sizes() -> Vec<usize> {
    let chunk = CHUNK_SIZE as usize;
    vec![
        0,
        1,
        FRAGMENT_SIZE - 1,
        FRAGMENT_SIZE,
        FRAGMENT_SIZE + 1,
        chunk - 1,
        chunk,
        chunk + 1,
        2 * chunk + FRAGMENT_SIZE + 7,
    ]
}

async fn check_stream(size: usize, seed: u8, offset: usize) {
    let fs = memory_fs().await;
    let body = data(seed, size);
    fs.upload("/f", &body[..], Default::default())
        .await
        .unwrap();
    let pieces: Vec<bytes::Bytes> = fs.chunks("/f").await.unwrap().try_collect().await.unwrap();
    assert!(
        pieces
            .iter()
            .all(|p| !p.is_empty() && p.len() <= FRAGMENT_SIZE),
        "size {size}"
    );
    assert!(
        pieces.concat() == body,
        "size {size}: the pieces are not the file"
    );
    let chunk = CHUNK_SIZE as usize;
    let offsets = [
        offset,
        1,
        FRAGMENT_SIZE,
        chunk - 1,
        chunk,
        chunk + 1,
        size / 2,
        size.saturating_sub(1),
        size,
        size + 3,
    ];
    for from in offsets {
        let pieces: Vec<bytes::Bytes> = fs
            .chunks_from("/f", from as u64)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert!(
            pieces.iter().all(|p| !p.is_empty()),
            "size {size}, from {from}"
        );
        assert!(
            pieces.concat()[..] == body[from.min(size)..],
            "size {size}: the pieces from {from} are not the file's tail"
        );
    }
    let open = fs.open_file("/f").await.unwrap();
    for index in 0..chunk_count(size as u64) {
        let chunk = fs.read_open_chunk(&open, index).await.unwrap();
        let start = (index * CHUNK_SIZE) as usize;
        let end = (start + CHUNK_SIZE as usize).min(size);
        assert!(chunk[..] == body[start..end], "size {size}, chunk {index}");
    }
}

#[tokio::test]
async fn files_on_every_boundary_stream_back_whole() {
    for (i, size) in edge_sizes().into_iter().enumerate() {
        check_stream(size, i as u8, size / 3).await;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn prop_any_file_streams_back_whole(
        size in 0usize..(12 << 20),
        seed in any::<u8>(),
        offset in 0usize..(13 << 20),
    ) {
        tokio::runtime::Runtime::new().unwrap().block_on(check_stream(size, seed, offset));
    }
}
