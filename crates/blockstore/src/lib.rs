//! Content-addressed block storage.
//!
//! [`BlockStore`] is the one seam every layer above stores through. It is
//! object safe, so the daemon picks a backend at run time as
//! `Arc<dyn BlockStore>`; code that wants static dispatch is generic over
//! `S: BlockStore`.
//!
//! Backends: [`MemoryStore`] (tests, caches) and [`FileStore`] (flat files,
//! crash-safe; see `docs/design/blockstore.md`). Every backend:
//! - checks a put before storing anything: size limit, canonical DAG-CBOR,
//!   a valid Ed25519 signature by the writer over each block's CID, a
//!   well-formed block-access-token list, an open transaction of the owner;
//! - verifies the hash of every block it returns;
//! - refuses blocks that list access tokens unless the caller proves it
//!   holds one ([`BlockAuth`]).
//!
//! The same conformance suite (`peergos-testkit`) runs against each backend.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod access;
pub mod buffer;
mod direct;
mod error;
pub mod file;
pub mod memory;
mod put;
#[cfg(feature = "s3")]
pub mod s3;
mod small;
mod transactions;

use std::collections::BTreeSet;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use peergos_ipld::Cid;
use peergos_keys::PublicKeyHash;

pub use crate::access::{check as check_access, BlockAuth};
pub use crate::buffer::BlockBuf;
pub use crate::error::Error;
pub use crate::file::{FileOptions, FileStore};
pub use crate::memory::MemoryStore;
pub use crate::put::{PutBlocks, SignedBlock};
#[cfg(feature = "s3")]
pub use crate::s3::{S3Config, S3Store};
pub use crate::small::SMALL_BLOCK_MAX;
pub use crate::transactions::{TransactionId, TRANSACTION_TIMEOUT};

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Stores blocks by CID.
///
/// All methods are cancel-safe in the sense that dropping a future never
/// leaves a partial block visible: a put either stored a block completely or
/// not at all (a cancelled put may still complete in the background).
#[async_trait]
pub trait BlockStore: Send + Sync + 'static {
    /// Checks and stores blocks written by `request.writer` for
    /// `request.owner` inside an open transaction; returns their CIDs in
    /// order. Storing a block that is already present is not an error.
    async fn put(&self, request: PutBlocks) -> Result<Vec<Cid>>;

    /// The block named `cid`, if present, after checking its hash (the file
    /// store skips that for raw blocks unless
    /// [`FileOptions::verify_reads`]: every reader re-hashes them) and,
    /// when the block lists access tokens, the caller's proof.
    async fn get(&self, cid: &Cid, auth: Option<&BlockAuth>) -> Result<Option<Bytes>>;

    /// [`get`](Self::get) for many blocks; answers in request order.
    async fn get_many(&self, requests: &[(Cid, Option<BlockAuth>)]) -> Result<Vec<Option<Bytes>>> {
        let mut out = Vec::with_capacity(requests.len());
        for (cid, auth) in requests {
            out.push(self.get(cid, auth.as_ref()).await?);
        }
        Ok(out)
    }

    /// The block named `cid` with its hash checked as in
    /// [`get`](Self::get) but no access check: for the server's own use
    /// (garbage collection, mirroring, space accounting), never for
    /// answering a remote request.
    async fn get_trusted(&self, cid: &Cid) -> Result<Option<Bytes>>;

    /// Reads the block named `cid` and re-hashes it whatever the store's
    /// read settings, for a scrub: its length, None if it is not stored,
    /// [`Error::Corrupt`] if its bytes no longer match. The default hashes
    /// what [`get_trusted`](Self::get_trusted) returns; stores that hash
    /// every read, or can read with a hash forced, override it so a block
    /// is hashed once.
    async fn check(&self, cid: &Cid) -> Result<Option<u64>> {
        let Some(data) = self.get_trusted(cid).await? else {
            return Ok(None);
        };
        let cid = *cid;
        tokio::task::spawn_blocking(move || {
            cid.verify(&data)
                .map(|()| data.len() as u64)
                .map_err(|_| Error::Corrupt {
                    cid,
                    path: "<as read>".into(),
                })
        })
        .await?
        .map(Some)
    }

    /// Whether the block is stored (no content is read or returned).
    async fn has(&self, cid: &Cid) -> Result<bool>;

    /// The stored size of a block in bytes, if present (for space
    /// accounting). The default reads the block; stores that know sizes
    /// without reading override it.
    async fn size(&self, cid: &Cid) -> Result<Option<u64>> {
        Ok(self.get_trusted(cid).await?.map(|b| b.len() as u64))
    }

    /// Opens a transaction for `owner`. Blocks put in it are protected from
    /// garbage collection until it is closed or [`TRANSACTION_TIMEOUT`]
    /// passes.
    async fn start_transaction(&self, owner: &PublicKeyHash) -> Result<TransactionId>;

    /// Closes a transaction of `owner`.
    async fn close_transaction(&self, owner: &PublicKeyHash, id: &TransactionId) -> Result<()>;
}

/// A store this process keeps the blocks of (memory, its own disk, its
/// own bucket): what restarts, garbage collection, scrubs and mirroring
/// need beyond [`BlockStore`]. A client's view of a remote server is a
/// [`BlockStore`] only, so nothing has to answer "unsupported".
#[async_trait]
pub trait LocalBlockStore: BlockStore {
    /// Opens again a transaction of `owner` that was open before a
    /// restart, `age` after it was first opened, with the blocks it had
    /// written (the server keeps transactions' records, since every store
    /// keeps open transactions in memory). One older than
    /// [`TRANSACTION_TIMEOUT`] stays closed.
    async fn resume_transaction(
        &self,
        owner: &PublicKeyHash,
        id: TransactionId,
        age: std::time::Duration,
        blocks: Vec<Cid>,
    ) -> Result<()>;

    /// The blocks written in transactions that are still open.
    async fn protected(&self) -> Result<BTreeSet<Cid>>;

    /// Every stored CID, in no particular order (for GC and mirroring).
    fn list(&self) -> BoxStream<'_, Result<Cid>>;

    /// Removes a block (for GC). Removing a missing block is not an error.
    async fn delete(&self, cid: &Cid) -> Result<()>;
}

/// Seconds since the Unix epoch, for checking access proofs.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
