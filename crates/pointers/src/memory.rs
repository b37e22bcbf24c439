//! An in-memory pointer store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use peergos_keys::PublicKeyHash;

use crate::{check_cas, verify, OwnerOnly, Ownership, PointerStore, Result, SignedPointer, Stored};

/// Pointers in a hash map, with the same checks as the persistent stores.
pub struct MemoryPointerStore {
    ownership: Arc<dyn Ownership>,
    pointers: Mutex<HashMap<(PublicKeyHash, PublicKeyHash), SignedPointer>>,
}

impl Default for MemoryPointerStore {
    fn default() -> Self {
        Self::new(Arc::new(OwnerOnly))
    }
}

impl MemoryPointerStore {
    /// An empty store deciding ownership with `ownership`.
    pub fn new(ownership: Arc<dyn Ownership>) -> Self {
        MemoryPointerStore {
            ownership,
            pointers: Mutex::default(),
        }
    }
}

#[async_trait]
impl PointerStore for MemoryPointerStore {
    async fn get(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
    ) -> Result<Option<SignedPointer>> {
        let pointers = self.pointers.lock().unwrap_or_else(|e| e.into_inner());
        Ok(pointers.get(&(*owner, *writer)).cloned())
    }

    async fn set(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
        update: SignedPointer,
    ) -> Result<()> {
        verify(&*self.ownership, owner, writer, &update).await?;
        let mut pointers = self.pointers.lock().unwrap_or_else(|e| e.into_inner());
        let stored = pointers.get(&(*owner, *writer)).map(|s| Stored {
            sequence: s.update.sequence,
            current: s.update.current,
        });
        check_cas(stored.as_ref(), &update.update)?;
        pointers.insert((*owner, *writer), update);
        Ok(())
    }

    async fn targets(&self) -> Result<Vec<peergos_ipld::Cid>> {
        let pointers = self.pointers.lock().unwrap_or_else(|e| e.into_inner());
        Ok(pointers.values().filter_map(|p| p.update.current).collect())
    }
}
