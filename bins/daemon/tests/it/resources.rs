//! The daemon under hostile load before anyone authenticates: idle,
//! trickling, stalled and oversized requests at once leave its memory
//! under the documented bound (docs/SECURITY.md) while normal requests
//! are still answered, and every held connection is let go in time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use peergos_api::{BlockHeader, PutHeader};
use peergos_core::{HttpNetwork, NetworkAccess, UserContext};
use peergos_keys::{PublicKeyHash, Signature};
use peergos_testkit::daemon::TempDaemon;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DAEMON: &str = env!("CARGO_BIN_EXE_peergos-daemon");

const MAX_CONNECTIONS: usize = 400;
const BODY_MEMORY_MIB: u64 = 96;
const TIMEOUT_SECS: u64 = 4;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A put body's start: the length prefix and a header declaring `blocks`.
fn put_head(owner: PublicKeyHash, blocks: Vec<u64>) -> Vec<u8> {
    let header = PutHeader {
        owner,
        writer: owner,
        transaction: [7; 16],
        blocks: blocks
            .into_iter()
            .map(|len| BlockHeader {
                codec: 0x55,
                hash: 0x1e,
                len,
                signature: Signature::from_bytes(&[0; 64]).unwrap(),
            })
            .collect(),
    };
    let header = peergos_ipld::cbor::to_vec(&header).unwrap();
    let mut out = (header.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&header);
    out
}

async fn connect(addr: &str) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

/// Sends a put request's headers and body start, declaring `total` body
/// bytes; returns the connection.
async fn start_put(addr: &str, head: &[u8], total: usize) -> TcpStream {
    let mut stream = connect(addr).await;
    let request = format!(
        "POST /v1/blocks/put HTTP/1.1\r\nhost: x\r\ncontent-type: application/vnd.peergos.put\r\ncontent-length: {}\r\n\r\n",
        head.len() + total
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(head).await.unwrap();
    stream
}

/// The status line of the answer on `stream`, or "closed".
async fn status_of(stream: &mut TcpStream) -> String {
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
        Ok(_) => "closed".into(),
        Err(_) => "no answer in 30 s".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_slow_and_oversized_requests_stay_within_the_memory_bound() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = TempDaemon::start(
        DAEMON,
        dir.path(),
        &[
            "--max-connections",
            &MAX_CONNECTIONS.to_string(),
            "--body-memory-mib",
            &BODY_MEMORY_MIB.to_string(),
            "--client-timeout-secs",
            &TIMEOUT_SECS.to_string(),
        ],
    );
    let url = daemon.url().to_string();
    let addr = url.trim_start_matches("http://").to_string();
    let pid = daemon.pid().unwrap();
    let net: Arc<dyn NetworkAccess> = Arc::new(HttpNetwork::new(&url).unwrap());
    let alice = UserContext::signup(Arc::clone(&net), "alice", "pw", None)
        .await
        .unwrap();
    alice.fs().write_file("/a", b"still here").await.unwrap();
    let owner = alice.identity();
    let baseline = rss_kib(pid);

    // A header declaring one 60 MiB block: refused before any memory is
    // set aside for it (it was allocated and zeroed, then waited for).
    let mut huge = Vec::new();
    for _ in 0..12 {
        huge.push(start_put(&addr, &put_head(owner, vec![60 << 20]), 60 << 20).await);
    }
    for stream in &mut huge {
        let status = status_of(stream).await;
        assert!(status.contains("400"), "one 60 MiB block: {status}");
    }

    // Puts of many whole-size blocks for a real account whose bodies
    // trickle in (a KiB a second, never stalling): they share the 96 MiB
    // budget, and the rest are told the server is busy.
    let mut held = Vec::new();
    for _ in 0..30 {
        let blocks = vec![1 << 20; 20];
        let mut stream = start_put(&addr, &put_head(owner, blocks), 20 << 20).await;
        held.push(tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            for _ in 0..(3 * TIMEOUT_SECS) {
                tokio::select! {
                    read = stream.read(&mut buf) => {
                        let n = read.unwrap_or(0);
                        return String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("closed").to_string();
                    }
                    () = tokio::time::sleep(Duration::from_secs(1)) => {
                        if stream.write_all(&[0u8; 1024]).await.is_err() {
                            return status_of(&mut stream).await;
                        }
                    }
                }
            }
            // Stop sending: the server lets go once the body stalls.
            status_of(&mut stream).await
        }));
    }
    // Idle connections and ones that trickle their headers.
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(connect(&addr).await);
    }
    let mut trickle = Vec::new();
    for _ in 0..50 {
        let mut s = connect(&addr).await;
        s.write_all(b"POST /v1/blocks/get HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        trickle.push(s);
    }
    // Small bodies that stop half-way.
    let mut half = Vec::new();
    for _ in 0..50 {
        let mut s = connect(&addr).await;
        s.write_all(b"POST /v1/blocks/get HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\nab")
            .await
            .unwrap();
        half.push(s);
    }

    // Normal requests are still answered meanwhile.
    let started = Instant::now();
    let reader = UserContext::login(Arc::clone(&net), "alice", "pw")
        .await
        .unwrap();
    let mut out = Vec::new();
    reader.fs().download("/a", &mut out).await.unwrap();
    assert_eq!(out, b"still here");
    assert!(started.elapsed() < Duration::from_secs(TIMEOUT_SECS * 4));

    // Memory stays under the bound: the body budget plus each
    // connection's buffers, over what the daemon used before.
    let peak = rss_kib(pid);
    let connections = (huge.len() + held.len() + idle.len() + trickle.len() + half.len()) as u64;
    let bound = BODY_MEMORY_MIB * 1024 + connections * 128 + 32 * 1024;
    eprintln!("RSS {baseline} KiB before, {peak} KiB under load; bound on the growth {bound} KiB");
    assert!(
        peak.saturating_sub(baseline) < bound,
        "RSS grew by {} KiB (bound {bound} KiB)",
        peak.saturating_sub(baseline)
    );

    // Every held put ends: 503 (no share of the budget) or 408 (its body
    // stalled once the sender stopped), never silence.
    let mut busy = 0;
    for task in held {
        let status = task.await.unwrap();
        assert!(
            status.contains("503") || status.contains("408"),
            "held put: {status}"
        );
        busy += usize::from(status.contains("503"));
    }
    assert!(
        busy >= 20,
        "only {busy} of 30 puts were told the server is busy"
    );
    for stream in &mut half {
        let status = status_of(stream).await;
        assert!(status.contains("408"), "half a body: {status}");
    }
    // Idle and trickling connections are closed by the server.
    for stream in idle.iter_mut().chain(trickle.iter_mut()) {
        let status = status_of(stream).await;
        assert!(
            status == "closed" || status.contains("408"),
            "held connection: {status}"
        );
    }

    // Over the connection cap, new connections are refused at once.
    let mut crowd = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        crowd.push(connect(&addr).await);
    }
    let mut extra = connect(&addr).await;
    let status = status_of(&mut extra).await;
    assert!(status.contains("503"), "over the cap: {status}");
    drop(crowd);
    // And once they go, clients are served again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = UserContext::login(net, "alice", "pw").await.unwrap();
    let mut out = Vec::new();
    again.fs().download("/a", &mut out).await.unwrap();
    assert_eq!(out, b"still here");
}

/// A reader that gives `data` and then never another byte: an upload
/// whose source (or client) died.
struct Stuck(std::io::Cursor<Vec<u8>>);

impl tokio::io::AsyncRead for Stuck {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.0.position() as usize == self.0.get_ref().len() {
            return std::task::Poll::Pending;
        }
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

/// Item 8 of the hostile-server issue: an upload that dies half-way holds
/// its bytes against the quota only for the upload lease, and `space`
/// shows them meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_upload_stops_holding_quota_after_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    let quota = (32u64 << 20).to_string();
    let daemon = TempDaemon::start(
        DAEMON,
        dir.path(),
        &["--default-quota", &quota, "--upload-lease-secs", "8"],
    );
    let net: Arc<dyn NetworkAccess> = Arc::new(HttpNetwork::new(daemon.url()).unwrap());
    let alice = Arc::new(
        UserContext::signup(Arc::clone(&net), "alice", "pw", None)
            .await
            .unwrap(),
    );
    let dead = {
        let alice = Arc::clone(&alice);
        tokio::spawn(async move {
            let reader = Stuck(std::io::Cursor::new(vec![7u8; 20 << 20]));
            alice.fs().upload("/dead", reader, Default::default()).await
        })
    };
    let started = Instant::now();
    let held = loop {
        let space = alice.space().await.unwrap();
        if space.pending >= 15 << 20 {
            break space.pending;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no pending bytes: {space:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    dead.abort();
    // While the lease holds, the dead upload's bytes count.
    let big = vec![9u8; 25 << 20];
    let refused = alice
        .fs()
        .upload("/next", &big[..], Default::default())
        .await;
    // Within the 8 s lease (the dead upload's last put was moments ago).
    let err = refused.expect_err("the quota counts the dead upload");
    assert!(
        err.to_string().contains("quota") || err.to_string().contains("used"),
        "{err}"
    );
    assert!(held <= 20 << 20);
    // Once it lapses, nothing is held and the upload fits.
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(alice.space().await.unwrap().pending, 0);
    alice
        .fs()
        .upload("/next", &big[..], Default::default())
        .await
        .unwrap();
    let mut out = Vec::new();
    alice.fs().download("/next", &mut out).await.unwrap();
    assert!(out == big);
}
