//! Blocks: bytes with the CID that names them.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{cbor, Cid, Codec, Error, HashFn, Result};

/// The most payload (plaintext or ciphertext) one block carries: 1 MiB.
pub const MAX_PAYLOAD_SIZE: usize = 1 << 20;

/// The largest block, in bytes: [`MAX_PAYLOAD_SIZE`] plus 4 KiB of room for
/// the block-access-token prefix and CBOR framing around a full payload.
pub const MAX_BLOCK_SIZE: usize = MAX_PAYLOAD_SIZE + 4096;

/// Bytes together with their CID.
///
/// Every constructor checks the size limit and that the CID names the bytes,
/// so holding a `Block` means holding verified content.
#[derive(Clone, PartialEq, Eq)]
pub struct Block {
    cid: Cid,
    data: Bytes,
}

impl Block {
    /// Hashes `data` (sha2-256) into a new block with the given codec.
    ///
    /// For [`Codec::DagCbor`] the data must be canonical DAG-CBOR.
    pub fn new(codec: Codec, data: impl Into<Bytes>) -> Result<Self> {
        Self::new_with(HashFn::Sha2_256, codec, data)
    }

    /// Hashes `data` with `hash` into a new block with the given codec.
    ///
    /// For [`Codec::DagCbor`] the data must be canonical DAG-CBOR.
    pub fn new_with(hash: HashFn, codec: Codec, data: impl Into<Bytes>) -> Result<Self> {
        match codec {
            Codec::DagCbor => Ok(Self::new_cbor_with(hash, data)?.0),
            Codec::Raw => {
                let data = data.into();
                check_size(data.len())?;
                Ok(Block {
                    cid: Cid::hash_with(hash, codec, &data),
                    data,
                })
            }
        }
    }

    /// A new DAG-CBOR block (sha2-256) and the value it decodes to, for
    /// callers that need both: the strict decoder runs once.
    pub fn new_cbor(data: impl Into<Bytes>) -> Result<(Self, cbor::Value)> {
        Self::new_cbor_with(HashFn::Sha2_256, data)
    }

    /// [`new_cbor`](Self::new_cbor) named with `hash`.
    pub fn new_cbor_with(hash: HashFn, data: impl Into<Bytes>) -> Result<(Self, cbor::Value)> {
        let data = data.into();
        check_size(data.len())?;
        let value = cbor::decode_value(&data)?;
        let block = Block {
            cid: Cid::hash_with(hash, Codec::DagCbor, &data),
            data,
        };
        Ok((block, value))
    }

    /// Encodes `value` as canonical DAG-CBOR into a new block.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Self> {
        let data = cbor::to_vec(value)?;
        check_size(data.len())?;
        Ok(Block {
            cid: Cid::hash(Codec::DagCbor, &data),
            data: data.into(),
        })
    }

    /// Encodes a DAG-CBOR [`Value`](cbor::Value) canonically into a new
    /// block (no re-parse: the encoder's output is canonical by
    /// construction).
    pub fn from_value(value: &cbor::Value) -> Result<Self> {
        let data = cbor::encode_value(value)?;
        check_size(data.len())?;
        Ok(Block {
            cid: Cid::hash(Codec::DagCbor, &data),
            data: data.into(),
        })
    }

    /// A block from bytes that claim to be named by `cid`: checks the size,
    /// the hash and, for DAG-CBOR, that the bytes are canonical.
    pub fn verified(cid: Cid, data: impl Into<Bytes>) -> Result<Self> {
        let data = data.into();
        check_size(data.len())?;
        cid.verify(&data)?;
        match cid.codec() {
            Some(Codec::DagCbor) => {
                cbor::decode_value(&data)?;
            }
            Some(Codec::Raw) => {}
            None => {
                return Err(Error::UnsupportedCid {
                    reason: "unknown codec".into(),
                })
            }
        }
        Ok(Block { cid, data })
    }

    /// The block's CID.
    pub fn cid(&self) -> &Cid {
        &self.cid
    }

    /// The block's bytes.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// Takes the bytes out of the block.
    pub fn into_data(self) -> Bytes {
        self.data
    }

    /// Decodes a DAG-CBOR block into a `T`.
    pub fn decode<T: DeserializeOwned + Serialize>(&self) -> Result<T> {
        cbor::from_slice(&self.data)
    }
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block")
            .field("cid", &self.cid)
            .field("len", &self.data.len())
            .finish()
    }
}

fn check_size(size: usize) -> Result<()> {
    if size > MAX_BLOCK_SIZE {
        Err(Error::BlockTooLarge {
            size,
            max: MAX_BLOCK_SIZE,
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_block_is_refused_with_sizes() {
        let err = Block::new(Codec::Raw, vec![0u8; MAX_BLOCK_SIZE + 1]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "block of {} bytes is larger than the {} byte limit",
                MAX_BLOCK_SIZE + 1,
                MAX_BLOCK_SIZE
            )
        );
        Block::new(Codec::Raw, vec![0u8; MAX_BLOCK_SIZE]).unwrap();
    }

    #[test]
    fn verified_checks_hash_and_canonical_form() {
        let block = Block::encode(&vec![1u64, 2, 3]).unwrap();
        Block::verified(*block.cid(), block.data().clone()).unwrap();
        assert!(matches!(
            Block::verified(*block.cid(), vec![0x83, 1, 2, 4]),
            Err(Error::HashMismatch { .. })
        ));
        // Correct hash of non-canonical CBOR is still refused.
        let bad = vec![0x18, 0x01];
        let cid = Cid::hash(Codec::DagCbor, &bad);
        assert!(matches!(
            Block::verified(cid, bad),
            Err(Error::NonCanonical { .. })
        ));
        assert!(Block::new(Codec::DagCbor, vec![0x18, 0x01]).is_err());
    }

    #[test]
    fn from_value_matches_new() {
        let value = cbor::Value::Array(vec![cbor::Value::Integer(1.into())]);
        let block = Block::from_value(&value).unwrap();
        assert_eq!(
            Block::new(Codec::DagCbor, block.data().clone()).unwrap(),
            block
        );
    }
}
