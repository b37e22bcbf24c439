//! Checking a put before anything is stored.

use bytes::Bytes;
use peergos_ipld::{Block, Cid, Codec, HashFn};
use peergos_keys::{bat, Domain, PublicKeyHash, Signature, SigningKeyPair};

use crate::{Error, Result, TransactionId};

/// A block with its writer's signature over its CID
/// ([`Domain::BLOCK_PUT`]).
#[derive(Debug, Clone)]
pub struct SignedBlock {
    /// The content codec.
    pub codec: Codec,
    /// The hash that names the block.
    pub hash: HashFn,
    /// The block bytes.
    pub data: Bytes,
    /// The writer's signature over the block's binary CID.
    pub signature: Signature,
}

impl SignedBlock {
    /// Signs `data` as `writer`.
    pub fn sign(writer: &SigningKeyPair, codec: Codec, data: impl Into<Bytes>) -> Self {
        Self::sign_with_cid(writer, codec, data).1
    }

    /// Signs `data` as `writer`, returning the block's CID too (computed
    /// once, for callers that link to the block). The block is named with
    /// the hash new blocks of its codec use ([`HashFn::for_new`]).
    pub fn sign_with_cid(
        writer: &SigningKeyPair,
        codec: Codec,
        data: impl Into<Bytes>,
    ) -> (Cid, Self) {
        Self::sign_with_hash(writer, HashFn::for_new(codec), codec, data)
    }

    /// The CID the block's hash names it by (hashes the bytes).
    pub fn cid(&self) -> Cid {
        Cid::hash_with(self.hash, self.codec, &self.data)
    }

    /// Signs `data` as `writer`, naming it with `hash`.
    pub fn sign_with_hash(
        writer: &SigningKeyPair,
        hash: HashFn,
        codec: Codec,
        data: impl Into<Bytes>,
    ) -> (Cid, Self) {
        let data = data.into();
        let cid = Cid::hash_with(hash, codec, &data);
        let block = SignedBlock {
            codec,
            hash,
            signature: writer.sign(Domain::BLOCK_PUT, &cid.to_bytes()),
            data,
        };
        (cid, block)
    }
}

/// A batch of blocks written by one writer for one owner in one transaction.
#[derive(Debug, Clone)]
pub struct PutBlocks {
    /// Whose space the blocks count against.
    pub owner: PublicKeyHash,
    /// The signing key that wrote them (the owner or a key it owns).
    pub writer: PublicKeyHash,
    /// The open transaction that protects them until committed.
    pub transaction: TransactionId,
    /// The blocks.
    pub blocks: Vec<SignedBlock>,
}

impl PutBlocks {
    /// Checks every block (size, canonical form, writer signature, access
    /// token list) and returns them as verified [`Block`]s. Nothing is
    /// stored if any block fails. Large batches are checked on several
    /// threads (hashing dominates).
    pub(crate) fn check(&self) -> Result<Vec<Block>> {
        let writer = self.writer.key()?;
        let check_one = |signed: &SignedBlock| -> Result<Block> {
            // Check the token list while the block is decoded anyway.
            let block = match signed.codec {
                Codec::DagCbor => {
                    let (block, value) = Block::new_cbor_with(signed.hash, signed.data.clone())?;
                    bat::cbor_bats(&value)?;
                    block
                }
                Codec::Raw => {
                    let block = Block::new_with(signed.hash, Codec::Raw, signed.data.clone())?;
                    bat::split_raw(block.data())?;
                    block
                }
            };
            writer
                .verify(
                    Domain::BLOCK_PUT,
                    &block.cid().to_bytes(),
                    &signed.signature,
                )
                .map_err(|_| Error::BadWriterSignature { cid: *block.cid() })?;
            Ok(block)
        };
        let total: usize = self.blocks.iter().map(|b| b.data.len()).sum();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        if total < PARALLEL_CHECK_BYTES || self.blocks.len() < 2 || threads < 2 {
            return self.blocks.iter().map(check_one).collect();
        }
        let per_thread = self.blocks.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let parts: Vec<_> = self
                .blocks
                .chunks(per_thread)
                .map(|part| scope.spawn(move || part.iter().map(check_one).collect::<Vec<_>>()))
                .collect();
            let mut out = Vec::with_capacity(self.blocks.len());
            for part in parts {
                let checked = part
                    .join()
                    .map_err(|_| Error::Task("a block check panicked".into()))?;
                for block in checked {
                    out.push(block?);
                }
            }
            Ok(out)
        })
    }
}

/// Batches at least this large are checked on several threads.
const PARALLEL_CHECK_BYTES: usize = 2 << 20;
