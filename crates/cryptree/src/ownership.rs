//! Which writer keys an owner owns, read from `WriterData`: what a pointer
//! store checks before accepting a sub-writer's update.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, OnceLock, Weak};

use async_trait::async_trait;
use peergos_blockstore::BlockStore;
use peergos_keys::PublicKeyHash;
use peergos_pointers::{Error as PointerError, Ownership, PointerStore};

use crate::WriterData;

/// The most writer keys one ownership check walks.
const MAX_OWNED_WALK: usize = 4096;

/// [`Ownership`] from the owner's `WriterData`: `writer` is accepted if it
/// is the owner or appears in the `owned` set of the owner's `WriterData`,
/// or of a key found that way (breadth first, at most 4,096 keys).
///
/// A pointer store needs its ownership rule when it is built, and this
/// rule reads pointers, so it is attached to its store afterwards with
/// [`attach`](Self::attach) (held weakly: no reference cycle).
pub struct WriterOwnership<B: BlockStore + ?Sized> {
    blocks: Arc<B>,
    pointers: OnceLock<Weak<dyn PointerStore>>,
}

impl<B: BlockStore + ?Sized> WriterOwnership<B> {
    /// A rule reading `WriterData` blocks from `blocks`.
    pub fn new(blocks: Arc<B>) -> Self {
        WriterOwnership {
            blocks,
            pointers: OnceLock::new(),
        }
    }

    /// Sets the pointer store to read owners' pointers from (the store this
    /// rule guards). Later calls are ignored.
    pub fn attach(&self, pointers: &Arc<dyn PointerStore>) {
        let _ = self.pointers.set(Arc::downgrade(pointers));
    }

    async fn owned_by(
        &self,
        owner: &PublicKeyHash,
        key: &PublicKeyHash,
    ) -> Result<BTreeSet<PublicKeyHash>, PointerError> {
        let store = self.pointers.get().and_then(Weak::upgrade).ok_or_else(|| {
            PointerError::Task("ownership rule is not attached to a pointer store".into())
        })?;
        let Some(signed) = store.get(owner, key).await? else {
            return Ok(BTreeSet::new());
        };
        signed.verify(owner, key)?;
        let Some(cid) = signed.update.current else {
            return Ok(BTreeSet::new());
        };
        let bytes = self
            .blocks
            .get_trusted(&cid)
            .await
            .map_err(|e| PointerError::Backend {
                context: format!("reading writer data {cid}"),
                source: Box::new(e),
            })?
            .ok_or_else(|| PointerError::Task(format!("writer data {cid} is missing")))?;
        let data = WriterData::from_bytes(&bytes).map_err(|e| PointerError::Backend {
            context: format!("writer data {cid}"),
            source: Box::new(e),
        })?;
        Ok(data.owned)
    }
}

#[async_trait]
impl<B: BlockStore + ?Sized> Ownership for WriterOwnership<B> {
    async fn owns(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
    ) -> peergos_pointers::Result<bool> {
        if owner == writer {
            return Ok(true);
        }
        let mut seen = BTreeSet::from([*owner]);
        let mut queue = VecDeque::from([*owner]);
        while let Some(key) = queue.pop_front() {
            for owned in self.owned_by(owner, &key).await? {
                if owned == *writer {
                    return Ok(true);
                }
                if seen.len() < MAX_OWNED_WALK && seen.insert(owned) {
                    queue.push_back(owned);
                }
            }
        }
        Ok(false)
    }
}
