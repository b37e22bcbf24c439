//! Cross-server benchmark: two release daemons on loopback, A (alice's
//! home and the PKI node) and C (carol's home, joined through A).
//!
//! Measures, in the same run:
//! - reading a shared file with carol's client through C, which fetches
//!   the blocks from A over libp2p block exchange (cold cache), and again
//!   (warm cache), against carol's client reading it from A directly;
//! - the latency of a small request (`space`) through C, forwarded to A
//!   over the p2p tunnel, against the same request sent to A.
//!
//! ```sh
//! cargo build --release --bin peergos-daemon
//! cargo run --release -p peergos-benches --example p2p [MIB]
//! ```
//!
//! Prints a markdown table for `docs/BENCHMARKS.md`. `BENCH_BIN_DIR=DIR`
//! takes the daemon from `DIR` instead of `target/release`, to compare
//! two builds the same hour.

use std::sync::Arc;
use std::time::{Duration, Instant};

use peergos_core::{HttpNetwork, NetworkAccess, Place, UserContext};
use peergos_testkit::cryptree::data;
use peergos_testkit::daemon::TempDaemon;

const MIB: usize = 1 << 20;

fn http(url: &str) -> Arc<dyn NetworkAccess> {
    Arc::new(HttpNetwork::new(url).unwrap())
}

async fn read_shared(user: &UserContext, path: &str) -> (usize, Duration) {
    let started = Instant::now();
    let Place::Fs { fs, path } = user.locate(path).await.unwrap() else {
        panic!("{path} is not a file");
    };
    let mut sink = tokio::io::sink();
    let size = fs.download(&path, &mut sink).await.unwrap();
    (size as usize, started.elapsed())
}

/// Wall-clock seconds since the Unix epoch (what `perf record -k
/// CLOCK_REALTIME` stamps its samples with).
fn unix_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The median of `rounds` timings of `op`.
async fn median<F, Fut>(rounds: usize, mut op: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        op().await;
        times.push(started.elapsed());
    }
    times.sort();
    times[rounds / 2]
}

#[tokio::main]
async fn main() {
    peergos_core::init_tls();
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(256);
    let [binary] = peergos_benches::release_binaries(["peergos-daemon"]);
    let (a_dir, c_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // The transport between the servers: BENCH_P2P=quic or tcp (default).
    let transport = std::env::var("BENCH_P2P").unwrap_or_else(|_| "tcp".into());
    let listen = match transport.as_str() {
        "quic" => "/ip4/127.0.0.1/udp/0/quic-v1",
        _ => "/ip4/127.0.0.1/tcp/0",
    };
    let quota = ["--default-quota", "1000000000000", "--p2p-listen", listen];
    let a = TempDaemon::start(&binary, a_dir.path(), &quota);
    let bootstrap = a.p2p_addrs()[0].clone();
    let c = TempDaemon::start(
        &binary,
        c_dir.path(),
        &[
            quota[0],
            quota[1],
            quota[2],
            quota[3],
            "--bootstrap",
            &bootstrap,
            "--pki-node",
            a.peer_id(),
        ],
    );
    println!("servers connected over {bootstrap}\n");

    let alice = UserContext::signup(http(a.url()), "alice", "alice pw", None)
        .await
        .unwrap();
    let carol = UserContext::signup(http(c.url()), "carol", "carol pw", None)
        .await
        .unwrap();
    carol.follow("alice").await.unwrap();
    alice.follow_requests().await.unwrap();
    alice.accept("carol", false).await.unwrap();
    carol.follow_requests().await.unwrap();
    alice.fs().mkdir("/big").await.unwrap();
    let file = data(7, mib * MIB);
    alice.fs().write_file("/big/file.bin", &file).await.unwrap();
    drop(file);
    alice.share("/alice/big", &["carol"], false).await.unwrap();
    let path = "/alice/big/file.bin";

    // carol's client straight to A (A holds every block).
    let direct = UserContext::login(http(a.url()), "carol", "carol pw")
        .await
        .unwrap();
    // CPU seconds used so far by carol's client (this process), A and C.
    let pids = [Some(std::process::id()), a.pid(), c.pid()];
    let cpu = || pids.map(|pid| pid.and_then(peergos_benches::cpu_seconds).unwrap_or(0.0));
    let used = |before: [f64; 3]| {
        let after = cpu();
        [0, 1, 2].map(|i| after[i] - before[i])
    };
    read_shared(&direct, path).await; // warm the page cache, as for C below
    let before = cpu();
    let (size, from_a) = read_shared(&direct, path).await;
    let direct_cpu = used(before);
    assert_eq!(size, mib * MIB);
    // carol's client through C: block exchange from A, then C's cache.
    let before = cpu();
    let cold_started = unix_seconds();
    let (size, cold) = read_shared(&carol, path).await;
    // For a profile of the cold read alone: `perf record -a -k
    // CLOCK_REALTIME` around the bench, then `perf report --time A,B`.
    eprintln!(
        "cold read: {cold_started:.6},{:.6} (CLOCK_REALTIME seconds)",
        unix_seconds()
    );
    let cold_cpu = used(before);
    assert_eq!(size, mib * MIB);
    let (_, warm) = read_shared(&carol, path).await;
    let rate = |d: Duration| mib as f64 / d.as_secs_f64();

    // A small request: alice's space, through C (tunnelled to A) and to A.
    let through_c = UserContext::login(http(c.url()), "alice", "alice pw")
        .await
        .unwrap();
    let rounds = 200;
    let tunnelled = median(rounds, || async {
        through_c.space().await.unwrap();
    })
    .await;
    let local = median(rounds, || async {
        alice.space().await.unwrap();
    })
    .await;

    println!("| measurement | result |");
    println!("|---|---|");
    println!(
        "| read {mib} MiB shared file, carol's client to A directly | {:.0} MiB/s |",
        rate(from_a)
    );
    println!(
        "| the same through C, fetched from A over libp2p (cold cache) | {:.0} MiB/s |",
        rate(cold)
    );
    println!(
        "| ratio cross-server / direct (target ≥ 0.5) | {:.2} |",
        rate(cold) / rate(from_a)
    );
    println!(
        "| the same through C again (C's cache) | {:.0} MiB/s ({:.2} of direct) |",
        rate(warm),
        rate(warm) / rate(from_a)
    );
    // Where the CPU went, in core-seconds per GiB read (two cores shared
    // by the three processes: a read cannot beat total / 2).
    let per_gib = |cpu: [f64; 3]| {
        let [client, a, c] = cpu.map(|s| s * 1024.0 / mib as f64);
        format!(
            "client {client:.2}, A {a:.2}, C {c:.2}; total {:.2}",
            client + a + c
        )
    };
    println!(
        "| CPU per GiB read directly (core-seconds) | {} |",
        per_gib(direct_cpu)
    );
    println!(
        "| CPU per GiB read through C, cold (core-seconds) | {} |",
        per_gib(cold_cpu)
    );
    println!(
        "| small request (`space`) to A, median of {rounds} | {:.2} ms |",
        local.as_secs_f64() * 1e3
    );
    println!(
        "| the same through C, tunnelled to A, median of {rounds} | {:.2} ms (+{:.2} ms) |",
        tunnelled.as_secs_f64() * 1e3,
        (tunnelled.as_secs_f64() - local.as_secs_f64()) * 1e3
    );
    drop((a, c));
}
