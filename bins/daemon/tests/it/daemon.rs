//! The real daemon process, driven over HTTP by the client library: the
//! user journey across a restart, a hostile server in between, malformed
//! requests, and an unreachable server.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use peergos_core::{Error, HttpNetwork, NetworkAccess, UserContext};
use peergos_testkit::cryptree::data;
use peergos_testkit::daemon::TempDaemon;

const DAEMON: &str = env!("CARGO_BIN_EXE_peergos-daemon");

fn http(url: &str) -> Arc<dyn NetworkAccess> {
    Arc::new(HttpNetwork::new(url).unwrap())
}

async fn read_all(user: &UserContext, path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    user.fs().download(path, &mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signup_upload_restart_login_and_change_password() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = TempDaemon::start(DAEMON, dir.path(), &[]);
    let alice = UserContext::signup(http(daemon.url()), "alice", "first password", None)
        .await
        .unwrap();

    // A 50 MiB file and a folder of 200 small files.
    let big = data(7, 50 << 20);
    alice
        .fs()
        .upload("/big.bin", &big[..], Default::default())
        .await
        .unwrap();
    alice.fs().mkdir("/many").await.unwrap();
    for i in 0..200u32 {
        let body = data(i as u8, 100 + (i as usize * 37) % 5000);
        alice
            .fs()
            .write_file(&format!("/many/f{i:03}"), &body)
            .await
            .unwrap();
    }
    assert!(read_all(&alice, "/big.bin").await == big);
    assert_eq!(alice.fs().ls("/many").await.unwrap().len(), 200);
    let used = alice.space().await.unwrap().used;
    assert!(used >= 50 << 20, "usage {used}");
    drop(alice);

    // Restart the daemon: everything is still there, from a new client.
    daemon.restart();
    let again = UserContext::login(http(daemon.url()), "alice", "first password")
        .await
        .unwrap();
    assert!(read_all(&again, "/big.bin").await == big);
    for i in (0..200u32).step_by(17) {
        let expected = data(i as u8, 100 + (i as usize * 37) % 5000);
        assert_eq!(read_all(&again, &format!("/many/f{i:03}")).await, expected);
    }
    assert_eq!(again.space().await.unwrap().used, used);

    // A crash (SIGKILL) loses nothing that was acknowledged.
    again
        .fs()
        .write_file("/last.txt", b"acknowledged")
        .await
        .unwrap();
    drop(again);
    daemon.kill();
    daemon.restart();
    let mut third = UserContext::login(http(daemon.url()), "alice", "first password")
        .await
        .unwrap();
    assert_eq!(read_all(&third, "/last.txt").await, b"acknowledged");

    // Password change: the old one is refused, the data stays.
    third
        .change_password("first password", "second password")
        .await
        .unwrap();
    let old = UserContext::login(http(daemon.url()), "alice", "first password").await;
    assert!(matches!(old, Err(Error::BadLogin)), "{old:?}");
    let new = UserContext::login(http(daemon.url()), "alice", "second password")
        .await
        .unwrap();
    assert_eq!(read_all(&new, "/last.txt").await, b"acknowledged");
}

/// What the hostile proxy does to answers.
#[derive(Clone, Copy, PartialEq)]
enum Attack {
    Honest,
    FlipBlockByte,
    ReplayOldPointers,
}

struct Proxy {
    upstream: String,
    client: reqwest::Client,
    attack: Mutex<Attack>,
    /// The first answer seen for each pointer route.
    first_pointer: Mutex<std::collections::HashMap<String, Bytes>>,
    /// Each request's path as it arrived, and when its answer went back.
    log: Mutex<Vec<String>>,
}

async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    proxy.log.lock().unwrap().push(format!("start {path}"));
    let body = axum::body::to_bytes(request.into_body(), 100 << 20)
        .await
        .unwrap();
    let url = format!("{}{path}", proxy.upstream);
    let upstream = match method.as_str() {
        "GET" => proxy.client.get(&url),
        _ => proxy.client.post(&url).body(body.to_vec()),
    }
    .header("content-type", "application/cbor")
    .send()
    .await
    .unwrap();
    let status = upstream.status().as_u16();
    let mut answer = upstream.bytes().await.unwrap().to_vec();
    let attack = *proxy.attack.lock().unwrap();
    if path.starts_with("/v1/pointers/") && method == "GET" {
        let mut first = proxy.first_pointer.lock().unwrap();
        let old = first
            .entry(path.clone())
            .or_insert_with(|| Bytes::from(answer.clone()));
        if attack == Attack::ReplayOldPointers {
            answer = old.to_vec();
        }
    }
    if attack == Attack::FlipBlockByte && path == "/v1/blocks/get" && status == 200 {
        let middle = answer.len() / 2;
        answer[middle] ^= 0x01;
    }
    proxy.log.lock().unwrap().push(format!("end {path}"));
    (axum::http::StatusCode::from_u16(status).unwrap(), answer).into_response()
}

async fn start_proxy(upstream: &str) -> (String, Arc<Proxy>) {
    let proxy = Arc::new(Proxy {
        upstream: upstream.to_string(),
        client: {
            peergos_core::init_tls();
            reqwest::Client::new()
        },
        attack: Mutex::new(Attack::Honest),
        first_pointer: Mutex::new(Default::default()),
        log: Mutex::new(Vec::new()),
    });
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(Arc::clone(&proxy));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, proxy)
}

/// Login's round trips that do not need the password (the server's info
/// and the name's PKI entry) are made while scrypt runs: both are
/// answered before the login request (which needs scrypt's keys) is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_looks_up_the_pki_while_scrypt_runs() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = TempDaemon::start(DAEMON, dir.path(), &[]);
    UserContext::signup(http(daemon.url()), "alice", "pw", None)
        .await
        .unwrap();
    let (url, proxy) = start_proxy(daemon.url()).await;
    let alice = UserContext::login(http(&url), "alice", "pw").await.unwrap();
    assert_eq!(alice.username(), "alice");
    let log = proxy.log.lock().unwrap().clone();
    let at = |entry: &str| {
        log.iter()
            .position(|e| e == entry)
            .unwrap_or_else(|| panic!("no '{entry}' in {log:?}"))
    };
    let login = at("start /v1/login/alice");
    assert!(
        at("end /v1/login/alice/params") < at("start /v1/info"),
        "{log:?}"
    );
    assert!(at("end /v1/info") < login, "{log:?}");
    assert!(at("end /v1/pki/alice") < login, "{log:?}");

    // A wrong password still fails with the error that does not say
    // whether the name exists, and so does an unknown name.
    let wrong = UserContext::login(http(&url), "alice", "not pw").await;
    assert!(matches!(wrong, Err(Error::BadLogin)), "{wrong:?}");
    let unknown = UserContext::login(http(&url), "nobody", "pw").await;
    assert!(matches!(unknown, Err(Error::BadLogin)), "{unknown:?}");
}

/// Listing a directory fetches its children's nodes, and the CHAMP nodes
/// that lead to them, in batches: a few `get-many` requests for 600
/// children, not a request per child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_fetches_its_children_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = TempDaemon::start(DAEMON, dir.path(), &[]);
    let alice = UserContext::signup(http(daemon.url()), "alice", "pw", None)
        .await
        .unwrap();
    alice.fs().mkdir("/many").await.unwrap();
    let files: Vec<_> = (0..600)
        .map(|i| (format!("f{i:03}"), vec![i as u8; 100], Default::default()))
        .collect();
    alice.fs().write_files("/many", files).await.unwrap();
    let (url, proxy) = start_proxy(daemon.url()).await;
    let fresh = UserContext::login(http(&url), "alice", "pw").await.unwrap();
    proxy.log.lock().unwrap().clear();
    let listing = fresh.fs().ls("/many").await.unwrap();
    assert_eq!(listing.len(), 600);
    assert!(listing.iter().all(|e| e.size == 100));
    assert_eq!(listing[7].name, "f007");
    let log = proxy.log.lock().unwrap().clone();
    let count = |path: &str| {
        log.iter()
            .filter(|e| *e == &format!("start {path}"))
            .count()
    };
    // A batch per CHAMP level and per 256 nodes, and single gets only
    // for resolving "/many" itself (before: a request per child and per
    // CHAMP node on the way, about 700).
    let batches = count("/v1/blocks/get-many");
    assert!((3..=8).contains(&batches), "{batches} batches: {log:?}");
    let singles = count("/v1/blocks/get");
    assert!(singles < 30, "{singles} single gets: {log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_server_gets_typed_errors_never_wrong_data() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = TempDaemon::start(DAEMON, dir.path(), &[]);
    let (url, proxy) = start_proxy(daemon.url()).await;
    let alice = UserContext::signup(http(&url), "alice", "pw", None)
        .await
        .unwrap();
    let content = data(3, 3 << 20);
    alice.fs().write_file("/doc", &content).await.unwrap();
    alice.fs().write_file("/v", b"version 1").await.unwrap();

    // A flipped byte in any block: the read fails with a hash mismatch.
    let reader = UserContext::login(http(&url), "alice", "pw").await.unwrap();
    *proxy.attack.lock().unwrap() = Attack::FlipBlockByte;
    let mut out = Vec::new();
    let err = reader.fs().download("/doc", &mut out).await.unwrap_err();
    assert!(
        err.to_string().contains("hash") || err.to_string().contains("does not match"),
        "{err}"
    );
    assert!(
        out.is_empty() || content.starts_with(&out),
        "wrong bytes were returned"
    );
    *proxy.attack.lock().unwrap() = Attack::Honest;

    // An older pointer after a newer one was seen: a rollback error.
    let watcher = UserContext::login(http(&url), "alice", "pw").await.unwrap();
    assert_eq!(read_all(&watcher, "/v").await, b"version 1");
    alice.fs().write_file("/v", b"version 2").await.unwrap();
    assert_eq!(read_all(&watcher, "/v").await, b"version 2");
    *proxy.attack.lock().unwrap() = Attack::ReplayOldPointers;
    let err = watcher.fs().stat("/v").await.unwrap_err();
    assert!(err.to_string().contains("rollback"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_4xx_with_a_message_and_the_daemon_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = TempDaemon::start(DAEMON, dir.path(), &[]);
    let url = daemon.url().to_string();
    peergos_core::init_tls();
    let client = reqwest::Client::new();
    let user = UserContext::signup(http(&url), "alice", "pw", None)
        .await
        .unwrap();
    let owner = user.identity();

    let cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        ("POST", "/v1/blocks/put", b"not cbor".to_vec(), 400),
        ("POST", "/v1/blocks/get", vec![0xa1, 0x61], 400),
        ("POST", "/v1/signup", vec![0xa0], 400),
        ("GET", "/v1/pointers/nonsense/nonsense", vec![], 400),
        ("GET", "/v1/login/NOT_A_NAME!/params", vec![], 400),
        ("GET", "/v1/no/such/route", vec![], 404),
        // Valid CBOR, wrong signature: a pointer update signed by nobody.
        (
            "POST",
            &*Box::leak(format!("/v1/pointers/{owner}/{owner}").into_boxed_str()),
            forged_pointer(),
            400,
        ),
        // An oversized body.
        ("POST", "/v1/blocks/put", vec![0u8; 81 << 20], 413),
    ];
    for (method, path, body, expected) in cases {
        let request = match method {
            "GET" => client.get(format!("{url}{path}")),
            _ => client.post(format!("{url}{path}")).body(body),
        };
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.bytes().await.unwrap();
        assert_eq!(
            status,
            expected,
            "{method} {path}: {}",
            String::from_utf8_lossy(&text)
        );
        assert!(!text.is_empty(), "{method} {path}: empty error body");
    }
    // A login for an unknown user: refused like a wrong password.
    let unknown = UserContext::login(http(&url), "nobody", "pw").await;
    assert!(matches!(unknown, Err(Error::BadLogin)), "{unknown:?}");
    // Still serving.
    assert!(daemon.is_running());
    let info = http(&url).info().await.unwrap();
    assert_eq!(info.signup, "open");
    user.fs().write_file("/still", b"works").await.unwrap();
}

fn forged_pointer() -> Vec<u8> {
    use peergos_keys::{PublicKeyHash, SigningKeyPair};
    use peergos_pointers::{PointerUpdate, SignedPointer};
    let stranger = SigningKeyPair::random();
    let signed = SignedPointer::sign(
        &stranger,
        &PublicKeyHash::of(&stranger.public()),
        PointerUpdate {
            previous: None,
            current: None,
            sequence: 1,
        },
    )
    .unwrap();
    signed.to_bytes().unwrap()
}

#[tokio::test]
async fn an_unreachable_server_fails_fast_naming_the_address() {
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let started = Instant::now();
    let err = UserContext::login(http(&url), "alice", "pw")
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains(&url), "{err}");
}

#[test]
fn signup_tokens_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = TempDaemon::start(DAEMON, dir.path(), &["--signup", "token"]);
    let output = std::process::Command::new(DAEMON)
        .arg("--data-dir")
        .arg(dir.path())
        .arg("token")
        .output()
        .unwrap();
    assert!(output.status.success());
    let line = String::from_utf8(output.stdout).unwrap();
    let token = line.trim().rsplit("token=").next().unwrap().to_string();
    assert_eq!(token.len(), 32, "{line}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let refused = UserContext::signup(http(daemon.url()), "bob", "pw", None).await;
        assert_eq!(
            refused.err().as_ref().and_then(Error::code),
            Some(peergos_core::ErrorCode::TokenRequired)
        );
        UserContext::signup(http(daemon.url()), "bob", "pw", Some(&token))
            .await
            .unwrap();
    });
    // Quotas from the command line.
    let status = std::process::Command::new(DAEMON)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["quota", "bob", "12345"])
        .status()
        .unwrap();
    assert!(status.success());
    let usage = std::process::Command::new(DAEMON)
        .arg("--data-dir")
        .arg(dir.path())
        .arg("usage")
        .output()
        .unwrap();
    let usage = String::from_utf8(usage.stdout).unwrap();
    assert!(
        usage
            .lines()
            .any(|l| l.starts_with("bob\t") && l.ends_with("\t12345")),
        "{usage}"
    );
    let missing = std::process::Command::new(DAEMON)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["quota", "nobody", "1"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no user 'nobody'"));
    daemon.stop();
}

/// A fresh daemon on its own (p2p on, no bootstrap peers, `RUST_LOG`
/// unset as for a new user) logs no warnings: a network of one is the
/// normal start, not a fault.
#[test]
fn a_lone_daemon_starts_without_warnings() {
    use std::io::{BufRead, BufReader, Read};
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(DAEMON)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0"])
        .args(["--p2p-listen", "/ip4/127.0.0.1/tcp/0"])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut started = false;
    for line in stdout.lines() {
        if line.unwrap().contains("listening on") {
            started = true;
            break;
        }
    }
    assert!(started, "the daemon exited before it listened");
    // libp2p-kad's first bootstrap attempt comes 0.5 s after the listen
    // address; give it three times that.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(child.wait().unwrap().success(), "{stderr}");
    assert!(stderr.contains("serving"), "{stderr}");
    assert!(!stderr.contains("WARN"), "{stderr}");
}

/// `--direct-io false` and `--verify-reads true` are remembered in
/// config.toml, and the block files written through the page cache read
/// back after a restart that turns direct I/O on again (the files are the
/// same either way), with every read re-hashed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_io_is_a_setting_the_data_survives_changing() {
    let dir = tempfile::tempdir().unwrap();
    let settings = ["--direct-io", "false", "--verify-reads", "true"];
    let mut daemon = TempDaemon::start(DAEMON, dir.path(), &settings);
    let alice = UserContext::signup(http(daemon.url()), "alice", "password", None)
        .await
        .unwrap();
    // Three chunks: fragments of 1 MiB, stored as block files.
    let body = data(3, (12 << 20) + 4321);
    alice
        .fs()
        .upload("/big.bin", &body[..], Default::default())
        .await
        .unwrap();
    drop(alice);
    daemon.stop();
    let config = std::fs::read_to_string(dir.path().join("config.toml")).unwrap();
    assert!(config.contains("direct_io = false"), "{config}");
    assert!(config.contains("verify_reads = true"), "{config}");

    let daemon = TempDaemon::start(DAEMON, dir.path(), &["--direct-io", "true"]);
    let alice = UserContext::login(http(daemon.url()), "alice", "password")
        .await
        .unwrap();
    assert!(read_all(&alice, "/big.bin").await == body);
}
