//! End-to-end benchmark: a release `peergos-daemon` on loopback, driven
//! over HTTP by `peergos-core`, with baselines measured in the same run.
//!
//! ```sh
//! cargo build --release --bin peergos-daemon --bin peergos-shell
//! cargo run --release -p peergos-benches --example e2e [SMALL_FILES]
//! ```
//!
//! Prints a markdown table for `docs/BENCHMARKS.md`. `BENCH_BIN_DIR=DIR`
//! takes the two binaries from `DIR` instead of `target/release`, to
//! compare two builds the same hour.

use std::sync::Arc;
use std::time::Instant;

use peergos_core::{HttpNetwork, NetworkAccess, UserContext};
use peergos_ipld::{Cid, Codec, HashFn};
use peergos_keys::{LoginParams, SymmetricKey};
use peergos_testkit::cryptree::data;
use peergos_testkit::daemon::TempDaemon;

const MIB: usize = 1 << 20;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// `remaining` bytes of a repeated 64 MiB pattern (each 64 MiB slice
/// starting with its own round number, so no two are equal).
struct Generated {
    block: Vec<u8>,
    position: usize,
    remaining: u64,
}

impl tokio::io::AsyncRead for Generated {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        let start = this.position % this.block.len();
        let n = buf
            .remaining()
            .min(this.block.len() - start)
            .min(this.remaining as usize);
        buf.put_slice(&this.block[start..start + n]);
        this.position += n;
        this.remaining -= n as u64;
        if this.position.is_multiple_of(this.block.len()) && n > 0 {
            // The next 64 MiB differ from the last: a round number at the
            // start (rotating the whole pattern cost as much as making the
            // data, on the cores the upload needs).
            let round = (this.position / this.block.len()) as u64;
            this.block[..8].copy_from_slice(&round.to_le_bytes());
        }
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::main]
async fn main() {
    let small_files: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let [binary, shell] = peergos_benches::release_binaries(["peergos-daemon", "peergos-shell"]);
    let dir = tempfile::tempdir().unwrap();
    let mut rows: Vec<(String, String)> = Vec::new();

    // Baselines in this run.
    let params = LoginParams::new_random();
    let started = Instant::now();
    params.derive("bench", "password").unwrap();
    let scrypt = started.elapsed().as_secs_f64();
    rows.push((
        "scrypt alone (log2 N = 17)".into(),
        format!("{:.0} ms", scrypt * 1e3),
    ));
    let key = SymmetricKey::random();
    let piece = data(1, MIB);
    let started = Instant::now();
    for _ in 0..256 {
        std::hint::black_box(Cid::hash_with(
            HashFn::for_new(Codec::Raw),
            Codec::Raw,
            &key.encrypt(&piece),
        ));
    }
    let limit = 256.0 / started.elapsed().as_secs_f64();
    rows.push((
        "limit: encrypt + hash on one core".into(),
        format!("{limit:.0} MiB/s"),
    ));

    let started = Instant::now();
    let mut daemon = TempDaemon::start(&binary, dir.path(), &["--default-quota", "1000000000000"]);
    rows.push((
        "daemon start, fresh data dir".into(),
        format!("{:.0} ms", started.elapsed().as_secs_f64() * 1e3),
    ));
    let pid = daemon.pid().expect("the daemon runs");
    rows.push((
        "daemon RSS, idle".into(),
        format!("{} MiB", rss_kib(pid) / 1024),
    ));
    let net = || -> Arc<dyn NetworkAccess> { Arc::new(HttpNetwork::new(daemon.url()).unwrap()) };

    let started = Instant::now();
    let user = UserContext::signup(net(), "bench", "password", None)
        .await
        .unwrap();
    rows.push((
        "signup".into(),
        format!("{:.0} ms", started.elapsed().as_secs_f64() * 1e3),
    ));
    // Login against scrypt alone, alternating, three of each: one of
    // either varies by a tenth from run to run on a shared machine.
    let (mut logins, mut alone) = (Vec::new(), vec![scrypt]);
    for round in 0..3 {
        let started = Instant::now();
        let user2 = UserContext::login(net(), "bench", "password")
            .await
            .unwrap();
        logins.push(started.elapsed().as_secs_f64());
        drop(user2);
        if round < 2 {
            let started = Instant::now();
            params.derive("bench", "password").unwrap();
            alone.push(started.elapsed().as_secs_f64());
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (login, scrypt) = (median(&mut logins), median(&mut alone));
    rows.push((
        "login".into(),
        format!(
            "{:.0} ms against {:.0} ms for scrypt alone (medians of 3): {:.2} x (target ≤ 1.2)",
            login * 1e3,
            scrypt * 1e3,
            login / scrypt
        ),
    ));

    // 1 GiB up and down.
    let gib = 1024;
    let reader = Generated {
        block: data(9, 64 * MIB),
        position: 0,
        remaining: (gib * MIB) as u64,
    };
    // CPU seconds used so far by the client (this process) and the daemon.
    let cpu = || [std::process::id(), pid].map(|p| peergos_benches::cpu_seconds(p).unwrap_or(0.0));
    // Core-seconds per GiB moved, against the two cores the wall time
    // offered: how far a transfer is from being bound by the CPU.
    let cpu_row = |what: &str, before: [f64; 2], wall: f64| {
        let after = cpu();
        let [client, daemon] = [0, 1].map(|i| (after[i] - before[i]) * 1024.0 / gib as f64);
        let wall = wall * 1024.0 / gib as f64;
        (
            format!("CPU per GiB {what} (core-seconds)"),
            format!(
                "client {client:.2}, daemon {daemon:.2}; {:.2} of the {:.2} two cores give",
                client + daemon,
                2.0 * wall
            ),
        )
    };
    let before = cpu();
    let started = Instant::now();
    user.fs()
        .upload("/big", reader, Default::default())
        .await
        .unwrap();
    let up_wall = started.elapsed().as_secs_f64();
    let up_cpu = cpu_row("uploaded", before, up_wall);
    let up = gib as f64 / up_wall;
    let load_rss = rss_kib(pid) / 1024;
    rows.push((
        "upload 1 GiB".into(),
        format!(
            "{up:.0} MiB/s, {:.2} of the limit (target ≥ 400 MiB/s)",
            up / limit
        ),
    ));
    let before = cpu();
    let started = Instant::now();
    let mut sink = tokio::io::sink();
    user.fs().download("/big", &mut sink).await.unwrap();
    let down_wall = started.elapsed().as_secs_f64();
    let down_cpu = cpu_row("downloaded", before, down_wall);
    let down = gib as f64 / down_wall;
    rows.push((
        "download 1 GiB".into(),
        format!(
            "{down:.0} MiB/s, {:.2} of the limit (target ≥ 600 MiB/s)",
            down / limit
        ),
    ));
    rows.push(up_cpu);
    rows.push(down_cpu);
    rows.push((
        "daemon RSS after the 1 GiB transfers".into(),
        format!("{load_rss} MiB"),
    ));
    user.fs().rm("/big").await.unwrap();

    // The same through `peergos-shell`, as a user runs it: from a local file
    // and into a new one (fsynced), login included, and the time after
    // the median login above.
    let local_big = dir.path().join("big.bin");
    // A baseline: this disk writing a new 1 GiB file and syncing it, as
    // `get` must.
    let started = Instant::now();
    {
        use std::io::Write as _;
        let mut block = data(9, 64 * MIB);
        let mut out = std::io::BufWriter::new(std::fs::File::create(&local_big).unwrap());
        for round in 0..(gib / 64) as u64 {
            block[..8].copy_from_slice(&round.to_le_bytes());
            out.write_all(&block).unwrap();
        }
        out.into_inner().unwrap().sync_all().unwrap();
    }
    let disk = gib as f64 / started.elapsed().as_secs_f64();
    rows.push((
        "baseline: writing a new 1 GiB local file and syncing it".into(),
        format!("{disk:.0} MiB/s"),
    ));
    // A `peergos-shell` command as the bench user, checked; its output.
    let run_shell = |args: &[&std::ffi::OsStr]| {
        let output = std::process::Command::new(&shell)
            .args(["--server", daemon.url(), "-u", "bench"])
            .args(args)
            .env("PEERGOS_PASSWORD", "password")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let shell_row = |what: &str, wall: f64| {
        (
            format!("`peergos-shell {what}` of a 1 GiB file (login included)"),
            format!(
                "{:.2} s: {:.0} MiB/s, {:.0} MiB/s after the login",
                wall,
                gib as f64 / wall,
                gib as f64 / (wall - login).max(1e-3)
            ),
        )
    };
    let started = Instant::now();
    run_shell(&[
        "put".as_ref(),
        local_big.as_os_str(),
        "/bench/big-shell".as_ref(),
    ]);
    rows.push(shell_row("put", started.elapsed().as_secs_f64()));
    let got_big = dir.path().join("big-got.bin");
    let started = Instant::now();
    run_shell(&[
        "get".as_ref(),
        "/bench/big-shell".as_ref(),
        got_big.as_os_str(),
    ]);
    rows.push(shell_row("get", started.elapsed().as_secs_f64()));
    {
        use std::io::Read as _;
        let (mut a, mut b) = (
            std::fs::File::open(&local_big).unwrap(),
            std::fs::File::open(&got_big).unwrap(),
        );
        let (mut x, mut y) = (vec![0u8; 8 * MIB], vec![0u8; 8 * MIB]);
        loop {
            let n = a.read(&mut x).unwrap();
            b.read_exact(&mut y[..n]).unwrap();
            assert!(x[..n] == y[..n], "the shell's download differs");
            if n == 0 {
                break;
            }
        }
        assert_eq!(b.read(&mut y).unwrap(), 0, "the shell's download is longer");
    }
    std::fs::remove_file(&local_big).unwrap();
    std::fs::remove_file(&got_big).unwrap();
    user.fs().rm("/big-shell").await.unwrap();

    // A folder of small files, uploaded with `peergos-shell put` as a
    // user would (batches of small files, one commit each).
    let local = dir.path().join("ingest");
    std::fs::create_dir_all(&local).unwrap();
    let mut ingest_bytes = 0u64;
    for i in 0..small_files {
        let size = 1024 + (i * 7919) % (63 * 1024);
        ingest_bytes += size as u64;
        std::fs::write(local.join(format!("f{i:05}")), data(i as u8, size)).unwrap();
    }
    // `peergos-shell put` of the folder, checked; its JSON report.
    let put = || {
        run_shell(&[
            "--json".as_ref(),
            "put".as_ref(),
            local.as_os_str(),
            "/bench".as_ref(),
        ])
    };
    let started = Instant::now();
    let report = put();
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        report.contains(&format!("\"files\":{small_files}")),
        "{report}"
    );
    let rate = small_files as f64 / seconds;
    rows.push((
        format!("ingest {small_files} files of 1–64 KiB with `peergos-shell put` (login included)"),
        format!(
            "{rate:.0} files/s, {:.1} MiB/s",
            ingest_bytes as f64 / MIB as f64 / seconds
        ),
    ));
    let started = Instant::now();
    let again = put();
    assert!(again.contains("\"files\":0"), "{again}");
    rows.push((
        format!("`put` of the same {small_files} files again (all unchanged, login included)"),
        format!("{:.0} ms", started.elapsed().as_secs_f64() * 1e3),
    ));
    let fresh = UserContext::login(net(), "bench", "password")
        .await
        .unwrap();
    let started = Instant::now();
    let n = fresh.fs().ls("/ingest").await.unwrap().len();
    rows.push((
        format!("ls of a {n}-entry directory, cold client"),
        format!("{:.0} ms", started.elapsed().as_secs_f64() * 1e3),
    ));
    let started = Instant::now();
    fresh.fs().ls("/ingest").await.unwrap();
    rows.push((
        format!("ls of a {n}-entry directory, warm"),
        format!("{:.0} ms", started.elapsed().as_secs_f64() * 1e3),
    ));

    let started = Instant::now();
    daemon.restart();
    rows.push((
        "daemon restart on the filled data dir (stop + start)".into(),
        format!("{:.0} ms", started.elapsed().as_secs_f64() * 1e3),
    ));
    rows.push((
        "daemon start alone".into(),
        format!("{:.0} ms", daemon.startup.as_secs_f64() * 1e3),
    ));

    println!("| measurement | result |\n|---|---|");
    for (name, value) in rows {
        println!("| {name} | {value} |");
    }
}
