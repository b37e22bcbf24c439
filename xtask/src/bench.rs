//! `cargo xtask bench`: run the criterion benches, then rewrite the
//! generated part of `docs/BENCHMARKS.md` from criterion's JSON output.

use std::path::{Path, PathBuf};

use crate::Result;

const BEGIN: &str = "<!-- xtask bench: begin generated results -->";
const END: &str = "<!-- xtask bench: end generated results -->";

/// Ratios reported against a baseline measured in the same run:
/// (label, measured id, baseline id).
const RATIOS: &[(&str, &str, &str)] = &[
    (
        "cryptree upload, memory store / encrypt+hash limit",
        "cryptree/memory_upload_1GiB",
        "cryptree/limit_encrypt_and_hash_1GiB",
    ),
    (
        "cryptree download, memory store / encrypt+hash limit",
        "cryptree/memory_download_1GiB",
        "cryptree/limit_encrypt_and_hash_1GiB",
    ),
    (
        "cryptree upload, file store / encrypt+hash limit",
        "cryptree/file_upload_1GiB",
        "cryptree/limit_encrypt_and_hash_1GiB",
    ),
    (
        "cryptree download, file store / encrypt+hash limit",
        "cryptree/file_download_1GiB",
        "cryptree/limit_encrypt_and_hash_1GiB",
    ),
    (
        "CHAMP get, file store / memory store (10^6 entries)",
        "champ/file_get_1000000",
        "champ/memory_get_1000000",
    ),
    (
        "CHAMP get at 10^6 / at 10^4 entries (memory)",
        "champ/memory_get_1000000",
        "champ/memory_get_10000",
    ),
    (
        "sqlite CAS (durable) / in-memory CAS",
        "pointers/sqlite_full_cas",
        "pointers/memory_cas",
    ),
    (
        "sqlite CAS (durable), 16 clients at once / in-memory, 16 clients",
        "pointers/sqlite_full_cas_16_clients",
        "pointers/memory_cas_16_clients",
    ),
    (
        "CHAMP get at 10^6, default cache / whole tree cached (memory)",
        "champ/memory_get_1000000",
        "champ/memory_get_1000000_whole_tree_cached",
    ),
    (
        "sqlite CAS (synchronous=NORMAL) / in-memory CAS",
        "pointers/sqlite_normal_cas",
        "pointers/memory_cas",
    ),
    (
        "file store put / encrypt+hash limit",
        "blockstore/file_put_1MiB",
        "limit/encrypt_and_hash_1MiB",
    ),
    (
        "memory store put / encrypt+hash limit",
        "blockstore/memory_put_1MiB",
        "limit/encrypt_and_hash_1MiB",
    ),
    (
        "file store get / encrypt+hash limit",
        "blockstore/file_get_1MiB",
        "limit/encrypt_and_hash_1MiB",
    ),
    (
        "file store put of 7 small blocks / memory store",
        "blockstore/file_put_7x4KiB",
        "blockstore/memory_put_7x4KiB",
    ),
];

struct Measurement {
    id: String,
    mean_ns: f64,
    bytes: Option<f64>,
    elements: Option<f64>,
}

impl Measurement {
    fn mib_per_s(&self) -> Option<f64> {
        self.bytes
            .map(|b| b / (1024.0 * 1024.0) / (self.mean_ns / 1e9))
    }

    fn ops_per_s(&self) -> Option<f64> {
        self.elements.map(|n| n / (self.mean_ns / 1e9))
    }

    /// The rate used in ratios: MiB/s or operations/s.
    fn rate(&self) -> Option<f64> {
        self.mib_per_s().or_else(|| self.ops_per_s())
    }
}

pub fn run(root: &Path, bench: Option<&str>) -> Result {
    if bench.is_none() {
        // A full run starts clean, so every figure in the report (and both
        // sides of every ratio) comes from this run.
        let old = target_dir(root).join("criterion");
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| format!("{}: {e}", old.display()))?;
        }
    }
    let mut args = vec!["bench", "-p", "peergos-benches", "--locked"];
    if let Some(bench) = bench {
        args.extend(["--bench", bench]);
    }
    crate::run(root, "cargo", &args, &[])?;
    let mut found = Vec::new();
    collect(&target_dir(root).join("criterion"), &mut found)?;
    if found.is_empty() {
        return Err("criterion wrote no results under target/criterion".into());
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    write_report(root, &found, bench)
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// Counts recorded by `peergos_benches::record_count`, sorted by id.
fn read_counts(dir: &Path) -> Result<Vec<(String, u64, String)>> {
    let mut counts = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(counts);
    };
    for entry in entries.flatten() {
        let json = read_json(&entry.path())?;
        if let (Some(id), Some(value), Some(unit)) = (
            json["id"].as_str(),
            json["value"].as_u64(),
            json["unit"].as_str(),
        ) {
            counts.push((id.to_string(), value, unit.to_string()));
        }
    }
    counts.sort();
    Ok(counts)
}

fn collect(dir: &Path, out: &mut Vec<Measurement>) -> Result {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == "new") {
            if let Some(m) = read_measurement(&path)? {
                out.push(m);
            }
        } else if path.is_dir()
            && path
                .file_name()
                .is_some_and(|n| n != "report" && n != "counts")
        {
            collect(&path, out)?;
        }
    }
    Ok(())
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_measurement(dir: &Path) -> Result<Option<Measurement>> {
    let (bench, estimates) = (dir.join("benchmark.json"), dir.join("estimates.json"));
    if !bench.exists() || !estimates.exists() {
        return Ok(None);
    }
    let bench = read_json(&bench)?;
    let estimates = read_json(&estimates)?;
    let Some(mean_ns) = estimates["mean"]["point_estimate"].as_f64() else {
        return Ok(None);
    };
    Ok(Some(Measurement {
        id: bench["full_id"].as_str().unwrap_or_default().to_string(),
        mean_ns,
        bytes: bench["throughput"]["Bytes"].as_f64(),
        elements: bench["throughput"]["Elements"].as_f64(),
    }))
}

fn format_time(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cores} cores, {cpu}")
}

fn write_report(root: &Path, found: &[Measurement], bench: Option<&str>) -> Result {
    let counts = read_counts(&target_dir(root).join("criterion/counts"))?;
    let path = root.join("docs/BENCHMARKS.md");
    let current = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    // A partial run keeps the rows it did not measure, from the last report.
    let kept = |table: usize, fresh: &dyn Fn(&str) -> bool| -> Vec<String> {
        if bench.is_none() {
            return Vec::new();
        }
        old_rows(&current, table)
            .into_iter()
            .filter(|row| !fresh(row_key(row)))
            .collect()
    };
    let command = match bench {
        Some(b) => format!("cargo xtask bench {b}"),
        None => "cargo xtask bench".into(),
    };
    let mut out = String::new();
    out.push_str(&format!("{BEGIN}\n"));
    out.push_str(&format!(
        "Measured by `{command}` on {} ({}). Mean of criterion's samples.\n\n",
        machine(),
        today()
    ));
    if bench.is_some() {
        out.push_str(
            "Partial run: rows and ratios from other bench files come from earlier runs. \
             Run `cargo xtask bench` for figures from a single run.\n\n",
        );
    }
    out.push_str("| benchmark | mean time | throughput |\n|---|---:|---:|\n");
    for m in found {
        let rate = match (m.mib_per_s(), m.ops_per_s()) {
            (Some(r), _) => format!("{r:.0} MiB/s"),
            (None, Some(r)) => format!("{r:.0} ops/s"),
            (None, None) => "-".into(),
        };
        out.push_str(&format!(
            "| `{}` | {} | {rate} |\n",
            m.id,
            format_time(m.mean_ns)
        ));
    }
    for row in kept(0, &|key| found.iter().any(|m| key == format!("`{}`", m.id))) {
        out.push_str(&format!("{row}\n"));
    }
    out.push_str(
        "\nRatios to a baseline measured in the same run (1.0 = as fast as the baseline):\n\n",
    );
    out.push_str("| ratio | value |\n|---|---:|\n");
    let by_id = |id: &str| {
        found
            .iter()
            .find(|m| m.id == id)
            .and_then(Measurement::rate)
    };
    let mut fresh_ratios = Vec::new();
    for (label, measured, baseline) in RATIOS {
        if let (Some(m), Some(b)) = (by_id(measured), by_id(baseline)) {
            out.push_str(&format!("| {label} | {:.2} |\n", m / b));
            fresh_ratios.push(*label);
        }
    }
    for row in kept(1, &|key| fresh_ratios.contains(&key)) {
        out.push_str(&format!("{row}\n"));
    }
    let old_counts = kept(2, &|key| {
        counts.iter().any(|(id, _, _)| key == format!("`{id}`"))
    });
    if !counts.is_empty() || !old_counts.is_empty() {
        out.push_str("\nCounts (not times):\n\n| measure | value |\n|---|---:|\n");
        for (id, value, unit) in counts {
            out.push_str(&format!("| `{id}` | {value} {unit} |\n"));
        }
        for row in old_counts {
            out.push_str(&format!("{row}\n"));
        }
    }
    out.push_str(END);

    let (Some(start), Some(end)) = (current.find(BEGIN), current.find(END)) else {
        return Err(format!(
            "{} lacks the generated-results markers",
            path.display()
        ));
    };
    let updated = format!("{}{out}{}", &current[..start], &current[end + END.len()..]);
    std::fs::write(&path, updated).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("\nxtask bench: wrote {}", path.display());
    Ok(())
}

/// The body rows of the `table`-th table (0: benchmarks, 1: ratios,
/// 2: counts) in the generated section of the current report.
fn old_rows(report: &str, table: usize) -> Vec<String> {
    let (Some(start), Some(end)) = (report.find(BEGIN), report.find(END)) else {
        return Vec::new();
    };
    let mut tables: Vec<Vec<String>> = Vec::new();
    let mut in_table = false;
    for line in report[start..end].lines() {
        if line.starts_with('|') {
            if !in_table {
                tables.push(Vec::new());
                in_table = true;
            }
            if let Some(rows) = tables.last_mut() {
                rows.push(line.to_string());
            }
        } else {
            in_table = false;
        }
    }
    // Skip each table's header and separator.
    tables
        .get(table)
        .map(|rows| rows.iter().skip(2).cloned().collect())
        .unwrap_or_default()
}

/// The first cell of a table row.
fn row_key(row: &str) -> &str {
    row.trim_start_matches('|')
        .split('|')
        .next()
        .unwrap_or("")
        .trim()
}

/// Today's date (UTC) as YYYY-MM-DD, from the system clock.
fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
