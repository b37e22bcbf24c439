//! Uploads and downloads of files and whole folders for the shell: the
//! transfers are `peergos_core::transfer`'s; this adds the progress bar
//! and the report.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use peergos_core::transfer::{self, Progress, Summary};
use peergos_core::RemoteFs;
use serde_json::json;

/// What a transfer did.
pub(crate) struct Report {
    pub(crate) files: u64,
    pub(crate) bytes: u64,
    /// Files left alone because the same file (size and time) was there.
    pub(crate) skipped: u64,
    seconds: f64,
}

impl Report {
    fn since(summary: Summary, started: Instant) -> Self {
        Report {
            files: summary.files,
            bytes: summary.bytes,
            skipped: summary.skipped,
            seconds: started.elapsed().as_secs_f64(),
        }
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        json!({"files": self.files, "bytes": self.bytes, "skipped": self.skipped, "seconds": self.seconds})
    }

    pub(crate) fn line(&self, verb: &str) -> String {
        let skipped = if self.skipped > 0 {
            format!(", {} unchanged", self.skipped)
        } else {
            String::new()
        };
        format!(
            "{verb} {} file{} ({}) in {}, {}/s{skipped}",
            self.files,
            if self.files == 1 { "" } else { "s" },
            human(self.bytes),
            duration(self.seconds),
            human((self.bytes as f64 / self.seconds.max(1e-3)) as u64)
        )
    }
}

/// A duration for people: milliseconds under a second (a small folder
/// goes up in a few tens of them, which "0.0 s" would hide), else seconds.
fn duration(seconds: f64) -> String {
    // Below 0.9995 s: anything longer would print as "1000 ms".
    if seconds < 0.9995 {
        format!("{:.0} ms", seconds * 1e3)
    } else {
        format!("{seconds:.1} s")
    }
}

/// Bytes in binary units.
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn progress(total: u64, show: bool) -> ProgressBar {
    // Only long transfers on a terminal get a bar.
    if !show || total < (8 << 20) || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// The transfer's [`Progress`] on a terminal: a bar appears once the
/// transfer says its size, if it is long enough to be worth one.
struct Shown {
    show: bool,
    bar: std::sync::OnceLock<ProgressBar>,
}

impl Shown {
    fn new(show: bool) -> Self {
        Shown {
            show,
            bar: std::sync::OnceLock::new(),
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.bar.get() {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Shown {
    fn total(&self, bytes: u64) {
        let _ = self.bar.set(progress(bytes, self.show));
    }

    fn advance(&self, bytes: u64) {
        if let Some(bar) = self.bar.get() {
            bar.inc(bytes);
        }
    }
}

/// Creates a directory and any missing parents.
pub(crate) async fn mkdirs(fs: &RemoteFs, path: &str) -> Result<()> {
    Ok(transfer::mkdirs(fs, path).await?)
}

/// Uploads a file or folder to `remote` (an existing directory receives
/// it under its own name).
pub(crate) async fn put(
    fs: &Arc<RemoteFs>,
    local: &Path,
    remote: &str,
    show: bool,
) -> Result<Report> {
    let started = Instant::now();
    let bar = Arc::new(Shown::new(show));
    let summary = transfer::upload(fs, local, remote, bar.clone()).await?;
    bar.finish();
    Ok(Report::since(summary, started))
}

/// Downloads a file, or with `recursive` a folder, to `local`.
pub(crate) async fn get(
    fs: &Arc<RemoteFs>,
    remote: &str,
    local: &Path,
    recursive: bool,
    show: bool,
) -> Result<Report> {
    let started = Instant::now();
    let bar = Arc::new(Shown::new(show));
    let summary = transfer::download(fs, remote, local, recursive, bar.clone()).await?;
    bar.finish();
    Ok(Report::since(summary, started))
}

/// Removes a folder and everything under it, deepest first.
pub(crate) async fn remove_tree(fs: &RemoteFs, path: &str) -> Result<()> {
    Ok(transfer::remove_tree(fs, path).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_transfers_report_milliseconds() {
        let report = Report {
            files: 6,
            bytes: 183_808,
            skipped: 0,
            seconds: 0.046,
        };
        assert_eq!(
            report.line("uploaded"),
            "uploaded 6 files (179.5 KiB) in 46 ms, 3.8 MiB/s"
        );
        let report = Report {
            files: 1,
            bytes: 3 << 30,
            skipped: 2,
            seconds: 7.25,
        };
        assert_eq!(
            report.line("downloaded"),
            "downloaded 1 file (3.0 GiB) in 7.2 s, 423.7 MiB/s, 2 unchanged"
        );
        assert_eq!(duration(0.9994), "999 ms");
        assert_eq!(duration(0.9996), "1.0 s");
    }

    #[test]
    fn sizes_in_binary_units() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1024), "1.0 KiB");
        assert_eq!(human(5 << 20), "5.0 MiB");
        assert_eq!(human(u64::MAX), "16777216.0 TiB");
    }
}
