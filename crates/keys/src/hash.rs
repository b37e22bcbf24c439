//! Hashes and key hashes.

use std::fmt;
use std::str::FromStr;

use peergos_ipld::{cbor, Cid, Codec};
use sha2::{Digest, Sha256};

use crate::{PublicSigningKey, Result};

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Names a public signing key: an identity CID (codec dag-cbor) whose digest
/// is the DAG-CBOR encoding of the key, so the key can be recovered from its
/// hash with no lookup.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct PublicKeyHash(Cid);

impl PublicKeyHash {
    /// The hash naming `key`.
    pub fn of(key: &PublicSigningKey) -> Self {
        let encoded =
            cbor::to_vec(key).unwrap_or_else(|_| unreachable!("a byte string always encodes"));
        let cid = Cid::identity(Codec::DagCbor, &encoded)
            .unwrap_or_else(|_| unreachable!("35 bytes fit an identity CID"));
        PublicKeyHash(cid)
    }

    /// Checks that `cid` is the hash of a valid public signing key.
    pub fn from_cid(cid: Cid) -> Result<Self> {
        let hash = PublicKeyHash(cid);
        hash.key()?;
        Ok(hash)
    }

    /// The key this hash names.
    pub fn key(&self) -> Result<PublicSigningKey> {
        if !self.0.is_identity() || self.0.codec() != Some(Codec::DagCbor) {
            return Err(crate::Error::InvalidKey {
                kind: "public key hash",
                reason: "not an identity dag-cbor CID",
            });
        }
        Ok(cbor::from_slice(self.0.digest())?)
    }

    /// The CID form.
    pub fn cid(&self) -> &Cid {
        &self.0
    }
}

impl From<&PublicSigningKey> for PublicKeyHash {
    fn from(key: &PublicSigningKey) -> Self {
        PublicKeyHash::of(key)
    }
}

impl fmt::Display for PublicKeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for PublicKeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKeyHash({})", self.0)
    }
}

impl FromStr for PublicKeyHash {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self> {
        PublicKeyHash::from_cid(s.parse()?)
    }
}

impl<'de> serde::Deserialize<'de> for PublicKeyHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        PublicKeyHash::from_cid(Cid::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SigningKeyPair;

    #[test]
    fn sha256_known_answer() {
        assert_eq!(
            hex::encode(sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn key_hash_inlines_the_key() {
        let key = SigningKeyPair::random().public();
        let hash = PublicKeyHash::of(&key);
        assert_eq!(hash.key().unwrap(), key);
        assert_eq!(hash.to_string().parse::<PublicKeyHash>().unwrap(), hash);
        let bytes = cbor::to_vec(&hash).unwrap();
        assert_eq!(cbor::from_slice::<PublicKeyHash>(&bytes).unwrap(), hash);
    }

    #[test]
    fn a_content_cid_is_not_a_key_hash() {
        let cid = Cid::hash(Codec::DagCbor, b"x");
        assert!(PublicKeyHash::from_cid(cid).is_err());
    }
}
