//! Garbage collection: mark every block reachable from a pointer, sweep
//! the rest, without losing a block of an upload that runs meanwhile, on
//! this replica or any other sharing the database.
//!
//! One collection runs at a time over all replicas: it holds a lease in
//! the account store, renewed while it runs and given back when it ends
//! (a replica that dies mid-collection lets it lapse in a minute).
//! A scheduled run is skipped when another replica finished one within
//! the period, so N replicas on one schedule collect once per period.
//!
//! Safety against concurrent writes rests on these sets, all taken or
//! started *before* the pointers are read:
//! - the blocks of transactions open when collection starts, here
//!   ([`BlockStore::protected`]) and in the shared upload record; a block
//!   put before that moment is either in one of them or already linked
//!   from a pointer, or it is garbage;
//! - every block put after that moment: recorded by `Guarded` (the block
//!   store wrapper every writer of a server goes through) until the sweep
//!   ends, and in the shared record before it is stored, kept for
//!   transactions closed since the collection started (their commit may
//!   be newer than the pointers it read);
//! - the blocks of transactions open when the sweep runs, and the shared
//!   record once more after the store is listed.
//!
//! Each block is deleted under the shared record's per-block lock, which
//! recording a put takes too, so a put of a block being deleted either
//! keeps it or stores it again.
//!
//! Marking follows links generically: a DAG-CBOR block's links are its
//! tag-42 values (writer data, CHAMP nodes, cryptree nodes naming their
//! fragments); raw blocks have none. A reachable block that is missing or
//! does not decode stops the collection before anything is deleted.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use peergos_blockstore::LocalBlockStore;
use peergos_ipld::{Cid, Codec};
use serde::{Deserialize, Serialize};

use crate::uploads::open_since;
use crate::{now_ms, Error, Result, Server};

/// How long the collection lease lasts unless renewed (every third of it
/// while a collection runs).
const LEASE_TTL: Duration = Duration::from_secs(60);

/// How far replicas' clocks may differ: with a shared database,
/// transactions closed this long before a collection started are still
/// spared (one process has one clock, and spares those closed since).
const CLOCK_MARGIN_MS: u64 = 5 * 60 * 1000;

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
    /// every other block that no upload is using. Only one runs at a time
    /// over every replica sharing the database; a second call while one
    /// runs is refused ([`Error::Busy`]).
    pub async fn collect_garbage(&self) -> Result<GcReport> {
        self.collect(None).await?.ok_or_else(|| {
            Error::Busy("a garbage collection is already running on another replica".into())
        })
    }

    /// A scheduled collection: runs unless one is running, or another
    /// replica finished one less than `every` ago (then None).
    pub async fn collect_garbage_if_due(&self, every: Duration) -> Result<Option<GcReport>> {
        self.collect(Some(every)).await
    }

    async fn collect(&self, min_gap: Option<Duration>) -> Result<Option<GcReport>> {
        let _running = self
            .upkeep
            .gc_lock
            .try_lock()
            .map_err(|_| Error::Busy("a garbage collection is already running".into()))?;
        let holder = format!(
            "{}/{:016x}",
            self.net.peer_id,
            rand_core::RngCore::next_u64(&mut rand_core::OsRng)
        );
        let ttl = LEASE_TTL.as_millis() as u64;
        let gap = min_gap.map(|g| g.as_millis() as u64);
        if !self
            .stores
            .accounts
            .gc_lease(&holder, now_ms(), ttl, gap)
            .await?
        {
            return match min_gap {
                Some(_) => Ok(None),
                None => Err(Error::Busy(
                    "a garbage collection is already running on another replica".into(),
                )),
            };
        }
        let renewal = {
            let (accounts, holder) = (std::sync::Arc::clone(&self.stores.accounts), holder.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(LEASE_TTL / 3).await;
                    match accounts.gc_lease(&holder, now_ms(), ttl, None).await {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!("the collection lease was taken over"),
                        Err(e) => tracing::warn!("renewing the collection lease failed: {e}"),
                    }
                }
            })
        };
        let outcome = self.collect_under_lease().await;
        renewal.abort();
        if let Err(e) = self
            .stores
            .accounts
            .end_gc_lease(&holder, now_ms(), outcome.is_ok())
            .await
        {
            tracing::warn!("giving back the collection lease failed (it lapses by itself): {e}");
        }
        outcome.map(Some)
    }

    async fn collect_under_lease(&self) -> Result<GcReport> {
        let started = Instant::now();
        let gc_start = now_ms();
        self.stores.guard.start_recording().await;
        let outcome = self.mark_and_sweep(gc_start).await;
        self.stores.guard.stop_recording().await;
        let mut report = outcome?;
        let dropped = self.empty_cache().await?;
        // Records of transactions that timed out, and of those closed
        // before this collection started (it marked their commits). This
        // writes to the database: on a full disk it waits for the next
        // collection rather than failing this one, whose deletes may be
        // what makes room.
        let pruned = self
            .stores
            .accounts
            .prune_transactions(open_since(gc_start), self.closed_since(gc_start))
            .await;
        if let Err(e) = pruned {
            tracing::warn!("pruning upload records failed (the next collection retries): {e}");
        }
        // Rate-limit buckets untouched for a day are full again.
        let day = 24 * 60 * 60 * 1000;
        if let Err(e) = self
            .stores
            .accounts
            .prune_buckets(gc_start.saturating_sub(day))
            .await
        {
            tracing::warn!("pruning rate-limit buckets failed: {e}");
        }
        self.upkeep.ballast.ensure(self.config.disk_reserve);
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        tracing::info!(
            deleted = report.deleted,
            freed_bytes = report.freed_bytes,
            reachable = report.reachable,
            cache_dropped = dropped,
            elapsed_ms = report.elapsed_ms,
            "garbage collection finished"
        );
        *self
            .upkeep
            .gc_last
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(report.clone());
        self.upkeep
            .gc_runs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(report)
    }

    /// Empties the cache of other servers' blocks (it refills on demand):
    /// each collection bounds it this way. Returns the blocks dropped.
    async fn empty_cache(&self) -> Result<u64> {
        let cids: Vec<Cid> = self
            .net
            .cache
            .list()
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<std::result::Result<_, _>>()?;
        for cid in &cids {
            self.net.cache.delete(cid).await?;
        }
        Ok(cids.len() as u64)
    }

    /// The last collection's report, if one ran since the server started.
    pub fn last_gc(&self) -> Option<GcReport> {
        self.upkeep
            .gc_last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Transactions closed at or after this are spared by a collection
    /// that started at `gc_start`.
    fn closed_since(&self, gc_start: u64) -> u64 {
        if self.config.postgres.is_some() {
            gc_start.saturating_sub(CLOCK_MARGIN_MS)
        } else {
            // Closed by the time the collection started: committed before
            // it read the pointers.
            gc_start.saturating_add(1)
        }
    }

    async fn mark_and_sweep(&self, gc_start: u64) -> Result<GcReport> {
        let mut report = GcReport::default();
        let opened_since = open_since(gc_start);
        let closed_since = self.closed_since(gc_start);
        // Taken before the pointers are read (see the module notes).
        let mut protected_at_start: HashSet<Cid> =
            self.stores.blocks.protected().await?.into_iter().collect();
        protected_at_start.extend(
            self.stores
                .accounts
                .protected_blocks(opened_since, closed_since)
                .await?,
        );
        let roots = self.stores.pointers.targets().await?;
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
                if !self.stores.blocks.has(&cid).await? {
                    return Err(missing());
                }
                continue;
            }
            let data = self
                .stores
                .blocks
                .get_trusted(&cid)
                .await?
                .ok_or_else(missing)?;
            frontier.extend(links_of(&cid, &data)?.into_iter().map(|l| (l, Some(cid))));
        }
        report.reachable = marked.len() as u64;

        let protected_now = self.stores.blocks.protected().await?;
        let mut stored = self.stores.blocks.list();
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
        // Uploads on other replicas since the listing.
        let shared_now = self
            .stores
            .accounts
            .protected_blocks(opened_since, closed_since)
            .await?;
        for cid in candidates {
            if shared_now.contains(&cid) {
                report.protected += 1;
                continue;
            }
            let guard = &self.stores.guard;
            let delete: crate::accounts::DeleteFn<'_> = Box::new(move || {
                Box::pin(async move { Ok(guard.delete_unless_recent(&cid).await?) })
            });
            let freed = self
                .stores
                .accounts
                .delete_unless_protected(&cid, opened_since, closed_since, delete)
                .await?;
            match freed {
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
