//! CHAMP behaviour: model-based property tests, canonical form, CAS,
//! proofs, diff cost, node size bounds, malformed trees.

use peergos_blockstore::LocalBlockStore as _;
use std::collections::BTreeMap;
use std::sync::Arc;

use futures::TryStreamExt;
use peergos_blockstore::{BlockStore, FileStore, MemoryStore};
use peergos_champ::{verify_proof, Batch, Champ, Change, Config, Error, Key, Value, Writer};
use peergos_ipld::{Block, Cid, Codec, MAX_BLOCK_SIZE};
use peergos_keys::{sha256, PublicKeyHash, SigningKeyPair};
use proptest::prelude::*;

async fn writer(store: &dyn BlockStore) -> Writer {
    let keys = SigningKeyPair::random();
    let owner = PublicKeyHash::of(&keys.public());
    let transaction = store.start_transaction(&owner).await.unwrap();
    Writer {
        owner,
        keys,
        transaction,
    }
}

/// Stores arbitrary dag-cbor bytes as a block, bypassing the CHAMP.
async fn put_raw(store: &dyn BlockStore, w: &Writer, data: bytes::Bytes) {
    let block = peergos_blockstore::SignedBlock::sign(&w.keys, Codec::DagCbor, data);
    let request = peergos_blockstore::PutBlocks {
        owner: w.owner,
        writer: w.owner,
        transaction: w.transaction,
        blocks: vec![block],
    };
    store.put(request).await.unwrap();
}

/// A memory store, a CHAMP over it, and a writer with an open transaction.
async fn fixture() -> (Arc<MemoryStore>, Champ<MemoryStore>, Writer) {
    let store = Arc::new(MemoryStore::new());
    let champ = Champ::new(Arc::clone(&store));
    let w = writer(&*store).await;
    (store, champ, w)
}

fn key(n: u32) -> Key {
    Key(sha256(&n.to_be_bytes()))
}

fn value(n: u32) -> Value {
    if n.is_multiple_of(2) {
        Value::Link(Cid::hash(Codec::Raw, &n.to_be_bytes()))
    } else {
        Value::inline(n.to_be_bytes().to_vec()).unwrap()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// Builds the tree of `entries` from empty, inserting in the given order.
async fn build(
    champ: &Champ<MemoryStore>,
    w: &Writer,
    config: Config,
    entries: &[(Key, Value)],
) -> Cid {
    let mut root = champ.empty(w, config).await.unwrap();
    for (k, v) in entries {
        root = champ.put(w, &root, k, None, v.clone()).await.unwrap();
    }
    root
}

#[derive(Debug, Clone)]
enum Op {
    Put(u32, u32),
    Remove(u32),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(
        prop_oneof![
            3 => (0u32..60, 0u32..1000).prop_map(|(k, v)| Op::Put(k, v)),
            2 => (0u32..60).prop_map(Op::Remove),
        ],
        1..120,
    )
}

fn config() -> impl Strategy<Value = Config> {
    prop_oneof![
        Just(Config::default()),
        (1u8..=6, 1u8..=6).prop_map(|(bits, bucket)| Config { bits, bucket }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// After every operation the tree equals a BTreeMap model; at the end
    /// its root equals the root of the same entries inserted in key order
    /// and in reverse, diff against the start equals the model's
    /// difference, and removing everything gives the empty root.
    #[test]
    fn champ_matches_model_and_is_canonical(config in config(), ops in ops()) {
        runtime().block_on(async {
            let (_store, champ, w) = fixture().await;
            let empty = champ.empty(&w, config).await.unwrap();
            let mut root = empty;
            let mut model: BTreeMap<Key, Value> = BTreeMap::new();
            for op in &ops {
                match *op {
                    Op::Put(k, v) => {
                        let (k, v) = (key(k), value(v));
                        root = champ.put(&w, &root, &k, model.get(&k), v.clone()).await.unwrap();
                        model.insert(k, v);
                    }
                    Op::Remove(k) => {
                        let k = key(k);
                        match model.remove(&k) {
                            Some(old) => root = champ.remove(&w, &root, &k, &old).await.unwrap(),
                            None => {
                                let err = champ.remove(&w, &root, &k, &value(0)).await.unwrap_err();
                                assert!(matches!(err, Error::ValueMismatch(_)), "{err}");
                            }
                        }
                    }
                }
                for probe in 0..60 {
                    let k = key(probe);
                    assert_eq!(champ.get(&root, &k).await.unwrap(), model.get(&k).cloned());
                }
            }
            let mut listed = champ.entries(&root).await.unwrap();
            listed.sort_by_key(|entry| entry.0);
            assert_eq!(listed, model.clone().into_iter().collect::<Vec<_>>());

            let sorted: Vec<(Key, Value)> = model.clone().into_iter().collect();
            let fresh = Champ::new(Arc::new(MemoryStore::new()));
            let fw = writer(&**fresh.store()).await;
            assert_eq!(build(&fresh, &fw, config, &sorted).await, root, "key order gives another root");
            let reversed: Vec<_> = sorted.iter().rev().cloned().collect();
            assert_eq!(build(&fresh, &fw, config, &reversed).await, root, "reverse order gives another root");
            assert_eq!(fresh.from_entries(&fw, config, reversed).await.unwrap(), root, "bulk build gives another root");

            let diff = champ.diff(&empty, &root).await.unwrap();
            let expected: Vec<Change> = model.iter().map(|(k, v)| Change { key: *k, old: None, new: Some(v.clone()) }).collect();
            assert_eq!(diff, expected);

            for (k, v) in &model {
                root = champ.remove(&w, &root, k, v).await.unwrap();
            }
            assert_eq!(root, empty, "removing everything must give the empty root");
        });
    }

    /// Many keys looked up at once (in any order, repeated, present or
    /// not) give what looking each up alone gives, from a cold cache.
    #[test]
    fn get_many_matches_get(
        config in config(),
        ops in ops(),
        probes in proptest::collection::vec(0u32..80, 0..100),
    ) {
        runtime().block_on(async {
            let (store, champ, w) = fixture().await;
            let mut root = champ.empty(&w, config).await.unwrap();
            let mut model: BTreeMap<Key, Value> = BTreeMap::new();
            for op in &ops {
                if let Op::Put(k, v) = *op {
                    let (k, v) = (key(k), value(v));
                    root = champ.put(&w, &root, &k, model.get(&k), v.clone()).await.unwrap();
                    model.insert(k, v);
                }
            }
            let keys: Vec<Key> = probes.iter().map(|&p| key(p)).collect();
            let cold = Champ::new(Arc::clone(&store));
            let many = cold.get_many(&root, &keys).await.unwrap();
            let expected: Vec<Option<Value>> = keys.iter().map(|k| model.get(k).cloned()).collect();
            assert_eq!(many, expected);
            for (k, v) in keys.iter().zip(&many) {
                assert_eq!(&champ.get(&root, k).await.unwrap(), v);
            }
        });
    }

    /// Batched changes give the root the same changes give one by one;
    /// the flush stores exactly the new nodes the final root reaches, in
    /// one put, and a CHAMP with a cold cache reads the result; a
    /// mismatched expectation inside a batch fails as it would alone.
    #[test]
    fn batched_changes_match_single_changes(config in config(), start in ops(), ops in ops()) {
        runtime().block_on(async {
            let (store, champ, w) = fixture().await;
            let mut root = champ.empty(&w, config).await.unwrap();
            let mut model: BTreeMap<Key, Value> = BTreeMap::new();
            for op in &start {
                if let Op::Put(k, v) = *op {
                    let (k, v) = (key(k), value(v));
                    root = champ.put(&w, &root, &k, model.get(&k), v.clone()).await.unwrap();
                    model.insert(k, v);
                }
            }
            let before: std::collections::BTreeSet<Cid> = store.list().try_collect().await.unwrap();
            let (single_store, single, sw) = fixture().await;
            let mut single_root = single.from_entries(&sw, config, model.clone().into_iter().collect::<Vec<_>>()).await.unwrap();
            let mut batch = Batch::new();
            let mut batched = root;
            for op in &ops {
                match *op {
                    Op::Put(k, v) => {
                        let (k, v) = (key(k), value(v));
                        batched = champ.put_batched(&mut batch, &batched, &k, model.get(&k), v.clone()).await.unwrap();
                        single_root = single.put(&sw, &single_root, &k, model.get(&k), v.clone()).await.unwrap();
                        model.insert(k, v);
                    }
                    Op::Remove(k) => {
                        let k = key(k);
                        match model.remove(&k) {
                            Some(old) => {
                                batched = champ.remove_batched(&mut batch, &batched, &k, &old).await.unwrap();
                                single_root = single.remove(&sw, &single_root, &k, &old).await.unwrap();
                            }
                            None => {
                                let err = champ.remove_batched(&mut batch, &batched, &k, &value(0)).await.unwrap_err();
                                assert!(matches!(err, Error::ValueMismatch(_)), "{err}");
                            }
                        }
                    }
                }
            }
            assert_eq!(batched, single_root, "a batch gives another root");
            // Nothing is stored before the flush.
            let unflushed: std::collections::BTreeSet<Cid> = store.list().try_collect().await.unwrap();
            assert_eq!(unflushed, before);
            champ.flush(&w, &mut batch, &batched).await.unwrap();
            assert!(batch.is_empty());
            let after: std::collections::BTreeSet<Cid> = store.list().try_collect().await.unwrap();
            let added: Vec<&Cid> = after.difference(&before).collect();
            // Exactly the new nodes the root reaches: those the one-by-one
            // tree has that the starting tree lacks.
            let cold = Champ::new(Arc::clone(&store));
            for (k, v) in &model {
                assert_eq!(cold.get(&batched, k).await.unwrap().as_ref(), Some(v));
            }
            let mut listed = cold.entries(&batched).await.unwrap();
            listed.sort_by_key(|entry| entry.0);
            assert_eq!(listed, model.clone().into_iter().collect::<Vec<_>>());
            let mut reachable = std::collections::BTreeSet::from([batched]);
            for k in model.keys() {
                for block in cold.proof(&batched, k).await.unwrap() {
                    reachable.insert(*block.cid());
                }
            }
            for cid in &added {
                assert!(reachable.contains(cid), "an unreachable node was stored");
                assert!(single_store.has(cid).await.unwrap());
            }
        });
    }

    /// diff between two arbitrary states equals the models' difference.
    #[test]
    fn diff_equals_model_difference(config in config(), a in ops(), b in ops()) {
        runtime().block_on(async {
            let (_store, champ, w) = fixture().await;
            let mut roots = Vec::new();
            let mut models = Vec::new();
            for ops in [&a, &b] {
                let mut model = BTreeMap::new();
                for op in ops {
                    match *op {
                        Op::Put(k, v) => { model.insert(key(k), value(v)); }
                        Op::Remove(k) => { model.remove(&key(k)); }
                    }
                }
                let entries: Vec<_> = model.clone().into_iter().collect();
                roots.push(build(&champ, &w, config, &entries).await);
                models.push(model);
            }
            let mut expected = Vec::new();
            let keys: std::collections::BTreeSet<&Key> = models[0].keys().chain(models[1].keys()).collect();
            for k in keys {
                let (old, new) = (models[0].get(k).cloned(), models[1].get(k).cloned());
                if old != new {
                    expected.push(Change { key: *k, old, new });
                }
            }
            assert_eq!(champ.diff(&roots[0], &roots[1]).await.unwrap(), expected);
        });
    }
}

#[tokio::test]
async fn put_and_remove_check_the_previous_value() {
    let (_, champ, w) = fixture().await;
    let root = champ.empty(&w, Config::default()).await.unwrap();
    let root = champ.put(&w, &root, &key(1), None, value(1)).await.unwrap();
    let err = champ
        .put(&w, &root, &key(1), None, value(2))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::ValueMismatch(m) if m.actual == Some(value(1)) && m.expected.is_none()),
        "{err}"
    );
    let err = champ
        .put(&w, &root, &key(2), Some(&value(1)), value(2))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::ValueMismatch(m) if m.actual.is_none()),
        "{err}"
    );
    let err = champ
        .remove(&w, &root, &key(1), &value(3))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("changed"), "{err}");
    let updated = champ
        .put(&w, &root, &key(1), Some(&value(1)), value(3))
        .await
        .unwrap();
    assert_eq!(champ.get(&updated, &key(1)).await.unwrap(), Some(value(3)));
    // The old root still answers with the old value.
    assert_eq!(champ.get(&root, &key(1)).await.unwrap(), Some(value(1)));
    let big = vec![0u8; peergos_champ::MAX_INLINE + 1];
    assert!(matches!(
        champ
            .put(&w, &root, &key(5), None, Value::Inline(big.into()))
            .await,
        Err(Error::InlineTooLarge { .. })
    ));
}

#[tokio::test]
async fn proofs_verify_without_the_store_and_refuse_partial_or_foreign_blocks() {
    let (_, champ, w) = fixture().await;
    let entries: Vec<_> = (0..500).map(|n| (key(n), value(n))).collect();
    let root = build(&champ, &w, Config::default(), &entries).await;
    for n in [0u32, 17, 499, 10_000] {
        let proof = champ.proof(&root, &key(n)).await.unwrap();
        assert!(
            proof.len() >= 2 || n == 10_000,
            "proof of {n} is {} blocks",
            proof.len()
        );
        let expected = (n < 500).then(|| value(n));
        assert_eq!(verify_proof(&root, &key(n), &proof).unwrap(), expected);
    }
    let proof = champ.proof(&root, &key(17)).await.unwrap();
    // Drop the last block: incomplete.
    let err = verify_proof(&root, &key(17), &proof[..proof.len() - 1]).unwrap_err();
    assert!(matches!(err, Error::ProofIncomplete { .. }), "{err}");
    // A proof against another root does not verify.
    let other = champ.empty(&w, Config::default()).await.unwrap();
    assert!(matches!(
        verify_proof(&other, &key(17), &proof),
        Err(Error::ProofIncomplete { .. })
    ));
}

#[tokio::test]
async fn diff_of_one_change_touches_only_its_path() {
    let (_, champ, w) = fixture().await;
    let entries = (0..100_000).map(|n| (key(n), value(n)));
    let root = champ
        .from_entries(&w, Config::default(), entries)
        .await
        .unwrap();
    let changed = champ
        .put(&w, &root, &key(7), Some(&value(7)), value(8))
        .await
        .unwrap();
    let depth = champ.proof(&changed, &key(7)).await.unwrap().len() as u64;
    let before = champ.node_visits();
    let diff = champ.diff(&root, &changed).await.unwrap();
    let visited = champ.node_visits() - before;
    assert_eq!(
        diff,
        vec![Change {
            key: key(7),
            old: Some(value(7)),
            new: Some(value(8))
        }]
    );
    assert!(
        visited <= 2 * depth,
        "diff visited {visited} nodes for a path of depth {depth}"
    );
}

/// Keys whose hash lands in `slot` at depth 0 of a tree with `bits`.
fn keys_in_slot(bits: u8, slot: u8, count: usize, start: &mut u32) -> Vec<Key> {
    let mut out = Vec::new();
    while out.len() < count {
        let k = key(*start);
        *start += 1;
        if sha256(&k.0)[0] >> (8 - bits) == slot {
            out.push(k);
        }
    }
    out
}

#[tokio::test]
async fn the_fullest_possible_node_fits_in_a_block() {
    // 64 slots, 16 entries each, 512-byte inline values: the largest node
    // any valid config can produce.
    let config = Config {
        bits: 6,
        bucket: 16,
    };
    let (store, champ, w) = fixture().await;
    let full = |slot: u8| Value::inline(vec![slot; peergos_champ::MAX_INLINE]).unwrap();
    let mut next = 0;
    let mut bulk = Vec::new();
    for slot in 0..63u8 {
        bulk.extend(
            keys_in_slot(6, slot, 16, &mut next)
                .into_iter()
                .map(|k| (k, full(slot))),
        );
    }
    let mut root = champ.from_entries(&w, config, bulk).await.unwrap();
    // The last slot fills one put at a time, through the normal path.
    for k in keys_in_slot(6, 63, 16, &mut next) {
        root = champ.put(&w, &root, &k, None, full(63)).await.unwrap();
    }
    let data = store.get(&root, None).await.unwrap().unwrap();
    assert!(
        data.len() > 500_000,
        "root is only {} bytes: not full",
        data.len()
    );
    assert!(data.len() <= MAX_BLOCK_SIZE);
    let listed: Vec<Cid> = store.list().try_collect().await.unwrap();
    for cid in listed {
        assert!(store.get(&cid, None).await.unwrap().unwrap().len() <= MAX_BLOCK_SIZE);
    }
}

#[tokio::test]
async fn works_over_the_file_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FileStore::open(dir.path()).unwrap());
    let champ = Champ::new(Arc::clone(&store));
    let w = writer(&*store).await;
    let mut root = champ.empty(&w, Config::default()).await.unwrap();
    for n in 0..200 {
        root = champ.put(&w, &root, &key(n), None, value(n)).await.unwrap();
    }
    // A fresh Champ (empty cache) reads everything back from disk.
    let cold = Champ::new(store);
    for n in 0..200 {
        assert_eq!(cold.get(&root, &key(n)).await.unwrap(), Some(value(n)));
    }
}

#[tokio::test]
async fn malformed_and_missing_nodes_are_errors() {
    let (store, champ, w) = fixture().await;
    // A root linking to a node that is not stored.
    let entries: Vec<_> = (0..50).map(|n| (key(n), value(n))).collect();
    let full = Champ::new(Arc::new(MemoryStore::new()));
    let fw = writer(&**full.store()).await;
    let root = build(&full, &fw, Config::default(), &entries).await;
    let root_bytes = full.store().get(&root, None).await.unwrap().unwrap();
    put_raw(&*store, &w, root_bytes).await;
    let mut missing = 0;
    for n in 0..50 {
        match champ.get(&root, &key(n)).await {
            Ok(found) => assert_eq!(found, Some(value(n))),
            Err(Error::MissingNode { .. }) => missing += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(missing > 0, "50 keys should need child nodes");
    let keys: Vec<Key> = (0..50).map(key).collect();
    let err = champ.get_many(&root, &keys).await.unwrap_err();
    assert!(matches!(err, Error::MissingNode { .. }), "{err}");
    // A block that is not a CHAMP node.
    let junk = Block::encode(&vec![1u8, 2, 3]).unwrap();
    put_raw(&*store, &w, junk.data().clone()).await;
    let err = champ.get(junk.cid(), &key(1)).await.unwrap_err();
    assert!(matches!(err, Error::MalformedNode { .. }), "{err}");
}
