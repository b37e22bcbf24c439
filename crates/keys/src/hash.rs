//! Hashes and key hashes.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::{LazyLock, Mutex, MutexGuard};

use peergos_ipld::{cbor, Cid, Codec};
use sha2::{Digest, Sha256};

use crate::{PublicSigningKey, Result};

/// Key hashes [`PublicKeyHash::from_cid`] has found valid.
static CHECKED: LazyLock<Mutex<HashSet<Cid>>> = LazyLock::new(Default::default);

/// How many checked key hashes are remembered at most.
const CHECKED_MAX: usize = 4096;

fn lock_checked() -> MutexGuard<'static, HashSet<Cid>> {
    // A set of valid hashes is valid whatever a panicking holder did.
    CHECKED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

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
    ///
    /// The check decompresses an Edwards point (about 15 µs), and the same
    /// few owners and writers are named in every block and request a
    /// client or server decodes (a listing of 10,000 files decoded 20,000
    /// of them), so hashes that passed are remembered: a bounded set,
    /// emptied when full. Validity depends only on the bytes, so a
    /// remembered answer is always the right one.
    pub fn from_cid(cid: Cid) -> Result<Self> {
        let hash = PublicKeyHash(cid);
        if lock_checked().contains(&cid) {
            return Ok(hash);
        }
        hash.key()?;
        let mut checked = lock_checked();
        if checked.len() >= CHECKED_MAX {
            checked.clear();
        }
        checked.insert(cid);
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
    fn remembered_checks_never_admit_an_invalid_key() {
        let valid = PublicKeyHash::of(&SigningKeyPair::random().public());
        for _ in 0..2 {
            assert_eq!(PublicKeyHash::from_cid(*valid.cid()).unwrap(), valid);
        }
        // 32 bytes that are not a point's encoding (about half are not).
        let bytes = (0u8..=255)
            .map(|b| [b; 32])
            .find(|b| PublicSigningKey::from_bytes(b).is_err())
            .unwrap();
        let encoded = cbor::to_vec(&serde_bytes::Bytes::new(&bytes)).unwrap();
        let invalid = Cid::identity(Codec::DagCbor, &encoded).unwrap();
        for _ in 0..2 {
            assert!(PublicKeyHash::from_cid(invalid).is_err());
        }
    }

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
