//! Ed25519 signing with domain separation.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use crate::{array, random_bytes, Error, Result};

/// Algorithm byte that starts an encoded Ed25519 public key.
const ED25519: u8 = 0x01;

/// A domain-separation tag. Every signed message is
/// `len(tag) ‖ tag ‖ message`, so a signature made for one kind of message
/// never verifies as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Domain(&'static str);

impl Domain {
    /// Writer signatures on blocks being stored.
    pub const BLOCK_PUT: Domain = Domain::new("peergos/block-put/v1");
    /// Writer signatures on mutable pointer updates.
    pub const POINTER: Domain = Domain::new("peergos/pointer/v1");

    /// A domain from its tag, e.g. `peergos/pointer/v1`. Tags are at most
    /// 255 bytes (checked at compile time for constants).
    pub const fn new(tag: &'static str) -> Self {
        assert!(tag.len() < 256, "domain tags are at most 255 bytes");
        Domain(tag)
    }

    /// The tag.
    pub const fn tag(&self) -> &'static str {
        self.0
    }

    fn frame(&self, message: &[u8]) -> Vec<u8> {
        let mut framed = Vec::with_capacity(1 + self.0.len() + message.len());
        framed.push(self.0.len() as u8);
        framed.extend_from_slice(self.0.as_bytes());
        framed.extend_from_slice(message);
        framed
    }
}

/// An Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature([u8; 64]);

impl Signature {
    /// The 64 signature bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0
    }

    /// A signature from its bytes (checked only when verified).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        array(bytes, "signature").map(Signature)
    }
}

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signature({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

/// An Ed25519 key pair. The secret is zeroized on drop.
#[derive(Clone)]
pub struct SigningKeyPair {
    secret: SigningKey,
}

impl SigningKeyPair {
    /// A fresh random key pair.
    pub fn random() -> Self {
        Self::from_seed(Zeroizing::new(random_bytes()))
    }

    /// The key pair for a 32-byte seed (RFC 8032 secret key).
    pub fn from_seed(seed: Zeroizing<[u8; 32]>) -> Self {
        SigningKeyPair {
            secret: SigningKey::from_bytes(&seed),
        }
    }

    /// The 32-byte seed. Handle with care: it is the secret.
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.secret.to_bytes())
    }

    /// The public half.
    pub fn public(&self) -> PublicSigningKey {
        PublicSigningKey(self.secret.verifying_key())
    }

    /// Signs `message` under `domain`.
    pub fn sign(&self, domain: Domain, message: &[u8]) -> Signature {
        Signature(self.secret.sign(&domain.frame(message)).to_bytes())
    }
}

impl std::fmt::Debug for SigningKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKeyPair({:?}, ..)", self.public())
    }
}

/// An Ed25519 public key. Encoded as an algorithm byte (0x01) and the 32
/// key bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicSigningKey(VerifyingKey);

impl PublicSigningKey {
    /// Bytes in the encoded form.
    pub const ENCODED_SIZE: usize = 33;

    /// The encoded form: `0x01 ‖ key`.
    pub fn to_bytes(&self) -> [u8; Self::ENCODED_SIZE] {
        let mut out = [0u8; Self::ENCODED_SIZE];
        out[0] = ED25519;
        out[1..].copy_from_slice(self.0.as_bytes());
        out
    }

    /// Parses the encoded form, refusing invalid and small-order points.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (&alg, key) = bytes.split_first().ok_or(Error::InvalidLength {
            what: "public signing key",
            expected: Self::ENCODED_SIZE,
            actual: 0,
        })?;
        if alg != ED25519 {
            return Err(Error::UnknownAlgorithm {
                kind: "signing",
                id: alg,
            });
        }
        let key = VerifyingKey::from_bytes(&array(key, "Ed25519 public key")?).map_err(|_| {
            Error::InvalidKey {
                kind: "Ed25519",
                reason: "not a point on the curve",
            }
        })?;
        if key.is_weak() {
            return Err(Error::InvalidKey {
                kind: "Ed25519",
                reason: "small-order point",
            });
        }
        Ok(PublicSigningKey(key))
    }

    /// Checks `signature` over `message` under `domain` (strict RFC 8032
    /// verification: no malleable or small-order signatures).
    pub fn verify(&self, domain: Domain, message: &[u8], signature: &Signature) -> Result<()> {
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.0
            .verify_strict(&domain.frame(message), &signature)
            .map_err(|_| Error::BadSignature {
                domain: domain.tag(),
            })
    }
}

impl std::fmt::Debug for PublicSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0.as_bytes();
        write!(
            f,
            "PublicSigningKey({:02x}{:02x}{:02x}{:02x}..)",
            b[0], b[1], b[2], b[3]
        )
    }
}

macro_rules! serde_as_bytes {
    ($type:ty) => {
        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.to_bytes())
            }
        }

        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let bytes = <serde_bytes::ByteBuf as serde::Deserialize>::deserialize(d)?;
                <$type>::from_bytes(&bytes).map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use serde_as_bytes;

serde_as_bytes!(PublicSigningKey);
serde_as_bytes!(Signature);

#[cfg(test)]
mod tests {
    use super::*;

    const TEST: Domain = Domain::new("peergos/test/v1");

    #[test]
    fn ed25519_rfc8032_test_1_public_key() {
        let seed = hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap();
        let pair = SigningKeyPair::from_seed(Zeroizing::new(seed.try_into().unwrap()));
        assert_eq!(
            hex::encode(&pair.public().to_bytes()[1..]),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
    }

    #[test]
    fn signature_covers_the_framed_message() {
        let pair = SigningKeyPair::random();
        let signature = pair.sign(TEST, b"hi");
        let mut framed = vec![15u8];
        framed.extend_from_slice(b"peergos/test/v1hi");
        let raw = SigningKey::from_bytes(&pair.seed()).sign(&framed);
        assert_eq!(signature.to_bytes(), raw.to_bytes());
    }

    #[test]
    fn wrong_domain_message_or_key_fails() {
        let pair = SigningKeyPair::random();
        let signature = pair.sign(TEST, b"message");
        pair.public().verify(TEST, b"message", &signature).unwrap();
        let other = Domain::new("peergos/other/v1");
        assert!(matches!(
            pair.public().verify(other, b"message", &signature),
            Err(Error::BadSignature {
                domain: "peergos/other/v1"
            })
        ));
        assert!(pair.public().verify(TEST, b"messagf", &signature).is_err());
        assert!(SigningKeyPair::random()
            .public()
            .verify(TEST, b"message", &signature)
            .is_err());
    }

    #[test]
    fn public_key_encoding_is_checked() {
        let public = SigningKeyPair::random().public();
        assert_eq!(
            PublicSigningKey::from_bytes(&public.to_bytes()).unwrap(),
            public
        );
        let mut bad = public.to_bytes();
        bad[0] = 0x02;
        assert!(matches!(
            PublicSigningKey::from_bytes(&bad),
            Err(Error::UnknownAlgorithm { id: 2, .. })
        ));
        assert!(PublicSigningKey::from_bytes(&bad[..10]).is_err());
        // The identity point has small order.
        let mut identity = [0u8; 33];
        identity[0] = ED25519;
        identity[1] = 1;
        assert!(matches!(
            PublicSigningKey::from_bytes(&identity),
            Err(Error::InvalidKey { .. })
        ));
    }

    #[test]
    fn debug_hides_the_secret() {
        let pair = SigningKeyPair::random();
        let text = format!("{pair:?}");
        assert!(!text.contains(&hex::encode(*pair.seed())[..8]));
    }
}
