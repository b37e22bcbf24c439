//! Running a server: garbage collection on demand (`peergos-daemon gc`),
//! scrubbing (`peergos-daemon scrub`), `/metrics`, the admin token, and
//! the rate limits on signup and login.

use std::process::Command;
use std::sync::Arc;

use peergos_core::{HttpNetwork, NetworkAccess, UserContext};
use peergos_testkit::cryptree::data;
use peergos_testkit::daemon::TempDaemon;

const DAEMON: &str = env!("CARGO_BIN_EXE_peergos-daemon");

fn http(url: &str) -> Arc<dyn NetworkAccess> {
    Arc::new(HttpNetwork::new(url).unwrap())
}

/// Runs `peergos-daemon COMMAND` against the daemon on `dir`.
fn admin(dir: &std::path::Path, command: &str) -> std::process::Output {
    Command::new(DAEMON)
        .arg("--data-dir")
        .arg(dir)
        .arg(command)
        .output()
        .unwrap()
}

fn gc(dir: &std::path::Path) -> std::process::Output {
    admin(dir, "gc")
}

/// The S3 credentials of the test server, for the daemon's environment.
const S3_ENV: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", peergos_testkit::s3::ACCESS_KEY),
    ("AWS_SECRET_ACCESS_KEY", peergos_testkit::s3::SECRET_KEY),
];

/// Signs up alice and leaves a kept file of `kept` bytes (seed 1) and the
/// garbage of a deleted one of `gone` bytes.
async fn kept_and_deleted(url: &str, kept: usize, gone: usize) -> UserContext {
    let alice = UserContext::signup(http(url), "alice", "pw", None)
        .await
        .unwrap();
    alice
        .fs()
        .write_file("/kept.bin", &data(1, kept))
        .await
        .unwrap();
    alice
        .fs()
        .write_file("/gone.bin", &data(2, gone))
        .await
        .unwrap();
    alice.fs().rm("/gone.bin").await.unwrap();
    alice
}

/// An HTTP client for the daemon's admin and metrics routes.
fn client() -> reqwest::Client {
    peergos_core::init_tls();
    reqwest::Client::new()
}

/// The daemon's `/metrics` text.
async fn metrics(client: &reqwest::Client, url: &str) -> String {
    client
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The first number after `word ` in `text`.
fn number_after(text: &str, word: &str) -> u64 {
    text.split(&format!("{word} "))
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after '{word}' in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_on_demand_frees_deleted_files_and_metrics_show_it() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = TempDaemon::start(DAEMON, dir.path(), &["--gc-interval-hours", "0"]);
    let alice = kept_and_deleted(daemon.url(), 1 << 20, 4 << 20).await;

    let out = gc(dir.path());
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(number_after(&said, "deleted") > 0, "{said}");
    let freed: u64 = said
        .split('(')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(freed >= 4 << 20, "the deleted 4 MiB were freed: {said}");
    // A second run finds nothing; the kept file reads back.
    let again = String::from_utf8_lossy(&gc(dir.path()).stdout).to_string();
    assert_eq!(number_after(&again, "deleted"), 0, "{again}");
    assert_eq!(
        alice.fs().read("/kept.bin", 0, 2 << 20).await.unwrap(),
        data(1, 1 << 20)
    );

    // /metrics: requests by route, users, usage, the last collection.
    let client = client();
    let metrics = metrics(&client, daemon.url()).await;
    for needle in [
        "peergos_http_requests_total{route=\"/v1/blocks/put\",status=\"200\"}",
        "peergos_http_request_duration_seconds_count{route=\"/v1/pointers/{owner}/{writer}\"}",
        "peergos_http_received_bytes_total{route=\"/v1/blocks/put\"}",
        "peergos_users 1",
        "peergos_gc_runs_total 2",
        "peergos_gc_last_deleted_blocks 0",
    ] {
        assert!(metrics.contains(needle), "no {needle} in\n{metrics}");
    }
    let received: f64 = metrics
        .lines()
        .find(|l| l.starts_with("peergos_http_received_bytes_total{route=\"/v1/blocks/put\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(
        received >= f64::from(5 << 20),
        "the uploads' bytes: {received}"
    );

    // The admin route needs the token.
    let refused = client
        .post(format!("{}/v1/admin/gc", daemon.url()))
        .header("authorization", "Bearer not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrub_names_a_rotten_block_file_and_clients_refuse_it() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = TempDaemon::start(DAEMON, dir.path(), &["--gc-interval-hours", "0"]);
    let alice = UserContext::signup(http(daemon.url()), "alice", "pw", None)
        .await
        .unwrap();
    alice
        .fs()
        .write_file("/big.bin", &data(5, 3 << 20))
        .await
        .unwrap();
    let clean = admin(dir.path(), "scrub");
    let said = String::from_utf8_lossy(&clean.stdout).to_string();
    assert!(clean.status.success(), "{said}");
    assert!(number_after(&said, "checked") > 3, "{said}");
    assert!(said.contains("; 0 corrupt"), "{said}");

    // Rot the largest block file: a fragment of the file.
    let shards = dir.path().join("blocks").join("blocks");
    let largest = std::fs::read_dir(&shards)
        .unwrap()
        .flat_map(|shard| std::fs::read_dir(shard.unwrap().path()).unwrap())
        .map(|entry| entry.unwrap().path())
        .max_by_key(|path| std::fs::metadata(path).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&largest).unwrap();
    bytes[4096] ^= 1;
    std::fs::write(&largest, &bytes).unwrap();

    let found = admin(dir.path(), "scrub");
    let said = String::from_utf8_lossy(&found.stdout).to_string();
    let name = largest.file_name().unwrap().to_str().unwrap();
    assert!(!found.status.success(), "{said}");
    assert!(said.contains(&format!("corrupt: {name}")), "{said}");
    assert!(said.contains("; 1 corrupt"), "{said}");
    let why = String::from_utf8_lossy(&found.stderr);
    assert!(why.contains("restore them from a backup"), "{why}");

    // A client that reads the file refuses the rotten fragment.
    let again = UserContext::login(http(daemon.url()), "alice", "pw")
        .await
        .unwrap();
    assert!(again.fs().read("/big.bin", 0, 3 << 20).await.is_err());

    // Monitoring sees the last scrub's finding.
    let client = client();
    let metrics = metrics(&client, daemon.url()).await;
    assert!(
        metrics.contains("\npeergos_scrub_last_corrupt_blocks 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\npeergos_scrub_last_finished_seconds 1"),
        "{metrics}"
    );

    // Scrubbing needs the admin token.
    let refused = client
        .post(format!("{}/v1/admin/scrub", daemon.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signup_and_login_are_rate_limited_per_client() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = TempDaemon::start(DAEMON, dir.path(), &[]);
    peergos_core::init_tls();
    let client = reqwest::Client::new();
    // Behind a reverse proxy on this machine, clients are told apart by
    // X-Real-IP. A burst of signups (malformed bodies still count) from
    // one client runs out; another client is not affected.
    let post = |ip: &'static str| {
        client
            .post(format!("{}/v1/signup", daemon.url()))
            .header("x-real-ip", ip)
            .body(vec![0u8])
            .send()
    };
    for _ in 0..peergos_server::SIGNUP_BURST {
        assert_eq!(post("203.0.113.7").await.unwrap().status().as_u16(), 400);
    }
    let limited = post("203.0.113.7").await.unwrap();
    assert_eq!(limited.status().as_u16(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    assert_eq!(post("203.0.113.8").await.unwrap().status().as_u16(), 400);
    // The login routes have their own, larger burst.
    let params = |ip: &'static str| {
        client
            .get(format!("{}/v1/login/nobody/params", daemon.url()))
            .header("x-real-ip", ip)
            .send()
    };
    for _ in 0..peergos_server::LOGIN_BURST {
        assert_ne!(params("203.0.113.7").await.unwrap().status().as_u16(), 429);
    }
    assert_eq!(params("203.0.113.7").await.unwrap().status().as_u16(), 429);
    // Clients on this machine without a proxy header are not limited.
    for _ in 0..10 {
        UserContext::login(http(daemon.url()), "nobody", "pw")
            .await
            .unwrap_err();
    }
    let metrics = client
        .get(format!("{}/metrics", daemon.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("peergos_rate_limited_total{route=\"/v1/signup\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_in_s3_survive_a_restart_and_never_touch_the_disk() {
    let Some(endpoint) = peergos_testkit::s3::endpoint() else {
        return;
    };
    let bucket = peergos_testkit::s3::bucket(&endpoint);
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--s3-endpoint",
        endpoint.as_str(),
        "--s3-bucket",
        bucket.as_str(),
        "--s3-prefix",
        "pg/",
        "--gc-interval-hours",
        "0",
    ];
    let mut daemon = TempDaemon::start_with_env(DAEMON, dir.path(), &args, &S3_ENV);
    kept_and_deleted(daemon.url(), 7 << 20, 2 << 20).await;
    // No block file under the data directory.
    let blocks_dir = dir.path().join("blocks");
    let on_disk = std::fs::read_dir(&blocks_dir)
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(
        on_disk,
        0,
        "blocks were written to {}",
        blocks_dir.display()
    );

    // The bucket holds them, under the prefix: 7 MiB and more.
    peergos_core::init_tls();
    let listing = reqwest::get(format!("{endpoint}/{bucket}?list-type=2&prefix=pg/blocks/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(listing.matches("<Key>pg/blocks/").count() > 7, "{listing}");

    // A restart without the flags: config.toml remembers the bucket.
    daemon.stop();
    let mut daemon = TempDaemon::start_with_env(DAEMON, dir.path(), &[], &S3_ENV);
    let again = UserContext::login(http(daemon.url()), "alice", "pw")
        .await
        .unwrap();
    assert_eq!(
        again.fs().read("/kept.bin", 0, 8 << 20).await.unwrap(),
        data(1, 7 << 20)
    );
    // Garbage collection lists and deletes objects in the bucket.
    let out = gc(dir.path());
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(number_after(&said, "deleted") >= 2, "{said}");
    assert_eq!(
        again.fs().read("/kept.bin", 0, 8 << 20).await.unwrap(),
        data(1, 7 << 20)
    );
    daemon.stop();

    // A files data directory refuses to switch to S3 in place.
    let files = tempfile::tempdir().unwrap();
    let mut plain = TempDaemon::start(DAEMON, files.path(), &[]);
    plain.stop();
    let refused = Command::new(DAEMON)
        .arg("--data-dir")
        .arg(files.path())
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("keeps its blocks in files"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_in_postgres_and_blocks_in_s3() {
    let Some(database) = peergos_testkit::postgres::database().await else {
        return;
    };
    let Some(endpoint) = peergos_testkit::s3::endpoint() else {
        return;
    };
    let bucket = peergos_testkit::s3::bucket(&endpoint);
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--postgres",
        database.as_str(),
        "--s3-endpoint",
        endpoint.as_str(),
        "--s3-bucket",
        bucket.as_str(),
        "--gc-interval-hours",
        "0",
    ];
    let mut daemon = TempDaemon::start_with_env(DAEMON, dir.path(), &args, &S3_ENV);
    let alice = UserContext::signup(http(daemon.url()), "alice", "pw", None)
        .await
        .unwrap();
    alice
        .fs()
        .write_file("/notes.txt", b"kept in S3, found through Postgres")
        .await
        .unwrap();
    assert!(!dir.path().join("pointers.sqlite").exists());
    assert!(!dir.path().join("accounts.sqlite").exists());
    let (client, connection) = tokio_postgres::connect(&database, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let count: i64 = client
        .query_one("SELECT count(*) FROM pointers", &[])
        .await
        .unwrap()
        .get(0);
    assert!(count >= 2, "the PKI's and alice's pointers: {count}");
    let users: Vec<String> = client
        .query("SELECT username FROM users", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(users, vec!["alice".to_string()]);

    // The admin commands reach the same database, and need no S3
    // credentials: they touch accounts only.
    let admin = |args: &[&str]| {
        let out = Command::new(DAEMON)
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .env("PEERGOS_POSTGRES", &database)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    admin(&["quota", "alice", "123456789"]);
    let usage = admin(&["usage"]);
    assert!(
        usage.starts_with("alice\t") && usage.trim_end().ends_with("\t123456789"),
        "{usage}"
    );
    let link = admin(&["token"]);
    let token = link.trim().rsplit('=').next().unwrap();
    let tokens: i64 = client
        .query_one("SELECT count(*) FROM tokens WHERE token = $1", &[&token])
        .await
        .unwrap()
        .get(0);
    assert_eq!(tokens, 1, "{link}");

    // The password is not written down; the choice is.
    daemon.stop();
    let config = std::fs::read_to_string(dir.path().join("config.toml")).unwrap();
    assert!(
        config.contains("pointers = \"postgres\"") && !config.contains(&database),
        "{config}"
    );
    let refused = Command::new(DAEMON)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("PEERGOS_POSTGRES")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("keeps its pointers and accounts in Postgres"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let daemon = TempDaemon::start_with_env(
        DAEMON,
        dir.path(),
        &["--postgres", database.as_str()],
        &S3_ENV,
    );
    let again = UserContext::login(http(daemon.url()), "alice", "pw")
        .await
        .unwrap();
    assert_eq!(
        again.fs().read("/notes.txt", 0, 100).await.unwrap(),
        b"kept in S3, found through Postgres"
    );
}
