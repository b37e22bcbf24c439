//! Helpers shared by the criterion benches in `benches/`.

use std::path::PathBuf;

/// Records a count that is not a time (such as nodes visited) where
/// `cargo xtask bench` picks it up: `target/criterion/counts/<id>.json`.
pub fn record_count(id: &str, value: u64, unit: &str) {
    let dir = target_dir().join("criterion").join("counts");
    let _ = std::fs::create_dir_all(&dir);
    let json = format!("{{\"id\": \"{id}\", \"value\": {value}, \"unit\": \"{unit}\"}}\n");
    let file = dir.join(format!("{}.json", id.replace('/', "_")));
    if let Err(e) = std::fs::write(&file, json) {
        eprintln!("could not record {id}: {}: {e}", file.display());
    }
    eprintln!("count {id}: {value} {unit}");
}

/// The release binaries an end-to-end bench drives, from `target/release`
/// or, with `BENCH_BIN_DIR=DIR`, from `DIR` (to compare two builds in
/// the same hour). Panics with the command that builds them when one is
/// missing.
pub fn release_binaries<const N: usize>(names: [&str; N]) -> [PathBuf; N] {
    let dir = std::env::var_os("BENCH_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("release"));
    let paths = names.map(|name| dir.join(name));
    assert!(
        paths.iter().all(|p| p.exists()),
        "missing in {}: build them first: cargo build --release{}",
        dir.display(),
        names.map(|n| format!(" --bin {n}")).concat()
    );
    paths
}

/// CPU time (user + system, in seconds) that process `pid` has used so
/// far, from `/proc/PID/stat`; `None` if it is gone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may hold
    // spaces): utime and stime are the 12th and 13th, in clock ticks of
    // 1/100 s (USER_HZ on Linux).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// CPU time (in core-seconds) the whole machine has spent busy so far:
/// every process and the kernel's own threads (user, nice, system, irq,
/// softirq from `/proc/stat`), not idle, waiting for I/O or stolen by the
/// hypervisor. The difference over a measurement counts work that no
/// single process is charged for, such as page-cache writeback.
pub fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...
    let busy = [0, 1, 2, 5, 6]
        .iter()
        .map(|&i| ticks.get(i).copied().unwrap_or(0))
        .sum::<u64>();
    Some(busy as f64 / 100.0)
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}
