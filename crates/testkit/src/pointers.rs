//! The conformance suite for [`PointerStore`] backends, and the race test.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use peergos_ipld::{Cid, Codec};
use peergos_keys::{PublicKeyHash, SigningKeyPair};
use peergos_pointers::{Error, Ownership, PointerStore, PointerUpdate, Result, SignedPointer};

/// An owner key, and the hash naming it.
pub struct Key {
    /// The key pair.
    pub pair: SigningKeyPair,
    /// Its hash.
    pub hash: PublicKeyHash,
}

impl Key {
    /// A fresh key.
    pub fn random() -> Self {
        let pair = SigningKeyPair::random();
        let hash = PublicKeyHash::of(&pair.public());
        Key { pair, hash }
    }

    /// Signs an update of `owner`'s pointer for this writer.
    pub fn update(
        &self,
        owner: &PublicKeyHash,
        previous: Option<Cid>,
        current: Option<Cid>,
        sequence: u64,
    ) -> SignedPointer {
        SignedPointer::sign(
            &self.pair,
            owner,
            PointerUpdate {
                previous,
                current,
                sequence,
            },
        )
        .unwrap()
    }
}

/// A distinct CID per number, standing for a writer's root block.
pub fn target(n: u64) -> Cid {
    Cid::hash(Codec::DagCbor, &n.to_be_bytes())
}

/// Ownership from a fixed table: (owner, writer) pairs, plus every owner
/// owns itself.
#[derive(Default)]
pub struct OwnedKeys(pub Vec<(PublicKeyHash, PublicKeyHash)>);

#[async_trait]
impl Ownership for OwnedKeys {
    async fn owns(&self, owner: &PublicKeyHash, writer: &PublicKeyHash) -> Result<bool> {
        Ok(owner == writer || self.0.contains(&(*owner, *writer)))
    }
}

/// A chain of updates is accepted and read back, signature and all.
pub async fn updates_chain(store: Arc<dyn PointerStore>, _owned: &OwnedKeys, alice: &Key) {
    let a = &alice.hash;
    assert_eq!(store.get(a, a).await.unwrap(), None);
    let first = alice.update(a, None, Some(target(1)), 1);
    store.set(a, a, first.clone()).await.unwrap();
    assert_eq!(store.get(a, a).await.unwrap(), Some(first));
    // Sequences may skip numbers; they only have to grow.
    let second = alice.update(a, Some(target(1)), Some(target(2)), 5);
    store.set(a, a, second.clone()).await.unwrap();
    let got = store.get(a, a).await.unwrap().unwrap();
    got.verify(a, a).unwrap();
    assert_eq!(got, second);
    // Deleting keeps the sequence, so old updates cannot be replayed.
    store
        .set(a, a, alice.update(a, Some(target(2)), None, 6))
        .await
        .unwrap();
    let err = store
        .set(a, a, alice.update(a, None, Some(target(9)), 6))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::StaleSequence {
                stored: 6,
                offered: 6
            }
        ),
        "{err}"
    );
    store
        .set(a, a, alice.update(a, None, Some(target(3)), 7))
        .await
        .unwrap();
}

/// `targets` lists the current value of every pointer, and nothing for a
/// pointer that was cleared.
pub async fn targets_list_every_current_value(
    store: Arc<dyn PointerStore>,
    _owned: &OwnedKeys,
    alice: &Key,
) {
    assert!(store.targets().await.unwrap().is_empty());
    let a = &alice.hash;
    let bob = Key::random();
    let b = &bob.hash;
    store
        .set(a, a, alice.update(a, None, Some(target(1)), 1))
        .await
        .unwrap();
    store
        .set(a, a, alice.update(a, Some(target(1)), Some(target(2)), 2))
        .await
        .unwrap();
    store
        .set(b, b, bob.update(b, None, Some(target(3)), 1))
        .await
        .unwrap();
    let mut got = store.targets().await.unwrap();
    got.sort();
    let mut want = vec![target(2), target(3)];
    want.sort();
    assert_eq!(got, want);
    store
        .set(b, b, bob.update(b, Some(target(3)), None, 2))
        .await
        .unwrap();
    assert_eq!(store.targets().await.unwrap(), vec![target(2)]);
}

/// Wrong previous values, stale sequences, bad signatures and foreign
/// writers are refused with their own errors and change nothing.
pub async fn bad_updates_are_refused(store: Arc<dyn PointerStore>, owned: &OwnedKeys, alice: &Key) {
    let a = &alice.hash;
    store
        .set(a, a, alice.update(a, None, Some(target(1)), 1))
        .await
        .unwrap();
    let before = store.get(a, a).await.unwrap();

    let err = store
        .set(a, a, alice.update(a, Some(target(7)), Some(target(2)), 2))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::CasConflict(c) if c.expected == Some(target(7)) && c.actual == Some(target(1))),
        "{err}"
    );
    let err = store
        .set(a, a, alice.update(a, None, Some(target(2)), 2))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::CasConflict(c) if c.expected.is_none()),
        "{err}"
    );
    let err = store
        .set(a, a, alice.update(a, Some(target(1)), Some(target(2)), 1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::StaleSequence { .. }), "{err}");

    // Signed by someone else, claiming to be alice.
    let mallory = Key::random();
    let forged = mallory.update(a, Some(target(1)), Some(target(2)), 2);
    let err = store.set(a, a, forged).await.unwrap_err();
    assert!(
        matches!(err, Error::Key(peergos_keys::Error::BadSignature { .. })),
        "{err}"
    );

    // Mallory's own valid signature, but mallory is not alice's key.
    let err = store
        .set(
            a,
            &mallory.hash,
            mallory.update(a, None, Some(target(2)), 1),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotOwned { .. }), "{err}");

    // An update alice signed for her own pointer, replayed into another
    // owner's space where alice is a writer, does not verify.
    let (bob, _) = owned.0[0];
    let replay = alice.update(a, None, Some(target(5)), 1);
    let err = store.set(&bob, a, replay).await.unwrap_err();
    assert!(matches!(err, Error::Key(_)), "{err}");

    assert_eq!(store.get(a, a).await.unwrap(), before);
}

/// A key the owner owns may move its own pointer in the owner's space.
pub async fn owned_writers_are_accepted(
    store: Arc<dyn PointerStore>,
    owned: &OwnedKeys,
    alice: &Key,
) {
    let (bob, writer) = owned.0[0];
    assert_eq!(writer, alice.hash);
    store
        .set(
            &bob,
            &alice.hash,
            alice.update(&bob, None, Some(target(1)), 1),
        )
        .await
        .unwrap();
    let got = store.get(&bob, &alice.hash).await.unwrap().unwrap();
    got.verify(&bob, &alice.hash).unwrap();
    // The owner's own pointer is separate.
    assert_eq!(store.get(&bob, &bob).await.unwrap(), None);
}

/// `tasks` tasks race CAS updates on one pointer for `duration`. Returns
/// every accepted update, in sequence order, after checking that none was
/// lost: sequences are 1..=n with no gaps or repeats, each update chains
/// from the one before, and the stored pointer is the last.
pub async fn race(
    store: Arc<dyn PointerStore>,
    tasks: usize,
    duration: std::time::Duration,
) -> (Vec<PointerUpdate>, u64) {
    let alice = Arc::new(Key::random());
    let deadline = tokio::time::Instant::now() + duration;
    let mut handles = Vec::new();
    for t in 0..tasks {
        let store = Arc::clone(&store);
        let alice = Arc::clone(&alice);
        handles.push(tokio::spawn(async move {
            let a = alice.hash;
            let (mut won, mut lost) = (Vec::new(), 0u64);
            let mut n = 0u64;
            while tokio::time::Instant::now() < deadline {
                let current = store.get(&a, &a).await.unwrap();
                let (previous, sequence) = current
                    .map(|c| (c.update.current, c.update.sequence))
                    .unwrap_or((None, 0));
                n += 1;
                let next = target((t as u64) << 32 | n);
                let update = alice.update(&a, previous, Some(next), sequence + 1);
                match store.set(&a, &a, update.clone()).await {
                    Ok(()) => won.push(update.update),
                    Err(Error::CasConflict(_) | Error::StaleSequence { .. }) => lost += 1,
                    Err(e) => panic!("unexpected error in race: {e}"),
                }
            }
            (won, lost)
        }));
    }
    let mut accepted = BTreeMap::new();
    let mut conflicts = 0;
    for handle in handles {
        let (won, lost) = handle.await.unwrap();
        conflicts += lost;
        for update in won {
            let sequence = update.sequence;
            assert!(
                accepted.insert(sequence, update).is_none(),
                "two updates accepted with sequence {sequence}: one was lost"
            );
        }
    }
    let updates: Vec<PointerUpdate> = accepted.into_values().collect();
    for (i, update) in updates.iter().enumerate() {
        assert_eq!(update.sequence, i as u64 + 1, "gap in accepted sequences");
        let expected_previous = if i == 0 { None } else { updates[i - 1].current };
        assert_eq!(
            update.previous,
            expected_previous,
            "update {} does not chain",
            i + 1
        );
    }
    let a = alice.hash;
    let stored = store.get(&a, &a).await.unwrap().unwrap();
    assert_eq!(Some(&stored.update), updates.last());
    assert_eq!(stored.update.sequence, updates.len() as u64);
    (updates, conflicts)
}

/// Runs every pointer conformance check against a backend. The argument
/// is an expression evaluating to a closure that takes an `Arc<dyn
/// Ownership>` and returns a future of a fresh, empty store.
#[macro_export]
macro_rules! pointer_conformance {
    ($make:expr) => {
        $crate::pointer_conformance!(@tests $make;
            updates_chain,
            bad_updates_are_refused,
            owned_writers_are_accepted,
            targets_list_every_current_value,
        );

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn sixteen_tasks_race_without_losing_an_update() {
            let owned = ::std::sync::Arc::new($crate::pointers::OwnedKeys::default());
            let store = ($make)(owned).await;
            let (updates, conflicts) = $crate::pointers::race(
                ::std::sync::Arc::new(store),
                16,
                ::std::time::Duration::from_secs(2),
            )
            .await;
            assert!(updates.len() > 16, "only {} updates in 2 s", updates.len());
            assert!(conflicts > 0, "16 racing tasks never conflicted");
        }
    };
    (@tests $make:expr; $($check:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let alice = $crate::pointers::Key::random();
                let bob = $crate::pointers::Key::random();
                let owned = ::std::sync::Arc::new($crate::pointers::OwnedKeys(vec![(bob.hash, alice.hash)]));
                let store = ($make)(owned.clone()).await;
                $crate::pointers::$check(::std::sync::Arc::new(store), &owned, &alice).await;
            }
        )*
    };
}

/// A hostile pointer store: once given an old signed pointer with
/// [`replay`](Self::replay), it serves that for every read, as a server
/// rolling a user back would. Writes go to the honest store underneath.
#[derive(Default)]
pub struct Replaying<P> {
    /// The honest store underneath.
    pub inner: P,
    stale: std::sync::Mutex<Option<SignedPointer>>,
}

impl<P> Replaying<P> {
    /// An honest store until [`replay`](Self::replay) is called.
    pub fn new(inner: P) -> Self {
        Replaying {
            inner,
            stale: std::sync::Mutex::new(None),
        }
    }

    /// Serves `old` for every read from now on (None: honest again).
    pub fn replay(&self, old: Option<SignedPointer>) {
        *self.stale.lock().unwrap() = old;
    }
}

#[async_trait]
impl<P: PointerStore> PointerStore for Replaying<P> {
    async fn get(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
    ) -> Result<Option<SignedPointer>> {
        if let Some(old) = self.stale.lock().unwrap().clone() {
            return Ok(Some(old));
        }
        self.inner.get(owner, writer).await
    }

    async fn set(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
        update: SignedPointer,
    ) -> Result<()> {
        self.inner.set(owner, writer, update).await
    }
}

/// An honest pointer store that counts reads and can delay writes (a
/// slow server), for tests of how many round trips a client makes.
#[derive(Default)]
pub struct Counting<P> {
    /// The store underneath.
    pub inner: P,
    /// Pointer reads so far.
    pub gets: std::sync::atomic::AtomicU64,
    /// How long each write waits before it is applied, in milliseconds.
    pub set_delay_ms: std::sync::atomic::AtomicU64,
}

impl<P> Counting<P> {
    /// Pointer reads so far.
    pub fn reads(&self) -> u64 {
        self.gets.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait]
impl<P: PointerStore> PointerStore for Counting<P> {
    async fn get(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
    ) -> Result<Option<SignedPointer>> {
        self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.get(owner, writer).await
    }

    async fn set(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
        update: SignedPointer,
    ) -> Result<()> {
        let delay = self.set_delay_ms.load(std::sync::atomic::Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        self.inner.set(owner, writer, update).await
    }
}
