//! The pointer update format and its signature.

use peergos_ipld::{cbor, Cid};
use peergos_keys::{Domain, PublicKeyHash, Signature, SigningKeyPair};
use serde::{Deserialize, Serialize};

use crate::Result;

/// A compare-and-swap step: move the pointer from `previous` to `current`.
///
/// CBOR: `{"c": link | null, "p": link | null, "s": u64}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointerUpdate {
    /// The value the writer saw (None for a new pointer).
    #[serde(rename = "p")]
    pub previous: Option<Cid>,
    /// The new value (None deletes the target but keeps the sequence).
    #[serde(rename = "c")]
    pub current: Option<Cid>,
    /// Strictly increasing per pointer; a new pointer starts at 1.
    #[serde(rename = "s")]
    pub sequence: u64,
}

/// What the writer signs: the update bound to the owner's space.
#[derive(Serialize)]
struct Signed<'a> {
    #[serde(rename = "o")]
    owner: &'a PublicKeyHash,
    #[serde(rename = "u")]
    update: &'a PointerUpdate,
}

fn signed_bytes(owner: &PublicKeyHash, update: &PointerUpdate) -> Result<Vec<u8>> {
    Ok(cbor::to_vec(&Signed { owner, update })?)
}

/// A pointer update with the writer's signature.
///
/// CBOR: `{"sig": bytes(64), "update": PointerUpdate}`; the signature is
/// over the canonical CBOR of `{"o": owner, "u": update}` in domain
/// `peergos/pointer/v1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedPointer {
    /// The update.
    pub update: PointerUpdate,
    /// The writer's signature.
    pub sig: Signature,
}

impl SignedPointer {
    /// Signs `update` for the pointer `(owner, writer)`.
    pub fn sign(
        writer: &SigningKeyPair,
        owner: &PublicKeyHash,
        update: PointerUpdate,
    ) -> Result<Self> {
        let sig = writer.sign(Domain::POINTER, &signed_bytes(owner, &update)?);
        Ok(SignedPointer { update, sig })
    }

    /// Checks the signature is the writer's, for this owner's pointer.
    pub fn verify(&self, owner: &PublicKeyHash, writer: &PublicKeyHash) -> Result<()> {
        writer.key()?.verify(
            Domain::POINTER,
            &signed_bytes(owner, &self.update)?,
            &self.sig,
        )?;
        Ok(())
    }

    /// The canonical CBOR encoding.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(cbor::to_vec(self)?)
    }

    /// Decodes (strictly) from canonical CBOR; does not verify.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Ok(cbor::from_slice(bytes)?)
    }
}
