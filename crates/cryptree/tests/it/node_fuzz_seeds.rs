//! The `cryptree_node` fuzz seeds named `valid-*` are real node blocks of a
//! small tree (directory, inline file, fragmented file, later chunk),
//! written by this test when PEERGOS_WRITE_SEEDS names the corpus folder.

use peergos_blockstore::LocalBlockStore as _;
use std::sync::Arc;

use futures::StreamExt;
use peergos_blockstore::{BlockStore, MemoryStore};
use peergos_cryptree::node::NodeBlock;
use peergos_ipld::{Cid, Codec};
use peergos_pointers::MemoryPointerStore;
use peergos_testkit::cryptree::new_fs;
use peergos_testkit::fuzz::{seed_dir, valid_seeds};

#[tokio::test]
async fn valid_seeds_decode() {
    if let Some(dir) = seed_dir() {
        let blocks = Arc::new(MemoryStore::new());
        let fs = new_fs(
            Arc::clone(&blocks),
            Arc::new(MemoryPointerStore::default()),
            "seed",
        )
        .await;
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
                std::fs::write(dir.join(format!("valid-{n}")), &bytes).unwrap();
                n += 1;
            }
        }
        assert!(n >= 5);
    }
    let seeds = valid_seeds("cryptree_node");
    for seed in &seeds {
        NodeBlock::decode(seed).unwrap();
    }
    assert!(
        seeds.len() >= 5,
        "expected at least 5 valid-* seeds, found {}",
        seeds.len()
    );
}
