//! Two processes race CAS updates on one pointer in one sqlite file and are
//! killed mid-run; the file must reopen intact with no update lost.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use peergos_ipld::Cid;
use peergos_keys::{PublicKeyHash, SigningKeyPair};
use peergos_pointers::{
    Durability, Error, OwnerOnly, PointerStore, PointerUpdate, SignedPointer, SqlitePointerStore,
};
use zeroize::Zeroizing;

const DB: &str = "PEERGOS_RACE_DB";
const SEED: &str = "PEERGOS_RACE_SEED";

fn key(seed_hex: &str) -> (SigningKeyPair, PublicKeyHash) {
    let seed: [u8; 32] = hex::decode(seed_hex).unwrap().try_into().unwrap();
    let pair = SigningKeyPair::from_seed(Zeroizing::new(seed));
    let hash = PublicKeyHash::of(&pair.public());
    (pair, hash)
}

/// Run as a child process by the test below: 8 tasks race forever,
/// printing every accepted update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper: run as a child process by two_processes_killed_mid_race"]
async fn race_child() {
    let (Ok(db), Ok(seed)) = (std::env::var(DB), std::env::var(SEED)) else {
        return;
    };
    let store =
        Arc::new(SqlitePointerStore::open(&db, Arc::new(OwnerOnly), Durability::Full).unwrap());
    let (pair, owner) = key(&seed);
    let pair = Arc::new(pair);
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let (store, pair) = (Arc::clone(&store), Arc::clone(&pair));
        tasks.push(tokio::spawn(async move {
            for n in 0u64.. {
                let current = store.get(&owner, &owner).await.unwrap();
                let (previous, sequence) =
                    current.map_or((None, 0), |c| (c.update.current, c.update.sequence));
                let next = Cid::hash(
                    peergos_ipld::Codec::DagCbor,
                    format!("{} {t} {n}", std::process::id()).as_bytes(),
                );
                let update = PointerUpdate {
                    previous,
                    current: Some(next),
                    sequence: sequence + 1,
                };
                let signed = SignedPointer::sign(&pair, &owner, update.clone()).unwrap();
                match store.set(&owner, &owner, signed).await {
                    Ok(()) => {
                        use std::io::Write;
                        let line = format!(
                            "won {} {} {}\n",
                            update.sequence,
                            previous.map_or("-".into(), |c| c.to_string()),
                            next
                        );
                        // The parent stops reading once it has killed us
                        // or seen enough: then there is nobody to tell.
                        if std::io::stdout().lock().write_all(line.as_bytes()).is_err() {
                            std::process::exit(0);
                        }
                    }
                    Err(Error::CasConflict(_) | Error::StaleSequence { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[test]
fn two_processes_killed_mid_race() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pointers.sqlite");
    // Create the database (WAL mode, schema) before the children start, as
    // a daemon does: two first opens racing to switch the journal mode can
    // fail with "database is locked" on a loaded machine (seen in CI).
    drop(SqlitePointerStore::open(&db, Arc::new(OwnerOnly), Durability::Full).unwrap());
    let seed = hex::encode([42u8; 32]);
    let exe = std::env::current_exe().unwrap();
    let mut children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "sqlite_processes::race_child",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(DB, &db)
                .env(SEED, &seed)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap()
        })
        .collect();
    // Read both children's acknowledgements on threads; stop at 40 each
    // (or after 20 s), then SIGKILL both mid-run.
    let readers: Vec<_> = children
        .iter_mut()
        .map(|child| {
            let stdout = BufReader::new(child.stdout.take().unwrap());
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut won = Vec::new();
                for line in stdout.lines() {
                    let Ok(line) = line else { break };
                    if let Some(rest) = line.strip_prefix("won ") {
                        let parts: Vec<&str> = rest.split(' ').collect();
                        won.push((
                            parts[0].parse::<u64>().unwrap(),
                            (parts[1] != "-").then(|| parts[1].parse::<Cid>().unwrap()),
                            parts[2].parse::<Cid>().unwrap(),
                        ));
                    }
                    if won.len() >= 40 || started.elapsed() > Duration::from_secs(20) {
                        break;
                    }
                }
                won
            })
        })
        .collect();
    let per_child: Vec<_> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    for child in &mut children {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    assert!(
        per_child.iter().all(|w| w.len() >= 10),
        "children made too little progress: {:?}",
        per_child.iter().map(Vec::len).collect::<Vec<_>>()
    );

    // No sequence was accepted twice: across processes, CAS was atomic.
    let mut acked = BTreeMap::new();
    for (sequence, previous, current) in per_child.into_iter().flatten() {
        assert!(
            acked.insert(sequence, (previous, current)).is_none(),
            "sequence {sequence} accepted in both processes"
        );
    }
    // Consecutive acknowledged updates chain.
    for (sequence, (previous, _)) in &acked {
        if let Some((_, prior)) = acked.get(&(sequence - 1)) {
            assert_eq!(previous, &Some(*prior), "update {sequence} does not chain");
        }
    }
    // Reopen: the file is intact and nothing acknowledged was lost.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = SqlitePointerStore::open(&db, Arc::new(OwnerOnly), Durability::Full).unwrap();
        let (_, owner) = key(&seed);
        let stored = store.get(&owner, &owner).await.unwrap().unwrap();
        stored.verify(&owner, &owner).unwrap();
        let (&newest, &(_, newest_target)) = acked.last_key_value().unwrap();
        assert!(
            stored.update.sequence >= newest,
            "acknowledged sequence {newest} lost"
        );
        if stored.update.sequence == newest {
            assert_eq!(stored.update.current, Some(newest_target));
        }
    });
    let conn = rusqlite_check(&db);
    assert_eq!(conn, "ok");
}

/// sqlite's own integrity check on the file.
fn rusqlite_check(path: &std::path::Path) -> String {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap()
}

/// Many writers at once on their own pointers: group commit batches them
/// into shared transactions, and every update still lands exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_many_pointers_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqlitePointerStore::open(
            dir.path().join("p.sqlite"),
            Arc::new(OwnerOnly),
            Durability::Full,
        )
        .unwrap(),
    );
    let mut tasks = Vec::new();
    for _ in 0..48 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let pair = SigningKeyPair::random();
            let owner = PublicKeyHash::of(&pair.public());
            let mut previous = None;
            for sequence in 1..=20u64 {
                let next = Cid::hash(peergos_ipld::Codec::DagCbor, &sequence.to_be_bytes());
                let update = PointerUpdate {
                    previous,
                    current: Some(next),
                    sequence,
                };
                let signed = SignedPointer::sign(&pair, &owner, update).unwrap();
                store.set(&owner, &owner, signed).await.unwrap();
                previous = Some(next);
            }
            owner
        }));
    }
    for task in tasks {
        let owner = task.await.unwrap();
        let stored = store.get(&owner, &owner).await.unwrap().unwrap();
        assert_eq!(stored.update.sequence, 20);
    }
}

/// A row damaged on disk refuses its own pointer's updates with a typed
/// error naming the file, and does not get in the way of other pointers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_row_only_affects_its_own_pointer() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.sqlite");
    let store = SqlitePointerStore::open(&db, Arc::new(OwnerOnly), Durability::Full).unwrap();
    let (alice, bob) = (SigningKeyPair::random(), SigningKeyPair::random());
    let a = PublicKeyHash::of(&alice.public());
    let b = PublicKeyHash::of(&bob.public());
    let target = |n: u8| Some(Cid::hash(peergos_ipld::Codec::DagCbor, &[n]));
    let update = |pair: &SigningKeyPair, owner: &PublicKeyHash, previous, current, sequence| {
        SignedPointer::sign(
            pair,
            owner,
            PointerUpdate {
                previous,
                current,
                sequence,
            },
        )
        .unwrap()
    };
    store
        .set(&a, &a, update(&alice, &a, None, target(1), 1))
        .await
        .unwrap();
    store
        .set(&b, &b, update(&bob, &b, None, target(1), 1))
        .await
        .unwrap();
    // Damage alice's stored target behind the store's back.
    let raw = rusqlite::Connection::open(&db).unwrap();
    raw.execute(
        "UPDATE pointers SET current = x'ff' WHERE owner = ?1",
        [a.cid().to_bytes()],
    )
    .unwrap();
    // Both updates at once, so they usually share a batch.
    let (to_alice, to_bob) = tokio::join!(
        store.set(&a, &a, update(&alice, &a, target(1), target(2), 2)),
        store.set(&b, &b, update(&bob, &b, target(1), target(2), 2)),
    );
    let err = to_alice.unwrap_err();
    assert!(matches!(err, Error::CorruptRow { .. }), "{err}");
    assert!(err.to_string().contains("p.sqlite"), "{err}");
    to_bob.unwrap();
    assert_eq!(store.get(&b, &b).await.unwrap().unwrap().update.sequence, 2);
}
