use peergos_ipld::Cid;

use crate::{Key, Value};

/// Everything that can go wrong reading or changing a CHAMP.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The value under the key is not the one the change expected.
    #[error("value under key {} changed: expected {}, found {}", .0.key, show(&.0.expected), show(&.0.actual))]
    ValueMismatch(Box<ValueMismatch>),
    /// A node the tree links to is not in the store.
    #[error("CHAMP node {cid} is missing from the store")]
    MissingNode {
        /// The node.
        cid: Cid,
    },
    /// A node decoded but is not a valid CHAMP node.
    #[error("malformed CHAMP node {cid}: {reason}")]
    MalformedNode {
        /// The node.
        cid: Cid,
        /// What was wrong.
        reason: String,
    },
    /// An inline value longer than [`MAX_INLINE`](crate::MAX_INLINE).
    #[error("inline value of {size} bytes is over the {max} byte limit; store it as a block and put its CID")]
    InlineTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Tree parameters outside the supported range.
    #[error("invalid CHAMP config: {reason}")]
    BadConfig {
        /// Which bound was broken.
        reason: String,
    },
    /// More than `bucket` keys share every bit of their hashes.
    #[error("more keys share a full SHA-256 hash than a bucket holds")]
    HashExhausted,
    /// A proof lacks a block on the path to the key.
    #[error("proof is missing block {cid}")]
    ProofIncomplete {
        /// The missing block.
        cid: Cid,
    },
    /// The block store failed.
    #[error(transparent)]
    Store(#[from] peergos_blockstore::Error),
    /// A block failed to decode or verify.
    #[error(transparent)]
    Block(#[from] peergos_ipld::Error),
}

/// The details of an [`Error::ValueMismatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueMismatch {
    /// The key.
    pub key: Key,
    /// What the change expected to find (None: absent).
    pub expected: Option<Value>,
    /// What was there.
    pub actual: Option<Value>,
}

fn show(value: &Option<Value>) -> String {
    value
        .as_ref()
        .map_or_else(|| "nothing".into(), ToString::to_string)
}
