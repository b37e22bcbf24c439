//! An in-memory block store, for tests and embedding.

use std::collections::{BTreeSet, HashMap};
use std::sync::RwLock;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use peergos_ipld::Cid;
use peergos_keys::PublicKeyHash;

use crate::transactions::Transactions;
use crate::{
    access, BlockAuth, BlockStore, Error, LocalBlockStore, PutBlocks, Result, TransactionId,
};

/// Blocks in a hash map. Content is still re-hashed on every read, so a
/// `MemoryStore` behaves exactly like a persistent backend.
#[derive(Default)]
pub struct MemoryStore {
    blocks: RwLock<HashMap<Cid, Bytes>>,
    transactions: Transactions,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Cid, Bytes>> {
        // Every write is a single insert or remove: a poisoned lock still
        // guards a consistent map.
        self.blocks.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Cid, Bytes>> {
        self.blocks.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of stored blocks.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// True when no blocks are stored.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    fn load(&self, cid: &Cid) -> Result<Option<Bytes>> {
        if cid.is_identity() {
            return Ok(Some(Bytes::copy_from_slice(cid.digest())));
        }
        let Some(data) = self.read().get(cid).cloned() else {
            return Ok(None);
        };
        cid.verify(&data).map_err(|_| Error::Corrupt {
            cid: *cid,
            path: "<memory>".into(),
        })?;
        Ok(Some(data))
    }

    /// Replaces a stored block's bytes without any check: for tests that
    /// need a corrupt block.
    #[doc(hidden)]
    pub fn corrupt_for_test(&self, cid: &Cid, data: Bytes) {
        self.write().insert(*cid, data);
    }
}

#[async_trait]
impl BlockStore for MemoryStore {
    async fn put(&self, request: PutBlocks) -> Result<Vec<Cid>> {
        self.transactions
            .check(&request.owner, &request.transaction)?;
        let blocks = request.check()?;
        let cids: Vec<Cid> = blocks.iter().map(|b| *b.cid()).collect();
        self.transactions
            .record(&request.owner, &request.transaction, cids.iter().copied())?;
        let mut map = self.write();
        for block in blocks {
            let cid = *block.cid();
            map.entry(cid).or_insert_with(|| block.into_data());
        }
        Ok(cids)
    }

    async fn get(&self, cid: &Cid, auth: Option<&BlockAuth>) -> Result<Option<Bytes>> {
        let Some(data) = self.load(cid)? else {
            return Ok(None);
        };
        access::check(cid, &data, auth)?;
        Ok(Some(data))
    }

    async fn get_trusted(&self, cid: &Cid) -> Result<Option<Bytes>> {
        self.load(cid)
    }

    async fn check(&self, cid: &Cid) -> Result<Option<u64>> {
        // Every read is hashed.
        Ok(self.load(cid)?.map(|b| b.len() as u64))
    }

    async fn has(&self, cid: &Cid) -> Result<bool> {
        Ok(cid.is_identity() || self.read().contains_key(cid))
    }

    async fn start_transaction(&self, owner: &PublicKeyHash) -> Result<TransactionId> {
        Ok(self.transactions.start(owner))
    }

    async fn close_transaction(&self, owner: &PublicKeyHash, id: &TransactionId) -> Result<()> {
        self.transactions.close(owner, id)
    }
}

#[async_trait]
impl LocalBlockStore for MemoryStore {
    async fn resume_transaction(
        &self,
        owner: &PublicKeyHash,
        id: TransactionId,
        age: std::time::Duration,
        blocks: Vec<Cid>,
    ) -> Result<()> {
        self.transactions.resume(owner, id, age, blocks);
        Ok(())
    }

    async fn protected(&self) -> Result<BTreeSet<Cid>> {
        Ok(self.transactions.protected())
    }

    fn list(&self) -> BoxStream<'_, Result<Cid>> {
        let cids: Vec<Cid> = self.read().keys().copied().collect();
        stream::iter(cids.into_iter().map(Ok)).boxed()
    }

    async fn delete(&self, cid: &Cid) -> Result<()> {
        self.write().remove(cid);
        Ok(())
    }
}
