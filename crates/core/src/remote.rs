//! A server's block and pointer stores, seen through [`NetworkAccess`]:
//! what the filesystem layer runs on in a client.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use peergos_blockstore::{BlockAuth, BlockStore, PutBlocks, TransactionId};
use peergos_ipld::Cid;
use peergos_keys::PublicKeyHash;
use peergos_pointers::{CasConflict, PointerCache, PointerStore, SignedPointer};

use peergos_api::ErrorCode;

use crate::{Error, NetworkAccess};

/// The largest batch of block bytes sent in one put request.
const MAX_PUT_BYTES: usize = 16 << 20;

/// A remote server as a [`BlockStore`] and a [`PointerStore`].
///
/// The layers above (the filesystem, the CHAMP, the committer's pointer
/// cache) verify every hash and signature whatever the store did. A
/// remote [`checked_by`](Self::checked_by) a device's pointer cache also
/// refuses, at the network's edge, any pointer older than one that cache
/// (and so any earlier process of the device) has seen, and records every
/// newer one it reads or sets.
#[derive(Clone)]
pub struct Remote {
    net: Arc<dyn NetworkAccess>,
    owner: Option<PublicKeyHash>,
    seen: Option<Arc<PointerCache>>,
}

impl Remote {
    /// The stores of the server behind `net`.
    pub fn new(net: Arc<dyn NetworkAccess>) -> Self {
        Remote {
            net,
            owner: None,
            seen: None,
        }
    }

    /// The stores of `owner`'s space: block reads name the owner, so a
    /// server that does not hold a block fetches it from the owner's home.
    pub fn for_owner(net: Arc<dyn NetworkAccess>, owner: PublicKeyHash) -> Self {
        Remote {
            net,
            owner: Some(owner),
            seen: None,
        }
    }

    /// This remote, checking and recording every pointer in `seen`.
    pub fn checked_by(mut self, seen: Arc<PointerCache>) -> Self {
        self.seen = Some(seen);
        self
    }

    /// The network access underneath.
    pub fn network(&self) -> &Arc<dyn NetworkAccess> {
        &self.net
    }
}

fn pointer_error(e: Error) -> peergos_pointers::Error {
    match e {
        Error::Unreachable { address, reason } => {
            peergos_pointers::Error::Unreachable { address, reason }
        }
        Error::Refused { status, body } => peergos_pointers::Error::Refused {
            status,
            message: body.message,
        },
        other => peergos_pointers::Error::Backend {
            context: "the server".into(),
            source: Box::new(other),
        },
    }
}

#[async_trait]
impl BlockStore for Remote {
    async fn put(&self, request: PutBlocks) -> peergos_blockstore::Result<Vec<Cid>> {
        // Split large batches so no request nears the body limit.
        let total: usize = request.blocks.iter().map(|b| b.data.len()).sum();
        if total <= MAX_PUT_BYTES {
            return Ok(self.net.put(&request).await.map_err(Error::from)?);
        }
        let mut cids = Vec::with_capacity(request.blocks.len());
        let mut batch = Vec::new();
        let mut size = 0;
        let flush = |batch: Vec<_>| PutBlocks {
            owner: request.owner,
            writer: request.writer,
            transaction: request.transaction,
            blocks: batch,
        };
        for block in request.blocks.iter().cloned() {
            if size + block.data.len() > MAX_PUT_BYTES && !batch.is_empty() {
                cids.extend(
                    self.net
                        .put(&flush(std::mem::take(&mut batch)))
                        .await
                        .map_err(Error::from)?,
                );
                size = 0;
            }
            size += block.data.len();
            batch.push(block);
        }
        if !batch.is_empty() {
            cids.extend(self.net.put(&flush(batch)).await.map_err(Error::from)?);
        }
        Ok(cids)
    }

    async fn get(
        &self,
        cid: &Cid,
        auth: Option<&BlockAuth>,
    ) -> peergos_blockstore::Result<Option<Bytes>> {
        Ok(self
            .net
            .get(cid, auth, self.owner.as_ref())
            .await
            .map_err(Error::from)?)
    }

    /// In as few round trips as the server's answers allow: each asks for
    /// what the answers before it did not cover.
    async fn get_many(
        &self,
        requests: &[(Cid, Option<BlockAuth>)],
    ) -> peergos_blockstore::Result<Vec<Option<Bytes>>> {
        let mut out = Vec::with_capacity(requests.len());
        while out.len() < requests.len() {
            let answer = self
                .net
                .get_many(&requests[out.len()..], self.owner.as_ref())
                .await
                .map_err(Error::from)?;
            if answer.is_empty() {
                return Err(crate::Error::Invalid(
                    "the server answered no blocks for a batch request".into(),
                )
                .into());
            }
            out.extend(answer);
        }
        out.truncate(requests.len());
        Ok(out)
    }

    async fn get_trusted(&self, cid: &Cid) -> peergos_blockstore::Result<Option<Bytes>> {
        Ok(self
            .net
            .get(cid, None, self.owner.as_ref())
            .await
            .map_err(Error::from)?)
    }

    async fn has(&self, cid: &Cid) -> peergos_blockstore::Result<bool> {
        Ok(self.net.has(cid).await.map_err(Error::from)?)
    }

    async fn start_transaction(
        &self,
        owner: &PublicKeyHash,
    ) -> peergos_blockstore::Result<TransactionId> {
        Ok(self
            .net
            .start_transaction(owner)
            .await
            .map_err(Error::from)?)
    }

    async fn close_transaction(
        &self,
        owner: &PublicKeyHash,
        id: &TransactionId,
    ) -> peergos_blockstore::Result<()> {
        Ok(self
            .net
            .close_transaction(owner, id)
            .await
            .map_err(Error::from)?)
    }
}

#[async_trait]
impl PointerStore for Remote {
    async fn get(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
    ) -> peergos_pointers::Result<Option<SignedPointer>> {
        let Some(seen) = &self.seen else {
            return self
                .net
                .get_pointer(owner, writer)
                .await
                .map_err(|e| pointer_error(e.into()));
        };
        // What was seen before the read was issued: a commit of this
        // device may land while it is in flight (PointerCache::observe_read).
        let before = seen.newest_recorded(owner, writer)?;
        let got = self
            .net
            .get_pointer(owner, writer)
            .await
            .map_err(|e| pointer_error(e.into()))?;
        seen.observe_read(owner, writer, got.as_ref(), before)?;
        Ok(got)
    }

    async fn set(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
        update: SignedPointer,
    ) -> peergos_pointers::Result<()> {
        match self.net.set_pointer(owner, writer, &update).await {
            Ok(()) => match &self.seen {
                Some(seen) => seen.observe(owner, writer, &update),
                None => Ok(()),
            },
            // Give the committer the typed conflicts it retries on.
            Err(peergos_api::Error::Refused { body, .. })
                if body.code == ErrorCode::CasConflict =>
            {
                Err(peergos_pointers::Error::CasConflict(Box::new(
                    CasConflict {
                        expected: update.update.previous,
                        actual: body.actual,
                    },
                )))
            }
            Err(peergos_api::Error::Refused { body, .. })
                if body.code == ErrorCode::StaleSequence =>
            {
                Err(peergos_pointers::Error::StaleSequence {
                    stored: update.update.sequence,
                    offered: update.update.sequence,
                })
            }
            Err(e) => Err(pointer_error(e.into())),
        }
    }
}
