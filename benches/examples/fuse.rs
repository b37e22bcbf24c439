//! The FUSE mount against gocryptfs, measured in the same run on the same
//! disk: sequential write and read of one large file, and creating many
//! small files. Both are encrypted filesystems in userspace; gocryptfs
//! keeps its ciphertext in a local folder, peergos-fuse sends it to a
//! release `peergos-daemon` on loopback.
//!
//! ```sh
//! cargo build --release --bin peergos-daemon --bin peergos-fuse
//! cargo run --release -p peergos-benches --example fuse [MIB] [SMALL_FILES] [ROUNDS]
//! ```
//!
//! `BENCH_BIN_DIR=DIR` takes the two binaries from `DIR` instead of
//! `target/release`. Needs `fuse3` and `gocryptfs` (Debian packages). Both are measured in
//! alternating rounds (default 3) and the medians compared. For the large
//! file it also reports the CPU time the whole machine spent per GiB
//! (every process and the kernel, from `/proc/stat`), since on two cores
//! the side that needs less work is the faster one. Prints a markdown
//! table for `docs/BENCHMARKS.md`.

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use peergos_core::{HttpNetwork, NetworkAccess, UserContext};
use peergos_testkit::cryptree::data;
use peergos_testkit::daemon::TempDaemon;

const MIB: usize = 1 << 20;

fn wait_mounted(dir: &Path, before: u64, child: Option<&mut Child>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut child = child;
    while std::fs::metadata(dir).unwrap().dev() == before {
        if let Some(c) = child.as_deref_mut() {
            assert!(c.try_wait().unwrap().is_none(), "the mount process exited");
        }
        assert!(Instant::now() < deadline, "{} did not mount", dir.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Peergos {
    binary: PathBuf,
    url: String,
    dir: PathBuf,
    child: Option<Child>,
}

impl Peergos {
    fn mount(&mut self) {
        let before = std::fs::metadata(&self.dir).unwrap().dev();
        let mut child = Command::new(&self.binary)
            .args(["--server", &self.url, "--username", "bench"])
            .arg(&self.dir)
            .env("PEERGOS_PASSWORD", "password")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        wait_mounted(&self.dir, before, Some(&mut child));
        self.child = Some(child);
    }

    fn unmount(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

struct Gocryptfs {
    cipher: PathBuf,
    dir: PathBuf,
}

impl Gocryptfs {
    fn mount(&self) {
        let status = Command::new("gocryptfs")
            .args(["-q", "-extpass", "echo bench-password"])
            .arg(&self.cipher)
            .arg(&self.dir)
            .status()
            .unwrap();
        assert!(status.success(), "gocryptfs mount failed");
    }

    fn unmount(&self) {
        let _ = Command::new("fusermount3")
            .arg("-u")
            .arg(&self.dir)
            .status();
    }
}

/// Writes `mib` MiB to `path` in 1 MiB writes and fsyncs; MiB/s.
fn write_big(path: &Path, source: &[u8], mib: usize) -> f64 {
    let started = Instant::now();
    let mut f = std::fs::File::create(path).unwrap();
    for i in 0..mib {
        let at = (i * 4099) % (source.len() - MIB);
        f.write_all(&source[at..at + MIB]).unwrap();
    }
    f.sync_all().unwrap();
    drop(f);
    mib as f64 / started.elapsed().as_secs_f64()
}

/// Reads the file in 1 MiB reads; MiB/s.
fn read_big(path: &Path) -> f64 {
    let started = Instant::now();
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; MIB];
    let mut total = 0usize;
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n;
    }
    (total / MIB) as f64 / started.elapsed().as_secs_f64()
}

/// Runs `measure` (which moves `mib` MiB) and returns its result with the
/// core-seconds per GiB the whole machine was busy meanwhile.
fn with_cpu(mib: usize, measure: impl FnOnce() -> f64) -> (f64, f64) {
    let before = peergos_benches::machine_busy_seconds().unwrap_or(0.0);
    let rate = measure();
    let after = peergos_benches::machine_busy_seconds().unwrap_or(0.0);
    (rate, (after - before) * 1024.0 / mib as f64)
}

/// Creates `count` 4 KiB files in 20 folders; files/s.
fn small_files(root: &Path, count: usize) -> f64 {
    let piece = data(7, 4096);
    let started = Instant::now();
    for d in 0..20 {
        std::fs::create_dir(root.join(format!("d{d}"))).unwrap();
    }
    for i in 0..count {
        std::fs::write(root.join(format!("d{}/f{i}", i % 20)), &piece).unwrap();
    }
    count as f64 / started.elapsed().as_secs_f64()
}

fn drop_caches() -> bool {
    std::fs::write("/proc/sys/vm/drop_caches", b"3").is_ok()
}

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1024);
    let count: usize = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let rounds: usize = std::env::args()
        .nth(3)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3)
        .max(1);
    // BENCH_BIN_DIR measures other builds (say, before and after a change).
    let [daemon_bin, fuse_bin] =
        peergos_benches::release_binaries(["peergos-daemon", "peergos-fuse"]);
    let tmp =
        tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/tmp".into())).unwrap();
    let daemon = TempDaemon::start(
        &daemon_bin,
        &tmp.path().join("daemon"),
        &["--default-quota", "1000000000000"],
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let net: Arc<dyn NetworkAccess> = Arc::new(HttpNetwork::new(daemon.url()).unwrap());
    runtime
        .block_on(UserContext::signup(net, "bench", "password", None))
        .unwrap();

    let mut ours = Peergos {
        binary: fuse_bin,
        url: daemon.url().to_string(),
        dir: tmp.path().join("peergos"),
        child: None,
    };
    std::fs::create_dir_all(&ours.dir).unwrap();
    let theirs = Gocryptfs {
        cipher: tmp.path().join("gocryptfs-cipher"),
        dir: tmp.path().join("gocryptfs"),
    };
    std::fs::create_dir_all(&theirs.cipher).unwrap();
    std::fs::create_dir_all(&theirs.dir).unwrap();
    let init = Command::new("gocryptfs")
        .args(["-init", "-q", "-extpass", "echo bench-password"])
        .arg(&theirs.cipher)
        .status()
        .expect("gocryptfs (apt-get install gocryptfs)");
    assert!(init.success());

    let source = data(3, 64 * MIB);
    ours.mount();
    theirs.mount();
    // This machine is shared and its disk's speed drifts within minutes,
    // so both sides are measured in alternating rounds (the side that goes
    // first alternates too) and the medians compared.
    // (ours, theirs) per round: write, read, small files, then the
    // whole machine's core-seconds per GiB written and read.
    let mut rows: [Vec<(f64, f64)>; 5] = Default::default();
    let mut dropped = true;
    for round in 0..rounds {
        let name = format!("big{round}");
        let ours_first = round % 2 == 0;
        let ((ours_write, ours_write_cpu), (theirs_write, theirs_write_cpu)) = pair(
            ours_first,
            || with_cpu(mib, || write_big(&ours.dir.join(&name), &source, mib)),
            || with_cpu(mib, || write_big(&theirs.dir.join(&name), &source, mib)),
        );
        // Fresh mounts (and, if allowed, an empty page cache) before reading.
        ours.unmount();
        theirs.unmount();
        dropped &= drop_caches();
        ours.mount();
        theirs.mount();
        let ((ours_read, ours_read_cpu), (theirs_read, theirs_read_cpu)) = pair(
            !ours_first,
            || with_cpu(mib, || read_big(&ours.dir.join(&name))),
            || with_cpu(mib, || read_big(&theirs.dir.join(&name))),
        );
        let small = format!("small{round}");
        std::fs::create_dir(ours.dir.join(&small)).unwrap();
        std::fs::create_dir(theirs.dir.join(&small)).unwrap();
        let (ours_small, theirs_small) = pair(
            ours_first,
            || small_files(&ours.dir.join(&small), count),
            || small_files(&theirs.dir.join(&small), count),
        );
        // Free the space for the next round.
        std::fs::remove_file(ours.dir.join(&name)).unwrap();
        std::fs::remove_file(theirs.dir.join(&name)).unwrap();
        rows[0].push((ours_write, theirs_write));
        rows[1].push((ours_read, theirs_read));
        rows[2].push((ours_small, theirs_small));
        rows[3].push((ours_write_cpu, theirs_write_cpu));
        rows[4].push((ours_read_cpu, theirs_read_cpu));
        eprintln!(
            "round {}: write {ours_write:.0}/{theirs_write:.0} MiB/s ({ours_write_cpu:.2}/{theirs_write_cpu:.2} core-s/GiB), read {ours_read:.0}/{theirs_read:.0} MiB/s ({ours_read_cpu:.2}/{theirs_read_cpu:.2} core-s/GiB), small {ours_small:.0}/{theirs_small:.0} files/s",
            round + 1
        );
    }
    ours.unmount();
    theirs.unmount();

    println!(
        "| {mib} MiB file, {count} small files, {rounds} alternating rounds (medians); page cache {} before reads |||",
        if dropped {
            "dropped"
        } else {
            "not dropped (no permission)"
        }
    );
    println!("| measure | peergos-fuse | gocryptfs | ratio (per round) |");
    println!("|---|---|---|---|");
    // (label, unit, decimals) for each of `rows`.
    let labels = [
        ("sequential write, 1 MiB writes + fsync", "MiB/s", 0),
        ("sequential read, fresh mount", "MiB/s", 0),
        ("create files of 4 KiB", "files/s", 0),
        ("CPU per GiB written, whole machine", "core-s", 2),
        ("CPU per GiB read, whole machine", "core-s", 2),
    ];
    for ((label, unit, decimals), row) in labels.iter().zip(&rows) {
        let ours = median(row.iter().map(|r| r.0).collect());
        let theirs = median(row.iter().map(|r| r.1).collect());
        let ratios: Vec<String> = row.iter().map(|r| format!("{:.2}", r.0 / r.1)).collect();
        println!(
            "| {label} | {ours:.decimals$} {unit} | {theirs:.decimals$} {unit} | {:.2} ({}) |",
            ours / theirs,
            ratios.join(", ")
        );
    }
}

/// Runs both measurements, `first_a` deciding the order; (a, b).
fn pair<T>(first_a: bool, a: impl FnOnce() -> T, b: impl FnOnce() -> T) -> (T, T) {
    if first_a {
        let x = a();
        (x, b())
    } else {
        let y = b();
        (a(), y)
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}
