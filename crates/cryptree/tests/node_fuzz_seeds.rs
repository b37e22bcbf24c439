//! The `cryptree_node` fuzz seeds named `valid-*` are real node blocks of a
//! small tree (directory, inline file, fragmented file, later chunk),
//! written by this test when PEERGOS_WRITE_SEEDS names the corpus folder.

use std::sync::Arc;

use futures::StreamExt;
use peergos_blockstore::{BlockStore, MemoryStore};
use peergos_cryptree::node::NodeBlock;
use peergos_cryptree::Filesystem;
use peergos_ipld::{Cid, Codec};
use peergos_keys::{PublicKeyHash, SigningKeyPair};
use peergos_pointers::MemoryPointerStore;

#[tokio::test]
async fn valid_seeds_decode() {
    if let Ok(dir) = std::env::var("PEERGOS_WRITE_SEEDS") {
        let blocks = Arc::new(MemoryStore::new());
        let keys = SigningKeyPair::random();
        let fs = Filesystem::create(
            Arc::clone(&blocks),
            Arc::new(MemoryPointerStore::default()),
            PublicKeyHash::of(&keys.public()),
            &keys,
            "seed",
        )
        .await
        .unwrap();
        fs.mkdir("/dir").await.unwrap();
        fs.write_file("/dir/small", b"small").await.unwrap();
        fs.write_file("/big", &vec![1u8; (5 << 20) + 10_000])
            .await
            .unwrap();
        let cids: Vec<Cid> = blocks.list().map(|c| c.unwrap()).collect().await;
        let mut n = 0;
        for cid in cids {
            let bytes = blocks.get_trusted(&cid).await.unwrap().unwrap();
            if cid.codec() == Some(Codec::DagCbor) && NodeBlock::decode(&bytes).is_ok() {
                std::fs::write(
                    std::path::Path::new(&dir).join(format!("valid-{n}")),
                    &bytes,
                )
                .unwrap();
                n += 1;
            }
        }
        assert!(n >= 5);
    }
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/cryptree_node");
    let mut decoded = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("valid-") {
            NodeBlock::decode(&std::fs::read(&path).unwrap()).unwrap();
            decoded += 1;
        }
    }
    assert!(
        decoded >= 5,
        "expected at least 5 valid-* seeds, found {decoded}"
    );
}
