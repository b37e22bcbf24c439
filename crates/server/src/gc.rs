//! Garbage collection: mark every block reachable from a pointer, sweep
//! the rest, without losing a block of an upload that runs meanwhile.
//!
//! Safety against concurrent writes rests on three sets, all taken or
//! started *before* the pointers are read:
//! - the blocks of transactions open when collection starts
//!   ([`BlockStore::protected`]); a block put before that moment is either
//!   in one of them or already linked from a pointer, or it is garbage;
//! - every block put after that moment, recorded by `Guarded` (the block
//!   store wrapper every writer of the server goes through) until the
//!   sweep ends; a put already under way when collection starts is waited
//!   for, so its blocks are in its transaction by then;
//! - the blocks of transactions open when the sweep runs.
//!
//! Marking follows links generically: a DAG-CBOR block's links are its
//! tag-42 values (writer data, CHAMP nodes, cryptree nodes naming their
//! fragments); raw blocks have none. A reachable block that is missing or
//! does not decode stops the collection before anything is deleted.

use std::collections::{BTreeSet, HashSet};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use peergos_blockstore::{BlockAuth, BlockStore, PutBlocks, TransactionId};
use peergos_ipld::{Cid, Codec};
use peergos_keys::PublicKeyHash;
use serde::{Deserialize, Serialize};

use crate::{Error, Result, Server};

/// What one collection did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    /// Pointers marked from.
    pub roots: u64,
    /// Blocks reachable from them.
    pub reachable: u64,
    /// Blocks kept because an upload was using them.
    pub protected: u64,
    /// Blocks in the store before the sweep.
    pub stored: u64,
    /// Blocks deleted.
    pub deleted: u64,
    /// Bytes those blocks held.
    pub freed_bytes: u64,
    /// How long it took, in milliseconds.
    pub elapsed_ms: u64,
}

/// The server's block store, with a record of every block put while a
/// collection runs.
///
/// Two locks make the record exact. Every put holds `gate` (shared) for
/// its whole length, and starting to record takes it exclusively: a put
/// that began before recording started has finished, so its blocks are
/// in its transaction (protected while that is open), and every later
/// put is recorded. The record itself is behind an async lock that the
/// sweep holds while it checks and deletes one block, so a put of that
/// block is either recorded first (and the block kept) or comes after the
/// delete (and stores it again).
pub(crate) struct Guarded {
    inner: std::sync::Arc<dyn BlockStore>,
    gate: tokio::sync::RwLock<()>,
    recent: tokio::sync::Mutex<Option<HashSet<Cid>>>,
}

impl Guarded {
    pub(crate) fn new(inner: std::sync::Arc<dyn BlockStore>) -> Self {
        Guarded {
            inner,
            gate: tokio::sync::RwLock::new(()),
            recent: tokio::sync::Mutex::new(None),
        }
    }

    async fn start_recording(&self) {
        let _no_puts_in_flight = self.gate.write().await;
        *self.recent.lock().await = Some(HashSet::new());
    }

    async fn stop_recording(&self) {
        *self.recent.lock().await = None;
    }

    /// Deletes `cid` unless it was put since recording started; returns
    /// the bytes freed (None: kept).
    async fn delete_unless_recent(&self, cid: &Cid) -> peergos_blockstore::Result<Option<u64>> {
        let recent = self.recent.lock().await;
        if recent.as_ref().is_some_and(|set| set.contains(cid)) {
            return Ok(None);
        }
        let size = self.inner.size(cid).await?.unwrap_or(0);
        self.inner.delete(cid).await?;
        drop(recent);
        Ok(Some(size))
    }
}

#[async_trait]
impl BlockStore for Guarded {
    async fn put(&self, request: PutBlocks) -> peergos_blockstore::Result<Vec<Cid>> {
        let _in_flight = self.gate.read().await;
        // Recorded before they are stored, so a sweep that lists them has
        // already seen the record.
        if let Some(set) = self.recent.lock().await.as_mut() {
            for block in &request.blocks {
                set.insert(block.cid());
            }
        }
        self.inner.put(request).await
    }

    async fn get(
        &self,
        cid: &Cid,
        auth: Option<&BlockAuth>,
    ) -> peergos_blockstore::Result<Option<Bytes>> {
        self.inner.get(cid, auth).await
    }

    async fn get_many(
        &self,
        requests: &[(Cid, Option<BlockAuth>)],
    ) -> peergos_blockstore::Result<Vec<Option<Bytes>>> {
        self.inner.get_many(requests).await
    }

    async fn get_trusted(&self, cid: &Cid) -> peergos_blockstore::Result<Option<Bytes>> {
        self.inner.get_trusted(cid).await
    }

    async fn check(&self, cid: &Cid) -> peergos_blockstore::Result<Option<u64>> {
        self.inner.check(cid).await
    }

    async fn has(&self, cid: &Cid) -> peergos_blockstore::Result<bool> {
        self.inner.has(cid).await
    }

    async fn size(&self, cid: &Cid) -> peergos_blockstore::Result<Option<u64>> {
        self.inner.size(cid).await
    }

    async fn start_transaction(
        &self,
        owner: &PublicKeyHash,
    ) -> peergos_blockstore::Result<TransactionId> {
        self.inner.start_transaction(owner).await
    }

    async fn close_transaction(
        &self,
        owner: &PublicKeyHash,
        id: &TransactionId,
    ) -> peergos_blockstore::Result<()> {
        self.inner.close_transaction(owner, id).await
    }

    async fn resume_transaction(
        &self,
        owner: &PublicKeyHash,
        id: peergos_blockstore::TransactionId,
        age: std::time::Duration,
        blocks: Vec<Cid>,
    ) -> peergos_blockstore::Result<()> {
        self.inner.resume_transaction(owner, id, age, blocks).await
    }

    async fn protected(&self) -> peergos_blockstore::Result<BTreeSet<Cid>> {
        self.inner.protected().await
    }

    fn list(&self) -> BoxStream<'_, peergos_blockstore::Result<Cid>> {
        self.inner.list()
    }

    async fn delete(&self, cid: &Cid) -> peergos_blockstore::Result<()> {
        self.inner.delete(cid).await
    }
}

/// The blocks `data`, a DAG-CBOR block named `cid`, links to (only such
/// blocks have links).
fn links_of(cid: &Cid, data: &[u8]) -> Result<Vec<Cid>> {
    let value = peergos_ipld::cbor::decode_value(data).map_err(|e| {
        Error::Internal(format!(
            "garbage collection stopped: reachable block {cid} does not decode ({e}); nothing was deleted"
        ))
    })?;
    let mut out = Vec::new();
    peergos_ipld::cbor::links(&value, &mut out)?;
    Ok(out)
}

impl Server {
    /// Runs one collection: marks what the pointers reach, then deletes
    /// every other block that no upload is using. Only one runs at a time;
    /// a second call while one runs is refused.
    pub async fn collect_garbage(&self) -> Result<GcReport> {
        let _running = self
            .gc_lock
            .try_lock()
            .map_err(|_| Error::Busy("a garbage collection is already running".into()))?;
        let started = Instant::now();
        self.guard.start_recording().await;
        let outcome = self.mark_and_sweep().await;
        self.guard.stop_recording().await;
        let mut report = outcome?;
        let dropped = self.empty_cache().await?;
        // Records of transactions that timed out without being closed.
        let since = crate::now_ms()
            .saturating_sub(peergos_blockstore::TRANSACTION_TIMEOUT.as_millis() as u64);
        // Pruning them writes to the database: on a full disk that waits
        // for the next collection rather than failing this one, whose
        // deletes may be what makes room.
        if let Err(e) = self.accounts.open_transactions(since).await {
            tracing::warn!(
                "pruning expired upload records failed (the next collection retries): {e}"
            );
        }
        self.ballast.ensure(self.config.disk_reserve);
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        tracing::info!(
            deleted = report.deleted,
            freed_bytes = report.freed_bytes,
            reachable = report.reachable,
            cache_dropped = dropped,
            elapsed_ms = report.elapsed_ms,
            "garbage collection finished"
        );
        *self.gc_last.lock().unwrap_or_else(|e| e.into_inner()) = Some(report.clone());
        self.gc_runs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(report)
    }

    /// Empties the cache of other servers' blocks (it refills on demand):
    /// each collection bounds it this way. Returns the blocks dropped.
    async fn empty_cache(&self) -> Result<u64> {
        let cids: Vec<Cid> = self
            .cache
            .list()
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<std::result::Result<_, _>>()?;
        for cid in &cids {
            self.cache.delete(cid).await?;
        }
        Ok(cids.len() as u64)
    }

    /// The last collection's report, if one ran since the server started.
    pub fn last_gc(&self) -> Option<GcReport> {
        self.gc_last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn mark_and_sweep(&self) -> Result<GcReport> {
        let mut report = GcReport::default();
        // Taken before the pointers are read (see the module notes).
        let protected_at_start = self.blocks.protected().await?;
        let roots = self.pointers.targets().await?;
        report.roots = roots.len() as u64;

        let mut marked: HashSet<Cid> = HashSet::new();
        let mut frontier: Vec<(Cid, Option<Cid>)> = roots.into_iter().map(|r| (r, None)).collect();
        while let Some((cid, from)) = frontier.pop() {
            if cid.is_identity() || !marked.insert(cid) {
                continue;
            }
            let missing = || {
                let from = from.map_or("a pointer".to_string(), |f| format!("block {f}"));
                Error::Internal(format!(
                    "garbage collection stopped: reachable block {cid} (linked from {from}) is missing; nothing was deleted"
                ))
            };
            // Only structured blocks have links; the rest (file fragments,
            // most of the bytes) need only be there.
            if cid.codec() != Some(Codec::DagCbor) {
                if !self.blocks.has(&cid).await? {
                    return Err(missing());
                }
                continue;
            }
            let data = self.blocks.get_trusted(&cid).await?.ok_or_else(missing)?;
            frontier.extend(links_of(&cid, &data)?.into_iter().map(|l| (l, Some(cid))));
        }
        report.reachable = marked.len() as u64;

        let protected_now = self.blocks.protected().await?;
        let mut stored = self.blocks.list();
        let mut candidates = Vec::new();
        while let Some(cid) = stored.next().await {
            let cid = cid?;
            report.stored += 1;
            if marked.contains(&cid) {
                continue;
            }
            if protected_at_start.contains(&cid) || protected_now.contains(&cid) {
                report.protected += 1;
                continue;
            }
            candidates.push(cid);
        }
        drop(stored);
        for cid in candidates {
            match self.guard.delete_unless_recent(&cid).await? {
                Some(size) => {
                    report.deleted += 1;
                    report.freed_bytes += size;
                }
                // Put since the collection started: an upload is using it.
                None => report.protected += 1,
            }
        }
        Ok(report)
    }
}
