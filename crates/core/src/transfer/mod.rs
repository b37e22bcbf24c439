//! Moving files and folders between the local disk and a Peergos
//! filesystem, as every front end needs it: uploads that batch small
//! files (many per commit), send large ones a few at a time, skip what is
//! already there unchanged and resume an interrupted file; downloads
//! that resume from a part file only when it is part of the same file at
//! the same version, and overlap the network with the local disk.
//!
//! Progress is reported through [`Progress`], so a terminal bar, a web
//! page or a sync status can show it.

mod download;
mod upload;

use std::path::PathBuf;

use crate::{Kind, RemoteFs};

pub use self::download::download;
pub use self::upload::upload;

/// Files in flight at once during a folder transfer.
pub const PARALLEL_FILES: usize = 4;

/// Files at most this large are uploaded in batches, many per commit.
pub const SMALL_FILE: u64 = 1 << 20;

/// The most files in one batch.
pub const BATCH_FILES: usize = 250;

/// The most bytes in one batch.
pub const BATCH_BYTES: u64 = 16 << 20;

/// Where a transfer reports how far it got. Called from several tasks at
/// once; implementations keep their own count.
pub trait Progress: Send + Sync {
    /// The bytes the transfer will move in all (called once, first).
    fn total(&self, _bytes: u64) {}
    /// `bytes` more were moved.
    fn advance(&self, bytes: u64);
}

/// A [`Progress`] that shows nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn advance(&self, _bytes: u64) {}
}

/// What a transfer did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Files moved.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Files left alone because the same file (size and modification
    /// time) was already there.
    pub skipped: u64,
}

/// What can go wrong moving files, beyond the filesystem's own errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// A local file or folder could not be read or written.
    #[error("{action} {}: {source}", .path.display())]
    Local {
        /// What was being done.
        action: &'static str,
        /// The local path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A local name is not UTF-8, which Peergos names must be.
    #[error("{} is not valid UTF-8 (Peergos names are)", .0.display())]
    NotUtf8(PathBuf),
    /// The local path is neither a file nor a folder.
    #[error("{} is neither a file nor a folder", .0.display())]
    NotFileOrFolder(PathBuf),
    /// A remote path that must be a folder is a file.
    #[error("{0}: not a directory")]
    NotADirectory(String),
    /// A folder was asked for as a file.
    #[error("{0}: is a directory (download it recursively)")]
    IsADirectory(String),
    /// The remote file ended before its size.
    #[error("{path} ended early at byte {at} of {size}")]
    EndedEarly {
        /// The remote file.
        path: String,
        /// Where it ended.
        at: u64,
        /// Its size.
        size: u64,
    },
}

impl TransferError {
    pub(crate) fn local(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> crate::Error {
        let path = path.into();
        move |source| {
            TransferError::Local {
                action,
                path,
                source,
            }
            .into()
        }
    }
}

/// Creates a directory and any missing parents.
pub async fn mkdirs(fs: &RemoteFs, path: &str) -> crate::Result<()> {
    let mut current = String::new();
    for name in path.split('/').filter(|n| !n.is_empty()) {
        current = format!("{current}/{name}");
        match fs.stat(&current).await {
            Ok(entry) if entry.kind == Kind::Dir => {}
            Ok(_) => return Err(TransferError::NotADirectory(current).into()),
            Err(_) => match fs.mkdir(&current).await {
                Ok(_) | Err(peergos_cryptree::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            },
        }
    }
    Ok(())
}

/// Every directory and file under a remote folder, as paths relative to
/// it (each starting with `/`), directories parents first; files with
/// their sizes.
pub async fn remote_tree(
    fs: &RemoteFs,
    root: &str,
) -> crate::Result<(Vec<String>, Vec<(String, u64)>)> {
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

/// Removes a folder and everything under it, deepest first.
pub async fn remove_tree(fs: &RemoteFs, path: &str) -> crate::Result<()> {
    let (dirs, files) = remote_tree(fs, path).await?;
    for (file, _) in files {
        fs.rm(&format!("{path}{file}")).await?;
    }
    for dir in dirs.iter().rev() {
        fs.rmdir(&format!("{path}{dir}")).await?;
    }
    fs.rmdir(path).await?;
    Ok(())
}

/// Runs `job` on each item, [`PARALLEL_FILES`] at a time, after telling
/// `progress` the items' total size; answers the items and bytes done.
async fn in_parallel<T, F, Fut>(
    items: Vec<(T, u64)>,
    progress: &dyn Progress,
    job: F,
) -> crate::Result<Summary>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = crate::Result<u64>>,
{
    use futures::{StreamExt, TryStreamExt};
    let total: u64 = items.iter().map(|(_, size)| size).sum();
    let files = items.len() as u64;
    progress.total(total);
    futures::stream::iter(items)
        .map(|(item, _)| job(item))
        .buffer_unordered(PARALLEL_FILES)
        .try_collect::<Vec<u64>>()
        .await?;
    Ok(Summary {
        files,
        bytes: total,
        skipped: 0,
    })
}
