//! Blinded follow requests: what one user sends another, sealed so that
//! only the target can read it and the server learns nothing but the
//! target.
//!
//! Plaintext (inside the box), canonical DAG-CBOR, then padded
//! (ISO/IEC 7816-4) to exactly [`PADDED_SIZE`] bytes so every request
//! has the same size whatever the names in it:
//!
//! ```text
//! {"body": {"back": bool,                    on a reply: the replier follows the sender back
//!           "cap": AbsoluteCapability | null, read capability to the sender's folder for the target
//!           "from": text,                     sender's username
//!           "id": link,                       sender's identity key hash
//!           "reply": bool,                    false: a new request; true: the answer to one
//!           "t": u64,                         milliseconds since the Unix epoch
//!           "to": text,                       target's username
//!           "v": 1},
//!  "sig": bytes(64)}                          sender's identity key over CBOR(body), domain peergos/follow-request/v1
//! ```
//!
//! The box is a sealed box to the target's boxing key from a fresh
//! ephemeral key ([`peergos_keys::PublicBoxingKey::seal`]; hybrid X25519 +
//! ML-KEM-768 when the target's key is hybrid, which every key made by
//! this software is).

use peergos_cryptree::AbsoluteCapability;
use peergos_ipld::cbor;
use peergos_keys::{
    pad, unpad, BoxingKeyPair, Domain, PublicBoxingKey, PublicKeyHash, Signature, SigningKeyPair,
};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The domain of the sender's signature.
pub const FOLLOW_DOMAIN: Domain = Domain::new("peergos/follow-request/v1");

/// Every request's plaintext is padded to this size.
pub const PADDED_SIZE: usize = 2048;

/// The size of every sealed request (the hybrid box's overhead plus the
/// padded plaintext).
pub const SEALED_SIZE: usize = 1 + 32 + 1088 + 24 + PADDED_SIZE + 16;

/// The largest sealed request a server stores (room for the hybrid box
/// and a later, larger format).
pub const MAX_SEALED_SIZE: usize = 4096;

/// What a follow request says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowBody {
    /// Format version (1).
    pub v: u64,
    /// The sender's username.
    pub from: String,
    /// The sender's identity key hash (checked against the PKI by the
    /// receiver).
    pub id: PublicKeyHash,
    /// The target's username.
    pub to: String,
    /// A read capability to the folder the sender keeps for the target
    /// (`/sender/shared/target`); on a denied reply, none.
    pub cap: Option<AbsoluteCapability>,
    /// Whether this answers a request the target sent.
    pub reply: bool,
    /// On a reply: the replier also follows the sender (reciprocates).
    pub back: bool,
    /// When it was made, in milliseconds since the Unix epoch.
    pub t: u64,
}

/// A follow request signed by its sender's identity key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowRequest {
    /// What it says.
    pub body: FollowBody,
    /// The sender's signature over `CBOR(body)`.
    pub sig: Signature,
}

impl FollowRequest {
    /// Signs `body` with the sender's identity key (which must be the key
    /// `body.id` names).
    pub fn sign(body: FollowBody, identity: &SigningKeyPair) -> Result<Self> {
        if PublicKeyHash::of(&identity.public()) != body.id {
            return Err(Error::BadFollowRequest {
                reason: "signed by a key other than the sender's identity".into(),
            });
        }
        peergos_pki::check_username(&body.from)?;
        peergos_pki::check_username(&body.to)?;
        let sig = identity.sign(FOLLOW_DOMAIN, &cbor::to_vec(&body)?);
        Ok(FollowRequest { body, sig })
    }

    /// Checks the signature against the key `body.id` names and the names
    /// against the username rules.
    pub fn verify(&self) -> Result<()> {
        let bad = |reason: String| Error::BadFollowRequest { reason };
        let what = "follow request";
        peergos_ipld::check_version(what, self.body.v, 1)
            .map_err(|source| Error::Decode { what, source })?;
        peergos_pki::check_username(&self.body.from)?;
        peergos_pki::check_username(&self.body.to)?;
        let key = self
            .body
            .id
            .key()
            .map_err(|e| bad(format!("sender key: {e}")))?;
        key.verify(FOLLOW_DOMAIN, &cbor::to_vec(&self.body)?, &self.sig)
            .map_err(|_| bad("the sender's signature does not verify".into()))?;
        if let Some(cap) = &self.body.cap {
            if cap.owner != self.body.id {
                return Err(bad("the capability is not in the sender's own space".into()));
            }
            if cap.is_writable() {
                return Err(bad("a follow request carries a read-only capability".into()));
            }
        }
        Ok(())
    }

    /// Seals the request to the target's public boxing key: fixed size,
    /// nothing about the sender visible outside.
    pub fn seal(&self, to: &PublicBoxingKey) -> Result<Vec<u8>> {
        let mut plain = zeroize::Zeroizing::new(cbor::to_vec(self)?);
        if plain.len() >= PADDED_SIZE {
            return Err(Error::TooLarge {
                what: "a follow request",
                size: plain.len(),
                max: PADDED_SIZE - 1,
            });
        }
        pad(&mut plain, PADDED_SIZE);
        Ok(to.seal(&plain)?)
    }

    /// Opens a sealed request with the target's boxing keys and verifies
    /// it. Whether `from` really is the user with key `id` is for the
    /// caller to check in the PKI.
    pub fn open(sealed: &[u8], keys: &BoxingKeyPair) -> Result<Self> {
        if sealed.len() > MAX_SEALED_SIZE {
            return Err(Error::TooLarge {
                what: "a sealed follow request",
                size: sealed.len(),
                max: MAX_SEALED_SIZE,
            });
        }
        let plain = zeroize::Zeroizing::new(keys.open(sealed)?);
        let request = Self::decode(&plain)?;
        request.verify()?;
        Ok(request)
    }

    /// Decodes a padded plaintext (strict canonical CBOR).
    pub fn decode(padded: &[u8]) -> Result<Self> {
        let bad = |reason: String| Error::BadFollowRequest { reason };
        let body = unpad(padded).map_err(|e| bad(e.to_string()))?;
        let what = "follow request";
        cbor::from_slice(body).map_err(|source| Error::Decode { what, source })
    }
}
