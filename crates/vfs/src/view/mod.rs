//! [`Vfs`]: its state, and the operations split by concern into the
//! modules below.

mod cache;
mod handles;
mod namespace;
mod read;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use peergos_blockstore::BlockStore;
use peergos_cryptree::node::CHUNK_SIZE;
use peergos_cryptree::{Entry, Filesystem, Kind, OpenFile};
use peergos_keys::PublicKeyHash;
use peergos_pointers::PointerStore;
use tokio::task::JoinHandle;

use crate::dirty::Dirty;
use crate::inode::{child, Inodes, ROOT};
use crate::{Error, Result};

/// Bytes of sequential reading after which a handle reads whole chunks
/// and fetches the next chunks ahead.
const SEQUENTIAL_AFTER: u64 = 1 << 20;
/// Decrypted chunks a handle keeps for reading.
const HANDLE_CHUNKS: usize = 2;
/// Chunks fetched ahead of a sequential reader.
const READ_AHEAD: u64 = 3;
/// How far from the end of the last read a read may start and still count
/// as sequential.
const SEQUENTIAL_SLACK: u64 = 4 << 20;
/// Chunks' worth of written bytes a handle gathers while its previous
/// commit is in flight, before the writer waits for that commit: under a
/// steady stream of writes each commit carries several chunks, so the
/// fixed cost of a commit (the signed pointer update and the file's first
/// chunk) is paid once per several chunks, and the commit's pipeline of
/// puts drains and refills less often.
const GATHER_CHUNKS: u64 = 6;
/// `rename` flag: fail if the target exists.
pub const RENAME_NOREPLACE: u32 = 1;

/// How a mount behaves.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Refuse every change with `EROFS` (a read-only secret link).
    pub read_only: bool,
    /// The filesystem's root is this one file (a link to a file): the
    /// mount's root is a directory holding only it.
    pub single_file: Option<String>,
    /// The directory of the filesystem to show as the mount's root
    /// (default: its root).
    pub root: Option<String>,
}

/// Where the mount learns the owner's space usage, for `statfs`.
#[async_trait::async_trait]
pub trait SpaceSource: Send + Sync {
    /// Bytes used and the quota.
    async fn space(&self) -> std::result::Result<(u64, u64), String>;
}

/// What `getattr` tells about an inode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: u64,
    /// File or directory.
    pub kind: Kind,
    /// Size in bytes, including bytes written but not yet committed.
    pub size: u64,
    /// Last modification, milliseconds since the Unix epoch.
    pub modified: i64,
    /// Whether this mount can change it.
    pub writable: bool,
}

/// What `statfs` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatFs {
    /// Bytes per block.
    pub block_size: u32,
    /// Blocks in the quota.
    pub blocks: u64,
    /// Blocks still free under the quota.
    pub free: u64,
    /// The longest name.
    pub name_max: u32,
}

/// One directory entry, as `readdir` returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// Inode number.
    pub ino: u64,
    /// Its name (`.` and `..` included).
    pub name: String,
    /// File or directory.
    pub kind: Kind,
}

/// How many times the layer went to the filesystem underneath: what the
/// caches are judged by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Directory listings fetched.
    pub listings: u64,
    /// Commits made.
    pub commits: u64,
    /// Times the cache was dropped because a pointer moved.
    pub invalidations: u64,
}

struct Cache {
    /// Bumped by every change and every drop: a listing fetched across a
    /// bump is not stored.
    epoch: u64,
    /// Bumped when the cache is dropped: snapshots taken before are stale.
    generation: u64,
    listings: HashMap<String, Arc<Vec<Entry>>>,
    root: Option<Entry>,
}

struct Inflight {
    change: Arc<Dirty>,
    task: JoinHandle<Result<Entry>>,
}

/// A file chunk as its decrypted fragments, in order: kept as they arrived,
/// so a chunk is never copied into one buffer before reads copy out of it.
#[derive(Clone)]
struct Chunk {
    parts: Arc<[Bytes]>,
    len: usize,
}

impl Chunk {
    async fn read<B, P>(fs: &Filesystem<B, P>, file: &OpenFile, index: u64) -> Result<Chunk>
    where
        B: BlockStore + ?Sized,
        P: PointerStore + ?Sized,
    {
        let parts = fs.read_open_chunk_parts(file, index).await?;
        let len = parts.iter().map(Bytes::len).sum();
        Ok(Chunk {
            parts: parts.into(),
            len,
        })
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Appends bytes `from..to` of the chunk to `out`.
    fn copy_range(&self, from: usize, to: usize, out: &mut Vec<u8>) {
        let mut start = 0;
        for part in self.parts.iter() {
            let end = start + part.len();
            if end > from && start < to {
                out.extend_from_slice(&part[from.max(start) - start..to.min(end) - start]);
            }
            start = end;
        }
    }
}

struct Reader {
    generation: u64,
    file: Arc<OpenFile>,
    /// Recently read chunks, each as its decrypted fragments.
    chunks: Vec<(u64, Chunk)>,
    /// Chunks being fetched ahead, in order.
    prefetch: std::collections::VecDeque<(u64, JoinHandle<Result<Chunk>>)>,
    next_offset: u64,
    sequential: u64,
}

#[derive(Default)]
struct HandleState {
    /// The file was made by this handle and is not stored yet: its first
    /// commit creates it (with its bytes, in one upload when it can).
    creating: bool,
    dirty: Dirty,
    inflight: Option<Inflight>,
    /// A background commit's failure, reported by the next call.
    error: Option<Error>,
    reader: Option<Reader>,
}

struct Handle {
    ino: u64,
    writable: bool,
    /// The file's length with uncommitted bytes (None: nothing waits).
    pending_len: Mutex<Option<u64>>,
    state: tokio::sync::Mutex<HandleState>,
}

struct Inner<B: BlockStore + ?Sized, P: PointerStore + ?Sized> {
    fs: Arc<Filesystem<B, P>>,
    options: Options,
    space: std::sync::OnceLock<Arc<dyn SpaceSource>>,
    inodes: Mutex<Inodes>,
    cache: Mutex<Cache>,
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    /// Files made by `create` and not stored yet, by path.
    creating: Mutex<HashMap<String, Entry>>,
    dirs: Mutex<HashMap<u64, Arc<Vec<DirEntry>>>>,
    next_fh: AtomicU64,
    versions: tokio::sync::Mutex<Option<Vec<(PublicKeyHash, u64)>>>,
    listings: AtomicU64,
    commits: AtomicU64,
    invalidations: AtomicU64,
}

/// The POSIX view of one filesystem. Cheap to clone; every method takes
/// `&self` and may run concurrently with others.
pub struct Vfs<B: BlockStore + ?Sized + 'static, P: PointerStore + ?Sized + 'static> {
    inner: Arc<Inner<B, P>>,
}

impl<B: BlockStore + ?Sized + 'static, P: PointerStore + ?Sized + 'static> Clone for Vfs<B, P> {
    fn clone(&self) -> Self {
        Vfs {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// A name in a directory that an operation changes.
struct Target<'n> {
    dir: String,
    name: &'n str,
    path: String,
    fs_path: String,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn parent_and_name(path: &str) -> (String, String) {
    match path.rsplit_once('/') {
        Some(("", name)) => ("/".into(), name.into()),
        Some((dir, name)) => (dir.into(), name.into()),
        None => ("/".into(), path.into()),
    }
}

fn name_str(name: &std::ffi::OsStr) -> Result<&str> {
    name.to_str().ok_or(Error::NotUtf8)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl<B: BlockStore + ?Sized + 'static, P: PointerStore + ?Sized + 'static> Vfs<B, P> {
    /// A view of `fs`.
    pub fn new(fs: Arc<Filesystem<B, P>>, options: Options) -> Self {
        Vfs {
            inner: Arc::new(Inner {
                fs,
                options,
                space: std::sync::OnceLock::new(),
                inodes: Mutex::new(Inodes::default()),
                cache: Mutex::new(Cache {
                    epoch: 0,
                    generation: 0,
                    listings: HashMap::new(),
                    root: None,
                }),
                handles: Mutex::new(HashMap::new()),
                creating: Mutex::new(HashMap::new()),
                dirs: Mutex::new(HashMap::new()),
                next_fh: AtomicU64::new(1),
                versions: tokio::sync::Mutex::new(None),
                listings: AtomicU64::new(0),
                commits: AtomicU64::new(0),
                invalidations: AtomicU64::new(0),
            }),
        }
    }

    /// Reports space usage from `source` in [`statfs`](Self::statfs) (the
    /// first source given is kept).
    pub fn with_space(self, source: Arc<dyn SpaceSource>) -> Self {
        let _ = self.inner.space.set(source);
        self
    }

    /// The filesystem underneath.
    pub fn fs(&self) -> &Arc<Filesystem<B, P>> {
        &self.inner.fs
    }

    /// How often the layer has gone to the filesystem so far.
    pub fn counters(&self) -> Counters {
        Counters {
            listings: self.inner.listings.load(Ordering::Relaxed),
            commits: self.inner.commits.load(Ordering::Relaxed),
            invalidations: self.inner.invalidations.load(Ordering::Relaxed),
        }
    }

    /// Inodes currently known.
    pub fn inode_count(&self) -> usize {
        lock(&self.inner.inodes).len()
    }

    // ---- paths and the cache ----

    fn path_of(&self, ino: u64) -> Result<String> {
        lock(&self.inner.inodes)
            .path(ino)
            .ok_or(Error::UnknownInode(ino))
    }

    /// The path in the filesystem underneath for a path in the mount
    /// (None: the virtual root of a single-file mount).
    fn fs_path(&self, path: &str) -> Result<Option<String>> {
        match &self.inner.options.single_file {
            None => Ok(Some(match self.inner.options.root.as_deref() {
                None | Some("/") | Some("") => path.to_string(),
                Some(root) if path == "/" => root.to_string(),
                Some(root) => format!("{}{path}", root.trim_end_matches('/')),
            })),
            Some(name) => {
                if path == "/" {
                    return Ok(None);
                }
                if path.strip_prefix('/') == Some(name.as_str()) {
                    return Ok(Some("/".into()));
                }
                // The root only shows the linked file; nothing can be
                // added beside it.
                Err(peergos_cryptree::Error::ReadOnly { path: path.into() }.into())
            }
        }
    }

    /// Where a change to `name` in the directory `parent` applies: refused
    /// on a read-only mount and for names outside the filesystem (beside a
    /// linked file).
    fn target<'n>(&self, parent: u64, name: &'n std::ffi::OsStr) -> Result<Target<'n>> {
        self.writable_mount()?;
        let name = name_str(name)?;
        let dir = self.path_of(parent)?;
        let path = child(&dir, name);
        let fs_path = self.fs_path(&path)?.ok_or(Error::ReadOnlyMount)?;
        Ok(Target {
            dir,
            name,
            path,
            fs_path,
        })
    }

    fn writable_mount(&self) -> Result<()> {
        if self.inner.options.read_only {
            Err(Error::ReadOnlyMount)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any range of a chunk kept as parts reads the same bytes as the
        /// range of the joined chunk.
        #[test]
        fn prop_a_range_of_parts_is_the_range_of_the_whole(
            lens in proptest::collection::vec(1usize..64, 1..6),
            a in 0usize..400,
            b in 0usize..400,
        ) {
            let parts: Vec<Bytes> = lens
                .iter()
                .enumerate()
                .map(|(i, &n)| Bytes::from((0..n).map(|j| (i * 64 + j) as u8).collect::<Vec<_>>()))
                .collect();
            let whole = parts.concat();
            let chunk = Chunk { len: whole.len(), parts: parts.into() };
            let (from, to) = (a.min(b).min(whole.len()), a.max(b).min(whole.len()));
            let mut out = vec![7u8];
            chunk.copy_range(from, to, &mut out);
            prop_assert_eq!(&out[1..], &whole[from..to]);
            prop_assert_eq!(out[0], 7);
        }
    }
}
