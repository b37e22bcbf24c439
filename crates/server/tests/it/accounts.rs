//! One suite for every account store: the same checks run against
//! `accounts.sqlite` and against a real Postgres server (started by the
//! test helper; SKIPPED without one, and required in CI).
//!
//! Each check says what the server relies on: a name or an identity is
//! taken once, a token is spent only with the user it made, a replayed
//! stamp loses even when requests race, usage never goes negative,
//! follow requests and link uses respect their limits under concurrency,
//! and everything survives reopening the store.

use std::sync::Arc;

use peergos_keys::{LoginParams, PublicKeyHash, SigningKeyPair};
use peergos_server::{AccountStore, Error, LinkRefusal, NewUser, MAX_PENDING_FOLLOWS};
use peergos_social::{LinkRecord, SecretLink};

type Store = Arc<dyn AccountStore>;

/// A user's keys, for records the checks create.
struct Keys {
    identity: PublicKeyHash,
    login: SigningKeyPair,
    params: LoginParams,
}

impl Keys {
    fn random() -> Keys {
        Keys {
            identity: PublicKeyHash::of(&SigningKeyPair::random().public()),
            login: SigningKeyPair::random(),
            params: LoginParams::new_random(),
        }
    }
}

fn new_user<'a>(
    name: &'a str,
    keys: &'a Keys,
    login_key: &'a peergos_keys::PublicSigningKey,
    token: Option<&'a str>,
) -> NewUser<'a> {
    NewUser {
        username: name,
        identity: &keys.identity,
        login_key,
        params: &keys.params,
        static_data: b"sealed static data",
        quota: 1 << 20,
        token,
    }
}

async fn create(store: &Store, name: &str, keys: &Keys) -> Result<(), Error> {
    let login = keys.login.public();
    store.create(new_user(name, keys, &login, None)).await
}

fn link(max_uses: Option<u64>, expiry: Option<u64>) -> LinkRecord {
    LinkRecord {
        id: SecretLink::random("http://h", "alice", false).id,
        blob: vec![7; 100],
        token_hash: [3; 32],
        expiry,
        max_uses,
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn a_name_and_an_identity_are_taken_once(store: Store) {
    let alice = Keys::random();
    assert!(store.user("alice").await.unwrap().is_none());
    create(&store, "alice", &alice).await.unwrap();
    let user = store.user("alice").await.unwrap().unwrap();
    assert_eq!(user.identity, alice.identity);
    assert_eq!(user.login_key, alice.login.public());
    assert_eq!(user.params, alice.params);
    assert_eq!(&user.static_data[..], b"sealed static data");
    assert_eq!(user.last_auth, 0);
    assert_eq!(
        store.space(&alice.identity).await.unwrap(),
        Some((0, 1 << 20))
    );

    // The same name with other keys, and the same identity under another
    // name, are both refused.
    let other = Keys::random();
    let e = create(&store, "alice", &other).await.unwrap_err();
    assert!(
        matches!(e, Error::UsernameTaken(ref n) if n == "alice"),
        "{e}"
    );
    let e = create(&store, "alice2", &alice).await.unwrap_err();
    assert!(matches!(e, Error::UsernameTaken(_)), "{e}");
    assert!(store.user("alice2").await.unwrap().is_none());

    // Racing signups for one name: exactly one wins.
    let racers: Vec<Keys> = (0..8).map(|_| Keys::random()).collect();
    let results = futures::future::join_all(racers.iter().map(|k| create(&store, "bob", k))).await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );

    let winner = store.user("bob").await.unwrap().unwrap().identity;
    assert!(store.space(&winner).await.unwrap().is_some());
    store.remove("bob").await.unwrap();
    assert!(store.user("bob").await.unwrap().is_none());
    assert!(store.space(&winner).await.unwrap().is_none());
}

async fn a_token_is_spent_only_with_the_user_it_made(store: Store) {
    let alice = Keys::random();
    let login = alice.login.public();
    let e = store
        .create(new_user("alice", &alice, &login, Some("no-such-token")))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::TokenRequired), "{e}");

    let token = store.new_signup_token().await.unwrap();
    assert_eq!(token.len(), 32, "128 bits in hex: {token}");
    create(&store, "taken", &Keys::random()).await.unwrap();
    // A signup that fails (the name is taken) keeps the token unspent...
    let e = store
        .create(new_user("taken", &alice, &login, Some(&token)))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::UsernameTaken(_)), "{e}");
    // ...so it still works once, and only once.
    store
        .create(new_user("alice", &alice, &login, Some(&token)))
        .await
        .unwrap();
    let bob = Keys::random();
    let bob_login = bob.login.public();
    let e = store
        .create(new_user("bob", &bob, &bob_login, Some(&token)))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::TokenRequired), "{e}");
}

async fn a_stamp_is_accepted_once_even_when_requests_race(store: Store) {
    create(&store, "alice", &Keys::random()).await.unwrap();
    assert!(store.advance_auth("alice", 100).await.unwrap());
    assert!(!store.advance_auth("alice", 100).await.unwrap());
    assert!(!store.advance_auth("alice", 99).await.unwrap());
    assert!(store.advance_auth("alice", 101).await.unwrap());
    assert_eq!(store.user("alice").await.unwrap().unwrap().last_auth, 101);
    assert!(!store.advance_auth("nobody", 1000).await.unwrap());

    let replays = (0..16).map(|_| store.advance_auth("alice", 500));
    let won = futures::future::join_all(replays).await;
    assert_eq!(won.iter().filter(|w| *w.as_ref().unwrap()).count(), 1);
}

async fn login_data_is_replaced_whole(store: Store) {
    let alice = Keys::random();
    create(&store, "alice", &alice).await.unwrap();
    store
        .update_login("alice", None, b"new static data")
        .await
        .unwrap();
    let user = store.user("alice").await.unwrap().unwrap();
    assert_eq!(&user.static_data[..], b"new static data");
    assert_eq!(user.login_key, alice.login.public());

    // A password change: new key, new parameters, new data together.
    let key = SigningKeyPair::random().public();
    let params = LoginParams::new_random();
    store
        .update_login("alice", Some((&key, &params)), b"after the change")
        .await
        .unwrap();
    let user = store.user("alice").await.unwrap().unwrap();
    assert_eq!(user.login_key, key);
    assert_eq!(user.params, params);
    assert_eq!(&user.static_data[..], b"after the change");
    assert_eq!(user.identity, alice.identity);
}

async fn usage_moves_by_deltas_and_never_goes_negative(store: Store) {
    let (alice, bob) = (Keys::random(), Keys::random());
    create(&store, "bob", &bob).await.unwrap();
    create(&store, "alice", &alice).await.unwrap();
    store.add_usage(&alice.identity, 100).await.unwrap();
    store.add_usage(&alice.identity, -30).await.unwrap();
    assert_eq!(
        store.space(&alice.identity).await.unwrap(),
        Some((70, 1 << 20))
    );
    store.add_usage(&alice.identity, -1000).await.unwrap();
    assert_eq!(
        store.space(&alice.identity).await.unwrap(),
        Some((0, 1 << 20))
    );

    // Concurrent deltas all count.
    let adds = (0..20).map(|_| store.add_usage(&bob.identity, 5));
    for added in futures::future::join_all(adds).await {
        added.unwrap();
    }
    assert_eq!(
        store.space(&bob.identity).await.unwrap(),
        Some((100, 1 << 20))
    );

    assert!(store.set_quota("alice", 5000).await.unwrap());
    assert!(!store.set_quota("nobody", 5000).await.unwrap());
    assert_eq!(store.space(&Keys::random().identity).await.unwrap(), None);
    assert_eq!(
        store.usage().await.unwrap(),
        vec![
            ("alice".to_string(), 0, 5000),
            ("bob".to_string(), 100, 1 << 20)
        ]
    );
}

async fn follow_requests_are_kept_once_bounded_and_deleted(store: Store) {
    let sealed = |i: u32| i.to_be_bytes().repeat(8);
    let id = |i: u32| peergos_keys::sha256(&sealed(i));
    assert!(store
        .add_follow_request("alice", &id(1), &sealed(1))
        .await
        .unwrap());
    // The same request twice is stored once.
    assert!(store
        .add_follow_request("alice", &id(1), &sealed(1))
        .await
        .unwrap());
    assert!(store
        .add_follow_request("alice", &id(2), &sealed(2))
        .await
        .unwrap());
    assert!(store
        .add_follow_request("bob", &id(3), &sealed(3))
        .await
        .unwrap());
    let waiting = store.follow_requests("alice").await.unwrap();
    let mut ids: Vec<[u8; 32]> = waiting.iter().map(|p| p.id).collect();
    ids.sort();
    let mut expected = vec![id(1), id(2)];
    expected.sort();
    assert_eq!(ids, expected);
    let first = waiting.iter().find(|p| p.id == id(1)).unwrap();
    assert_eq!(&first.sealed[..], &sealed(1)[..]);
    assert!(first.received.abs_diff(now_ms()) < 60_000);

    // Deleting takes only the target's own requests.
    let ids = [id(1), id(3)].map(|i| serde_bytes::ByteBuf::from(i.to_vec()));
    store.delete_follow_requests("alice", &ids).await.unwrap();
    let left: Vec<[u8; 32]> = store
        .follow_requests("alice")
        .await
        .unwrap()
        .iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(left, vec![id(2)]);
    assert_eq!(store.follow_requests("bob").await.unwrap().len(), 1);

    // Up to the limit, racing senders cannot pass it together.
    let max = MAX_PENDING_FOLLOWS as u32;
    for i in 100..100 + max - 11 {
        assert!(store
            .add_follow_request("alice", &id(i), &sealed(i))
            .await
            .unwrap());
    }
    let racing = (0..40u32).map(|i| {
        let n = 100_000 + i;
        let store = &store;
        async move { store.add_follow_request("alice", &id(n), &sealed(n)).await }
    });
    let accepted = futures::future::join_all(racing)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().unwrap())
        .count();
    assert_eq!(accepted, 10);
    let stored = store.follow_requests("alice").await.unwrap().len();
    assert_eq!(stored as u64, MAX_PENDING_FOLLOWS);
}

async fn links_are_counted_exactly_and_revoked(store: Store) {
    let once = link(Some(5), None);
    store.create_link("alice", &once).await.unwrap();
    let e = store.create_link("alice", &once).await.unwrap_err();
    assert!(
        matches!(e, Error::BadRequest(ref m) if m.contains("already exists")),
        "{e}"
    );

    // A wrong token is refused and not counted.
    assert_eq!(
        store.use_link(&once.id, &[4; 32], now_ms()).await.unwrap(),
        Some(Err(LinkRefusal::Denied))
    );
    // Racing opens: exactly the limit succeed.
    let opens = (0..16).map(|_| store.use_link(&once.id, &[3; 32], now_ms()));
    let opened = futures::future::join_all(opens).await;
    let ok = opened
        .iter()
        .filter(|o| matches!(o, Ok(Some(Ok(blob))) if blob[..] == [7; 100]))
        .count();
    assert_eq!(ok, 5, "opens that succeeded of 16, with a limit of 5");
    assert!(opened
        .iter()
        .all(|o| matches!(o, Ok(Some(Ok(_))) | Ok(Some(Err(LinkRefusal::UsedUp(5)))))));
    let status = store.links("alice").await.unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!((status[0].uses, status[0].max_uses), (5, Some(5)));
    assert!(!status[0].revoked);

    // Expiry is checked against the time given.
    let expiring = link(None, Some(now_ms() + 60_000));
    store.create_link("alice", &expiring).await.unwrap();
    assert!(matches!(
        store
            .use_link(&expiring.id, &[3; 32], now_ms())
            .await
            .unwrap(),
        Some(Ok(_))
    ));
    assert_eq!(
        store
            .use_link(&expiring.id, &[3; 32], now_ms() + 120_000)
            .await
            .unwrap(),
        Some(Err(LinkRefusal::Expired))
    );

    // Updates reach live links only; revoking ends every use.
    assert!(store
        .update_link("alice", &expiring.id, &[8; 50])
        .await
        .unwrap());
    assert!(!store
        .update_link("mallory", &expiring.id, &[8; 50])
        .await
        .unwrap());
    match store.use_link(&expiring.id, &[3; 32], now_ms()).await {
        Ok(Some(Ok(blob))) => assert_eq!(&blob[..], &[8; 50]),
        other => panic!("{other:?}"),
    }
    assert!(!store.revoke_link("mallory", &expiring.id).await.unwrap());
    assert!(store.revoke_link("alice", &expiring.id).await.unwrap());
    assert_eq!(
        store
            .use_link(&expiring.id, &[3; 32], now_ms())
            .await
            .unwrap(),
        Some(Err(LinkRefusal::Revoked))
    );
    assert!(!store
        .update_link("alice", &expiring.id, &[9; 50])
        .await
        .unwrap());
    assert_eq!(
        store.use_link("nope", &[3; 32], now_ms()).await.unwrap(),
        None
    );
    let ids: Vec<String> = store
        .links("alice")
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(ids, vec![once.id, expiring.id]);
    assert!(store.links("bob").await.unwrap().is_empty());
}

async fn the_mirror_pointer_is_replaced(store: Store) {
    assert_eq!(store.mirror_pointer().await.unwrap(), None);
    store.set_mirror_pointer(b"first").await.unwrap();
    store.set_mirror_pointer(b"second").await.unwrap();
    assert_eq!(
        store.mirror_pointer().await.unwrap().as_deref(),
        Some(&b"second"[..])
    );
}

async fn transactions_are_kept_until_closed_or_timed_out(store: Store) {
    use peergos_blockstore::TransactionId;
    let (alice, bob) = (Keys::random(), Keys::random());
    let cid = |i: u8| peergos_ipld::Cid::hash(peergos_ipld::Codec::Raw, &[i; 10]);
    let (old, kept, closed) = (
        TransactionId::random(),
        TransactionId::random(),
        TransactionId::random(),
    );
    store
        .open_transaction(&alice.identity, &old, 1_000)
        .await
        .unwrap();
    store
        .open_transaction(&alice.identity, &kept, 5_000)
        .await
        .unwrap();
    store
        .open_transaction(&bob.identity, &closed, 6_000)
        .await
        .unwrap();
    store
        .add_transaction_blocks(&kept, &[cid(1), cid(2)], 100, 7_000)
        .await
        .unwrap();
    // The same block twice is kept once; the bytes add up.
    store
        .add_transaction_blocks(&kept, &[cid(2), cid(3)], 50, 8_000)
        .await
        .unwrap();
    store
        .add_transaction_blocks(&old, &[cid(4)], 10, 1_500)
        .await
        .unwrap();
    store
        .add_transaction_blocks(&closed, &[cid(5)], 1, 6_500)
        .await
        .unwrap();
    store.close_transaction(&closed, 9_000).await.unwrap();

    // Any replica finds an open one, with its owner.
    let found = store.transaction(&kept, 2_000).await.unwrap().unwrap();
    assert_eq!((found.owner, found.opened_ms), (alice.identity, 5_000));
    assert!(store.transaction(&closed, 0).await.unwrap().is_none());
    assert!(store.transaction(&old, 2_000).await.unwrap().is_none());
    let open = store.open_transactions(2_000).await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(
        (open[0].id, open[0].owner, open[0].opened_ms),
        (kept, alice.identity, 5_000)
    );
    let mut blocks = open[0].blocks.clone();
    blocks.sort();
    let mut expected = vec![cid(1), cid(2), cid(3)];
    expected.sort();
    assert_eq!(blocks, expected);

    // Pending bytes count within the lease (puts at or after the time).
    assert_eq!(store.pending(&alice.identity, 0).await.unwrap(), 160);
    assert_eq!(store.pending(&alice.identity, 2_000).await.unwrap(), 150);
    assert_eq!(store.pending(&alice.identity, 8_001).await.unwrap(), 0);
    assert_eq!(store.pending(&bob.identity, 0).await.unwrap(), 0);
    assert_eq!(store.open_uploads(2_000).await.unwrap(), 1);

    // Protected: open ones opened since, and those closed since.
    let protected = store.protected_blocks(2_000, 8_500).await.unwrap();
    let mut got: Vec<_> = protected.into_iter().collect();
    got.sort();
    let mut expected = vec![cid(1), cid(2), cid(3), cid(5)];
    expected.sort();
    assert_eq!(got, expected);
    let protected = store.protected_blocks(2_000, 9_500).await.unwrap();
    assert!(!protected.contains(&cid(5)));

    // A block is deleted only when unprotected.
    let ran = std::sync::atomic::AtomicBool::new(false);
    let deleted = store
        .delete_unless_protected(
            &cid(2),
            2_000,
            9_500,
            Box::new(|| Box::pin(async { Ok(Some(1)) })),
        )
        .await
        .unwrap();
    assert_eq!(deleted, None);
    let deleted = store
        .delete_unless_protected(
            &cid(5),
            2_000,
            9_500,
            Box::new(|| {
                Box::pin(async {
                    ran.store(true, std::sync::atomic::Ordering::SeqCst);
                    Ok(Some(7))
                })
            }),
        )
        .await
        .unwrap();
    assert_eq!(deleted, Some(7));
    assert!(ran.load(std::sync::atomic::Ordering::SeqCst));

    // Pruning forgets timed-out and long-closed ones for good.
    store.prune_transactions(2_000, 9_500).await.unwrap();
    assert_eq!(store.open_transactions(0).await.unwrap().len(), 1);
    assert!(store.protected_blocks(0, 0).await.unwrap().len() == 3);
}

async fn one_collection_holds_the_lease_at_a_time(store: Store) {
    // Free: taken; held by another: refused; renewed by its holder.
    assert!(store.gc_lease("a", 1_000, 500, None).await.unwrap());
    assert!(!store.gc_lease("b", 1_100, 500, None).await.unwrap());
    assert!(store.gc_lease("a", 1_200, 500, None).await.unwrap());
    // A holder that died: the lease lapses.
    assert!(store.gc_lease("b", 1_800, 500, None).await.unwrap());
    store.end_gc_lease("b", 1_900, true).await.unwrap();
    // A scheduled run within the period after a finished one is skipped;
    // an explicit one is not.
    assert!(!store.gc_lease("c", 2_000, 500, Some(1_000)).await.unwrap());
    assert!(store.gc_lease("c", 2_000, 500, None).await.unwrap());
    store.end_gc_lease("c", 2_100, false).await.unwrap();
    assert!(store.gc_lease("d", 3_000, 500, Some(1_000)).await.unwrap());
}

async fn rate_buckets_count_every_request_and_refill(store: Store) {
    // A burst of 3, then one per second.
    for _ in 0..3 {
        assert_eq!(store.take_token("k", 3, 1000, 10_000).await.unwrap(), None);
    }
    let wait = store
        .take_token("k", 3, 1000, 10_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(wait, 1000);
    // Another key has its own bucket.
    assert_eq!(
        store.take_token("other", 3, 1000, 10_000).await.unwrap(),
        None
    );
    // Half a second refills half a token: still refused, and that refusal
    // took nothing.
    let wait = store
        .take_token("k", 3, 1000, 10_500)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(wait, 500);
    assert_eq!(store.take_token("k", 3, 1000, 11_000).await.unwrap(), None);
    assert!(store
        .take_token("k", 3, 1000, 11_000)
        .await
        .unwrap()
        .is_some());
    // Racing takers (replicas) get exactly the burst between them.
    let allowed =
        futures::future::join_all((0..10).map(|_| store.take_token("race", 5, 60_000, 20_000)))
            .await
            .into_iter()
            .filter(|r| r.as_ref().unwrap().is_none())
            .count();
    assert_eq!(allowed, 5);
    // Untouched buckets are forgotten: full again.
    store.prune_buckets(30_000).await.unwrap();
    assert_eq!(store.take_token("k", 3, 1000, 11_000).await.unwrap(), None);
}

/// Writes one of everything into `first`; `again` (the same place,
/// reopened) must read it all back.
async fn write_everything(store: &Store, alice: &Keys, record: &LinkRecord) {
    create(store, "alice", alice).await.unwrap();
    store.add_usage(&alice.identity, 1234).await.unwrap();
    assert!(store.advance_auth("alice", 77).await.unwrap());
    let sealed = b"sealed";
    store
        .add_follow_request("alice", &peergos_keys::sha256(sealed), sealed)
        .await
        .unwrap();
    store.create_link("alice", record).await.unwrap();
    store.set_mirror_pointer(b"pki").await.unwrap();
}

async fn read_everything(store: &Store, alice: &Keys, record: &LinkRecord) {
    let user = store.user("alice").await.unwrap().unwrap();
    assert_eq!((user.identity, user.last_auth), (alice.identity, 77));
    assert_eq!(
        store.space(&alice.identity).await.unwrap(),
        Some((1234, 1 << 20))
    );
    assert_eq!(store.follow_requests("alice").await.unwrap().len(), 1);
    assert_eq!(store.links("alice").await.unwrap()[0].id, record.id);
    assert_eq!(
        store.mirror_pointer().await.unwrap().as_deref(),
        Some(&b"pki"[..])
    );
}

/// The checks, as tests for one store: `$open` makes a store at a new
/// place (None: skipped), `$reopen` opens the same place again.
macro_rules! suite {
    ($($check:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let Some(place) = place().await else { return };
                super::$check(open(&place).await).await;
            }
        )*

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn everything_survives_reopening() {
            let Some(place) = place().await else { return };
            let (alice, record) = (super::Keys::random(), super::link(Some(3), None));
            let first = open(&place).await;
            super::write_everything(&first, &alice, &record).await;
            drop(first);
            super::read_everything(&open(&place).await, &alice, &record).await;
        }
    };
}

macro_rules! every_check {
    () => {
        suite!(
            a_name_and_an_identity_are_taken_once,
            a_token_is_spent_only_with_the_user_it_made,
            a_stamp_is_accepted_once_even_when_requests_race,
            login_data_is_replaced_whole,
            usage_moves_by_deltas_and_never_goes_negative,
            follow_requests_are_kept_once_bounded_and_deleted,
            links_are_counted_exactly_and_revoked,
            the_mirror_pointer_is_replaced,
            transactions_are_kept_until_closed_or_timed_out,
            one_collection_holds_the_lease_at_a_time,
            rate_buckets_count_every_request_and_refill,
        );
    };
}

mod sqlite {
    use super::*;
    use peergos_server::SqliteAccounts;

    async fn place() -> Option<tempfile::TempDir> {
        Some(tempfile::tempdir().unwrap())
    }

    async fn open(dir: &tempfile::TempDir) -> Store {
        Arc::new(SqliteAccounts::open(&dir.path().join("accounts.sqlite")).unwrap())
    }

    every_check!();
}

mod postgres {
    use super::*;
    use peergos_server::PostgresAccounts;

    async fn place() -> Option<String> {
        peergos_testkit::postgres::database().await
    }

    async fn open(url: &str) -> Store {
        Arc::new(PostgresAccounts::connect(url).await.unwrap())
    }

    every_check!();

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn migrations_run_once_when_servers_start_together() {
        let Some(url) = place().await else { return };
        let (first, second) = tokio::join!(
            PostgresAccounts::connect(&url),
            PostgresAccounts::connect(&url)
        );
        let (first, second) = (first.unwrap(), second.unwrap());
        assert_eq!(first.schema_version().await.unwrap(), 16);
        assert_eq!(second.schema_version().await.unwrap(), 16);
        let again = PostgresAccounts::connect(&url).await.unwrap();
        assert_eq!(again.schema_version().await.unwrap(), 16);
    }

    #[tokio::test]
    async fn a_dead_database_is_a_clear_error() {
        let e =
            PostgresAccounts::connect("host=127.0.0.1 port=9 user=x dbname=x connect_timeout=2")
                .await
                .err()
                .expect("nothing listens on port 9");
        let text = e.to_string();
        assert!(
            text.contains("cannot reach the Postgres database at 127.0.0.1:9"),
            "{text}"
        );
    }
}

/// A server that kept accounts in sqlite beside Postgres pointers moves
/// them into Postgres whole, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_accounts_move_into_postgres_whole() {
    use peergos_server::{PostgresAccounts, SqliteAccounts};
    let Some(url) = peergos_testkit::postgres::database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("accounts.sqlite");
    let (alice, record) = (Keys::random(), link(Some(3), None));
    let old: Store = Arc::new(SqliteAccounts::open(&path).unwrap());
    write_everything(&old, &alice, &record).await;
    let token = old.new_signup_token().await.unwrap();
    drop(old);

    let postgres = PostgresAccounts::connect(&url).await.unwrap();
    assert_eq!(postgres.import_sqlite(&path).await.unwrap(), 1);
    let e = postgres.import_sqlite(&path).await.unwrap_err();
    assert!(e.to_string().contains("already has 1 users"), "{e}");
    let store: Store = Arc::new(postgres);
    read_everything(&store, &alice, &record).await;
    // The token came along, unspent.
    let bob = Keys::random();
    let login = bob.login.public();
    store
        .create(new_user("bob", &bob, &login, Some(&token)))
        .await
        .unwrap();
}

/// The server does that move on start, and renames the old file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_postgres_moves_its_old_sqlite_accounts_in_on_start() {
    use peergos_server::{Config, Server, SqliteAccounts};
    let Some(url) = peergos_testkit::postgres::database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let alice = Keys::random();
    let old: Store = Arc::new(SqliteAccounts::open(&dir.path().join("accounts.sqlite")).unwrap());
    create(&old, "alice", &alice).await.unwrap();
    drop(old);

    let mut config = Config::new(dir.path());
    config.postgres = Some(url);
    let server = Server::open(config).await.unwrap();
    let user = server.accounts().user("alice").await.unwrap().unwrap();
    assert_eq!(user.identity, alice.identity);
    assert!(!dir.path().join("accounts.sqlite").exists());
    assert!(dir.path().join("accounts.sqlite.imported").exists());
}
