//! Multi-daemon scenarios: three real `peergos-daemon` processes on
//! 127.0.0.1, each with its own data directory, HTTP port and p2p port.
//! A is the PKI node; B and C mirror it and join the network through it.
//!
//! Run with `cargo xtask integration` (which `cargo xtask ci` runs); they
//! are ignored by a plain `cargo test` so that each scenario runs once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use peergos_core::{open_link, HttpNetwork, LinkOptions, NetworkAccess, Place, UserContext};
use peergos_testkit::daemon::TempDaemon;

const DAEMON: &str = env!("CARGO_BIN_EXE_peergos-daemon");

fn http(url: &str) -> Arc<dyn NetworkAccess> {
    peergos_core::init_tls();
    Arc::new(HttpNetwork::new(url).unwrap())
}

/// A free loopback TCP port (for a p2p address that must survive a
/// restart).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Network {
    a: TempDaemon,
    b: TempDaemon,
    c: TempDaemon,
    _dirs: Vec<tempfile::TempDir>,
}

impl Network {
    fn start() -> Network {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let a_listen = format!("/ip4/127.0.0.1/tcp/{}", free_port());
        let a = TempDaemon::start(DAEMON, dirs[0].path(), &["--p2p-listen", &a_listen]);
        let bootstrap = a.p2p_addrs()[0].clone();
        assert!(bootstrap.ends_with(a.peer_id()), "{bootstrap}");
        let joined = |dir: &std::path::Path| {
            TempDaemon::start(
                DAEMON,
                dir,
                &["--bootstrap", &bootstrap, "--pki-node", a.peer_id()],
            )
        };
        let b = joined(dirs[1].path());
        let c = joined(dirs[2].path());
        Network {
            a,
            b,
            c,
            _dirs: dirs,
        }
    }
}

async fn signup(url: &str, name: &str) -> UserContext {
    UserContext::signup(http(url), name, &format!("{name} password"), None)
        .await
        .unwrap_or_else(|e| panic!("signing up {name} on {url}: {e}"))
}

async fn login(url: &str, name: &str) -> UserContext {
    UserContext::login(http(url), name, &format!("{name} password"))
        .await
        .unwrap_or_else(|e| panic!("logging in {name} through {url}: {e}"))
}

async fn read(user: &UserContext, path: &str) -> Vec<u8> {
    match user.locate(path).await.unwrap() {
        Place::Fs { fs, path } => {
            let mut out = Vec::new();
            fs.download(&path, &mut out).await.unwrap();
            out
        }
        Place::Virtual { .. } => panic!("{path} is a virtual directory"),
    }
}

/// What a secret link opens, read through the server at `url`.
async fn open(url: &str, link: &peergos_core::SecretLink) -> Vec<u8> {
    let view = open_link(http(url), link, None).await.unwrap();
    let mut out = Vec::new();
    view.fs().download("/", &mut out).await.unwrap();
    out
}

/// How many blocks the server with data directory `dir` stores.
fn stored_blocks(dir: &std::path::Path) -> usize {
    peergos_blockstore::file::stored_blocks(dir.join("blocks"))
        .unwrap()
        .len()
}

fn data(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "multi-daemon scenarios: run by cargo xtask integration"]
async fn three_daemons() {
    let started = Instant::now();
    let mut net = Network::start();
    let (a_url, b_url, c_url) = (
        net.a.url().to_string(),
        net.b.url().to_string(),
        net.c.url().to_string(),
    );
    eprintln!("three daemons up in {:?}", started.elapsed());

    // Signup on A (the PKI node) and on C (a mirror, whose claim goes to A).
    let alice = signup(&a_url, "alice").await;
    let carol = signup(&c_url, "carol").await;
    eprintln!("signed up alice on A and carol on C");

    // alice logs in through B with B's address alone; her upload through
    // B lands on A.
    let b_dir = net._dirs[1].path().to_path_buf();
    let b_before = stored_blocks(&b_dir);
    let a_before = stored_blocks(net._dirs[0].path());
    let via_b = login(&b_url, "alice").await;
    let report = data(4 << 20, 3);
    via_b.fs().mkdir("/docs").await.unwrap();
    via_b
        .fs()
        .write_file("/docs/report.pdf", &report)
        .await
        .unwrap();
    assert_eq!(stored_blocks(&b_dir), b_before, "B kept alice's blocks");
    assert!(stored_blocks(net._dirs[0].path()) > a_before);
    let mut back = Vec::new();
    alice
        .fs()
        .download("/docs/report.pdf", &mut back)
        .await
        .unwrap();
    assert_eq!(back, report, "the upload through B is on A");
    eprintln!("login and upload through B landed on A");

    // carol (C) follows alice (A); alice accepts and shares a folder;
    // carol reads it through C.
    carol.follow("alice").await.unwrap();
    let pending = alice.follow_requests().await.unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    alice.accept("carol", false).await.unwrap();
    carol.follow_requests().await.unwrap();
    alice.share("/alice/docs", &["carol"], false).await.unwrap();
    assert_eq!(read(&carol, "/alice/docs/report.pdf").await, report);
    eprintln!("carol on C reads alice's share from A");

    // A secret link made on A opens through B and C.
    let link = alice
        .create_link("/alice/docs/report.pdf", LinkOptions::default())
        .await
        .unwrap();
    for url in [&b_url, &c_url] {
        assert_eq!(open(url, &link).await, report, "the link through {url}");
    }
    eprintln!("the link opens through B and C");

    // Stopping B does not affect A and C.
    drop(via_b);
    net.b.stop();
    let more = data(1 << 20, 9);
    alice
        .fs()
        .write_file("/docs/more.bin", &more)
        .await
        .unwrap();
    let carol = login(&c_url, "carol").await;
    assert_eq!(read(&carol, "/alice/docs/more.bin").await, more);
    assert_eq!(open(&c_url, &link).await, report);
    eprintln!("with B stopped, A and C work");

    // Stopping and restarting A loses nothing: everyone's data and the
    // cross-server paths come back.
    drop((alice, carol));
    net.a.restart();
    let a_url = net.a.url().to_string();
    let alice = login(&a_url, "alice").await;
    let mut back = Vec::new();
    alice
        .fs()
        .download("/docs/report.pdf", &mut back)
        .await
        .unwrap();
    assert_eq!(back, report);
    // C reaches the restarted A again (its p2p address is the same).
    let deadline = Instant::now() + Duration::from_secs(30);
    let carol = loop {
        match UserContext::login(http(&c_url), "carol", "carol password").await {
            Ok(carol) => break carol,
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for C to reach A again: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("carol cannot log in after A restarted: {e}"),
        }
    };
    assert_eq!(read(&carol, "/alice/docs/more.bin").await, more);
    let pending = alice.follow_requests().await.unwrap();
    assert!(pending.is_empty(), "{pending:?}");
    // A new user on C after A's restart is claimed at A.
    signup(&c_url, "dave").await;
    assert!(alice.follow("dave").await.is_ok());
    eprintln!("after A's restart nothing is lost");
    eprintln!("scenarios done in {:?}", started.elapsed());
}
