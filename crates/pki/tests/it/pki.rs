//! Usernames, key chains, and the append-only check a mirror runs on every
//! new PKI root, including against a PKI node that tries to rewrite
//! history.

use std::sync::Arc;

use peergos_blockstore::{BlockStore, MemoryStore, PutBlocks, SignedBlock};
use peergos_champ::{Config, Key, Value, Writer};
use peergos_ipld::{cbor, Cid, Codec};
use peergos_keys::{PublicKeyHash, SigningKeyPair};
use peergos_pki::{check_username, name_key, Claim, Error, KeyChain, Pki, SignedClaim, Update};
use peergos_testkit::fuzz::{seed_dir, valid_seeds};
use proptest::prelude::*;

const NOW: u64 = 1_800_000_000;
const YEAR: u64 = 365 * 24 * 3600;

fn claim(username: &str, key: &SigningKeyPair, expiry: u64) -> Claim {
    Claim {
        username: username.to_string(),
        identity: PublicKeyHash::of(&key.public()),
        expiry,
        servers: vec!["12D3KooWHomeServer".into()],
    }
}

#[test]
fn username_rules() {
    for good in ["a", "alice", "bob_2", "x-y", "0", &"z".repeat(32)] {
        check_username(good).unwrap();
    }
    for bad in [
        "",
        "Alice",
        "al ice",
        "ålice",
        "a.b",
        "a/b",
        &"z".repeat(33),
    ] {
        assert!(
            matches!(check_username(bad), Err(Error::BadUsername { .. })),
            "{bad:?}"
        );
    }
}

proptest! {
    #[test]
    fn names_from_the_alphabet_pass_and_others_fail(name in "[a-z0-9_-]{1,32}", bad in "[a-z]{0,5}[A-Z. /@!]{1,3}[a-z]{0,5}") {
        prop_assert!(check_username(&name).is_ok());
        prop_assert!(check_username(&bad).is_err());
    }

    #[test]
    fn chains_round_trip_canonically(links in 1usize..6, servers in proptest::collection::vec("[a-zA-Z0-9]{1,20}", 0..4)) {
        let mut key = SigningKeyPair::from_seed(zeroize::Zeroizing::new([1; 32]));
        let mut c = claim("carol", &key, NOW + YEAR);
        c.servers = servers.clone();
        let mut chain = KeyChain::new(c, &key).unwrap();
        for i in 1..links {
            let next = SigningKeyPair::from_seed(zeroize::Zeroizing::new([i as u8 + 1; 32]));
            let mut c = claim("carol", &next, NOW + YEAR + i as u64);
            c.servers = servers.clone();
            chain = chain.extend(c, &key).unwrap();
            key = next;
        }
        let bytes = chain.to_bytes().unwrap();
        let back = KeyChain::from_bytes(&bytes).unwrap();
        prop_assert_eq!(&back, &chain);
        prop_assert_eq!(back.to_bytes().unwrap(), bytes);
    }
}

#[test]
fn chains_are_signed_link_by_link() {
    let alice = SigningKeyPair::random();
    let chain = KeyChain::new(claim("alice", &alice, NOW + YEAR), &alice).unwrap();
    // Renewal and key change, each signed by the key before.
    let renewed = chain
        .extend(claim("alice", &alice, NOW + 2 * YEAR), &alice)
        .unwrap();
    let new_key = SigningKeyPair::random();
    let moved = renewed
        .extend(claim("alice", &new_key, NOW + 2 * YEAR), &alice)
        .unwrap();
    assert_eq!(
        moved.current().identity,
        PublicKeyHash::of(&new_key.public())
    );
    assert!(moved.extends(&chain) && !chain.extends(&moved));

    // A link signed by anyone but the previous key is refused.
    let mallory = SigningKeyPair::random();
    assert!(matches!(
        moved.extend(claim("alice", &mallory, NOW + 3 * YEAR), &mallory),
        Err(Error::BadChain { .. })
    ));
    // So is a first claim not signed by its own key.
    assert!(matches!(
        KeyChain::new(claim("alice", &alice, NOW + YEAR), &mallory),
        Err(Error::BadChain { .. })
    ));
    // Another name, or an expiry going back.
    assert!(chain
        .extend(claim("alicia", &alice, NOW + 2 * YEAR), &alice)
        .is_err());
    assert!(chain.extend(claim("alice", &alice, NOW), &alice).is_err());

    // A claim edited after signing fails, even with a valid encoding.
    let mut links: Vec<SignedClaim> = moved.links().to_vec();
    links[1].claim.expiry += 1;
    let bytes = cbor::to_vec(&links).unwrap();
    assert!(matches!(
        KeyChain::from_bytes(&bytes),
        Err(Error::BadChain { .. })
    ));
    // An empty chain does not decode.
    assert!(KeyChain::from_bytes(&cbor::to_vec(&Vec::<SignedClaim>::new()).unwrap()).is_err());
}

struct Node {
    pki: Pki<MemoryStore>,
    store: Arc<MemoryStore>,
    writer: Writer,
}

async fn node() -> (Node, peergos_ipld::Cid) {
    let store = Arc::new(MemoryStore::new());
    let keys = SigningKeyPair::random();
    let owner = PublicKeyHash::of(&keys.public());
    let transaction = store.start_transaction(&owner).await.unwrap();
    let writer = Writer {
        owner,
        keys,
        transaction,
    };
    let pki = Pki::new(Arc::clone(&store));
    let root = pki.champ().empty(&writer, Config::default()).await.unwrap();
    (Node { pki, store, writer }, root)
}

impl Node {
    /// What a hostile PKI node can do: store any bytes as a chain and file
    /// them under `key` in the PKI at `root`, whatever was there.
    async fn overwrite(&self, root: &Cid, key: &Key, bytes: Vec<u8>) -> Cid {
        let value = self.raw_chain(bytes).await;
        let old = self.pki.champ().get(root, key).await.unwrap();
        self.pki
            .champ()
            .put(&self.writer, root, key, old.as_ref(), value)
            .await
            .unwrap()
    }

    /// Stores raw chain bytes and returns the link value.
    async fn raw_chain(&self, bytes: Vec<u8>) -> Value {
        let block = SignedBlock::sign(&self.writer.keys, Codec::DagCbor, bytes);
        let cid = self
            .store
            .put(PutBlocks {
                owner: self.writer.owner,
                writer: self.writer.owner,
                transaction: self.writer.transaction,
                blocks: vec![block],
            })
            .await
            .unwrap()[0];
        Value::Link(cid)
    }
}

#[tokio::test]
async fn first_come_first_served_renewal_and_reclaim() {
    let (n, root) = node().await;
    let alice = SigningKeyPair::random();
    let a1 = KeyChain::new(claim("alice", &alice, NOW + YEAR), &alice).unwrap();
    let (root, update) = n.pki.apply(&n.writer, &root, &a1, NOW).await.unwrap();
    assert_eq!(update, Update::New("alice".into()));
    assert_eq!(
        n.pki.lookup(&root, "alice").await.unwrap(),
        Some(a1.clone())
    );
    assert_eq!(n.pki.lookup(&root, "bob").await.unwrap(), None);

    // Someone else cannot take the name while it is held.
    let mallory = SigningKeyPair::random();
    let m = KeyChain::new(claim("alice", &mallory, NOW + YEAR), &mallory).unwrap();
    assert!(matches!(
        n.pki.apply(&n.writer, &root, &m, NOW).await,
        Err(Error::NameTaken { .. })
    ));
    // The holder renews.
    let a2 = a1
        .extend(claim("alice", &alice, NOW + 2 * YEAR), &alice)
        .unwrap();
    let (root, update) = n.pki.apply(&n.writer, &root, &a2, NOW).await.unwrap();
    assert_eq!(update, Update::Extended("alice".into()));
    // After expiry the name can be reclaimed by a new key.
    let later = NOW + 3 * YEAR;
    let m = KeyChain::new(claim("alice", &mallory, later + YEAR), &mallory).unwrap();
    let (root, update) = n.pki.apply(&n.writer, &root, &m, later).await.unwrap();
    assert_eq!(update, Update::Reclaimed("alice".into()));
    assert_eq!(n.pki.lookup(&root, "alice").await.unwrap(), Some(m));
    // An already expired chain is never accepted.
    let stale = KeyChain::new(claim("stale", &alice, NOW - 1), &alice).unwrap();
    assert!(n.pki.apply(&n.writer, &root, &stale, NOW).await.is_err());
}

#[tokio::test]
async fn mirrors_accept_extensions_and_reject_rewrites() {
    let (n, root0) = node().await;
    let alice = SigningKeyPair::random();
    let bob = SigningKeyPair::random();
    let a1 = KeyChain::new(claim("alice", &alice, NOW + YEAR), &alice).unwrap();
    let b1 = KeyChain::new(claim("bob", &bob, NOW + YEAR), &bob).unwrap();
    let (root1, _) = n.pki.apply(&n.writer, &root0, &a1, NOW).await.unwrap();
    let (root1, _) = n.pki.apply(&n.writer, &root1, &b1, NOW).await.unwrap();
    let updates = n.pki.check_update(&root0, &root1, NOW).await.unwrap();
    assert_eq!(updates.len(), 2);

    // An honest extension passes.
    let a2 = a1
        .extend(claim("alice", &alice, NOW + 2 * YEAR), &alice)
        .unwrap();
    let (root2, _) = n.pki.apply(&n.writer, &root1, &a2, NOW).await.unwrap();
    assert_eq!(
        n.pki.check_update(&root1, &root2, NOW).await.unwrap(),
        vec![Update::Extended("alice".into())]
    );

    // A hostile PKI node rewrites alice's history with a fresh chain of
    // its own key: refused.
    let mallory = SigningKeyPair::random();
    let forged = KeyChain::new(claim("alice", &mallory, NOW + YEAR), &mallory).unwrap();
    let bad = n
        .overwrite(&root2, &name_key("alice"), forged.to_bytes().unwrap())
        .await;
    assert!(matches!(
        n.pki.check_update(&root2, &bad, NOW).await,
        Err(Error::NameTaken { .. })
    ));

    // Dropping a name: refused.
    let bob_value = n
        .pki
        .champ()
        .get(&root2, &name_key("bob"))
        .await
        .unwrap()
        .unwrap();
    let dropped = n
        .pki
        .champ()
        .remove(&n.writer, &root2, &name_key("bob"), &bob_value)
        .await
        .unwrap();
    assert!(matches!(
        n.pki.check_update(&root2, &dropped, NOW).await,
        Err(Error::NotAppendOnly { .. })
    ));

    // A link appended without the holder's signature: refused.
    let mut links = a2.links().to_vec();
    links.push(
        claim("alice", &mallory, NOW + 3 * YEAR)
            .sign(&mallory)
            .unwrap(),
    );
    let bad = n
        .overwrite(&root2, &name_key("alice"), cbor::to_vec(&links).unwrap())
        .await;
    assert!(matches!(
        n.pki.check_update(&root2, &bad, NOW).await,
        Err(Error::BadChain { .. })
    ));

    // A chain filed under another name's key: refused.
    let carol = SigningKeyPair::random();
    let c1 = KeyChain::new(claim("carol", &carol, NOW + YEAR), &carol).unwrap();
    let bad = n
        .overwrite(&root2, &name_key("dave"), c1.to_bytes().unwrap())
        .await;
    assert!(matches!(
        n.pki.check_update(&root2, &bad, NOW).await,
        Err(Error::MalformedEntry { .. })
    ));
}

/// The `pki_chain` fuzz seeds named `valid-*` are real chains, written by
/// this test when PEERGOS_WRITE_SEEDS names the corpus folder.
#[test]
fn valid_fuzz_seeds_decode() {
    if let Some(dir) = seed_dir() {
        let a = SigningKeyPair::from_seed(zeroize::Zeroizing::new([5; 32]));
        let b = SigningKeyPair::from_seed(zeroize::Zeroizing::new([6; 32]));
        let one = KeyChain::new(claim("alice", &a, NOW + YEAR), &a).unwrap();
        let two = one.extend(claim("alice", &b, NOW + 2 * YEAR), &a).unwrap();
        for (i, chain) in [one, two].iter().enumerate() {
            std::fs::write(dir.join(format!("valid-{i}")), chain.to_bytes().unwrap()).unwrap();
        }
    }
    let seeds = valid_seeds("pki_chain");
    for seed in &seeds {
        KeyChain::from_bytes(seed).unwrap();
    }
    assert!(
        seeds.len() >= 2,
        "expected 2 valid-* seeds, found {}",
        seeds.len()
    );
}

/// A simulated clock over decades: a holder who renews every ~10 months
/// keeps the name; once they stop, the name is theirs through expiry and
/// the grace period, renewable by them alone, and only then free.
#[tokio::test]
async fn an_active_holder_keeps_the_name_and_a_lapsed_one_loses_it_after_the_grace() {
    use peergos_pki::RECLAIM_GRACE_SECS;
    let (n, mut root) = node().await;
    let alice = SigningKeyPair::random();
    let mallory = SigningKeyPair::random();
    let mut chain = KeyChain::new(claim("alice", &alice, NOW + YEAR), &alice).unwrap();
    root = n.pki.apply(&n.writer, &root, &chain, NOW).await.unwrap().0;
    let renew_every = YEAR * 10 / 12;
    let mut now = NOW;
    for _ in 0..20 {
        now += renew_every;
        // A rival at any moment of an active holder's life is refused.
        let rival = KeyChain::new(claim("alice", &mallory, now + YEAR), &mallory).unwrap();
        assert!(matches!(
            n.pki.apply(&n.writer, &root, &rival, now).await,
            Err(Error::NameTaken { .. })
        ));
        chain = chain
            .extend(claim("alice", &alice, now + YEAR), &alice)
            .unwrap();
        let (next, update) = n.pki.apply(&n.writer, &root, &chain, now).await.unwrap();
        assert_eq!(update, Update::Extended("alice".into()));
        root = next;
    }
    // Alice stops renewing: after expiry, within the grace period, the
    // name is still hers and she alone can renew it.
    let expiry = chain.current().expiry;
    let lapsed = expiry + RECLAIM_GRACE_SECS / 2;
    let rival = KeyChain::new(claim("alice", &mallory, lapsed + YEAR), &mallory).unwrap();
    assert!(matches!(
        n.pki.apply(&n.writer, &root, &rival, lapsed).await,
        Err(Error::NameTaken { .. })
    ));
    // A forged renewal (signed by another key) is refused.
    let forged = chain
        .extend(claim("alice", &mallory, lapsed + YEAR), &mallory)
        .map(|c| c.links().to_vec());
    assert!(
        forged.is_err(),
        "a chain link signed by the wrong key verifies"
    );
    let late = chain
        .extend(claim("alice", &alice, lapsed + YEAR), &alice)
        .unwrap();
    let (renewed_root, update) = n.pki.apply(&n.writer, &root, &late, lapsed).await.unwrap();
    assert_eq!(update, Update::Extended("alice".into()));
    // Had she not, the name is free once the grace period is over.
    let free = expiry + RECLAIM_GRACE_SECS;
    let rival = KeyChain::new(claim("alice", &mallory, free + YEAR), &mallory).unwrap();
    let (_, update) = n.pki.apply(&n.writer, &root, &rival, free).await.unwrap();
    assert_eq!(update, Update::Reclaimed("alice".into()));
    // And a mirror checking the renewed root accepts the late renewal.
    let updates = n
        .pki
        .check_update(&root, &renewed_root, lapsed)
        .await
        .unwrap();
    assert_eq!(updates, vec![Update::Extended("alice".into())]);
}
