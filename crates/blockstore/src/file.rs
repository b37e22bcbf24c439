//! A block store of flat files under a data directory, with its small
//! blocks in one sqlite database beside them.
//!
//! Layout (see `docs/design/blockstore.md`):
//!
//! ```text
//! <root>/blocks/<first digest byte, 2 hex>/<cid in base32>   blocks over SMALL_BLOCK_MAX
//! <root>/small.sqlite (+ -wal, -shm)                          blocks up to SMALL_BLOCK_MAX
//! <root>/tmp/<cid>.<random>.tmp                               writes in progress
//! ```
//!
//! A large block is written to `tmp/`, fsynced, renamed to its final name,
//! and the shard directory fsynced. A crash at any point leaves either the
//! complete block under its real name or nothing there (plus, perhaps, a
//! temp file, removed when the store is next opened). A put's small blocks
//! are one sqlite transaction, durable when it commits. Reads re-hash
//! every small block and every structured (DAG-CBOR) block, which the
//! server parses; a block that no longer matches its CID is reported as
//! [`Error::Corrupt`], never returned. Raw block files (encrypted file
//! fragments, opaque to the server and re-hashed by every reader) are
//! re-hashed on read only with [`FileOptions::verify_reads`]; a scrub
//! (`peergos-daemon scrub`) finds rot in them.
//!
//! Stores written before small blocks moved to the database keep them as
//! files: reads, listings and deletes look in both places, so no migration
//! is needed.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use peergos_ipld::{Block, Cid, Codec};
use peergos_keys::PublicKeyHash;

use crate::direct::{Direct, Outcome};
use crate::small::{SmallBlocks, SMALL_BLOCK_MAX};
use crate::transactions::Transactions;
use crate::{
    access, BlockAuth, BlockStore, Error, LocalBlockStore, PutBlocks, Result, TransactionId,
};

/// The most threads one put writes its large blocks on. Each waits for the
/// disk twice (its data, then its directory entry); on threads of their own
/// those waits overlap.
const WRITE_THREADS: usize = 8;

/// The small-block database's file name under the store's root.
const SMALL_DB: &str = "small.sqlite";

/// Blocks as files under a directory. Cheap to clone: clones share state.
#[derive(Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

struct Inner {
    blocks: PathBuf,
    tmp: PathBuf,
    small: SmallBlocks,
    transactions: Transactions,
    durable: bool,
    direct: Direct,
    verify_reads: bool,
}

/// How a [`FileStore`] uses the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileOptions {
    /// Wait for the disk before a put returns (fsync the files, their
    /// directories and the database). Off for a cache of copies that can be
    /// fetched again: a crash may then lose the latest blocks, but never
    /// leaves a half block under a real name.
    pub durable: bool,
    /// Write and read block files around the kernel's page cache (Linux
    /// `O_DIRECT`), which saves a copy of every byte; the store falls back
    /// to buffered I/O by itself on filesystems that refuse it.
    pub direct_io: bool,
    /// Re-hash raw block files on every read, as well as small and
    /// structured blocks (which are always re-hashed). Off by default:
    /// raw blocks are encrypted file fragments the server never parses,
    /// every client re-hashes what it downloads, and hashing them again
    /// here was half of the server's CPU on a download. A scrub finds
    /// rot instead.
    pub verify_reads: bool,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            durable: true,
            direct_io: true,
            verify_reads: false,
        }
    }
}

impl FileStore {
    /// Opens (creating if needed) a store rooted at `root` with the default
    /// [`FileOptions`], removing any temp files a crash left behind.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(root, FileOptions::default())
    }

    /// Opens (creating if needed) a store rooted at `root`, removing any
    /// temp files a crash left behind.
    pub fn open_with(root: impl AsRef<Path>, options: FileOptions) -> Result<Self> {
        let root = root.as_ref();
        let blocks = root.join("blocks");
        let tmp = root.join("tmp");
        fs::create_dir_all(&blocks).map_err(Error::io("create", &blocks))?;
        fs::create_dir_all(&tmp).map_err(Error::io("create", &tmp))?;
        for entry in fs::read_dir(&tmp).map_err(Error::io("list", &tmp))? {
            let path = entry.map_err(Error::io("list", &tmp))?.path();
            fs::remove_file(&path).map_err(Error::io("remove leftover", &path))?;
        }
        let direct = Direct::new(options.direct_io);
        let probe = tmp.join(format!("direct-io.{:016x}.probe", random_u64()));
        direct
            .probe(&probe)
            .map_err(Error::io("try direct I/O in", &tmp))?;
        let small = SmallBlocks::open(root.join(SMALL_DB), options.durable)?;
        Ok(FileStore {
            inner: Arc::new(Inner {
                blocks,
                tmp,
                small,
                transactions: Transactions::default(),
                durable: options.durable,
                direct,
                verify_reads: options.verify_reads,
            }),
        })
    }

    /// A store of copies that can be fetched again (a cache): the same
    /// layout, the same atomic rename and sqlite transactions, so a crash
    /// never leaves a half block under a real name, but no waiting for the
    /// disk, so a crash may lose the latest blocks.
    pub fn open_cache(root: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(
            root,
            FileOptions {
                durable: false,
                ..FileOptions::default()
            },
        )
    }

    /// Whether block files are currently written and read with direct I/O
    /// (asked for, and not refused by the filesystem).
    pub fn direct_io(&self) -> bool {
        self.inner.direct.enabled()
    }

    /// The file a block larger than [`SMALL_BLOCK_MAX`] lives in (whether
    /// or not it is stored); smaller ones are rows of
    /// [`FileStore::small_db`].
    pub fn path_of(&self, cid: &Cid) -> PathBuf {
        self.inner.path_of(cid)
    }

    /// The sqlite database holding the blocks up to [`SMALL_BLOCK_MAX`].
    pub fn small_db(&self) -> &Path {
        self.inner.small.path()
    }

    /// Stores blocks whose hashes the type already guarantees, with no
    /// writer signature or transaction: for copies of blocks that live in
    /// someone else's space (a cache of blocks fetched from their home
    /// server, a PKI mirror). Reads still check access tokens, and hashes
    /// as [`FileOptions::verify_reads`] says.
    pub async fn put_verified(&self, blocks: Vec<Block>) -> Result<()> {
        self.blocking(move |inner| inner.write_all(&blocks)).await
    }

    async fn blocking<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || work(&inner)).await?
    }
}

impl Inner {
    fn shard_of(&self, cid: &Cid) -> PathBuf {
        let first = cid.digest().first().copied().unwrap_or(0);
        self.blocks.join(format!("{first:02x}"))
    }

    fn path_of(&self, cid: &Cid) -> PathBuf {
        self.shard_of(cid).join(cid.to_string())
    }

    /// Stores `blocks`: the small ones in one database transaction on this
    /// thread while the large ones are written as files on a few threads of
    /// their own, so the waits for the disk overlap. After a failure the
    /// file writers stop taking blocks; what was written is unreferenced
    /// and garbage collection takes it.
    fn write_all(&self, blocks: &[Block]) -> Result<()> {
        let (small, large): (Vec<&Block>, Vec<&Block>) = blocks
            .iter()
            .partition(|b| b.data().len() <= SMALL_BLOCK_MAX);
        // A small block an older build stored as a file stays there.
        let small: Vec<&Block> = small
            .into_iter()
            .filter(|b| !self.path_of(b.cid()).exists())
            .collect();
        if large.len() < 2 {
            self.small.insert(&small)?;
            return large.iter().try_for_each(|block| self.write(block));
        }
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..WRITE_THREADS.min(large.len()))
                .map(|_| {
                    scope.spawn(|| -> Result<()> {
                        while !failed.load(Ordering::Relaxed) {
                            let Some(block) = large.get(next.fetch_add(1, Ordering::Relaxed))
                            else {
                                break;
                            };
                            if let Err(e) = self.write(block) {
                                failed.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                        Ok(())
                    })
                })
                .collect();
            let mut outcome = self.small.insert(&small);
            if outcome.is_err() {
                failed.store(true, Ordering::Relaxed);
            }
            for worker in workers {
                let done = worker
                    .join()
                    .map_err(|_| Error::Task("a block write panicked".into()))
                    .and_then(|written| written);
                if outcome.is_ok() {
                    outcome = done;
                }
            }
            outcome
        })
    }

    fn write(&self, block: &Block) -> Result<()> {
        let path = self.path_of(block.cid());
        if path.exists() {
            return Ok(());
        }
        let shard = self.shard_of(block.cid());
        if !shard.exists() {
            fs::create_dir_all(&shard).map_err(Error::io("create", &shard))?;
            sync_dir(&self.blocks)?;
        }
        let tmp = self
            .tmp
            .join(format!("{}.{:016x}.tmp", block.cid(), random_u64()));
        let direct = self
            .direct
            .write_new(&tmp, block.data(), self.durable)
            .map_err(Error::io("write", &tmp))?;
        if let Outcome::Unsupported = direct {
            let mut file = fs::File::create_new(&tmp).map_err(Error::io("create", &tmp))?;
            file.write_all(block.data())
                .map_err(Error::io("write", &tmp))?;
            if self.durable {
                file.sync_all().map_err(Error::io("fsync", &tmp))?;
            }
        }
        fs::rename(&tmp, &path).map_err(Error::io("rename into", &path))?;
        if self.durable {
            sync_dir(&shard)?;
        }
        Ok(())
    }

    /// Reads a block for a caller holding `auth`, under its access check.
    fn read_for(&self, cid: &Cid, auth: Option<&BlockAuth>) -> Result<Option<Bytes>> {
        let Some(data) = self.read(cid, false)? else {
            return Ok(None);
        };
        access::check(cid, &data, auth)?;
        Ok(Some(data))
    }

    /// Reads a block, re-hashing it as the store's settings say, or always
    /// when `hash` is set (a scrub).
    fn read(&self, cid: &Cid, hash: bool) -> Result<Option<Bytes>> {
        if cid.is_identity() {
            return Ok(Some(Bytes::copy_from_slice(cid.digest())));
        }
        let (data, path, verify) = match self.small.get(cid)? {
            Some(data) => (Bytes::from(data), self.small.path().to_path_buf(), true),
            None => {
                let path = self.path_of(cid);
                let read = match self.direct.read(&path) {
                    Ok(Outcome::Done(data)) => Ok(data),
                    Ok(Outcome::Unsupported) => fs::read(&path).map(Bytes::from),
                    Err(e) => Err(e),
                };
                let verify = hash || self.verify_reads || cid.codec() != Some(Codec::Raw);
                match read {
                    Ok(data) => (data, path, verify),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(Error::io("read", &path)(e)),
                }
            }
        };
        if verify {
            cid.verify(&data)
                .map_err(|_| Error::Corrupt { cid: *cid, path })?;
        }
        Ok(Some(data))
    }

    fn list(&self) -> Result<Vec<Cid>> {
        let mut cids = self.small.list()?;
        for shard in fs::read_dir(&self.blocks).map_err(Error::io("list", &self.blocks))? {
            let shard = shard.map_err(Error::io("list", &self.blocks))?.path();
            if !shard.is_dir() {
                continue;
            }
            for entry in fs::read_dir(&shard).map_err(Error::io("list", &shard))? {
                let entry = entry.map_err(Error::io("list", &shard))?;
                // Names that are not CIDs are not ours; leave them alone.
                if let Some(cid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                    cids.push(cid);
                }
            }
        }
        Ok(cids)
    }
}

/// Every block stored under `root` with its bytes (unverified), read
/// without opening the store, so it is safe while a daemon has it open:
/// for audits, and for tests that check what a server holds.
pub fn stored_blocks(root: impl AsRef<Path>) -> Result<Vec<(Cid, Bytes)>> {
    let root = root.as_ref();
    let mut out: Vec<(Cid, Bytes)> = crate::small::read_all(&root.join(SMALL_DB))?
        .into_iter()
        .map(|(cid, data)| (cid, Bytes::from(data)))
        .collect();
    let blocks = root.join("blocks");
    if !blocks.exists() {
        return Ok(out);
    }
    for shard in fs::read_dir(&blocks).map_err(Error::io("list", &blocks))? {
        let shard = shard.map_err(Error::io("list", &blocks))?.path();
        if !shard.is_dir() {
            continue;
        }
        for entry in fs::read_dir(&shard).map_err(Error::io("list", &shard))? {
            let entry = entry.map_err(Error::io("list", &shard))?;
            if let Some(cid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                let path = entry.path();
                let data = fs::read(&path).map_err(Error::io("read", &path))?;
                out.push((cid, Bytes::from(data)));
            }
        }
    }
    Ok(out)
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("fsync", dir))
}

fn random_u64() -> u64 {
    use rand_core::RngCore;
    rand_core::OsRng.next_u64()
}

#[async_trait]
impl BlockStore for FileStore {
    async fn put(&self, request: PutBlocks) -> Result<Vec<Cid>> {
        self.inner
            .transactions
            .check(&request.owner, &request.transaction)?;
        self.blocking(move |inner| {
            let blocks = request.check()?;
            let cids: Vec<Cid> = blocks.iter().map(|b| *b.cid()).collect();
            inner.transactions.record(
                &request.owner,
                &request.transaction,
                cids.iter().copied(),
            )?;
            inner.write_all(&blocks)?;
            Ok(cids)
        })
        .await
    }

    async fn get(&self, cid: &Cid, auth: Option<&BlockAuth>) -> Result<Option<Bytes>> {
        let cid = *cid;
        let auth = auth.cloned();
        self.blocking(move |inner| inner.read_for(&cid, auth.as_ref()))
            .await
    }

    /// All of them on one blocking thread: a batch of small blocks is a
    /// run of database reads, not a thread hand-off per block.
    async fn get_many(&self, requests: &[(Cid, Option<BlockAuth>)]) -> Result<Vec<Option<Bytes>>> {
        let requests = requests.to_vec();
        self.blocking(move |inner| {
            requests
                .iter()
                .map(|(cid, auth)| inner.read_for(cid, auth.as_ref()))
                .collect()
        })
        .await
    }

    async fn get_trusted(&self, cid: &Cid) -> Result<Option<Bytes>> {
        let cid = *cid;
        self.blocking(move |inner| inner.read(&cid, false)).await
    }

    async fn check(&self, cid: &Cid) -> Result<Option<u64>> {
        let cid = *cid;
        self.blocking(move |inner| Ok(inner.read(&cid, true)?.map(|b| b.len() as u64)))
            .await
    }

    async fn has(&self, cid: &Cid) -> Result<bool> {
        let cid = *cid;
        self.blocking(move |inner| {
            Ok(cid.is_identity()
                || inner.small.size(&cid)?.is_some()
                || inner.path_of(&cid).exists())
        })
        .await
    }

    async fn size(&self, cid: &Cid) -> Result<Option<u64>> {
        let cid = *cid;
        self.blocking(move |inner| {
            if cid.is_identity() {
                return Ok(Some(cid.digest().len() as u64));
            }
            if let Some(size) = inner.small.size(&cid)? {
                return Ok(Some(size));
            }
            let path = inner.path_of(&cid);
            match std::fs::metadata(&path) {
                Ok(meta) => Ok(Some(meta.len())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::io("stat", &path)(e)),
            }
        })
        .await
    }

    async fn start_transaction(&self, owner: &PublicKeyHash) -> Result<TransactionId> {
        Ok(self.inner.transactions.start(owner))
    }

    async fn close_transaction(&self, owner: &PublicKeyHash, id: &TransactionId) -> Result<()> {
        self.inner.transactions.close(owner, id)
    }
}

#[async_trait]
impl LocalBlockStore for FileStore {
    async fn resume_transaction(
        &self,
        owner: &PublicKeyHash,
        id: TransactionId,
        age: std::time::Duration,
        blocks: Vec<Cid>,
    ) -> Result<()> {
        self.inner.transactions.resume(owner, id, age, blocks);
        Ok(())
    }

    async fn protected(&self) -> Result<BTreeSet<Cid>> {
        Ok(self.inner.transactions.protected())
    }

    fn list(&self) -> BoxStream<'_, Result<Cid>> {
        let this = self.clone();
        stream::once(async move { this.blocking(|inner| inner.list()).await })
            .flat_map(|listed| match listed {
                Ok(cids) => stream::iter(cids.into_iter().map(Ok)).boxed(),
                Err(e) => stream::iter(vec![Err(e)]).boxed(),
            })
            .boxed()
    }

    async fn delete(&self, cid: &Cid) -> Result<()> {
        let cid = *cid;
        self.blocking(move |inner| {
            inner.small.delete(&cid)?;
            let path = inner.path_of(&cid);
            match fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::io("remove", &path)(e)),
            }
        })
        .await
    }
}
