//! Signed mutable pointers: the only mutable state in Peergos.
//!
//! A pointer maps `(owner, writer)` to the CID of that writer's current
//! root block. It moves only by a [`SignedPointer`]: a [`PointerUpdate`]
//! `{previous, current, sequence}` signed by the writer key. A store accepts
//! an update only if
//!
//! 1. the signature verifies under the writer key (domain
//!    `peergos/pointer/v1`, bound to the owner),
//! 2. the writer is the owner or a key the owner owns ([`Ownership`]),
//! 3. `previous` equals the stored current value, and
//! 4. `sequence` is larger than the stored sequence.
//!
//! That is compare-and-swap: of two writers racing from the same state, one
//! wins and the other gets [`Error::CasConflict`] and retries. Clients keep
//! a [`PointerCache`] that refuses any pointer older than the newest it has
//! seen, so a server cannot silently roll a user back; backed by a
//! [`SeenStore`], what it has seen outlives the process.
//!
//! Stores: [`MemoryPointerStore`] and [`SqlitePointerStore`] (WAL,
//! `BEGIN IMMEDIATE` transactions with group commit, safe across threads and
//! processes).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod cache;
mod error;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod seen;
mod sqlite;
mod update;

use async_trait::async_trait;
use peergos_keys::PublicKeyHash;

pub use crate::cache::PointerCache;
pub use crate::error::{CasConflict, Error};
pub use crate::memory::MemoryPointerStore;
#[cfg(feature = "postgres")]
pub use crate::postgres::{query_error, Database, DatabaseError, PostgresPointerStore};
pub use crate::seen::SeenStore;
pub use crate::sqlite::{Durability, SqlitePointerStore};
pub use crate::update::{PointerUpdate, SignedPointer};

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Decides whether `writer` may move pointers in `owner`'s space. The server
/// implements it from the owner's `WriterData` (owned keys); [`OwnerOnly`]
/// allows only the owner itself.
#[async_trait]
pub trait Ownership: Send + Sync + 'static {
    /// True if `writer` is `owner` or a key `owner` (transitively) owns.
    async fn owns(&self, owner: &PublicKeyHash, writer: &PublicKeyHash) -> Result<bool>;
}

/// Ownership that accepts only the owner's own key.
#[derive(Debug, Clone, Copy, Default)]
pub struct OwnerOnly;

#[async_trait]
impl Ownership for OwnerOnly {
    async fn owns(&self, owner: &PublicKeyHash, writer: &PublicKeyHash) -> Result<bool> {
        Ok(owner == writer)
    }
}

/// Stores the current signed update of every pointer.
#[async_trait]
pub trait PointerStore: Send + Sync + 'static {
    /// The latest accepted update of `(owner, writer)`, if any. Callers
    /// verify it ([`SignedPointer::verify`]) and check it against their
    /// [`PointerCache`]; they need not trust the store.
    async fn get(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
    ) -> Result<Option<SignedPointer>>;

    /// Verifies `update` (signature, ownership) and applies it atomically
    /// if its `previous` is the stored current value and its sequence is
    /// larger than the stored one. Cancel-safe: dropping the future either
    /// leaves the pointer as it was or applies the update whole.
    async fn set(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
        update: SignedPointer,
    ) -> Result<()>;

    /// The current target of every pointer that has one, in no order: the
    /// roots garbage collection marks from. Stores that cannot list (a
    /// remote server) say [`Error::Unsupported`].
    async fn targets(&self) -> Result<Vec<peergos_ipld::Cid>> {
        Err(Error::Unsupported {
            operation: "listing pointers",
        })
    }
}

/// What is stored for a pointer: its sequence, its current target and the
/// signed update that set it.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) sequence: u64,
    pub(crate) current: Option<peergos_ipld::Cid>,
}

/// The CAS rule shared by every store: `update` may replace `stored`.
pub(crate) fn check_cas(stored: Option<&Stored>, update: &PointerUpdate) -> Result<()> {
    let (sequence, current) = stored.map_or((0, None), |s| (s.sequence, s.current));
    if update.previous != current {
        return Err(Error::CasConflict(Box::new(CasConflict {
            expected: update.previous,
            actual: current,
        })));
    }
    if update.sequence <= sequence {
        return Err(Error::StaleSequence {
            stored: sequence,
            offered: update.sequence,
        });
    }
    Ok(())
}

/// Signature and ownership checks shared by every store.
pub(crate) async fn verify(
    ownership: &dyn Ownership,
    owner: &PublicKeyHash,
    writer: &PublicKeyHash,
    update: &SignedPointer,
) -> Result<()> {
    update.verify(owner, writer)?;
    if !ownership.owns(owner, writer).await? {
        return Err(Error::NotOwned {
            owner: *owner,
            writer: *writer,
        });
    }
    Ok(())
}
