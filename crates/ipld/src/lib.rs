//! Content addresses, canonical DAG-CBOR and size-limited blocks.
//!
//! This is the lowest layer of peergos-rs. It does no I/O and knows nothing
//! about keys or encryption; it only turns bytes into typed values and back,
//! strictly:
//!
//! - [`Cid`]: CIDv1 with the `dag-cbor` (0x71) or `raw` (0x55) codec and a
//!   sha2-256 multihash, or an identity multihash for small inline values
//!   such as public keys. Text form is multibase base32 lower (`b...`).
//! - [`cbor`]: canonical DAG-CBOR over `serde` and `ciborium`. Encoding sorts
//!   map keys (length first, then bytewise) and uses definite lengths and the
//!   shortest integer forms; decoding rejects anything that is not exactly in
//!   that form, so `encode(decode(x)) == x` for every accepted input.
//! - [`Block`]: bytes together with the CID that names them, checked on
//!   construction, never larger than [`MAX_BLOCK_SIZE`].
//!
//! ```
//! use peergos_ipld::{cbor, Block, Codec};
//! use std::collections::BTreeMap;
//!
//! let mut value = BTreeMap::new();
//! value.insert("name".to_string(), 7u64);
//! let block = Block::encode(&value)?;
//! assert_eq!(block.cid().codec(), Some(Codec::DagCbor));
//! let back: BTreeMap<String, u64> = block.decode()?;
//! assert_eq!(back, value);
//! # Ok::<(), peergos_ipld::Error>(())
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod block;
pub mod cbor;
mod cid;
mod error;

pub use crate::block::{Block, MAX_BLOCK_SIZE, MAX_PAYLOAD_SIZE};
pub use crate::cid::{Cid, Codec, HashFn, MAX_IDENTITY_SIZE};
pub use crate::error::{check_version, Error};

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
