//! Several daemons as one service: three replicas sharing one Postgres
//! database, one S3 bucket and one server key, behind a plain round-robin
//! proxy. Eight users sign up and upload through the proxy while one
//! replica collects garbage on a loop and another is killed and started
//! again; every acknowledged file then reads back byte for byte through
//! every replica, and the next collection is clean.
//!
//! Run with `cargo xtask integration` (which `cargo xtask ci` runs), with
//! the project's own Postgres and S3 test services; ignored by a plain
//! `cargo test`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use peergos_core::{HttpNetwork, NetworkAccess, UserContext};
use peergos_testkit::cryptree::data;
use peergos_testkit::daemon::TempDaemon;
use peergos_testkit::hostile::HostileProxy;

const DAEMON: &str = env!("CARGO_BIN_EXE_peergos-daemon");

/// The S3 credentials of the test server, for the daemons' environment.
const S3_ENV: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", peergos_testkit::s3::ACCESS_KEY),
    ("AWS_SECRET_ACCESS_KEY", peergos_testkit::s3::SECRET_KEY),
];

/// A file whose upload was acknowledged: the user's number, its path and
/// bytes.
type Uploaded = (usize, String, Vec<u8>);

const USERS: usize = 8;
const FILES: usize = 6;

fn http(url: &str) -> Arc<dyn NetworkAccess> {
    Arc::new(HttpNetwork::new(url).unwrap())
}

/// The files user `u` uploads: small ones and one of a few chunks.
fn file_of(u: usize, f: usize) -> (String, Vec<u8>) {
    let size = if f == 0 {
        (6 << 20) + 123
    } else {
        1000 + 9000 * f + u
    };
    (format!("/f{f}.bin"), data((u * 16 + f) as u8, size))
}

/// Does `attempt` until it succeeds, at most `times`: what a client does
/// after a replica died under it.
async fn persist<T, E, F, Fut>(what: &str, times: usize, mut attempt: F) -> T
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut last = String::new();
    for _ in 0..times {
        match attempt().await {
            Ok(value) => return value,
            Err(e) => {
                last = e.to_string();
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
    panic!("{what}: gave up after {times} attempts: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "multi-daemon scenario: run by cargo xtask integration"]
async fn replicas_on_shared_postgres_and_s3_lose_nothing() {
    let Some(database) = peergos_testkit::postgres::database().await else {
        return;
    };
    let Some(endpoint) = peergos_testkit::s3::endpoint() else {
        return;
    };
    let bucket = peergos_testkit::s3::bucket(&endpoint);
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let args = [
        "--postgres",
        database.as_str(),
        "--s3-endpoint",
        endpoint.as_str(),
        "--s3-bucket",
        bucket.as_str(),
        "--gc-interval-hours",
        "0",
        "--p2p-listen",
        "none",
    ];
    let a = TempDaemon::start_with_env(DAEMON, dirs[0].path(), &args, &S3_ENV);
    // One service: the replicas share the server key.
    for dir in &dirs[1..] {
        std::fs::copy(
            dirs[0].path().join("server.key"),
            dir.path().join("server.key"),
        )
        .unwrap();
    }
    let b = TempDaemon::start_with_env(DAEMON, dirs[1].path(), &args, &S3_ENV);
    let mut c = TempDaemon::start_with_env(DAEMON, dirs[2].path(), &args, &S3_ENV);
    let proxy = Arc::new(HostileProxy::round_robin(&[a.url(), b.url(), c.url()]).await);
    eprintln!("three replicas up behind {}", proxy.url());

    // A collects on a loop; every collection must succeed or find another
    // one running.
    let stop = Arc::new(AtomicBool::new(false));
    let collections = {
        let (url, stop) = (a.url().to_string(), Arc::clone(&stop));
        let token_file = dirs[0].path().join("admin.token");
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut ran = 0;
            while !stop.load(Ordering::Relaxed) {
                let token = std::fs::read_to_string(&token_file).unwrap();
                let answer = client
                    .post(format!("{url}/v1/admin/gc"))
                    .header("authorization", format!("Bearer {}", token.trim()))
                    .send()
                    .await
                    .unwrap();
                let status = answer.status().as_u16();
                let text = answer.text().await.unwrap_or_default();
                assert!(
                    status == 200 || status == 409,
                    "a collection failed ({status}): {text}"
                );
                ran += usize::from(status == 200);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            ran
        })
    };

    // Eight users sign up and upload through the proxy, concurrently.
    let acknowledged: Arc<Mutex<Vec<Uploaded>>> = Arc::default();
    let mut users = Vec::new();
    for u in 0..USERS {
        let (proxy, acknowledged) = (Arc::clone(&proxy), Arc::clone(&acknowledged));
        users.push(tokio::spawn(async move {
            let name = format!("user{u}");
            let user = persist("signup", 20, || {
                UserContext::signup(http(proxy.url()), &name, "pw", None)
            })
            .await;
            for f in 0..FILES {
                let (path, bytes) = file_of(u, f);
                persist("upload", 30, || user.fs().write_file(&path, &bytes)).await;
                acknowledged.lock().unwrap().push((u, path, bytes));
            }
        }));
    }
    // Meanwhile C dies and comes back on another port.
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.kill();
    eprintln!("killed C");
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.restart();
    proxy.set_upstreams(&[a.url(), b.url(), c.url()]);
    eprintln!("C restarted at {}", c.url());
    let started = Instant::now();
    for user in users {
        user.await.unwrap();
    }
    eprintln!("uploads done in {:?}", started.elapsed());
    stop.store(true, Ordering::Relaxed);
    let ran = collections.await.unwrap();
    eprintln!("{ran} collections ran on A during the uploads");
    assert!(ran > 0, "no collection ran during the uploads");

    // Every acknowledged file, through every replica.
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert_eq!(acknowledged.len(), USERS * FILES);
    let check = |url: String| {
        let acknowledged = acknowledged.clone();
        async move {
            for u in 0..USERS {
                let user = UserContext::login(http(&url), &format!("user{u}"), "pw")
                    .await
                    .unwrap_or_else(|e| panic!("user{u} through {url}: {e}"));
                for (_, path, bytes) in acknowledged.iter().filter(|(owner, _, _)| *owner == u) {
                    let mut got = Vec::new();
                    user.fs()
                        .download(path, &mut got)
                        .await
                        .unwrap_or_else(|e| panic!("user{u}{path} through {url}: {e}"));
                    assert!(got == *bytes, "user{u}{path} through {url} differs");
                }
            }
        }
    };
    for url in [a.url(), b.url(), c.url()] {
        check(url.to_string()).await;
    }
    eprintln!("every acknowledged file reads back through every replica");

    // Rate limits count over the replicas: one client may ask for login
    // parameters 20 times at once whichever replicas answer (it was 20
    // per replica).
    let client = reqwest::Client::new();
    let mut refused = 0;
    for _ in 0..26 {
        let answer = client
            .get(format!("{}/v1/login/user0/params", proxy.url()))
            .header("x-real-ip", "203.0.113.7")
            .send()
            .await
            .unwrap();
        refused += usize::from(answer.status().as_u16() == 429);
    }
    assert!(refused >= 5, "only {refused} of 26 were limited");

    // The next collection, on B, is clean, and loses nothing.
    let token = std::fs::read_to_string(dirs[1].path().join("admin.token")).unwrap();
    let answer = reqwest::Client::new()
        .post(format!("{}/v1/admin/gc", b.url()))
        .header("authorization", format!("Bearer {}", token.trim()))
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    assert_eq!(status, 200, "{}", answer.text().await.unwrap_or_default());
    check(c.url().to_string()).await;
}
