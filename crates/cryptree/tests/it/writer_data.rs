//! WriterData and the commit path: compare-and-swap with re-read and retry.

use peergos_blockstore::LocalBlockStore as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use peergos_blockstore::MemoryStore;
use peergos_champ::{Champ, Config, Key, Value, Writer};
use peergos_cryptree::{Committer, Error, WriterData};
use peergos_ipld::{Cid, Codec};
use peergos_keys::{BoxingKeyPair, LoginParams, PublicKeyHash, SigningKeyPair};
use peergos_pointers::{MemoryPointerStore, PointerStore};
use peergos_testkit::pointers::Replaying;

type Store = Committer<MemoryStore, MemoryPointerStore>;

fn setup() -> (Arc<Store>, SigningKeyPair, PublicKeyHash) {
    let committer = Committer::new(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryPointerStore::default()),
    );
    let keys = SigningKeyPair::random();
    let owner = PublicKeyHash::of(&keys.public());
    (Arc::new(committer), keys, owner)
}

/// Adds `key -> value` to the writer's filesystem CHAMP, creating it if
/// needed: the kind of change a filesystem operation makes.
async fn add_entry(
    committer: &Store,
    keys: &SigningKeyPair,
    owner: PublicKeyHash,
    mut data: WriterData,
    tx: peergos_blockstore::TransactionId,
    n: u32,
) -> peergos_cryptree::Result<WriterData> {
    let champ = Champ::new(Arc::clone(committer.blocks()));
    let w = Writer {
        owner,
        keys: keys.clone(),
        transaction: tx,
    };
    let root = match data.tree {
        Some(root) => root,
        None => champ.empty(&w, Config::default()).await?,
    };
    let key = Key(peergos_keys::sha256(&n.to_be_bytes()));
    let value = Value::Link(Cid::hash(Codec::Raw, &n.to_be_bytes()));
    data.tree = Some(champ.put(&w, &root, &key, None, value).await?);
    Ok(data)
}

/// Commits [`add_entry`] of `n` through `committer`.
async fn commit_entry(
    committer: &Store,
    keys: &SigningKeyPair,
    owner: PublicKeyHash,
    n: u32,
) -> peergos_cryptree::Committed {
    committer
        .commit(&owner, keys, |data, tx| {
            add_entry(committer, keys, owner, data, tx, n)
        })
        .await
        .unwrap()
}

async fn entries(committer: &Store, owner: &PublicKeyHash) -> usize {
    let (current, _) = committer.current(owner, owner).await.unwrap();
    let (data, _) = current.unwrap();
    let champ = Champ::new(Arc::clone(committer.blocks()));
    champ.entries(&data.tree.unwrap()).await.unwrap().len()
}

#[tokio::test]
async fn commits_chain_and_round_trip() {
    let (committer, keys, owner) = setup();
    assert!(committer.current(&owner, &owner).await.unwrap().0.is_none());
    let boxing = BoxingKeyPair::random();
    let first = committer
        .commit(&owner, &keys, |mut data, _| {
            let public = boxing.public().clone();
            async move {
                data.boxing = Some(public);
                data.login = Some(LoginParams::new_random());
                data.named.insert(
                    "pki".into(),
                    PublicKeyHash::of(&SigningKeyPair::random().public()),
                );
                Ok(data)
            }
        })
        .await
        .unwrap();
    assert_eq!((first.sequence, first.conflicts), (1, 0));
    let (current, sequence) = committer.current(&owner, &owner).await.unwrap();
    let (data, cid) = current.unwrap();
    assert_eq!((cid, sequence), (first.cid, 1));
    assert_eq!(data, first.data);
    assert_eq!(
        WriterData::from_bytes(data.to_block().unwrap().data()).unwrap(),
        data
    );
    let second = commit_entry(&committer, &keys, owner, 1).await;
    assert_eq!(second.sequence, 2);
    assert_eq!(second.data.boxing.as_ref(), Some(boxing.public()));
}

#[tokio::test]
async fn a_lost_race_re_reads_and_keeps_both_changes() {
    let (committer, keys, owner) = setup();
    commit_entry(&committer, &keys, owner, 0).await;
    // While A builds its change, B (another client over the same stores)
    // commits. A's first CAS must fail; A re-reads (now with B's entry) and
    // re-applies its own.
    let other = Arc::new(Committer::new(
        Arc::clone(committer.blocks()),
        Arc::clone(committer.pointers()),
    ));
    let interfered = AtomicBool::new(false);
    let result = committer
        .commit(&owner, &keys, |data, tx| {
            let (committer, other) = (Arc::clone(&committer), Arc::clone(&other));
            let keys = keys.clone();
            let first_try = !interfered.swap(true, Ordering::SeqCst);
            async move {
                if first_try {
                    other
                        .commit(&owner, &keys, |d, t| {
                            add_entry(&other, &keys, owner, d, t, 2)
                        })
                        .await?;
                }
                add_entry(&committer, &keys, owner, data, tx, 1).await
            }
        })
        .await
        .unwrap();
    assert_eq!(result.conflicts, 1, "A should have lost exactly one race");
    assert_eq!(result.sequence, 3);
    assert_eq!(entries(&committer, &owner).await, 3, "an entry was lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_committers_lose_nothing() {
    let (committer, keys, owner) = setup();
    let mut tasks = Vec::new();
    for t in 0..4u32 {
        let (committer, keys) = (Arc::clone(&committer), keys.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..8u32 {
                let n = t * 100 + i;
                commit_entry(&committer, &keys, owner, n).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(entries(&committer, &owner).await, 32);
    let (_, sequence) = committer.current(&owner, &owner).await.unwrap();
    assert_eq!(sequence, 32);
}

#[tokio::test]
async fn a_server_serving_an_old_pointer_is_caught() {
    let pointers = Arc::new(Replaying::new(MemoryPointerStore::default()));
    let committer = Committer::new(Arc::new(MemoryStore::new()), Arc::clone(&pointers));
    let keys = SigningKeyPair::random();
    let owner = PublicKeyHash::of(&keys.public());
    committer
        .commit(&owner, &keys, |data, _| async { Ok(data) })
        .await
        .unwrap();
    let old = pointers.inner.get(&owner, &owner).await.unwrap();
    committer
        .commit(&owner, &keys, |mut data, _| async {
            data.public = Some(Cid::hash(Codec::DagCbor, b"x"));
            Ok(data)
        })
        .await
        .unwrap();
    pointers.replay(old);
    let err = committer.current(&owner, &owner).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Pointer(peergos_pointers::Error::Rollback {
                seen: 2,
                offered: 1
            })
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_writer_data_block_is_a_clear_error() {
    let blocks = Arc::new(MemoryStore::new());
    let pointers = Arc::new(MemoryPointerStore::default());
    let committer = Committer::new(Arc::clone(&blocks), Arc::clone(&pointers));
    let keys = SigningKeyPair::random();
    let owner = PublicKeyHash::of(&keys.public());
    let done = committer
        .commit(&owner, &keys, |data, _| async { Ok(data) })
        .await
        .unwrap();
    blocks.delete(&done.cid).await.unwrap();
    let err = Committer::new(blocks, pointers)
        .current(&owner, &owner)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::MissingWriterData { .. }), "{err}");
    assert!(err.to_string().contains(&done.cid.to_string()));
}

type CountingReads = peergos_testkit::pointers::Counting<MemoryPointerStore>;

/// A committer over a memory block store and a read-counting pointer
/// store, with a fresh identity key.
fn counting() -> (
    Arc<MemoryStore>,
    Arc<CountingReads>,
    Committer<MemoryStore, CountingReads>,
    SigningKeyPair,
    PublicKeyHash,
) {
    let blocks = Arc::new(MemoryStore::new());
    let pointers = Arc::new(CountingReads::default());
    let committer = Committer::new(Arc::clone(&blocks), Arc::clone(&pointers));
    let keys = SigningKeyPair::random();
    let owner = PublicKeyHash::of(&keys.public());
    (blocks, pointers, committer, keys, owner)
}

#[tokio::test]
async fn a_commit_right_after_ours_starts_from_what_we_wrote() {
    let (blocks, pointers, committer, keys, owner) = counting();
    let first = committer
        .commit(&owner, &keys, |data, _| async { Ok(data) })
        .await
        .unwrap();
    let reads = pointers.reads();
    // The first state is known: the next commit neither reads the pointer
    // nor needs the WriterData block (gone from the store here).
    blocks.delete(&first.cid).await.unwrap();
    let second = committer
        .commit(&owner, &keys, |mut data, _| async {
            data.public = Some(Cid::hash(Codec::DagCbor, b"x"));
            Ok(data)
        })
        .await
        .unwrap();
    assert_eq!((second.sequence, second.conflicts), (2, 0));
    assert_eq!(pointers.reads(), reads);
    // A read still asks the server for the pointer, and decodes the state
    // it names from what this client wrote.
    let (current, sequence) = committer.current(&owner, &owner).await.unwrap();
    assert_eq!(pointers.reads(), reads + 1);
    assert_eq!(sequence, 2);
    let (data, cid) = current.unwrap();
    assert_eq!((cid, data.public), (second.cid, second.data.public));
}

#[tokio::test]
async fn a_known_state_another_client_moved_on_loses_one_race_and_nothing_else() {
    let (committer, keys, owner) = setup();
    commit_entry(&committer, &keys, owner, 0).await;
    // Another client commits between two of ours: our next commit starts
    // from the state we wrote, loses the compare-and-swap, reads, and
    // keeps the other client's entry.
    let other = Committer::new(
        Arc::clone(committer.blocks()),
        Arc::clone(committer.pointers()),
    );
    commit_entry(&other, &keys, owner, 1).await;
    let ours = commit_entry(&committer, &keys, owner, 2).await;
    assert_eq!((ours.sequence, ours.conflicts), (3, 1));
    assert_eq!(entries(&committer, &owner).await, 3, "an entry was lost");
}

#[tokio::test]
async fn an_old_known_state_is_read_again_before_a_commit() {
    let (_, pointers, committer, keys, owner) = counting();
    committer
        .commit(&owner, &keys, |data, _| async { Ok(data) })
        .await
        .unwrap();
    let reads = pointers.reads();
    std::thread::sleep(peergos_cryptree::RECENT_STATE);
    let again = committer
        .commit(&owner, &keys, |data, _| async { Ok(data) })
        .await
        .unwrap();
    assert_eq!((again.sequence, again.conflicts), (2, 0));
    assert_eq!(pointers.reads(), reads + 1);
}
