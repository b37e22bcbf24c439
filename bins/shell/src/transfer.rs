//! Uploads and downloads of files and whole folders, with progress bars.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use futures::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use peergos_core::{Kind, RemoteFs, UploadOptions};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};

/// Files in flight at once during a folder transfer.
const PARALLEL_FILES: usize = 4;

/// Downloaded pieces (up to 1 MiB each) waiting for the local disk.
const WRITES_WAITING: usize = 8;

/// What a transfer did.
pub(crate) struct Report {
    pub(crate) files: u64,
    pub(crate) bytes: u64,
    /// Files left alone because the same file (size and time) was there.
    pub(crate) skipped: u64,
    seconds: f64,
}

impl Report {
    fn since(files: u64, bytes: u64, started: Instant) -> Self {
        Report {
            files,
            bytes,
            skipped: 0,
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

/// A reader that advances a progress bar.
struct Counting<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        self.bar.inc(read as u64);
        poll
    }
}

impl<R: AsyncSeek + Unpin> AsyncSeek for Counting<R> {
    fn start_seek(mut self: Pin<&mut Self>, position: std::io::SeekFrom) -> std::io::Result<()> {
        Pin::new(&mut self.inner).start_seek(position)
    }

    fn poll_complete(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<u64>> {
        let poll = Pin::new(&mut self.inner).poll_complete(cx);
        if let Poll::Ready(Ok(position)) = &poll {
            self.bar.set_position(*position);
        }
        poll
    }
}

/// Creates a directory and any missing parents.
pub(crate) async fn mkdirs(fs: &RemoteFs, path: &str) -> Result<()> {
    let mut current = String::new();
    for name in path.split('/').filter(|n| !n.is_empty()) {
        current = format!("{current}/{name}");
        match fs.stat(&current).await {
            Ok(entry) if entry.kind == Kind::Dir => {}
            Ok(_) => bail!("{current}: not a directory"),
            Err(_) => match fs.mkdir(&current).await {
                Ok(_) | Err(peergos_cryptree::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            },
        }
    }
    Ok(())
}

fn modified_ms(meta: &std::fs::Metadata) -> Option<i64> {
    let time = meta.modified().ok()?;
    let since = time.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(since.as_millis() as i64)
}

async fn put_file(fs: &RemoteFs, local: &Path, remote: &str, bar: &ProgressBar) -> Result<u64> {
    let file = tokio::fs::File::open(local)
        .await
        .with_context(|| format!("opening {}", local.display()))?;
    let meta = file.metadata().await?;
    let options = UploadOptions {
        modified: modified_ms(&meta),
        ..UploadOptions::default()
    };
    let reader = Counting {
        inner: file,
        bar: bar.clone(),
    };
    fs.upload_resumable(remote, reader, options)
        .await
        .with_context(|| format!("uploading {}", local.display()))?;
    Ok(meta.len())
}

/// Every directory and file under `root`, directories parents first.
/// Directories, and files with their sizes, under a local folder.
type LocalTree = (Vec<PathBuf>, Vec<LocalFile>);

/// A local file found by [`walk`]: its path under the root, size and
/// modification time (milliseconds).
struct LocalFile {
    path: PathBuf,
    size: u64,
    modified: Option<i64>,
}

/// The last component of a relative path, as UTF-8.
fn name_of(relative: &Path) -> Result<String> {
    Ok(relative
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} is not valid UTF-8", relative.display()))?
        .to_string())
}

fn walk(root: &Path) -> Result<LocalTree> {
    let (mut dirs, mut files) = (Vec::new(), Vec::new());
    let mut stack = vec![PathBuf::new()];
    while let Some(relative) = stack.pop() {
        let dir = root.join(&relative);
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let kind = entry.file_type()?;
            let path = relative.join(entry.file_name());
            if kind.is_dir() {
                dirs.push(path.clone());
                stack.push(path);
            } else if kind.is_file() {
                let meta = entry.metadata()?;
                files.push(LocalFile {
                    path,
                    size: meta.len(),
                    modified: modified_ms(&meta),
                });
            }
            // Symlinks and special files are skipped.
        }
    }
    Ok((dirs, files))
}

fn remote_join(base: &str, relative: &Path) -> Result<String> {
    let mut out = base.trim_end_matches('/').to_string();
    for part in relative.components() {
        let name = part
            .as_os_str()
            .to_str()
            .with_context(|| format!("{} is not valid UTF-8", relative.display()))?;
        out.push('/');
        out.push_str(name);
    }
    Ok(out)
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
    let meta = std::fs::metadata(local).with_context(|| format!("reading {}", local.display()))?;
    let name = local
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no usable name", local.display()))?;
    let target = match fs.stat(remote).await {
        Ok(entry) if entry.kind == Kind::Dir => remote_join(remote, Path::new(name))?,
        _ => remote.to_string(),
    };
    if meta.is_file() {
        let bar = progress(meta.len(), show);
        let bytes = put_file(fs, local, &target, &bar).await?;
        bar.finish_and_clear();
        return Ok(Report::since(1, bytes, started));
    }
    if !meta.is_dir() {
        bail!("{} is neither a file nor a folder", local.display());
    }
    let (dirs, files) = walk(local)?;
    mkdirs(fs, &target).await?;
    for dir in &dirs {
        let path = remote_join(&target, dir)?;
        match fs.mkdir(&path).await {
            Ok(_) | Err(peergos_cryptree::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // What is there already, one listing per folder: a file of the same
    // size and modification time is left alone, so running `put` again
    // after an interruption sends only what is missing.
    let mut present: HashMap<PathBuf, HashMap<String, (u64, i64)>> = HashMap::new();
    for dir in std::iter::once(PathBuf::new()).chain(dirs.iter().cloned()) {
        let listing = fs.ls(&remote_join(&target, &dir)?).await?;
        let entries = listing
            .into_iter()
            .filter(|e| e.kind == Kind::File)
            .map(|e| (e.name, (e.size, e.modified)))
            .collect();
        present.insert(dir, entries);
    }
    let mut skipped = 0;
    let mut jobs: Vec<(Job, u64)> = Vec::new();
    let mut batches: HashMap<PathBuf, Vec<LocalFile>> = HashMap::new();
    for file in files {
        let (relative, size, modified) = (&file.path, file.size, file.modified);
        let parent = relative.parent().map(Path::to_path_buf).unwrap_or_default();
        let name = name_of(relative)?;
        let same = present
            .get(&parent)
            .and_then(|dir| dir.get(&name))
            .is_some_and(|&(s, m)| s == size && Some(m) == modified);
        if same {
            skipped += 1;
        } else if size <= SMALL_FILE {
            batches.entry(parent).or_default().push(file);
        } else {
            jobs.push((Job::Large(file.path), size));
        }
    }
    for (parent, mut files) in batches {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let mut batch = Vec::new();
        let mut bytes = 0;
        for file in files {
            let size = file.size;
            if !batch.is_empty() && (batch.len() >= BATCH_FILES || bytes + size > BATCH_BYTES) {
                jobs.push((
                    Job::Batch(parent.clone(), std::mem::take(&mut batch)),
                    bytes,
                ));
                bytes = 0;
            }
            bytes += size;
            batch.push(file);
        }
        if !batch.is_empty() {
            jobs.push((Job::Batch(parent, batch), bytes));
        }
    }
    let count = jobs
        .iter()
        .map(|(job, _)| match job {
            Job::Large(_) => 1,
            Job::Batch(_, files) => files.len() as u64,
        })
        .sum::<u64>();
    let mut report = in_parallel(jobs, show, started, |job, bar| {
        let fs = Arc::clone(fs);
        let target = target.clone();
        async move {
            match job {
                Job::Large(relative) => {
                    let remote = remote_join(&target, &relative)?;
                    put_file(&fs, &local.join(&relative), &remote, &bar).await
                }
                Job::Batch(parent, files) => {
                    put_batch(&fs, local, &target, &parent, files, &bar).await
                }
            }
        }
    })
    .await?;
    report.files = count;
    report.skipped = skipped;
    Ok(report)
}

/// Files at most this large are uploaded in batches, many per commit.
const SMALL_FILE: u64 = 1 << 20;
/// The most files in one batch.
const BATCH_FILES: usize = 250;
/// The most bytes in one batch.
const BATCH_BYTES: u64 = 16 << 20;

/// One unit of a folder upload.
enum Job {
    /// A large file on its own (resumable).
    Large(PathBuf),
    /// Small files of one folder, written in one commit.
    Batch(PathBuf, Vec<LocalFile>),
}

/// Uploads small files of one folder with one commit.
async fn put_batch(
    fs: &RemoteFs,
    local: &Path,
    target: &str,
    parent: &Path,
    files: Vec<LocalFile>,
    bar: &ProgressBar,
) -> Result<u64> {
    let mut batch = Vec::with_capacity(files.len());
    let mut bytes = 0;
    for file in files {
        let path = local.join(&file.path);
        let data = tokio::fs::read(&path)
            .await
            .with_context(|| format!("reading {}", path.display()))?;
        bytes += data.len() as u64;
        batch.push((
            name_of(&file.path)?,
            data,
            UploadOptions {
                modified: file.modified,
                ..UploadOptions::default()
            },
        ));
    }
    let dir = remote_join(target, parent)?;
    fs.write_files(&dir, batch)
        .await
        .with_context(|| format!("uploading files into {dir}"))?;
    bar.inc(bytes);
    Ok(bytes)
}

/// Downloads one file, resuming from a partial `.peergos-part` file whose
/// `.peergos-part.id` names this file at this version.
/// A destination that is not a regular file (`/dev/null`, `/dev/stdout`,
/// a FIFO) is written to where it is, and a symbolic link to a regular
/// file gets its target written: renaming a finished part file over either
/// would put a regular file in its place.
async fn get_file(fs: &RemoteFs, remote: &str, local: &Path, bar: &ProgressBar) -> Result<u64> {
    let size = fs.stat(remote).await?.size;
    let special = |meta: &std::fs::Metadata| !meta.is_file() && !meta.is_dir();
    let local = match tokio::fs::symlink_metadata(local).await {
        Ok(meta) if meta.file_type().is_symlink() => match tokio::fs::metadata(local).await {
            Ok(target) if target.is_file() => tokio::fs::canonicalize(local)
                .await
                .with_context(|| format!("following {}", local.display()))?,
            Ok(target) if special(&target) => {
                return get_in_place(fs, remote, local, size, bar).await;
            }
            _ => local.to_path_buf(),
        },
        Ok(meta) if special(&meta) => return get_in_place(fs, remote, local, size, bar).await,
        _ => local.to_path_buf(),
    };
    let local = local.as_path();
    let mut part = local.as_os_str().to_owned();
    part.push(".peergos-part");
    let part = PathBuf::from(part);
    let mut id_file = part.as_os_str().to_owned();
    id_file.push(".id");
    let id_file = PathBuf::from(id_file);
    // A part is resumed only if it is part of this very file at this very
    // version: anything else (another file, or this one replaced, even by
    // one of the same size) starts over.
    let id = version_tag(fs, remote).await?;
    let recorded = tokio::fs::read_to_string(&id_file).await.ok();
    let offset = match tokio::fs::metadata(&part).await {
        Ok(meta) if meta.len() <= size && recorded.as_deref() == Some(id.as_str()) => meta.len(),
        _ => 0,
    };
    if offset == 0 {
        tokio::fs::write(&id_file, &id)
            .await
            .with_context(|| format!("writing {}", id_file.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(offset > 0)
        .write(true)
        .truncate(offset == 0)
        .open(&part)
        .with_context(|| format!("creating {}", part.display()))?;
    bar.inc(offset);
    let file = copy_to(fs, remote, offset, size, file, bar).await?;
    tokio::task::spawn_blocking(move || file.sync_all())
        .await?
        .with_context(|| format!("syncing {}", part.display()))?;
    tokio::fs::rename(&part, local)
        .await
        .with_context(|| format!("renaming {} to {}", part.display(), local.display()))?;
    let _ = tokio::fs::remove_file(&id_file).await;
    Ok(size)
}

/// What a part file records it is part of: a hash of the remote file's
/// capability (which file), size and modification time (which version),
/// so the capability itself is never written to the local disk.
async fn version_tag(fs: &RemoteFs, remote: &str) -> Result<String> {
    let cap = fs.capability(remote).await?.read_only();
    let entry = fs.stat(remote).await?;
    let mut input = cap.to_text()?.into_bytes();
    input.extend_from_slice(&entry.size.to_be_bytes());
    input.extend_from_slice(&entry.modified.to_be_bytes());
    let hash = peergos_keys::sha256(&input);
    Ok(hash.iter().map(|b| format!("{b:02x}")).collect())
}

/// Downloads one file into a destination that is not a regular file.
async fn get_in_place(
    fs: &RemoteFs,
    remote: &str,
    local: &Path,
    size: u64,
    bar: &ProgressBar,
) -> Result<u64> {
    let out = std::fs::OpenOptions::new()
        .write(true)
        .open(local)
        .with_context(|| format!("opening {}", local.display()))?;
    copy_to(fs, remote, 0, size, out, bar).await?;
    Ok(size)
}

/// Writes bytes `offset..size` of the remote file to `out` and hands it
/// back. The file's chunks are fetched ahead while a thread of its own
/// writes the pieces already here, so the local disk and the network
/// overlap.
async fn copy_to(
    fs: &RemoteFs,
    remote: &str,
    offset: u64,
    size: u64,
    mut out: std::fs::File,
    bar: &ProgressBar,
) -> Result<std::fs::File> {
    use std::io::Write as _;
    let (pieces_tx, mut pieces_rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(WRITES_WAITING);
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        while let Some(piece) = pieces_rx.blocking_recv() {
            out.write_all(&piece)?;
        }
        out.flush()?;
        Ok(out)
    });
    let fetched = async {
        let mut pieces = std::pin::pin!(fs.chunks_from(remote, offset).await?);
        let mut at = offset;
        while let Some(piece) = pieces.next().await {
            let piece = piece?;
            at += piece.len() as u64;
            bar.inc(piece.len() as u64);
            if pieces_tx.send(piece).await.is_err() {
                // The writer stopped: its error says why.
                break;
            }
        }
        Ok::<u64, anyhow::Error>(at)
    }
    .await;
    drop(pieces_tx);
    let out = writer.await?.context("writing the download")?;
    let at = fetched?;
    if at < size {
        bail!("{remote} ended early at byte {at} of {size}");
    }
    Ok(out)
}

/// Every file under a remote folder, as paths relative to it.
async fn remote_files(fs: &RemoteFs, root: &str) -> Result<(Vec<String>, Vec<(String, u64)>)> {
    let (mut dirs, mut files) = (Vec::new(), Vec::new());
    let mut stack = vec![String::new()];
    while let Some(relative) = stack.pop() {
        for entry in fs.ls(&format!("{root}{relative}")).await? {
            let path = format!("{relative}/{}", entry.name);
            match entry.kind {
                Kind::Dir => {
                    dirs.push(path.clone());
                    stack.push(path);
                }
                Kind::File => files.push((path, entry.size)),
            }
        }
    }
    Ok((dirs, files))
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
    let entry = fs.stat(remote).await?;
    if entry.kind == Kind::File {
        let local = if local.is_dir() {
            local.join(&entry.name)
        } else {
            local.to_path_buf()
        };
        let bar = progress(entry.size, show);
        let bytes = get_file(fs, remote, &local, &bar).await?;
        bar.finish_and_clear();
        return Ok(Report::since(1, bytes, started));
    }
    if !recursive {
        bail!("{remote}: is a directory (use get -r)");
    }
    let root = remote.trim_end_matches('/').to_string();
    let (dirs, files) = remote_files(fs, &root).await?;
    std::fs::create_dir_all(local).with_context(|| format!("creating {}", local.display()))?;
    for dir in &dirs {
        let path = local.join(dir.trim_start_matches('/'));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
    }
    in_parallel(files, show, started, |relative, bar| {
        let fs = Arc::clone(fs);
        let remote = format!("{root}{relative}");
        let local = local.join(relative.trim_start_matches('/'));
        async move { get_file(&fs, &remote, &local, &bar).await }
    })
    .await
}

/// Runs `job` on each file, [`PARALLEL_FILES`] at a time, under one
/// progress bar sized by the files' total.
async fn in_parallel<T, F, Fut>(
    files: Vec<(T, u64)>,
    show: bool,
    started: Instant,
    job: F,
) -> Result<Report>
where
    F: Fn(T, ProgressBar) -> Fut,
    Fut: std::future::Future<Output = Result<u64>>,
{
    let total: u64 = files.iter().map(|(_, size)| size).sum();
    let count = files.len() as u64;
    let bar = progress(total, show);
    futures::stream::iter(files)
        .map(|(file, _)| job(file, bar.clone()))
        .buffer_unordered(PARALLEL_FILES)
        .try_collect::<Vec<u64>>()
        .await?;
    bar.finish_and_clear();
    Ok(Report::since(count, total, started))
}

/// Removes a folder and everything under it, deepest first.
pub(crate) async fn remove_tree(fs: &RemoteFs, path: &str) -> Result<()> {
    let (dirs, files) = remote_files(fs, path).await?;
    for (file, _) in files {
        fs.rm(&format!("{path}{file}")).await?;
    }
    for dir in dirs.iter().rev() {
        fs.rmdir(&format!("{path}{dir}")).await?;
    }
    fs.rmdir(path).await?;
    Ok(())
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
