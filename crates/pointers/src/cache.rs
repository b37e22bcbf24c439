//! Client-side rollback protection.

use std::collections::HashMap;
use std::sync::Mutex;

use peergos_keys::PublicKeyHash;

use crate::{Error, Result, SignedPointer};

/// Remembers the newest verified update of every pointer a client has seen
/// and refuses anything older, so a server cannot roll a user back to an
/// earlier state (nor show two different states with one sequence).
#[derive(Default)]
pub struct PointerCache {
    seen: Mutex<HashMap<(PublicKeyHash, PublicKeyHash), SignedPointer>>,
}

impl PointerCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Verifies `update` for `(owner, writer)` and records it if it is the
    /// newest seen. An update older than the newest seen is a
    /// [`Error::Rollback`]; a different one with the same sequence is an
    /// [`Error::Equivocation`]. For a read that may race with this client's
    /// own commits, use [`observe_read`](Self::observe_read).
    pub fn observe(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
        update: &SignedPointer,
    ) -> Result<()> {
        self.observe_read(owner, writer, Some(update), self.newest(owner, writer))
    }

    /// Like [`observe`](Self::observe), for a read that was issued when the
    /// newest sequence seen was `seen_before` (take it with
    /// [`newest`](Self::newest) just before reading). Concurrent tasks of the
    /// same client may have seen newer updates while the read was in flight;
    /// such a read is stale but honest and is accepted without being
    /// recorded. Only a read older than what was seen before it was issued
    /// is a rollback. `None` for `update` means the store has no pointer.
    pub fn observe_read(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
        update: Option<&SignedPointer>,
        seen_before: Option<u64>,
    ) -> Result<()> {
        let Some(update) = update else {
            return match seen_before {
                Some(seen) => Err(Error::Rollback { seen, offered: 0 }),
                None => Ok(()),
            };
        };
        update.verify(owner, writer)?;
        let offered = update.update.sequence;
        if let Some(seen) = seen_before {
            if offered < seen {
                return Err(Error::Rollback { seen, offered });
            }
        }
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let key = (*owner, *writer);
        match seen.get(&key) {
            Some(known) if offered < known.update.sequence => Ok(()),
            Some(known) if offered == known.update.sequence => {
                if known == update {
                    Ok(())
                } else {
                    Err(Error::Equivocation { sequence: offered })
                }
            }
            _ => {
                seen.insert(key, update.clone());
                Ok(())
            }
        }
    }

    /// The newest sequence seen for `(owner, writer)`.
    pub fn newest(&self, owner: &PublicKeyHash, writer: &PublicKeyHash) -> Option<u64> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(&(*owner, *writer)).map(|u| u.update.sequence)
    }
}
