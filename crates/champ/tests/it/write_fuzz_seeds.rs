//! Writes real CHAMP nodes as fuzz seeds when PEERGOS_WRITE_SEEDS names a
//! directory (`PEERGOS_WRITE_SEEDS=fuzz/corpus/champ_node cargo test -p
//! peergos-champ --test write_fuzz_seeds`); either way, checks the
//! committed seeds still decode: the three roots answer proof queries.

use peergos_blockstore::LocalBlockStore as _;
use std::sync::Arc;

use futures::TryStreamExt;
use peergos_blockstore::{BlockStore, MemoryStore};
use peergos_champ::{Champ, Config, Key, Value, Writer};
use peergos_ipld::{Cid, Codec};
use peergos_keys::{sha256, PublicKeyHash, SigningKeyPair};

#[tokio::test]
async fn seeds_are_real_nodes() {
    let store = Arc::new(MemoryStore::new());
    let champ = Champ::new(Arc::clone(&store));
    let keys = SigningKeyPair::random();
    let owner = PublicKeyHash::of(&keys.public());
    let transaction = store.start_transaction(&owner).await.unwrap();
    let w = Writer {
        owner,
        keys,
        transaction,
    };
    for (config, n) in [
        (Config::default(), 60u32),
        (Config { bits: 1, bucket: 1 }, 6),
        (
            Config {
                bits: 6,
                bucket: 16,
            },
            40,
        ),
    ] {
        let entries = (0..n).map(|i| {
            let k = Key(sha256(&i.to_be_bytes()));
            let v = if i % 2 == 0 {
                Value::Link(Cid::hash(Codec::Raw, &i.to_be_bytes()))
            } else {
                Value::inline(vec![i as u8; (i % 7) as usize]).unwrap()
            };
            (k, v)
        });
        champ.from_entries(&w, config, entries).await.unwrap();
    }
    let cids: Vec<Cid> = store.list().try_collect().await.unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/champ_node");
    if let Ok(target) = std::env::var("PEERGOS_WRITE_SEEDS") {
        let target = std::path::PathBuf::from(target);
        for cid in &cids {
            let data = store.get(cid, None).await.unwrap().unwrap();
            std::fs::write(target.join(format!("node-{cid}")), &data).unwrap();
        }
    }
    // Every committed node-* seed is a block that still decodes as a node.
    let (mut seen, mut roots) = (0, 0);
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("node-")
        {
            let data = std::fs::read(&path).unwrap();
            peergos_champ::fuzzing::node(&data);
            let block = peergos_ipld::Block::new(Codec::DagCbor, data).unwrap();
            let key = Key(sha256(b"probe"));
            match peergos_champ::verify_proof(block.cid(), &key, std::slice::from_ref(&block)) {
                Ok(_) | Err(peergos_champ::Error::ProofIncomplete { .. }) => roots += 1,
                Err(peergos_champ::Error::MalformedNode { .. }) => {} // an inner node
                Err(e) => panic!("{}: {e}", path.display()),
            }
            seen += 1;
        }
    }
    assert!(seen >= 5, "expected committed node-* seeds, found {seen}");
    assert_eq!(roots, 3, "the three trees' roots must decode as roots");
}
