//! Usernames: signed claims, key chains, and the append-only PKI that maps
//! names to them.
//!
//! - [`check_username`]: lowercase letters, digits, `_` and `-`, 1 to 32
//!   characters.
//! - [`Claim`] / [`SignedClaim`]: "this name belongs to this identity key,
//!   is stored on these servers, until this time", signed (domain
//!   `peergos/pki-claim/v1`).
//! - [`KeyChain`]: a name's history. The first claim is signed by its own
//!   key; every later claim (a renewal, a server change, a key change) by
//!   the key of the claim before it.
//! - [`Pki`]: the PKI as a CHAMP from `SHA-256("peergos/pki-name/v1" ‖
//!   name)` to a chain block. [`Pki::check_transition`] is the rule for one
//!   name (first come, first served; extensions only; expired names can be
//!   reclaimed) and [`Pki::check_update`] applies it to every name that
//!   differs between two roots, so a mirror accepts a new PKI root only if
//!   it extends the last one it accepted.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod claim;
mod error;
mod state;

pub use crate::claim::{
    check_username, Claim, KeyChain, SignedClaim, CLAIM_DOMAIN, MAX_CHAIN_LINKS, MAX_SERVERS,
    MAX_USERNAME_LEN,
};
pub use crate::error::Error;
pub use crate::state::{name_key, Pki, Update, RECLAIM_GRACE_SECS};

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Entry points for the fuzz targets; not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    /// Decodes an untrusted key chain block: whatever decodes re-encodes to
    /// the same bytes, and verifying it never panics.
    pub fn chain(data: &[u8]) {
        if let Ok(chain) = crate::KeyChain::from_bytes(data) {
            match chain.to_bytes() {
                Ok(again) => assert_eq!(again, data, "not canonical"),
                Err(e) => panic!("a decoded chain does not re-encode: {e}"),
            }
            let _ = chain.verify();
            let _ =
                crate::Pki::<peergos_blockstore::MemoryStore>::check_transition(None, &chain, 0);
        }
    }
}
