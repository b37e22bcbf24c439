//! The server's storage backends side by side, in one run: block put and
//! get throughput in the file store and in S3 (a local moto server), and
//! pointer compare-and-swaps per second in sqlite and in Postgres (the
//! local cluster), one writer and sixteen.
//!
//! ```sh
//! cargo run --release -p peergos-benches --example backends
//! ```
//!
//! Needs `moto_server` (pip install 'moto[server]') and, as root on
//! Debian, the postgresql package (or `PEERGOS_TEST_POSTGRES`). moto is an
//! emulator in Python: its figures bound what the S3 store costs from
//! above, not what a real S3 service does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use peergos_blockstore::{BlockStore, FileStore, PutBlocks, S3Config, S3Store, SignedBlock};
use peergos_ipld::{Cid, Codec};
use peergos_keys::{PublicKeyHash, SigningKeyPair};
use peergos_pointers::{
    Durability, OwnerOnly, PointerStore, PostgresPointerStore, SqlitePointerStore,
};
use peergos_testkit::cryptree::data;
use peergos_testkit::pointers::Key;

const MIB: usize = 1 << 20;

/// (put MiB/s, get MiB/s, small puts/s) for `store`.
async fn blocks(store: Arc<dyn BlockStore>) -> (f64, f64, f64) {
    let keys = SigningKeyPair::random();
    let owner = PublicKeyHash::of(&keys.public());
    let tx = store.start_transaction(&owner).await.unwrap();
    let big: Vec<SignedBlock> = (0..32u8)
        .map(|i| SignedBlock::sign(&keys, Codec::Raw, data(i, MIB)))
        .collect();
    let started = Instant::now();
    let mut cids: Vec<Cid> = Vec::new();
    for chunk in big.chunks(4) {
        cids.extend(
            store
                .put(PutBlocks {
                    owner,
                    writer: owner,
                    transaction: tx,
                    blocks: chunk.to_vec(),
                })
                .await
                .unwrap(),
        );
    }
    let put = 32.0 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for cid in &cids {
        store.get_trusted(cid).await.unwrap().unwrap();
    }
    let get = 32.0 / started.elapsed().as_secs_f64();
    let small: Vec<SignedBlock> = (0..300u32)
        .map(|i| SignedBlock::sign(&keys, Codec::Raw, data((i % 251) as u8, 4096 + i as usize)))
        .collect();
    let started = Instant::now();
    for block in small {
        store
            .put(PutBlocks {
                owner,
                writer: owner,
                transaction: tx,
                blocks: vec![block],
            })
            .await
            .unwrap();
    }
    let small = 300.0 / started.elapsed().as_secs_f64();
    (put, get, small)
}

/// Compare-and-swaps per second by `writers` writers, each on its own
/// pointer, for `window`.
async fn cas(store: Arc<dyn PointerStore>, writers: usize, window: Duration) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let key = Key::random();
                let mut previous = None;
                let mut n = 0u64;
                while started.elapsed() < window {
                    let next = Some(peergos_testkit::pointers::target(n + 1));
                    let update = key.update(&key.hash, previous, next, n + 1);
                    store.set(&key.hash, &key.hash, update).await.unwrap();
                    previous = next;
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let files: Arc<dyn BlockStore> = Arc::new(FileStore::open(dir.path().join("blocks")).unwrap());
    let endpoint = peergos_testkit::s3::endpoint().expect("moto_server is needed");
    let s3: Arc<dyn BlockStore> = Arc::new(
        S3Store::open(&S3Config {
            bucket: peergos_testkit::s3::bucket(&endpoint),
            endpoint,
            region: "us-east-1".into(),
            access_key: peergos_testkit::s3::ACCESS_KEY.into(),
            secret_key: peergos_testkit::s3::SECRET_KEY.into(),
            prefix: String::new(),
        })
        .unwrap(),
    );
    let (f_put, f_get, f_small) = blocks(files).await;
    let (s_put, s_get, s_small) = blocks(s3).await;

    let sqlite: Arc<dyn PointerStore> = Arc::new(
        SqlitePointerStore::open(
            dir.path().join("pointers.sqlite"),
            Arc::new(OwnerOnly),
            Durability::Full,
        )
        .unwrap(),
    );
    let url = peergos_testkit::postgres::database()
        .await
        .expect("a Postgres server is needed");
    let postgres: Arc<dyn PointerStore> = Arc::new(
        PostgresPointerStore::connect(&url, Arc::new(OwnerOnly))
            .await
            .unwrap(),
    );
    let window = Duration::from_secs(3);
    let q1 = cas(Arc::clone(&sqlite), 1, window).await;
    let p1 = cas(Arc::clone(&postgres), 1, window).await;
    let q16 = cas(sqlite, 16, window).await;
    let p16 = cas(postgres, 16, window).await;

    println!("| measure | files + sqlite | S3 (moto) + Postgres | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| block put, 1 MiB blocks, 4 per put | {f_put:.0} MiB/s | {s_put:.0} MiB/s | {:.2} |",
        s_put / f_put
    );
    println!(
        "| block get, 1 MiB blocks | {f_get:.0} MiB/s | {s_get:.0} MiB/s | {:.2} |",
        s_get / f_get
    );
    println!("| block put, 4 KiB blocks, one per put | {f_small:.0} puts/s | {s_small:.0} puts/s | {:.2} |", s_small / f_small);
    println!(
        "| pointer CAS, 1 writer | {q1:.0} /s | {p1:.0} /s | {:.2} |",
        p1 / q1
    );
    println!(
        "| pointer CAS, 16 writers | {q16:.0} /s | {p16:.0} /s | {:.2} |",
        p16 / q16
    );
}
