//! The server's storage backends side by side, in one run: block put and
//! get throughput in the file store and in S3 (a local moto server), and
//! pointer compare-and-swaps per second in sqlite and in Postgres (the
//! local cluster), one writer and sixteen, and the account store's login
//! check (read the user, accept a fresh stamp) in sqlite and in Postgres.
//!
//! ```sh
//! cargo run --release -p peergos-benches --example backends
//! ```
//!
//! Needs `moto_server` (pip install 'moto[server]') and, as root on
//! Debian, the postgresql package (or `PEERGOS_TEST_POSTGRES`). moto is an
//! emulator in Python: its figures bound what the S3 store costs from
//! above, not what a real S3 service does. When `s3s-fs` (a compiled S3
//! server over a directory: `cargo install s3s-fs --features binary`) is
//! on the PATH, the block figures are measured against it too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use peergos_blockstore::{BlockStore, FileStore, PutBlocks, S3Config, S3Store, SignedBlock};
use peergos_ipld::{Cid, Codec};
use peergos_keys::{PublicKeyHash, SigningKeyPair};
use peergos_pointers::{
    Durability, OwnerOnly, PointerStore, PostgresPointerStore, SqlitePointerStore,
};
use peergos_server::{AccountStore, NewUser, PostgresAccounts, SqliteAccounts};
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

/// Login checks per second (read the user's record, then accept a newer
/// stamp: what every signed request costs the account store) by
/// `clients` users at once, for `window`.
async fn logins(store: Arc<dyn AccountStore>, clients: usize, window: Duration) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let name = format!("user{clients}-{i}");
                let login = SigningKeyPair::random();
                store
                    .create(NewUser {
                        username: &name,
                        identity: &PublicKeyHash::of(&SigningKeyPair::random().public()),
                        login_key: &login.public(),
                        params: &peergos_keys::LoginParams::new_random(),
                        static_data: &[0; 300],
                        quota: 1 << 30,
                        token: None,
                    })
                    .await
                    .unwrap();
                let mut n = 0u64;
                while started.elapsed() < window {
                    store.user(&name).await.unwrap().unwrap();
                    assert!(store.advance_auth(&name, n + 1).await.unwrap());
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

/// Starts `s3s-fs` over `root` on a free loopback port with one bucket;
/// its endpoint and bucket, or None when it is not installed.
fn start_s3s_fs(root: &std::path::Path) -> Option<(String, String, std::process::Child)> {
    let bucket = "peergos-bench";
    std::fs::create_dir_all(root.join(bucket)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new("s3s-fs")
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", peergos_testkit::s3::ACCESS_KEY])
        .args(["--secret-key", peergos_testkit::s3::SECRET_KEY])
        .arg(root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "s3s-fs did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((format!("http://127.0.0.1:{port}"), bucket.into(), child))
}

fn s3_store(endpoint: String, bucket: String) -> Arc<dyn BlockStore> {
    Arc::new(
        S3Store::open(&S3Config {
            bucket,
            endpoint,
            region: "us-east-1".into(),
            access_key: peergos_testkit::s3::ACCESS_KEY.into(),
            secret_key: peergos_testkit::s3::SECRET_KEY.into(),
            prefix: String::new(),
        })
        .unwrap(),
    )
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let files: Arc<dyn BlockStore> = Arc::new(FileStore::open(dir.path().join("blocks")).unwrap());
    let endpoint = peergos_testkit::s3::endpoint().expect("moto_server is needed");
    let s3 = s3_store(endpoint.clone(), peergos_testkit::s3::bucket(&endpoint));
    let (f_put, f_get, f_small) = blocks(files).await;
    let (s_put, s_get, s_small) = blocks(s3).await;
    let fast = match start_s3s_fs(&dir.path().join("s3s")) {
        Some((endpoint, bucket, mut child)) => {
            let figures = blocks(s3_store(endpoint, bucket)).await;
            let _ = child.kill();
            Some(figures)
        }
        None => {
            eprintln!("s3s-fs is not on the PATH: measuring S3 against moto only");
            None
        }
    };

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

    let sqlite: Arc<dyn AccountStore> =
        Arc::new(SqliteAccounts::open(&dir.path().join("accounts.sqlite")).unwrap());
    let postgres: Arc<dyn AccountStore> = Arc::new(PostgresAccounts::connect(&url).await.unwrap());
    let l1 = logins(Arc::clone(&sqlite), 1, window).await;
    let m1 = logins(Arc::clone(&postgres), 1, window).await;
    let l16 = logins(sqlite, 16, window).await;
    let m16 = logins(postgres, 16, window).await;

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
    if let Some((put, get, small)) = fast {
        println!(
            "| block put, 1 MiB blocks, 4 per put, S3 = s3s-fs | {f_put:.0} MiB/s | {put:.0} MiB/s | {:.2} |",
            put / f_put
        );
        println!(
            "| block get, 1 MiB blocks, S3 = s3s-fs | {f_get:.0} MiB/s | {get:.0} MiB/s | {:.2} |",
            get / f_get
        );
        println!(
            "| block put, 4 KiB blocks, one per put, S3 = s3s-fs | {f_small:.0} puts/s | {small:.0} puts/s | {:.2} |",
            small / f_small
        );
    }
    println!(
        "| pointer CAS, 1 writer | {q1:.0} /s | {p1:.0} /s | {:.2} |",
        p1 / q1
    );
    println!(
        "| pointer CAS, 16 writers | {q16:.0} /s | {p16:.0} /s | {:.2} |",
        p16 / q16
    );
    println!(
        "| login check (read user, accept stamp), 1 client | {l1:.0} /s | {m1:.0} /s | {:.2} |",
        m1 / l1
    );
    println!(
        "| login check, 16 clients | {l16:.0} /s | {m16:.0} /s | {:.2} |",
        m16 / l16
    );
}
