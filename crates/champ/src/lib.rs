//! A Merkle CHAMP (compressed hash-array-mapped prefix trie) stored as
//! canonical DAG-CBOR blocks in any [`BlockStore`].
//!
//! It maps 32-byte [`Key`]s to [`Value`]s (a CID, or a few inline bytes).
//! A key's position at each level is taken from the SHA-256 of the key,
//! `bits` bits a level (default 3: 8 slots a node). A slot holds either a
//! bucket of up to `bucket` entries (default 4) or a link to a child node.
//!
//! **Canonical form.** Under any node, the keys whose hashes share the
//! node's prefix and a slot's position sit in a bucket if there are at most
//! `bucket` of them, and in a child node otherwise. Buckets are sorted by
//! key. So a key set has exactly one tree, and the same root CID whatever
//! order the keys were put and removed in (property-tested).
//!
//! Operations: [`Champ::get`], [`Champ::put`] and [`Champ::remove`] with
//! compare-and-swap on the previous value, [`Champ::entries`],
//! [`Champ::diff`] (visits only paths that differ), and
//! [`Champ::proof`] / [`verify_proof`] (the blocks on the path to a key,
//! checkable against a root without trusting the server).
//!
//! Decoded nodes are cached by CID; a CID names immutable content, so the
//! cache is never stale.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod error;
mod node;
mod tree;

pub use crate::error::{Error, ValueMismatch};
pub use crate::node::{Config, Key, Value, MAX_INLINE};
pub use crate::tree::{verify_proof, Batch, Champ, Change, Writer, LOAD_BATCH};

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[doc(no_inline)]
pub use peergos_blockstore::BlockStore;

/// Entry points for the fuzz targets; not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    use peergos_ipld::{Block, Codec};

    /// Decodes `data` as a root and as an inner node; whatever decodes must
    /// re-encode to exactly `data`. Then answers a proof query from it.
    pub fn node(data: &[u8]) {
        let Ok(block) = Block::new(Codec::DagCbor, data.to_vec()) else {
            return;
        };
        for root in [true, false] {
            if let Ok(node) = crate::node::Node::decode(block.cid(), block.data(), root) {
                match node.encode() {
                    Ok(again) => assert_eq!(again.data().as_ref(), data, "not canonical"),
                    Err(e) => panic!("a decoded node does not re-encode: {e}"),
                }
            }
        }
        let key = crate::Key(peergos_keys::sha256(data));
        let _ = crate::verify_proof(block.cid(), &key, std::slice::from_ref(&block));
    }
}
