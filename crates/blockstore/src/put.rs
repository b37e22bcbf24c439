//! Checking a put before anything is stored.

use bytes::Bytes;
use peergos_ipld::{Block, Cid, Codec};
use peergos_keys::{bat, Domain, PublicKeyHash, Signature, SigningKeyPair};

use crate::{Error, Result, TransactionId};

/// A block with its writer's signature over its CID
/// ([`Domain::BLOCK_PUT`]).
#[derive(Debug, Clone)]
pub struct SignedBlock {
    /// The content codec.
    pub codec: Codec,
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
    /// once, for callers that link to the block).
    pub fn sign_with_cid(
        writer: &SigningKeyPair,
        codec: Codec,
        data: impl Into<Bytes>,
    ) -> (Cid, Self) {
        let data = data.into();
        let cid = Cid::hash(codec, &data);
        let block = SignedBlock {
            codec,
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
    /// stored if any block fails.
    pub(crate) fn check(&self) -> Result<Vec<Block>> {
        let writer = self.writer.key()?;
        self.blocks
            .iter()
            .map(|signed| {
                // Check the token list while the block is decoded anyway.
                let block = match signed.codec {
                    Codec::DagCbor => {
                        let (block, value) = Block::new_cbor(signed.data.clone())?;
                        bat::cbor_bats(&value)?;
                        block
                    }
                    Codec::Raw => {
                        let block = Block::new(Codec::Raw, signed.data.clone())?;
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
            })
            .collect()
    }
}
