//! A POSIX-shaped view of an encrypted Peergos filesystem: inode numbers,
//! open file handles with buffered writes, and caches that spare the
//! server repeated questions. `peergos-fuse` is a thin adapter from the
//! kernel's FUSE requests to [`Vfs`]; nothing here knows about FUSE, so the
//! layer can back other front ends (an NFS or 9P server, a test harness).
//!
//! - **Inodes**: every path the kernel is told about gets a number that
//!   lasts until the kernel forgets it; renames keep numbers.
//! - **Caching**: directory listings (which hold every child's size and
//!   time) are kept until something changes them. This mount's own
//!   changes edit the cache in place; changes by other clients are found
//!   by [`Vfs::refresh`], which reads the writers' pointers and drops the
//!   cache when any moved ([`Vfs::spawn_refresher`] runs it on a timer).
//! - **Writes** gather in the handle ([`Dirty`]) and are committed a chunk
//!   (5 MiB) at a time in the background, one commit in flight per handle;
//!   `flush`, `fsync` and `release` commit the rest and report any failure.
//!   Each commit is atomic, so a crash leaves the file as of the last
//!   commit, never a torn chunk.
//! - **Reads** go through a snapshot of the file taken at the first read
//!   (renewed after this handle commits or the cache is dropped): small
//!   reads fetch only the 1 MiB fragments they touch, sequential reads
//!   switch to whole chunks with the next three fetched ahead. Bytes still
//!   waiting to be committed are laid over what the server holds.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod dirty;
mod error;
mod inode;

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

pub use crate::dirty::{CommitFirst, Dirty};
pub use crate::error::Error;
pub use crate::inode::{child, Inodes, ROOT};

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

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

    /// The directory's children, hidden ones included, from the cache or
    /// the filesystem.
    async fn listing(&self, dir: &str) -> Result<Arc<Vec<Entry>>> {
        let epoch = {
            let cache = lock(&self.inner.cache);
            if let Some(listing) = cache.listings.get(dir) {
                return Ok(Arc::clone(listing));
            }
            cache.epoch
        };
        let entries = match self.fs_path(dir)? {
            None => {
                let mut file = self.inner.fs.stat("/").await?;
                if let Some(name) = &self.inner.options.single_file {
                    file.name = name.clone();
                }
                vec![file]
            }
            Some(path) => self.inner.fs.ls_all(&path).await?,
        };
        self.inner.listings.fetch_add(1, Ordering::Relaxed);
        let entries = Arc::new(entries);
        let mut cache = lock(&self.inner.cache);
        if cache.epoch == epoch {
            cache.listings.insert(dir.to_string(), Arc::clone(&entries));
        }
        Ok(entries)
    }

    /// What is at `path` in the mount.
    async fn entry(&self, path: &str) -> Result<Entry> {
        if path == "/" {
            if let Some(root) = lock(&self.inner.cache).root.clone() {
                return Ok(root);
            }
            let root = match self.fs_path("/")? {
                None => Entry {
                    name: String::new(),
                    kind: Kind::Dir,
                    size: 0,
                    modified: 0,
                    mime: String::new(),
                    hidden: false,
                    writable: false,
                },
                Some(path) => self.inner.fs.stat(&path).await?,
            };
            lock(&self.inner.cache).root = Some(root.clone());
            return Ok(root);
        }
        match self.find(path).await? {
            Some(entry) if !entry.hidden => Ok(entry),
            _ => Err(peergos_cryptree::Error::NotFound { path: path.into() }.into()),
        }
    }

    /// What is at `path` (not the root), hidden entries included: hidden
    /// files (the social state, unfinished uploads) are not shown, but
    /// their names cannot be taken either.
    async fn find(&self, path: &str) -> Result<Option<Entry>> {
        let (dir, name) = parent_and_name(path);
        let listing = self.listing(&dir).await?;
        if let Some(entry) = listing.iter().find(|e| e.name == name) {
            return Ok(Some(entry.clone()));
        }
        Ok(lock(&self.inner.creating).get(path).cloned())
    }

    /// Files being created in `dir` (not stored yet), by name.
    fn creating_in(&self, dir: &str) -> Vec<Entry> {
        lock(&self.inner.creating)
            .iter()
            .filter(|(path, _)| parent_and_name(path).0 == dir)
            .map(|(_, entry)| entry.clone())
            .collect()
    }

    /// Stores the files being created at `path` or under it, so that an
    /// operation on the stored tree finds them.
    async fn store_created(&self, path: &str) -> Result<()> {
        let prefix = format!("{path}/");
        let paths: Vec<String> = lock(&self.inner.creating)
            .keys()
            .filter(|p| *p == path || p.starts_with(&prefix))
            .cloned()
            .collect();
        for p in paths {
            self.commit_inode_handles(&p).await?;
        }
        Ok(())
    }

    /// Refuses a new entry at `path` if anything, even hidden, is there.
    async fn require_free(&self, path: &str) -> Result<()> {
        match self.find(path).await? {
            Some(_) => Err(Error::Exists(path.to_string())),
            None => Ok(()),
        }
    }

    /// Records this mount's own change to `dir`: `entry` added or
    /// replaced (or, with None, `name` removed).
    fn cache_edit(&self, dir: &str, name: &str, entry: Option<Entry>) {
        let mut cache = lock(&self.inner.cache);
        cache.epoch += 1;
        if dir == "/" && name.is_empty() {
            return;
        }
        if let Some(listing) = cache.listings.get_mut(dir) {
            let list = Arc::make_mut(listing);
            list.retain(|e| e.name != name);
            if let Some(entry) = entry {
                let at = list.partition_point(|e| e.name < entry.name);
                list.insert(at, entry);
            }
        }
    }

    /// Forgets cached listings of `path` and everything under it.
    fn cache_drop_tree(&self, path: &str) {
        let prefix = format!("{path}/");
        let mut cache = lock(&self.inner.cache);
        cache.epoch += 1;
        cache
            .listings
            .retain(|p, _| p != path && !p.starts_with(&prefix));
    }

    /// Drops every cached answer: the next questions go to the filesystem.
    pub fn invalidate(&self) {
        let mut cache = lock(&self.inner.cache);
        cache.epoch += 1;
        cache.generation += 1;
        cache.listings.clear();
        cache.root = None;
    }

    /// Reads every writer's pointer the filesystem has seen; if any moved
    /// since the last call, drops the cache. Returns whether it did.
    pub async fn refresh(&self) -> Result<bool> {
        let mut last = self.inner.versions.lock().await;
        let now = self.inner.fs.versions().await?;
        let changed = last.as_ref().is_some_and(|seen| *seen != now);
        *last = Some(now);
        if changed {
            self.invalidate();
            self.inner.invalidations.fetch_add(1, Ordering::Relaxed);
        }
        Ok(changed)
    }

    /// Runs [`refresh`](Self::refresh) every `every` until the returned
    /// task is aborted. A failed refresh (the server is away) drops the
    /// cache, so nothing stale is served once it is back.
    pub fn spawn_refresher(&self, every: Duration) -> JoinHandle<()> {
        let vfs = self.clone();
        tokio::spawn(async move {
            let mut timer = tokio::time::interval(every);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                timer.tick().await;
                if let Err(e) = vfs.refresh().await {
                    tracing::warn!("checking for changes failed: {e}");
                    vfs.invalidate();
                }
            }
        })
    }

    fn attr_of(&self, ino: u64, entry: &Entry) -> Attr {
        let mut size = entry.size;
        if entry.kind == Kind::File {
            for handle in lock(&self.inner.handles).values() {
                if handle.ino == ino {
                    if let Some(len) = *lock(&handle.pending_len) {
                        size = len;
                    }
                }
            }
        }
        Attr {
            ino,
            kind: entry.kind,
            size,
            modified: entry.modified,
            writable: entry.writable && !self.inner.options.read_only,
        }
    }

    // ---- lookups ----

    /// Finds `name` in the directory `parent`; counts one kernel lookup.
    pub async fn lookup(&self, parent: u64, name: &std::ffi::OsStr) -> Result<Attr> {
        let name = name_str(name)?;
        let path = child(&self.path_of(parent)?, name);
        let entry = self.entry(&path).await?;
        let ino = lock(&self.inner.inodes).get_or_insert(&path, true);
        Ok(self.attr_of(ino, &entry))
    }

    /// The kernel dropped `count` lookups of `ino`.
    pub fn forget(&self, ino: u64, count: u64) {
        let pinned = lock(&self.inner.handles).values().any(|h| h.ino == ino);
        lock(&self.inner.inodes).forget(ino, count, pinned);
    }

    /// The inode's attributes.
    pub async fn getattr(&self, ino: u64) -> Result<Attr> {
        let path = self.path_of(ino)?;
        let entry = self.entry(&path).await?;
        Ok(self.attr_of(ino, &entry))
    }

    /// Changes size and modification time (milliseconds). Through an
    /// open handle the change waits with its other bytes; otherwise it is
    /// committed at once. Directory times are kept by the filesystem
    /// itself and a new one is accepted without effect.
    pub async fn setattr(
        &self,
        ino: u64,
        fh: Option<u64>,
        size: Option<u64>,
        modified: Option<i64>,
    ) -> Result<Attr> {
        let path = self.path_of(ino)?;
        if size.is_none() && modified.is_none() {
            return self.getattr(ino).await;
        }
        self.writable_mount()?;
        let entry = self.entry(&path).await?;
        if entry.kind == Kind::Dir {
            if size.is_some() {
                return Err(peergos_cryptree::Error::IsADirectory { path }.into());
            }
            return Ok(self.attr_of(ino, &entry));
        }
        // Through a handle (ftruncate, futimens), the change waits with
        // the handle's bytes, in order.
        if let Some(handle) = fh
            .and_then(|fh| self.handle(fh).ok())
            .filter(|h| h.writable)
        {
            let mut state = handle.state.lock().await;
            if let Some(size) = size {
                if state.dirty.truncate(size).is_err() {
                    self.commit_now(&handle, &mut state).await?;
                    let _ = state.dirty.truncate(size);
                }
            }
            if let Some(modified) = modified {
                state.dirty.set_modified(modified);
            }
            self.note_pending(&handle, &state).await;
            drop(state);
            let mut attr = self.getattr(ino).await?;
            if let Some(modified) = modified {
                attr.modified = modified;
            }
            return Ok(attr);
        }
        // By path (truncate, utimensat): whatever open handles hold is
        // committed first, so a later commit of theirs cannot undo this.
        self.commit_inode_handles(&path).await?;
        let fs_path = self.fs_path(&path)?.ok_or(Error::ReadOnlyMount)?;
        let patch = peergos_cryptree::Patch {
            size,
            writes: Vec::new(),
            modified,
        };
        let mut updated = self.inner.fs.patch(&fs_path, &patch).await?;
        self.inner.commits.fetch_add(1, Ordering::Relaxed);
        updated.name = entry.name.clone();
        let (dir, name) = parent_and_name(&path);
        self.cache_edit(&dir, &name, Some(updated.clone()));
        Ok(self.attr_of(ino, &updated))
    }

    // ---- directories ----

    /// Makes a directory.
    pub async fn mkdir(&self, parent: u64, name: &std::ffi::OsStr) -> Result<Attr> {
        let Target {
            dir,
            name,
            path,
            fs_path,
        } = self.target(parent, name)?;
        self.require_free(&path).await?;
        let entry = self.inner.fs.mkdir(&fs_path).await?;
        self.inner.commits.fetch_add(1, Ordering::Relaxed);
        self.cache_edit(&dir, name, Some(entry.clone()));
        let ino = lock(&self.inner.inodes).get_or_insert(&path, true);
        Ok(self.attr_of(ino, &entry))
    }

    /// Removes an empty directory.
    pub async fn rmdir(&self, parent: u64, name: &std::ffi::OsStr) -> Result<()> {
        let Target {
            dir,
            name,
            path,
            fs_path,
        } = self.target(parent, name)?;
        self.store_created(&path).await?;
        self.inner.fs.rmdir(&fs_path).await?;
        self.inner.commits.fetch_add(1, Ordering::Relaxed);
        self.cache_edit(&dir, name, None);
        self.cache_drop_tree(&path);
        lock(&self.inner.inodes).remove(&path);
        Ok(())
    }

    /// Opens a directory for reading: its entries (with `.` and `..`) as
    /// they are now, so offsets stay stable across `readdir` calls.
    pub async fn opendir(&self, ino: u64) -> Result<u64> {
        let path = self.path_of(ino)?;
        let entry = self.entry(&path).await?;
        if entry.kind != Kind::Dir {
            return Err(peergos_cryptree::Error::NotADirectory { path }.into());
        }
        let listing = self.listing(&path).await?;
        let (parent, _) = parent_and_name(&path);
        let mut entries = Vec::with_capacity(listing.len() + 2);
        {
            let mut inodes = lock(&self.inner.inodes);
            let parent_ino = if path == "/" {
                ROOT
            } else {
                inodes.get_or_insert(&parent, false)
            };
            entries.push(DirEntry {
                ino,
                name: ".".into(),
                kind: Kind::Dir,
            });
            entries.push(DirEntry {
                ino: parent_ino,
                name: "..".into(),
                kind: Kind::Dir,
            });
            let creating = self.creating_in(&path);
            for e in listing.iter().filter(|e| !e.hidden).chain(&creating) {
                entries.push(DirEntry {
                    ino: inodes.get_or_insert(&child(&path, &e.name), false),
                    name: e.name.clone(),
                    kind: e.kind,
                });
            }
        }
        let fh = self.inner.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.inner.dirs).insert(fh, Arc::new(entries));
        Ok(fh)
    }

    /// The entries of an open directory from position `offset` on.
    pub fn readdir(&self, fh: u64, offset: u64) -> Result<Vec<DirEntry>> {
        let entries = lock(&self.inner.dirs)
            .get(&fh)
            .cloned()
            .ok_or(Error::UnknownHandle(fh))?;
        Ok(entries
            .get(offset as usize..)
            .map(<[DirEntry]>::to_vec)
            .unwrap_or_default())
    }

    /// Closes an open directory.
    pub fn releasedir(&self, fh: u64) {
        lock(&self.inner.dirs).remove(&fh);
    }

    // ---- names ----

    /// Removes a file.
    pub async fn unlink(&self, parent: u64, name: &std::ffi::OsStr) -> Result<()> {
        let Target {
            dir,
            name,
            path,
            fs_path,
        } = self.target(parent, name)?;
        if self.entry(&path).await?.kind == Kind::Dir {
            return Err(peergos_cryptree::Error::IsADirectory { path }.into());
        }
        if lock(&self.inner.creating).remove(&path).is_some() {
            // Never stored: forgetting the path is the whole removal (the
            // handle finds no path to commit to).
            lock(&self.inner.inodes).remove(&path);
            return Ok(());
        }
        self.inner.fs.rm(&fs_path).await?;
        self.inner.commits.fetch_add(1, Ordering::Relaxed);
        self.cache_edit(&dir, name, None);
        lock(&self.inner.inodes).remove(&path);
        Ok(())
    }

    /// Moves `name` in `parent` to `new_name` in `new_parent`, replacing a
    /// file there (or an empty directory, by a directory) in one commit.
    /// `flags` may hold [`RENAME_NOREPLACE`].
    pub async fn rename(
        &self,
        parent: u64,
        name: &std::ffi::OsStr,
        new_parent: u64,
        new_name: &std::ffi::OsStr,
        flags: u32,
    ) -> Result<()> {
        if flags & !RENAME_NOREPLACE != 0 {
            return Err(Error::RenameFlags(flags));
        }
        let source = self.target(parent, name)?;
        let dest = self.target(new_parent, new_name)?;
        let (dir, name, from, fs_from) = (source.dir, source.name, source.path, source.fs_path);
        let (new_dir, new_name, to, fs_to) = (dest.dir, dest.name, dest.path, dest.fs_path);
        let moving = self.entry(&from).await?;
        match self.find(&to).await? {
            Some(existing) if existing.hidden || flags & RENAME_NOREPLACE != 0 => {
                return Err(Error::Exists(to));
            }
            _ => {}
        }
        // Commit what open handles of the moving file hold, under its old
        // name, so nothing is committed to a path that is gone; files being
        // created inside a moving folder are stored first.
        self.store_created(&from).await?;
        self.commit_inode_handles(&from).await?;
        self.inner.fs.rename(&fs_from, &fs_to).await?;
        self.inner.commits.fetch_add(1, Ordering::Relaxed);
        self.cache_edit(&dir, name, None);
        let mut moved = moving;
        moved.name = new_name.to_string();
        self.cache_edit(&new_dir, new_name, Some(moved));
        self.cache_drop_tree(&from);
        self.cache_drop_tree(&to);
        lock(&self.inner.inodes).rename(&from, &to);
        Ok(())
    }

    async fn commit_inode_handles(&self, path: &str) -> Result<()> {
        let ino = lock(&self.inner.inodes).get_or_insert(path, false);
        let handles: Vec<Arc<Handle>> = lock(&self.inner.handles)
            .values()
            .filter(|h| h.ino == ino && h.writable)
            .cloned()
            .collect();
        for handle in handles {
            let mut state = handle.state.lock().await;
            self.commit_now(&handle, &mut state).await?;
        }
        Ok(())
    }

    // ---- files ----

    fn handle(&self, fh: u64) -> Result<Arc<Handle>> {
        lock(&self.inner.handles)
            .get(&fh)
            .cloned()
            .ok_or(Error::UnknownHandle(fh))
    }

    fn new_handle(&self, ino: u64, writable: bool, state: HandleState) -> u64 {
        let fh = self.inner.next_fh.fetch_add(1, Ordering::Relaxed);
        let handle = Arc::new(Handle {
            ino,
            writable,
            pending_len: Mutex::new(None),
            state: tokio::sync::Mutex::new(state),
        });
        lock(&self.inner.handles).insert(fh, handle);
        fh
    }

    /// Creates an empty file and opens it for writing. It is stored by the
    /// handle's first commit (with its first bytes, in one upload); until
    /// then only this mount sees it.
    pub async fn create(&self, parent: u64, name: &std::ffi::OsStr) -> Result<(Attr, u64)> {
        let Target {
            dir,
            name,
            path,
            fs_path: _,
        } = self.target(parent, name)?;
        if !self.entry(&dir).await?.writable {
            return Err(peergos_cryptree::Error::ReadOnly { path: dir }.into());
        }
        self.require_free(&path).await?;
        // Nothing is stored yet: the handle's first commit (a full chunk,
        // fsync or close) makes the file with its bytes in one upload.
        let entry = Entry {
            name: name.to_string(),
            kind: Kind::File,
            size: 0,
            modified: now_ms(),
            mime: String::new(),
            hidden: false,
            writable: true,
        };
        lock(&self.inner.creating).insert(path.clone(), entry.clone());
        let ino = lock(&self.inner.inodes).get_or_insert(&path, true);
        let state = HandleState {
            creating: true,
            ..HandleState::default()
        };
        let fh = self.new_handle(ino, true, state);
        Ok((self.attr_of(ino, &entry), fh))
    }

    /// Opens a file; `truncate` (with `write`) empties it on the first
    /// commit.
    pub async fn open(&self, ino: u64, write: bool, truncate: bool) -> Result<u64> {
        let path = self.path_of(ino)?;
        // A second handle works on the stored file.
        self.store_created(&path).await?;
        let entry = self.entry(&path).await?;
        if entry.kind == Kind::Dir {
            return Err(peergos_cryptree::Error::IsADirectory { path }.into());
        }
        let mut state = HandleState::default();
        if write {
            self.writable_mount()?;
            if !entry.writable {
                return Err(peergos_cryptree::Error::ReadOnly { path }.into());
            }
            if truncate {
                let _ = state.dirty.truncate(0);
            }
        }
        let fh = self.new_handle(ino, write, state);
        if write && truncate {
            let handle = self.handle(fh)?;
            *lock(&handle.pending_len) = Some(0);
        }
        Ok(fh)
    }

    /// Records the file's length with uncommitted bytes, for `getattr`.
    async fn note_pending(&self, handle: &Handle, state: &HandleState) {
        let pending = if state.dirty.is_empty() && state.inflight.is_none() {
            None
        } else {
            match self.stored_len(handle, state).await {
                Ok(stored) => {
                    let after_inflight = state
                        .inflight
                        .as_ref()
                        .map_or(stored, |f| f.change.len(stored));
                    Some(state.dirty.len(after_inflight))
                }
                Err(_) => None,
            }
        };
        *lock(&handle.pending_len) = pending;
    }

    /// The committed length the handle's snapshot (or the cache) knows.
    async fn stored_len(&self, handle: &Handle, state: &HandleState) -> Result<u64> {
        if state.creating {
            return Ok(0);
        }
        let generation = lock(&self.inner.cache).generation;
        if let Some(reader) = &state.reader {
            if reader.generation == generation {
                return Ok(reader.file.size());
            }
        }
        let path = self.path_of(handle.ino)?;
        Ok(self.entry(&path).await?.size)
    }

    /// Waits for the commit in flight, if any; its failure becomes the
    /// handle's error.
    async fn settle(&self, state: &mut HandleState) {
        if let Some(inflight) = state.inflight.take() {
            let outcome = match inflight.task.await {
                Ok(outcome) => outcome,
                Err(e) => Err(peergos_cryptree::Error::Join(e).into()),
            };
            state.reader = None;
            if let Err(e) = outcome {
                state.error.get_or_insert(e);
            }
            // The task has ended, so the change is no longer shared.
            state.dirty.recycle(inflight.change);
        }
    }

    /// Starts committing what waits, in the background, after the
    /// previous commit.
    async fn commit_background(&self, handle: &Handle, state: &mut HandleState) -> Result<()> {
        self.settle(state).await;
        if state.dirty.is_empty() && !state.creating {
            return Ok(());
        }
        let change = Arc::new(state.dirty.take_whole_chunks(CHUNK_SIZE));
        if self.path_of(handle.ino).is_err() {
            // Removed while open: the bytes have nowhere to go.
            return Ok(());
        }
        if std::mem::take(&mut state.creating) {
            // The first commit of a new file makes it, here and now.
            if let Err(e) = self.commit_change(handle.ino, &change, true).await {
                state.error.get_or_insert(e);
            }
            return Ok(());
        }
        let vfs = self.clone();
        let job = Arc::clone(&change);
        let ino = handle.ino;
        let task = tokio::spawn(async move { vfs.commit_patch(ino, &job).await });
        state.inflight = Some(Inflight { change, task });
        Ok(())
    }

    /// Commits what waits and reports any failure since the last report.
    async fn commit_now(&self, handle: &Handle, state: &mut HandleState) -> Result<()> {
        self.settle(state).await;
        if !state.dirty.is_empty() || state.creating {
            let change = Arc::new(state.dirty.take_change());
            let create = std::mem::take(&mut state.creating);
            state.reader = None;
            if self.path_of(handle.ino).is_ok() {
                if let Err(e) = self.commit_change(handle.ino, &change, create).await {
                    state.error.get_or_insert(e);
                }
            }
            state.dirty.recycle(change);
        }
        self.note_pending(handle, state).await;
        match state.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Commits `change` to the file's path at the time of the commit (it
    /// may have been renamed since the bytes were written).
    /// A file made by `create` is stored by its first commit (`create`).
    async fn commit_change(&self, ino: u64, change: &Arc<Dirty>, create: bool) -> Result<Entry> {
        if !create {
            return self.commit_patch(ino, change).await;
        }
        let path = &self.path_of(ino)?;
        let fs_path = self.fs_path(path)?.ok_or(Error::ReadOnlyMount)?;
        tracing::debug!("creating {path} with {} bytes", change.bytes());
        let stored = {
            match change.from_empty() {
                // The common case: one upload makes the file with its bytes.
                Some(bytes) => {
                    let options = peergos_cryptree::UploadOptions {
                        modified: change.modified(),
                        ..Default::default()
                    };
                    let (fs_dir, name) = parent_and_name(&fs_path);
                    self.inner
                        .fs
                        .write_files(&fs_dir, vec![(name, bytes.to_vec(), options)])
                        .await
                        .and_then(|mut made| {
                            made.pop().ok_or(peergos_cryptree::Error::Task(
                                "a one-file write returned no entry".into(),
                            ))
                        })
                }
                None => {
                    let made = self.inner.fs.write_file(&fs_path, &[]).await;
                    self.inner.commits.fetch_add(1, Ordering::Relaxed);
                    match made {
                        Ok(_) => self.inner.fs.patch(&fs_path, &change.patch()).await,
                        Err(e) => Err(e),
                    }
                }
            }
        };
        lock(&self.inner.creating).remove(path);
        self.stored(path, stored?)
    }

    /// Commits a change to a stored file (a `Send` future, for background
    /// commits).
    async fn commit_patch(&self, ino: u64, change: &Arc<Dirty>) -> Result<Entry> {
        let path = &self.path_of(ino)?;
        let fs_path = self.fs_path(path)?.ok_or(Error::ReadOnlyMount)?;
        tracing::debug!("committing {} bytes to {path}", change.bytes());
        let entry = self.inner.fs.patch(&fs_path, &change.patch()).await?;
        self.stored(path, entry)
    }

    /// Records a commit's outcome in the cache.
    fn stored(&self, path: &str, mut entry: Entry) -> Result<Entry> {
        self.inner.commits.fetch_add(1, Ordering::Relaxed);
        let (dir, name) = parent_and_name(path);
        entry.name = name.clone();
        self.cache_edit(&dir, &name, Some(entry.clone()));
        Ok(entry)
    }

    /// Writes `data` at `offset` through an open handle. The bytes wait in
    /// the handle; a full chunk's worth starts a commit, unless one is in
    /// flight: then up to six chunks gather for the next.
    pub async fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<u32> {
        let handle = self.handle(fh)?;
        if !handle.writable {
            return Err(Error::NotOpenForWriting(fh));
        }
        let mut state = handle.state.lock().await;
        if let Some(e) = state.error.take() {
            return Err(e);
        }
        state.dirty.write(offset, data);
        let waiting = state.dirty.bytes() as u64;
        if waiting >= CHUNK_SIZE {
            let busy = state
                .inflight
                .as_ref()
                .is_some_and(|inflight| !inflight.task.is_finished());
            if !busy || waiting >= GATHER_CHUNKS * CHUNK_SIZE {
                self.commit_background(&handle, &mut state).await?;
            }
        }
        self.note_pending(&handle, &state).await;
        Ok(data.len() as u32)
    }

    /// Commits what the handle holds (`flush` on close and `fsync`).
    pub async fn fsync(&self, fh: u64) -> Result<()> {
        let handle = self.handle(fh)?;
        let mut state = handle.state.lock().await;
        self.commit_now(&handle, &mut state).await
    }

    /// Commits what the handle holds and closes it.
    pub async fn release(&self, fh: u64) -> Result<()> {
        let handle = self.handle(fh)?;
        let outcome = {
            let mut state = handle.state.lock().await;
            if let Some(reader) = &mut state.reader {
                for (_, task) in reader.prefetch.drain(..) {
                    task.abort();
                }
            }
            self.commit_now(&handle, &mut state).await
        };
        lock(&self.inner.handles).remove(&fh);
        // A file removed while open has nowhere to commit to.
        if self.path_of(handle.ino).is_err() {
            return Ok(());
        }
        outcome
    }

    /// Commits every open handle (before unmounting).
    pub async fn commit_all(&self) -> Result<()> {
        let handles: Vec<Arc<Handle>> = lock(&self.inner.handles).values().cloned().collect();
        let mut first = None;
        for handle in handles {
            let mut state = handle.state.lock().await;
            if let Err(e) = self.commit_now(&handle, &mut state).await {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Reads up to `size` bytes at `offset` through an open handle,
    /// including bytes not yet committed.
    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        let handle = self.handle(fh)?;
        let mut state = handle.state.lock().await;
        if state
            .inflight
            .as_ref()
            .is_some_and(|inflight| inflight.task.is_finished())
        {
            self.settle(&mut state).await;
        }
        let generation = lock(&self.inner.cache).generation;
        if state.creating {
            // Not stored yet: every byte is in the handle.
            let mut buf = Vec::new();
            state.dirty.overlay(0, offset, size as usize, &mut buf);
            return Ok(buf);
        }
        if state
            .reader
            .as_ref()
            .is_none_or(|r| r.generation != generation)
        {
            let path = self.path_of(handle.ino)?;
            let fs_path = self.fs_path(&path)?.ok_or(Error::ReadOnlyMount)?;
            let file = Arc::new(self.inner.fs.open_file(&fs_path).await?);
            state.reader = Some(Reader {
                generation,
                file,
                chunks: Vec::new(),
                prefetch: std::collections::VecDeque::new(),
                next_offset: 0,
                sequential: 0,
            });
        }
        let want = size as usize;
        let (mut buf, stored) = {
            let Some(reader) = state.reader.as_mut() else {
                return Ok(Vec::new());
            };
            let stored = reader.file.size();
            let end = offset.saturating_add(want as u64).min(stored);
            let buf = if offset < end {
                self.read_stored(reader, offset, (end - offset) as usize)
                    .await?
            } else {
                Vec::new()
            };
            (buf, stored)
        };
        let mut len = stored;
        if let Some(inflight) = &state.inflight {
            inflight.change.overlay(len, offset, want, &mut buf);
            len = inflight.change.len(len);
        }
        state.dirty.overlay(len, offset, want, &mut buf);
        Ok(buf)
    }

    /// Committed bytes `offset..offset + len` of the handle's snapshot.
    async fn read_stored(&self, reader: &mut Reader, offset: u64, len: usize) -> Result<Vec<u8>> {
        // The kernel reads ahead with several requests at once, so they
        // may arrive a little out of order: near the last one still counts
        // as sequential.
        if offset.abs_diff(reader.next_offset) <= SEQUENTIAL_SLACK {
            reader.sequential += len as u64;
        } else {
            reader.sequential = 0;
        }
        reader.next_offset = reader.next_offset.max(offset + len as u64);
        if reader.sequential < SEQUENTIAL_AFTER {
            // Small or scattered reads: only the fragments they touch.
            return Ok(self.inner.fs.read_open(&reader.file, offset, len).await?);
        }
        let mut out = Vec::with_capacity(len);
        let end = offset + len as u64;
        let mut at = offset;
        while at < end {
            let index = at / CHUNK_SIZE;
            let chunk = self.chunk(reader, index).await?;
            let start = index * CHUNK_SIZE;
            let from = (at - start) as usize;
            let to = ((end - start) as usize).min(chunk.len());
            if from >= to {
                break;
            }
            chunk.copy_range(from, to, &mut out);
            at = start + to as u64;
        }
        // Fetch the next chunks while this one is read.
        let mut next = end / CHUNK_SIZE + 1;
        while next < reader.file.chunk_count() && next <= end / CHUNK_SIZE + READ_AHEAD {
            let known = reader.prefetch.iter().any(|(i, _)| *i == next)
                || reader.chunks.iter().any(|(i, _)| *i == next);
            if !known {
                let fs = Arc::clone(&self.inner.fs);
                let file = Arc::clone(&reader.file);
                let index = next;
                reader.prefetch.push_back((
                    index,
                    tokio::spawn(async move { Chunk::read(&fs, &file, index).await }),
                ));
            }
            next += 1;
        }
        Ok(out)
    }

    async fn chunk(&self, reader: &mut Reader, index: u64) -> Result<Chunk> {
        if let Some((_, data)) = reader.chunks.iter().find(|(i, _)| *i == index) {
            return Ok(data.clone());
        }
        // Fetches ahead of a position the reader left are dropped.
        while reader.prefetch.front().is_some_and(|(i, _)| *i < index) {
            if let Some((_, task)) = reader.prefetch.pop_front() {
                task.abort();
            }
        }
        let ahead = if reader.prefetch.front().is_some_and(|(i, _)| *i == index) {
            reader.prefetch.pop_front()
        } else {
            None
        };
        let data = match ahead {
            Some((_, task)) => match task.await {
                Ok(outcome) => outcome?,
                Err(e) => return Err(peergos_cryptree::Error::Join(e).into()),
            },
            None => Chunk::read(&self.inner.fs, &reader.file, index).await?,
        };
        if reader.chunks.len() >= HANDLE_CHUNKS {
            reader.chunks.remove(0);
        }
        reader.chunks.push((index, data.clone()));
        Ok(data)
    }

    /// Space under the owner's quota.
    pub async fn statfs(&self) -> Result<StatFs> {
        const BLOCK: u64 = 4096;
        let (used, quota) = match self.inner.space.get() {
            Some(source) => source.space().await.map_err(Error::Space)?,
            None => (0, 0),
        };
        Ok(StatFs {
            block_size: BLOCK as u32,
            blocks: quota / BLOCK,
            free: quota.saturating_sub(used) / BLOCK,
            name_max: 255,
        })
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
