//! Downloads: one file, or a folder recursively, [`PARALLEL_FILES`] files
//! at a time. A file goes to `LOCAL.peergos-part` and is renamed into
//! place once synced; the part is resumed only if `LOCAL.peergos-part.id`
//! says it is part of this very file at this very version.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;

use super::{in_parallel, remote_tree, Progress, Summary, TransferError};
use crate::{Kind, RemoteFs, Result};

/// Downloaded pieces (up to 1 MiB each) waiting for the local disk.
const WRITES_WAITING: usize = 8;

/// Downloads the file `remote`, or with `recursive` the folder, to
/// `local` (an existing local directory receives a file under its own
/// name), reporting bytes to `progress`.
pub async fn download(
    fs: &Arc<RemoteFs>,
    remote: &str,
    local: &Path,
    recursive: bool,
    progress: Arc<dyn Progress>,
) -> Result<Summary> {
    let entry = fs.stat(remote).await?;
    if entry.kind == Kind::File {
        let local = if local.is_dir() {
            local.join(&entry.name)
        } else {
            local.to_path_buf()
        };
        progress.total(entry.size);
        let bytes = get_file(fs, remote, &local, progress.as_ref()).await?;
        return Ok(Summary {
            files: 1,
            bytes,
            skipped: 0,
        });
    }
    if !recursive {
        return Err(TransferError::IsADirectory(remote.to_string()).into());
    }
    let root = remote.trim_end_matches('/').to_string();
    let (dirs, files) = remote_tree(fs, &root).await?;
    std::fs::create_dir_all(local).map_err(TransferError::local("creating", local))?;
    for dir in &dirs {
        let path = local.join(dir.trim_start_matches('/'));
        std::fs::create_dir_all(&path).map_err(TransferError::local("creating", &path))?;
    }
    in_parallel(files, progress.as_ref(), |relative| {
        let fs = Arc::clone(fs);
        let remote = format!("{root}{relative}");
        let local = local.join(relative.trim_start_matches('/'));
        let progress = Arc::clone(&progress);
        async move { get_file(&fs, &remote, &local, progress.as_ref()).await }
    })
    .await
}

/// Downloads one file, resuming from a matching part file. A destination
/// that is not a regular file (`/dev/null`, `/dev/stdout`, a FIFO) is
/// written to where it is, and a symbolic link to a regular file gets its
/// target written: renaming a finished part over either would put a
/// regular file in its place.
async fn get_file(
    fs: &RemoteFs,
    remote: &str,
    local: &Path,
    progress: &dyn Progress,
) -> Result<u64> {
    let size = fs.stat(remote).await?.size;
    let special = |meta: &std::fs::Metadata| !meta.is_file() && !meta.is_dir();
    let local = match tokio::fs::symlink_metadata(local).await {
        Ok(meta) if meta.file_type().is_symlink() => match tokio::fs::metadata(local).await {
            Ok(target) if target.is_file() => tokio::fs::canonicalize(local)
                .await
                .map_err(TransferError::local("following", local))?,
            Ok(target) if special(&target) => {
                return get_in_place(fs, remote, local, size, progress).await;
            }
            _ => local.to_path_buf(),
        },
        Ok(meta) if special(&meta) => return get_in_place(fs, remote, local, size, progress).await,
        _ => local.to_path_buf(),
    };
    let local = local.as_path();
    let part = with_suffix(local, ".peergos-part");
    let id_file = with_suffix(local, ".peergos-part.id");
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
            .map_err(TransferError::local("writing", &id_file))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(offset > 0)
        .write(true)
        .truncate(offset == 0)
        .open(&part)
        .map_err(TransferError::local("creating", &part))?;
    progress.advance(offset);
    let file = copy_to(fs, remote, offset, size, file, progress).await?;
    tokio::task::spawn_blocking(move || file.sync_all())
        .await?
        .map_err(TransferError::local("syncing", &part))?;
    tokio::fs::rename(&part, local)
        .await
        .map_err(TransferError::local("renaming the finished part to", local))?;
    let _ = tokio::fs::remove_file(&id_file).await;
    Ok(size)
}

/// `path` with `suffix` appended to its last component.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
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
    progress: &dyn Progress,
) -> Result<u64> {
    let out = std::fs::OpenOptions::new()
        .write(true)
        .open(local)
        .map_err(TransferError::local("opening", local))?;
    copy_to(fs, remote, 0, size, out, progress).await?;
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
    progress: &dyn Progress,
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
            progress.advance(piece.len() as u64);
            if pieces_tx.send(piece).await.is_err() {
                // The writer stopped: its error says why.
                break;
            }
        }
        Ok::<u64, crate::Error>(at)
    }
    .await;
    drop(pieces_tx);
    let out = writer
        .await?
        .map_err(TransferError::local("writing the download of", remote))?;
    let at = fetched?;
    if at < size {
        return Err(TransferError::EndedEarly {
            path: remote.to_string(),
            at,
            size,
        }
        .into());
    }
    Ok(out)
}
