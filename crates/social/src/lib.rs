//! The social layer's formats: blinded follow requests, the encrypted
//! social state, per-friend share lists, and secret links.
//!
//! Nothing here does I/O. `peergos-core` uses these types to follow,
//! share and make links; `peergos-server` stores the opaque parts (sealed
//! requests, link records) it is given.
//!
//! - [`FollowRequest`]: signed by the sender's identity key, sealed to the
//!   target's boxing key (hybrid X25519 + ML-KEM-768), padded to one fixed
//!   size. The server sees only whom it is for.
//! - [`SocialState`]: following, followers, pending requests, shares and
//!   links, kept as a hidden encrypted file in the user's own space.
//! - [`ShareList`]: what one user shared with one friend, kept in the
//!   folder only that friend can read.
//! - [`SecretLink`] / [`LinkRecord`]: a capability behind a URL whose
//!   secret stays in the fragment; the server keeps an encrypted record and
//!   enforces expiry, use counts and revocation.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod error;
mod follow;
mod link;
mod state;

pub use crate::error::Error;
pub use crate::follow::{
    FollowBody, FollowRequest, FOLLOW_DOMAIN, MAX_SEALED_SIZE, PADDED_SIZE, SEALED_SIZE,
};
pub use crate::link::{
    check_id, seal_capability, LinkKeys, LinkRecord, SecretLink, ID_SIZE, MAX_BLOB_SIZE,
};
pub use crate::state::{
    is_within, Follower, Following, LinkInfo, ShareItem, ShareList, SocialState, SHARE_LIST_FILE,
    STATE_FILE,
};

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Entry points for the fuzz targets; not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    use peergos_ipld::cbor;

    /// Decodes untrusted bytes as a follow request (padded plaintext and
    /// bare CBOR), the social state and a share list: whatever decodes
    /// re-encodes to the same bytes, and verifying never panics.
    pub fn follow_request(data: &[u8]) {
        if let Ok(request) = crate::FollowRequest::decode(data) {
            let _ = request.verify();
            assert!(cbor::to_vec(&request).is_ok());
        }
        if let Ok(request) = cbor::from_slice::<crate::FollowRequest>(data) {
            match cbor::to_vec(&request) {
                Ok(again) => assert_eq!(again, data, "a follow request is not canonical"),
                Err(e) => panic!("a decoded follow request does not re-encode: {e}"),
            }
            let _ = request.verify();
        }
        if let Ok(state) = crate::SocialState::from_bytes(data) {
            match state.to_bytes() {
                Ok(again) => assert_eq!(again, data, "social state is not canonical"),
                Err(e) => panic!("decoded social state does not re-encode: {e}"),
            }
        }
        if let Ok(list) = crate::ShareList::from_bytes(data, "alice") {
            match list.to_bytes() {
                Ok(again) => assert_eq!(again, data, "a share list is not canonical"),
                Err(e) => panic!("a decoded share list does not re-encode: {e}"),
            }
        }
    }

    /// Decodes untrusted bytes as a link record (what a server reads from
    /// an owner) and untrusted text as a link: whatever decodes
    /// re-encodes to the same bytes, validation and derivation never panic.
    pub fn secret_link(data: &[u8]) {
        if let Ok(record) = cbor::from_slice::<crate::LinkRecord>(data) {
            match cbor::to_vec(&record) {
                Ok(again) => assert_eq!(again, data, "a link record is not canonical"),
                Err(e) => panic!("a decoded link record does not re-encode: {e}"),
            }
            let _ = record.validate();
        }
        if let Ok(text) = std::str::from_utf8(data) {
            if let Ok(link) = crate::SecretLink::parse(text) {
                assert_eq!(
                    crate::SecretLink::parse(&link.to_url()).ok().as_ref(),
                    Some(&link)
                );
                if !link.password {
                    if let Ok(keys) = link.keys(None) {
                        let _ = keys.open(data);
                    }
                }
            }
        }
    }
}
