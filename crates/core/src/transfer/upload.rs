//! Uploads: one file (resumable), or a folder: its tree made first, files
//! already there with the same size and time skipped, small files sent in
//! batches of up to [`BATCH_FILES`] or [`BATCH_BYTES`] per commit, large
//! ones on their own, [`PARALLEL_FILES`] at a time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};

use super::{
    in_parallel, mkdirs, Progress, Summary, TransferError, BATCH_BYTES, BATCH_FILES, SMALL_FILE,
};
use crate::{Kind, RemoteFs, Result, UploadOptions};

/// Uploads the file or folder `local` to `remote` (an existing directory
/// receives it under its own name), reporting bytes to `progress`.
pub async fn upload(
    fs: &Arc<RemoteFs>,
    local: &Path,
    remote: &str,
    progress: Arc<dyn Progress>,
) -> Result<Summary> {
    let meta = std::fs::metadata(local).map_err(TransferError::local("reading", local))?;
    let name = local
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| TransferError::NotUtf8(local.to_path_buf()))?;
    let target = match fs.stat(remote).await {
        Ok(entry) if entry.kind == Kind::Dir => remote_join(remote, Path::new(name))?,
        _ => remote.to_string(),
    };
    if meta.is_file() {
        progress.total(meta.len());
        let bytes = put_file(fs, local, &target, &progress).await?;
        return Ok(Summary {
            files: 1,
            bytes,
            skipped: 0,
        });
    }
    if !meta.is_dir() {
        return Err(TransferError::NotFileOrFolder(local.to_path_buf()).into());
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
    // size and modification time is left alone, so uploading again after
    // an interruption sends only what is missing.
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
    let mut summary = in_parallel(jobs, progress.as_ref(), |job| {
        let fs = Arc::clone(fs);
        let target = target.clone();
        let progress = Arc::clone(&progress);
        async move {
            match job {
                Job::Large(relative) => {
                    let remote = remote_join(&target, &relative)?;
                    put_file(&fs, &local.join(&relative), &remote, &progress).await
                }
                Job::Batch(parent, files) => {
                    put_batch(&fs, local, &target, &parent, files, progress.as_ref()).await
                }
            }
        }
    })
    .await?;
    summary.files = count;
    summary.skipped = skipped;
    Ok(summary)
}

/// One unit of a folder upload.
enum Job {
    /// A large file on its own (resumable).
    Large(PathBuf),
    /// Small files of one folder, written in one commit.
    Batch(PathBuf, Vec<LocalFile>),
}

/// A local file found by [`walk`]: its path under the root, size and
/// modification time (milliseconds).
struct LocalFile {
    path: PathBuf,
    size: u64,
    modified: Option<i64>,
}

fn modified_ms(meta: &std::fs::Metadata) -> Option<i64> {
    let time = meta.modified().ok()?;
    let since = time.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(since.as_millis()).ok()
}

/// The last component of a relative path, as UTF-8.
fn name_of(relative: &Path) -> Result<String> {
    Ok(relative
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| TransferError::NotUtf8(relative.to_path_buf()))?
        .to_string())
}

/// Every directory (parents first) and file under `root`, relative to it.
/// Symbolic links and special files are skipped.
fn walk(root: &Path) -> Result<(Vec<PathBuf>, Vec<LocalFile>)> {
    let (mut dirs, mut files) = (Vec::new(), Vec::new());
    let mut stack = vec![PathBuf::new()];
    while let Some(relative) = stack.pop() {
        let dir = root.join(&relative);
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .and_then(|entries| entries.collect::<std::io::Result<Vec<_>>>())
            .map_err(TransferError::local("reading", &dir))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = relative.join(entry.file_name());
            let kind = entry
                .file_type()
                .map_err(TransferError::local("reading", root.join(&path)))?;
            if kind.is_dir() {
                dirs.push(path.clone());
                stack.push(path);
            } else if kind.is_file() {
                let meta = entry
                    .metadata()
                    .map_err(TransferError::local("reading", root.join(&path)))?;
                files.push(LocalFile {
                    path,
                    size: meta.len(),
                    modified: modified_ms(&meta),
                });
            }
        }
    }
    Ok((dirs, files))
}

/// `base` with the components of `relative` appended.
fn remote_join(base: &str, relative: &Path) -> Result<String> {
    let mut out = base.trim_end_matches('/').to_string();
    for part in relative.components() {
        let name = part
            .as_os_str()
            .to_str()
            .ok_or_else(|| TransferError::NotUtf8(relative.to_path_buf()))?;
        out.push('/');
        out.push_str(name);
    }
    Ok(out)
}

/// Uploads one file, resumably.
async fn put_file(
    fs: &RemoteFs,
    local: &Path,
    remote: &str,
    progress: &Arc<dyn Progress>,
) -> Result<u64> {
    let file = tokio::fs::File::open(local)
        .await
        .map_err(TransferError::local("opening", local))?;
    let meta = file
        .metadata()
        .await
        .map_err(TransferError::local("reading", local))?;
    let options = UploadOptions {
        modified: modified_ms(&meta),
        ..UploadOptions::default()
    };
    let reader = Counting {
        inner: file,
        progress: Arc::clone(progress),
        position: 0,
        reported: 0,
    };
    fs.upload_resumable(remote, reader, options).await?;
    Ok(meta.len())
}

/// Uploads small files of one folder with one commit.
async fn put_batch(
    fs: &RemoteFs,
    local: &Path,
    target: &str,
    parent: &Path,
    files: Vec<LocalFile>,
    progress: &dyn Progress,
) -> Result<u64> {
    let mut batch = Vec::with_capacity(files.len());
    let mut bytes = 0;
    for file in files {
        let path = local.join(&file.path);
        let data = tokio::fs::read(&path)
            .await
            .map_err(TransferError::local("reading", &path))?;
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
    fs.write_files(&dir, batch).await?;
    progress.advance(bytes);
    Ok(bytes)
}

/// A reader that reports how far into the file it got: a resumed upload
/// seeks past what is stored (that counts as done), and bytes read again
/// after seeking back are not counted twice.
struct Counting<R> {
    inner: R,
    progress: Arc<dyn Progress>,
    position: u64,
    reported: u64,
}

impl<R> Counting<R> {
    fn reached(&mut self, position: u64) {
        self.position = position;
        if position > self.reported {
            self.progress.advance(position - self.reported);
            self.reported = position;
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        let position = self.position + read;
        self.reached(position);
        poll
    }
}

impl<R: AsyncSeek + Unpin> AsyncSeek for Counting<R> {
    fn start_seek(mut self: Pin<&mut Self>, position: std::io::SeekFrom) -> std::io::Result<()> {
        Pin::new(&mut self.inner).start_seek(position)
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        let poll = Pin::new(&mut self.inner).poll_complete(cx);
        if let Poll::Ready(Ok(position)) = &poll {
            self.reached(*position);
        }
        poll
    }
}
