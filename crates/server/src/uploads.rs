//! The block store every write of the server goes through (`Guarded`):
//! upload transactions recorded in the account store (with Postgres,
//! shared with every replica, each put's blocks recorded there before
//! they are stored; with sqlite, one process alone, recorded after, for a
//! restart, with no second hash of each block), and a record of the
//! blocks put while this process collects garbage.
//!
//! With several daemons on one database (docs/OPERATIONS.md, "Several
//! daemons as one service"), a transaction opened on one replica is known
//! to all: a put or close that reaches another replica finds the record
//! and opens the transaction there too. A collection on any replica reads
//! the recorded blocks of every open transaction, and of every one closed
//! since it started, and deletes a block only under the account store's
//! per-block lock ([`AccountStore::delete_unless_protected`]), so no
//! replica's upload loses a block.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use peergos_blockstore::{
    BlockAuth, BlockStore, Error as BlockError, LocalBlockStore, PutBlocks, TransactionId,
    TRANSACTION_TIMEOUT,
};
use peergos_ipld::Cid;
use peergos_keys::PublicKeyHash;

use crate::{now_ms, AccountStore};

/// The server's block store, with the shared record of its uploads and a
/// record of every block put while a collection runs here.
///
/// Two locks make the local record exact. Every put holds `gate` (shared)
/// for its whole length, and starting to record takes it exclusively: a
/// put that began before recording started has finished, so its blocks
/// are in its transaction (protected while that is open), and every later
/// put is recorded. The record itself is behind an async lock that the
/// sweep holds while it checks and deletes one block, so a put of that
/// block is either recorded first (and the block kept) or comes after the
/// delete (and stores it again).
pub(crate) struct Guarded {
    inner: Arc<dyn LocalBlockStore>,
    accounts: OnceLock<Arc<dyn AccountStore>>,
    /// Whether other processes share the account store (Postgres): then
    /// each put is recorded there before it is stored and transactions
    /// may come from other replicas. One process alone records after the
    /// store (for a restart) and needs no second hash of each block.
    shared: std::sync::atomic::AtomicBool,
    gate: tokio::sync::RwLock<()>,
    recent: tokio::sync::Mutex<Option<HashSet<Cid>>>,
}

/// A transaction opened at or after this time is not timed out.
pub(crate) fn open_since(now: u64) -> u64 {
    now.saturating_sub(TRANSACTION_TIMEOUT.as_millis() as u64)
}

fn account_error(e: crate::Error) -> BlockError {
    BlockError::Backend {
        context: "the upload records".into(),
        source: Box::new(e),
    }
}

impl Guarded {
    pub(crate) fn new(inner: Arc<dyn LocalBlockStore>) -> Self {
        Guarded {
            inner,
            accounts: OnceLock::new(),
            shared: std::sync::atomic::AtomicBool::new(false),
            gate: tokio::sync::RwLock::new(()),
            recent: tokio::sync::Mutex::new(None),
        }
    }

    /// Records transactions in `accounts` from now on; `shared` when other
    /// server processes use the same store.
    pub(crate) fn attach(&self, accounts: Arc<dyn AccountStore>, shared: bool) {
        let _ = self.accounts.set(accounts);
        self.shared
            .store(shared, std::sync::atomic::Ordering::Relaxed);
    }

    fn is_shared(&self) -> bool {
        self.shared.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn accounts(&self) -> Option<&Arc<dyn AccountStore>> {
        self.accounts.get()
    }

    pub(crate) async fn start_recording(&self) {
        let _no_puts_in_flight = self.gate.write().await;
        *self.recent.lock().await = Some(HashSet::new());
    }

    pub(crate) async fn stop_recording(&self) {
        *self.recent.lock().await = None;
    }

    /// Deletes `cid` unless it was put here since recording started;
    /// returns the bytes freed (None: kept).
    pub(crate) async fn delete_unless_recent(
        &self,
        cid: &Cid,
    ) -> peergos_blockstore::Result<Option<u64>> {
        let recent = self.recent.lock().await;
        if recent.as_ref().is_some_and(|set| set.contains(cid)) {
            return Ok(None);
        }
        let size = self.inner.size(cid).await?.unwrap_or(0);
        self.inner.delete(cid).await?;
        drop(recent);
        Ok(Some(size))
    }

    /// The shared record of `owner`'s open transaction `id`.
    async fn shared_transaction(
        accounts: &dyn AccountStore,
        owner: &PublicKeyHash,
        id: &TransactionId,
    ) -> peergos_blockstore::Result<crate::OpenTransaction> {
        let record = accounts
            .transaction(id, open_since(now_ms()))
            .await
            .map_err(account_error)?;
        match record {
            Some(t) if t.owner == *owner => Ok(t),
            Some(_) => Err(BlockError::TransactionOwner { id: *id }),
            None => Err(BlockError::UnknownTransaction { id: *id }),
        }
    }
}

#[async_trait]
impl BlockStore for Guarded {
    async fn put(&self, request: PutBlocks) -> peergos_blockstore::Result<Vec<Cid>> {
        let _in_flight = self.gate.read().await;
        let shared = self.is_shared();
        // Recorded before they are stored, so a sweep that lists them has
        // already seen the record (here, and in the shared one).
        let mut cids = Vec::new();
        {
            let mut recent = self.recent.lock().await;
            if shared || recent.is_some() {
                cids = request.blocks.iter().map(|b| b.cid()).collect();
            }
            if let Some(set) = recent.as_mut() {
                set.extend(cids.iter().copied());
            }
        }
        let Some(accounts) = self.accounts() else {
            return self.inner.put(request).await;
        };
        let bytes = request.blocks.iter().map(|b| b.data.len() as u64).sum();
        if !shared {
            // One process: the local record is exact; the account store's
            // record is for a restart, and for the quota.
            let (id, stored) = (request.transaction, self.inner.put(request).await?);
            accounts
                .add_transaction_blocks(&id, &stored, bytes, now_ms())
                .await
                .map_err(account_error)?;
            return Ok(stored);
        }
        let (owner, id) = (request.owner, request.transaction);
        let record = Self::shared_transaction(accounts.as_ref(), &owner, &id).await?;
        accounts
            .add_transaction_blocks(&id, &cids, bytes, now_ms())
            .await
            .map_err(account_error)?;
        match self.inner.put(request.clone()).await {
            // Opened on another replica: open it here too.
            Err(BlockError::UnknownTransaction { .. }) => {
                let age =
                    std::time::Duration::from_millis(now_ms().saturating_sub(record.opened_ms));
                self.inner
                    .resume_transaction(&owner, id, age, Vec::new())
                    .await?;
                self.inner.put(request).await
            }
            outcome => outcome,
        }
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
        let id = self.inner.start_transaction(owner).await?;
        if let Some(accounts) = self.accounts() {
            if let Err(e) = accounts.open_transaction(owner, &id, now_ms()).await {
                let _ = self.inner.close_transaction(owner, &id).await;
                return Err(account_error(e));
            }
        }
        Ok(id)
    }

    async fn close_transaction(
        &self,
        owner: &PublicKeyHash,
        id: &TransactionId,
    ) -> peergos_blockstore::Result<()> {
        let local = self.inner.close_transaction(owner, id).await;
        let Some(accounts) = self.accounts() else {
            return local;
        };
        if !self.is_shared() {
            local?;
            return accounts
                .close_transaction(id, now_ms())
                .await
                .map_err(account_error);
        }
        match local {
            // Opened on another replica: the shared record decides.
            Err(BlockError::UnknownTransaction { .. }) => {
                Self::shared_transaction(accounts.as_ref(), owner, id).await?;
            }
            other => other?,
        }
        accounts
            .close_transaction(id, now_ms())
            .await
            .map_err(account_error)
    }
}

#[async_trait]
impl LocalBlockStore for Guarded {
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
