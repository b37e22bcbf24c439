//! The CID newtype: CIDv1 with the codecs and hashes this system uses.

use std::fmt;
use std::str::FromStr;

use serde::de::Error as _;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Multihash code of sha2-256.
const SHA2_256: u64 = 0x12;
/// Multihash code of BLAKE3 with its default 32-byte output.
const BLAKE3: u64 = 0x1e;
/// Multihash code of the identity "hash" (the digest is the data itself).
const IDENTITY: u64 = 0x00;
/// The largest value an identity CID may inline.
pub const MAX_IDENTITY_SIZE: usize = 64;
/// The CBOR tag that marks a link in DAG-CBOR.
pub(crate) const LINK_TAG: u64 = 42;

/// The two content codecs used by peergos blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Canonical DAG-CBOR (multicodec 0x71): structured blocks.
    DagCbor,
    /// Raw bytes (multicodec 0x55): ciphertext fragments.
    Raw,
}

impl Codec {
    /// The multicodec code.
    pub const fn code(self) -> u64 {
        match self {
            Codec::DagCbor => 0x71,
            Codec::Raw => 0x55,
        }
    }

    /// The codec for a multicodec code, if it is one we use.
    pub const fn from_code(code: u64) -> Option<Self> {
        match code {
            0x71 => Some(Codec::DagCbor),
            0x55 => Some(Codec::Raw),
            _ => None,
        }
    }
}

/// The hash functions a CID may name its content with (both 32-byte
/// digests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashFn {
    /// SHA-256 (multihash 0x12): structured blocks, and raw blocks written
    /// before BLAKE3 was used.
    Sha2_256,
    /// BLAKE3 (multihash 0x1e): raw ciphertext fragments, the bulk of
    /// what is stored, because it hashes several times as fast.
    Blake3,
}

impl HashFn {
    /// The multihash code.
    pub const fn code(self) -> u64 {
        match self {
            HashFn::Sha2_256 => SHA2_256,
            HashFn::Blake3 => BLAKE3,
        }
    }

    /// The hash function for a multihash code, if it is one we accept.
    pub const fn from_code(code: u64) -> Option<Self> {
        match code {
            SHA2_256 => Some(HashFn::Sha2_256),
            BLAKE3 => Some(HashFn::Blake3),
            _ => None,
        }
    }

    /// What a new block of `codec` is named with: BLAKE3 for raw
    /// fragments (megabytes each, hashed by the writer, its server and
    /// every reader), SHA-256 for structured blocks (small, and named as
    /// in IPFS by default).
    pub const fn for_new(codec: Codec) -> Self {
        match codec {
            Codec::Raw => HashFn::Blake3,
            Codec::DagCbor => HashFn::Sha2_256,
        }
    }

    /// The 32-byte digest of `data`.
    pub fn digest(self, data: &[u8]) -> [u8; 32] {
        match self {
            HashFn::Sha2_256 => Sha256::digest(data).into(),
            HashFn::Blake3 => blake3::hash(data).into(),
        }
    }
}

/// A content identifier: CIDv1, a codec from [`Codec`], and either a digest
/// of the content ([`HashFn`]) or (for small inline values) the content
/// itself.
///
/// Ordering and equality are those of the binary form. In DAG-CBOR a `Cid`
/// serializes as tag 42 around its bytes with a leading zero byte.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cid(cid::Cid);

impl Cid {
    /// The CID of `data` under `codec`, hashed with sha2-256.
    pub fn hash(codec: Codec, data: &[u8]) -> Self {
        Self::hash_with(HashFn::Sha2_256, codec, data)
    }

    /// The CID of `data` under `codec`, hashed with `hash`.
    pub fn hash_with(hash: HashFn, codec: Codec, data: &[u8]) -> Self {
        Self::from_digest(hash, codec, hash.digest(data))
    }

    /// The CID with the given digest.
    pub fn from_digest(hash: HashFn, codec: Codec, digest: [u8; 32]) -> Self {
        // A 32-byte digest always fits the 64-byte multihash.
        let mh = multihash::Multihash::<64>::wrap(hash.code(), &digest)
            .unwrap_or_else(|_| unreachable!("32 bytes fit a 64-byte multihash"));
        Cid(cid::Cid::new_v1(codec.code(), mh))
    }

    /// An identity CID that carries `data` inline (at most
    /// [`MAX_IDENTITY_SIZE`] bytes), so no lookup is needed to recover it.
    pub fn identity(codec: Codec, data: &[u8]) -> Result<Self> {
        if data.len() > MAX_IDENTITY_SIZE {
            return Err(Error::BlockTooLarge {
                size: data.len(),
                max: MAX_IDENTITY_SIZE,
            });
        }
        let mh =
            multihash::Multihash::<64>::wrap(IDENTITY, data).map_err(|e| Error::InvalidCid {
                reason: e.to_string(),
            })?;
        Ok(Cid(cid::Cid::new_v1(codec.code(), mh)))
    }

    /// The content codec, or `None` for a codec we never produce.
    pub fn codec(&self) -> Option<Codec> {
        Codec::from_code(self.0.codec())
    }

    /// True when the CID inlines its content (identity multihash).
    pub fn is_identity(&self) -> bool {
        self.0.hash().code() == IDENTITY
    }

    /// The hash function that names the content (None: an identity CID).
    pub fn hash_fn(&self) -> Option<HashFn> {
        HashFn::from_code(self.0.hash().code())
    }

    /// The digest bytes: a 32-byte digest, or the inline content for an
    /// identity CID.
    pub fn digest(&self) -> &[u8] {
        self.0.hash().digest()
    }

    /// Checks that `data` is the content this CID names.
    pub fn verify(&self, data: &[u8]) -> Result<()> {
        let ok = match self.hash_fn() {
            Some(hash) => hash.digest(data).as_slice() == self.digest(),
            None => self.is_identity() && data == self.digest(),
        };
        if ok {
            Ok(())
        } else {
            Err(Error::HashMismatch { cid: *self })
        }
    }

    /// The binary form: version, codec, multihash.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.to_bytes()
    }

    /// Parses the binary form, accepting only CIDv1 with our codecs and a
    /// sha2-256, BLAKE3 or identity hash, and no trailing bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut reader = bytes;
        let inner = cid::Cid::read_bytes(&mut reader).map_err(|e| Error::InvalidCid {
            reason: e.to_string(),
        })?;
        if !reader.is_empty() {
            return Err(Error::InvalidCid {
                reason: format!("{} trailing bytes", reader.len()),
            });
        }
        let cid = Self::checked(inner)?;
        // Reject varints that are not minimal: the binary form is canonical.
        if cid.to_bytes() != bytes {
            return Err(Error::InvalidCid {
                reason: "non-minimal varint encoding".into(),
            });
        }
        Ok(cid)
    }

    fn checked(inner: cid::Cid) -> Result<Self> {
        if inner.version() != cid::Version::V1 {
            return Err(Error::UnsupportedCid {
                reason: "only CIDv1 is accepted".into(),
            });
        }
        if Codec::from_code(inner.codec()).is_none() {
            return Err(Error::UnsupportedCid {
                reason: format!("codec 0x{:x} (expected dag-cbor or raw)", inner.codec()),
            });
        }
        let hash = inner.hash();
        match (hash.code(), HashFn::from_code(hash.code())) {
            (_, Some(_)) if hash.size() == 32 => Ok(Cid(inner)),
            (_, Some(f)) => Err(Error::InvalidCid {
                reason: format!("{f:?} digest of {} bytes (expected 32)", hash.size()),
            }),
            (IDENTITY, None) => Ok(Cid(inner)),
            (code, None) => Err(Error::UnsupportedCid {
                reason: format!("multihash 0x{code:x} (expected sha2-256, blake3 or identity)"),
            }),
        }
    }
}

impl fmt::Display for Cid {
    /// Multibase base32 lower, e.g. `bafyrei...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cid({self})")
    }
}

impl FromStr for Cid {
    type Err = Error;

    /// Parses the base32 text form (`b...`). Other multibases are refused so
    /// every CID has exactly one text form.
    fn from_str(s: &str) -> Result<Self> {
        if !s.starts_with('b') {
            return Err(Error::InvalidCid {
                reason: "text form must be multibase base32 lower ('b' prefix)".into(),
            });
        }
        let inner = cid::Cid::try_from(s).map_err(|e| Error::InvalidCid {
            reason: e.to_string(),
        })?;
        let cid = Self::checked(inner)?;
        if cid.to_string() != s {
            return Err(Error::InvalidCid {
                reason: "text form is not canonical base32 lower".into(),
            });
        }
        Ok(cid)
    }
}

impl serde::Serialize for Cid {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut bytes = Vec::with_capacity(40);
        bytes.push(0); // the multibase "identity" prefix DAG-CBOR requires
        bytes.extend_from_slice(&self.to_bytes());
        ciborium::tag::Required::<serde_bytes::ByteBuf, LINK_TAG>(serde_bytes::ByteBuf::from(bytes))
            .serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for Cid {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let tagged =
            ciborium::tag::Required::<serde_bytes::ByteBuf, LINK_TAG>::deserialize(deserializer)?;
        link_from_tagged_bytes(&tagged.0).map_err(D::Error::custom)
    }
}

/// Parses the content of a tag-42 link: a zero byte then a binary CID.
pub(crate) fn link_from_tagged_bytes(bytes: &[u8]) -> Result<Cid> {
    match bytes.split_first() {
        Some((0, rest)) => Cid::from_bytes(rest),
        _ => Err(Error::InvalidCid {
            reason: "link bytes must start with a zero byte".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_cid_of_empty_raw_block_matches_ipfs() {
        // The well-known CID of the empty raw block.
        let cid = Cid::hash(Codec::Raw, b"");
        assert_eq!(
            cid.to_string(),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        );
    }

    #[test]
    fn blake3_cid_names_the_blake3_digest() {
        // BLAKE3 of the empty input (the reference implementation's vector).
        let cid = Cid::hash_with(HashFn::Blake3, Codec::Raw, b"");
        assert_eq!(
            hex::encode(cid.digest()),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        assert_eq!(cid.hash_fn(), Some(HashFn::Blake3));
        // CIDv1, raw, multihash 0x1e of 32 bytes.
        assert_eq!(&cid.to_bytes()[..4], &[0x01, 0x55, 0x1e, 0x20]);
        cid.verify(b"").unwrap();
        assert!(matches!(cid.verify(b"x"), Err(Error::HashMismatch { .. })));
        assert_eq!(HashFn::for_new(Codec::Raw), HashFn::Blake3);
        assert_eq!(HashFn::for_new(Codec::DagCbor), HashFn::Sha2_256);
    }

    #[test]
    fn digests_of_the_wrong_length_and_unknown_hashes_are_refused() {
        for code in [SHA2_256, BLAKE3] {
            let mh = multihash::Multihash::<64>::wrap(code, &[7; 20]).unwrap();
            let short = cid::Cid::new_v1(0x55, mh);
            assert!(matches!(
                Cid::from_bytes(&short.to_bytes()),
                Err(Error::InvalidCid { .. })
            ));
        }
        // sha3-256 (0x16).
        let mh = multihash::Multihash::<64>::wrap(0x16, &[7; 32]).unwrap();
        let other = cid::Cid::new_v1(0x55, mh);
        assert!(matches!(
            Cid::from_bytes(&other.to_bytes()),
            Err(Error::UnsupportedCid { .. })
        ));
    }

    #[test]
    fn text_and_binary_forms_round_trip() {
        let cid = Cid::hash(Codec::DagCbor, b"hello");
        assert_eq!(Cid::from_str(&cid.to_string()).unwrap(), cid);
        assert_eq!(Cid::from_bytes(&cid.to_bytes()).unwrap(), cid);
    }

    #[test]
    fn identity_cid_carries_its_content() {
        let cid = Cid::identity(Codec::DagCbor, b"key bytes").unwrap();
        assert!(cid.is_identity());
        assert_eq!(cid.digest(), b"key bytes");
        cid.verify(b"key bytes").unwrap();
        assert!(Cid::identity(Codec::Raw, &[0; 65]).is_err());
    }

    #[test]
    fn verify_rejects_other_content() {
        let cid = Cid::hash(Codec::Raw, b"a");
        assert!(matches!(cid.verify(b"b"), Err(Error::HashMismatch { .. })));
    }

    #[test]
    fn rejects_cidv0_other_codecs_and_trailing_bytes() {
        // CIDv0 (a bare sha2-256 multihash, base58 "Qm...").
        assert!(Cid::from_str("QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n").is_err());
        let mut bytes = Cid::hash(Codec::Raw, b"x").to_bytes();
        bytes.push(0);
        assert!(matches!(
            Cid::from_bytes(&bytes),
            Err(Error::InvalidCid { .. })
        ));
        // dag-pb codec 0x70.
        let mh = multihash::Multihash::<64>::wrap(SHA2_256, &[7; 32]).unwrap();
        let pb = cid::Cid::new_v1(0x70, mh);
        assert!(matches!(
            Cid::from_bytes(&pb.to_bytes()),
            Err(Error::UnsupportedCid { .. })
        ));
        // An uppercase base32 form is a different multibase.
        let upper = format!(
            "B{}",
            &Cid::hash(Codec::Raw, b"x").to_string()[1..].to_uppercase()
        );
        assert!(Cid::from_str(&upper).is_err());
    }
}
