//! The pointer conformance suite against the Postgres store, on a real
//! Postgres server (started by the test helper; SKIPPED without one).

use std::sync::Arc;

use peergos_pointers::{Ownership, PostgresPointerStore};
use peergos_testkit::pointers::{Key, OwnedKeys};

async fn store(owned: Arc<dyn Ownership>) -> Option<PostgresPointerStore> {
    let url = peergos_testkit::postgres::database().await?;
    Some(PostgresPointerStore::connect(&url, owned).await.unwrap())
}

macro_rules! conformance {
    ($($check:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let alice = Key::random();
                let bob = Key::random();
                let owned = Arc::new(OwnedKeys(vec![(bob.hash, alice.hash)]));
                let Some(store) = store(owned.clone()).await else { return };
                peergos_testkit::pointers::$check(Arc::new(store), &owned, &alice).await;
            }
        )*
    };
}

conformance!(
    updates_chain,
    bad_updates_are_refused,
    owned_writers_are_accepted,
    targets_list_every_current_value,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_tasks_race_without_losing_an_update() {
    let owned = Arc::new(OwnedKeys::default());
    let Some(store) = store(owned).await else {
        return;
    };
    let (updates, conflicts) =
        peergos_testkit::pointers::race(Arc::new(store), 16, std::time::Duration::from_secs(2))
            .await;
    assert!(updates.len() > 16, "only {} updates in 2 s", updates.len());
    assert!(conflicts > 0, "16 racing tasks never conflicted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_once_and_reopening_keeps_the_pointers() {
    let Some(url) = peergos_testkit::postgres::database().await else {
        return;
    };
    let owned: Arc<dyn Ownership> = Arc::new(OwnedKeys::default());
    let alice = Key::random();
    let a = &alice.hash;
    // Two stores connecting at once both migrate safely.
    let (first, second) = tokio::join!(
        PostgresPointerStore::connect(&url, owned.clone()),
        PostgresPointerStore::connect(&url, owned.clone())
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.schema_version().await.unwrap(), 1);
    use peergos_pointers::PointerStore;
    let update = alice.update(a, None, Some(peergos_testkit::pointers::target(1)), 1);
    first.set(a, a, update.clone()).await.unwrap();
    assert_eq!(second.get(a, a).await.unwrap(), Some(update.clone()));
    drop((first, second));
    let again = PostgresPointerStore::connect(&url, owned).await.unwrap();
    assert_eq!(again.get(a, a).await.unwrap(), Some(update));
    assert_eq!(again.schema_version().await.unwrap(), 1);
}

#[tokio::test]
async fn a_dead_database_is_a_clear_error() {
    let owned: Arc<dyn Ownership> = Arc::new(OwnedKeys::default());
    let err = PostgresPointerStore::connect(
        "host=127.0.0.1 port=9 user=x dbname=x connect_timeout=2",
        owned,
    )
    .await
    .err()
    .expect("nothing listens on port 9");
    assert!(err.to_string().contains("Postgres"), "{err}");
}
