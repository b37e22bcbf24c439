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
    /// newest seen. Returns the update to use: `update` itself, or the newer
    /// one already seen is an error ([`Error::Rollback`]).
    pub fn observe(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
        update: &SignedPointer,
    ) -> Result<()> {
        update.verify(owner, writer)?;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let key = (*owner, *writer);
        if let Some(known) = seen.get(&key) {
            let (old, new) = (known.update.sequence, update.update.sequence);
            if new < old {
                return Err(Error::Rollback {
                    seen: old,
                    offered: new,
                });
            }
            if new == old {
                return if known == update {
                    Ok(())
                } else {
                    Err(Error::Equivocation { sequence: new })
                };
            }
        }
        seen.insert(key, update.clone());
        Ok(())
    }

    /// The newest sequence seen for `(owner, writer)`.
    pub fn newest(&self, owner: &PublicKeyHash, writer: &PublicKeyHash) -> Option<u64> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(&(*owner, *writer)).map(|u| u.update.sequence)
    }
}
