//! Open upload transactions, which protect their blocks from GC.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use peergos_ipld::Cid;
use peergos_keys::PublicKeyHash;

use crate::{Error, Result};

/// How long a transaction stays open without being closed.
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// Names an open transaction: 16 random bytes, shown as hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionId([u8; 16]);

impl TransactionId {
    /// A fresh random id.
    pub fn random() -> Self {
        use rand_core::RngCore;
        let mut bytes = [0u8; 16];
        rand_core::OsRng.fill_bytes(&mut bytes);
        TransactionId(bytes)
    }

    /// The id's bytes.
    pub fn to_bytes(&self) -> [u8; 16] {
        self.0
    }

    /// An id from its bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        TransactionId(bytes)
    }
}

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TransactionId({self})")
    }
}

struct Open {
    owner: PublicKeyHash,
    opened: Instant,
    blocks: BTreeSet<Cid>,
}

/// The open transactions of one store, kept in memory.
#[derive(Default)]
pub(crate) struct Transactions {
    open: Mutex<HashMap<TransactionId, Open>>,
}

impl Transactions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TransactionId, Open>> {
        // A panic while holding the lock cannot leave the map inconsistent
        // (every update is a single insert/remove), so poisoning is ignored.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn expire(open: &mut HashMap<TransactionId, Open>) {
        open.retain(|_, t| t.opened.elapsed() < TRANSACTION_TIMEOUT);
    }

    pub(crate) fn start(&self, owner: &PublicKeyHash) -> TransactionId {
        let id = TransactionId::random();
        let mut open = self.lock();
        Self::expire(&mut open);
        open.insert(
            id,
            Open {
                owner: *owner,
                opened: Instant::now(),
                blocks: BTreeSet::new(),
            },
        );
        id
    }

    /// Checks `id` is open for `owner`.
    pub(crate) fn check(&self, owner: &PublicKeyHash, id: &TransactionId) -> Result<()> {
        let open = self.lock();
        match open.get(id) {
            Some(t) if t.opened.elapsed() >= TRANSACTION_TIMEOUT => {
                Err(Error::UnknownTransaction { id: *id })
            }
            Some(t) if t.owner == *owner => Ok(()),
            Some(_) => Err(Error::TransactionOwner { id: *id }),
            None => Err(Error::UnknownTransaction { id: *id }),
        }
    }

    /// Records blocks as written in `id`; called before they are stored so
    /// a concurrent GC can never see them unprotected.
    pub(crate) fn record(
        &self,
        owner: &PublicKeyHash,
        id: &TransactionId,
        cids: impl IntoIterator<Item = Cid>,
    ) -> Result<()> {
        self.check(owner, id)?;
        let mut open = self.lock();
        let t = open
            .get_mut(id)
            .ok_or(Error::UnknownTransaction { id: *id })?;
        t.blocks.extend(cids);
        Ok(())
    }

    pub(crate) fn close(&self, owner: &PublicKeyHash, id: &TransactionId) -> Result<()> {
        self.check(owner, id)?;
        self.lock().remove(id);
        Ok(())
    }

    /// Opens `id` again, `age` after it was first opened, with the blocks
    /// it had written (after a restart; its record was kept elsewhere).
    /// One past [`TRANSACTION_TIMEOUT`] stays closed.
    pub(crate) fn resume(
        &self,
        owner: &PublicKeyHash,
        id: TransactionId,
        age: Duration,
        blocks: impl IntoIterator<Item = Cid>,
    ) {
        let Some(opened) = Instant::now().checked_sub(age) else {
            return;
        };
        if age >= TRANSACTION_TIMEOUT {
            return;
        }
        let mut open = self.lock();
        let entry = open.entry(id).or_insert_with(|| Open {
            owner: *owner,
            opened,
            blocks: BTreeSet::new(),
        });
        entry.blocks.extend(blocks);
    }

    pub(crate) fn protected(&self) -> BTreeSet<Cid> {
        let mut open = self.lock();
        Self::expire(&mut open);
        open.values()
            .flat_map(|t| t.blocks.iter().copied())
            .collect()
    }
}
