//! A real S3-compatible server for tests: `moto_server` (PyPI's `moto`,
//! which `cargo xtask ci` installs), started once per test process on a
//! free loopback port and stopped when the process exits.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The credentials moto accepts (it checks none).
pub const ACCESS_KEY: &str = "testing";
/// The secret that goes with [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "testing";

/// How to start moto here: its script if it is on the PATH, else the
/// module (pip may put the script where the PATH does not look).
fn moto_command() -> Option<&'static str> {
    let works = |check: &str| {
        Command::new("sh")
            .args(["-c", check])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if works("command -v moto_server") {
        Some("moto_server")
    } else if works("python3 -c 'import moto.server'") {
        Some("python3 -m moto.server")
    } else {
        None
    }
}

fn start() -> Option<String> {
    let Some(moto) = moto_command() else {
        assert!(
            std::env::var_os("PEERGOS_REQUIRE_S3").is_none(),
            "an S3 server is required here but moto_server is not installed (pip install 'moto[server]')"
        );
        eprintln!("SKIPPED: moto_server is not installed (pip install 'moto[server]')");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    // The shell stops moto when this process is gone, however it ends.
    let script = format!(
        "{moto} -H 127.0.0.1 -p {port} >/dev/null 2>&1 & m=$!; \
         while kill -0 {parent} 2>/dev/null; do sleep 1; done; kill $m",
        parent = std::process::id()
    );
    let watchdog = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .expect("starting moto_server");
    // Kept for the life of the process; it ends on its own after it.
    static WATCHDOG: OnceLock<std::sync::Mutex<std::process::Child>> = OnceLock::new();
    let _ = WATCHDOG.set(std::sync::Mutex::new(watchdog));
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto_server did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(format!("http://127.0.0.1:{port}"))
}

/// The test server's endpoint, or None (having said SKIPPED) when moto is
/// not installed and not required (`PEERGOS_REQUIRE_S3`).
pub fn endpoint() -> Option<String> {
    static ENDPOINT: OnceLock<Option<String>> = OnceLock::new();
    ENDPOINT.get_or_init(start).clone()
}

/// Creates a fresh bucket on the server and returns its name.
pub fn bucket(endpoint: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "peergos-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let host = endpoint.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).expect("reaching moto");
    write!(
        stream,
        "PUT /{name} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("asking for a bucket");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("moto's answer");
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "creating bucket {name} failed: {answer}"
    );
    name
}
