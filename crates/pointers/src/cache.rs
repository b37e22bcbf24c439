//! Client-side rollback protection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use peergos_keys::PublicKeyHash;

use crate::{Error, Result, SeenStore, SignedPointer};

/// Remembers the newest verified update of every pointer a client has seen
/// and refuses anything older, so a server cannot roll a user back to an
/// earlier state (nor show two different states with one sequence).
///
/// [`PointerCache::new`] remembers for the life of the value;
/// [`PointerCache::persistent`] also keeps every advance in a
/// [`SeenStore`] under a scope (the server's id), so a later process of
/// the same device starts from what this one saw.
#[derive(Default)]
pub struct PointerCache {
    seen: Mutex<HashMap<(PublicKeyHash, PublicKeyHash), SignedPointer>>,
    backing: Option<(Arc<SeenStore>, String)>,
}

impl PointerCache {
    /// An empty cache, kept in memory only.
    pub fn new() -> Self {
        Self::default()
    }

    /// A cache that starts from, and records into, `store` under `scope`.
    pub fn persistent(store: Arc<SeenStore>, scope: impl Into<String>) -> Self {
        PointerCache {
            seen: Mutex::default(),
            backing: Some((store, scope.into())),
        }
    }

    /// The newest update known for `(owner, writer)`: this value's own, or
    /// else the backing record's (then kept in memory).
    fn known(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
    ) -> Result<Option<SignedPointer>> {
        let key = (*owner, *writer);
        if let Some(known) = self.lock().get(&key) {
            return Ok(Some(known.clone()));
        }
        let Some((store, scope)) = &self.backing else {
            return Ok(None);
        };
        let Some(recorded) = store.pointer(scope, owner, writer)? else {
            return Ok(None);
        };
        let mut seen = self.lock();
        let entry = seen.entry(key).or_insert_with(|| recorded.clone());
        if entry.update.sequence < recorded.update.sequence {
            *entry = recorded;
        }
        Ok(Some(entry.clone()))
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(PublicKeyHash, PublicKeyHash), SignedPointer>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
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
        let seen_before = self.newest_recorded(owner, writer)?;
        self.observe_read(owner, writer, Some(update), seen_before)
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
        // Loads the backing record into memory if it was not yet.
        self.known(owner, writer)?;
        {
            let mut seen = self.lock();
            let key = (*owner, *writer);
            match seen.get(&key) {
                Some(known) if offered < known.update.sequence => return Ok(()),
                Some(known) if offered == known.update.sequence => {
                    return if known == update {
                        Ok(())
                    } else {
                        Err(Error::Equivocation { sequence: offered })
                    };
                }
                _ => {
                    seen.insert(key, update.clone());
                }
            }
        }
        if let Some((store, scope)) = &self.backing {
            store.record_pointer(scope, owner, writer, update)?;
        }
        Ok(())
    }

    /// The newest sequence seen for `(owner, writer)` (in memory, or in
    /// the backing record). A backing record that cannot be read counts as
    /// none here; [`newest_recorded`](Self::newest_recorded) says why.
    pub fn newest(&self, owner: &PublicKeyHash, writer: &PublicKeyHash) -> Option<u64> {
        self.newest_recorded(owner, writer).ok().flatten()
    }

    /// [`newest`](Self::newest), failing when the backing record cannot be
    /// read.
    pub fn newest_recorded(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
    ) -> Result<Option<u64>> {
        Ok(self.known(owner, writer)?.map(|u| u.update.sequence))
    }
}
