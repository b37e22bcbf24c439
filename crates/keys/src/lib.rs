//! Keys, hashes, login derivation and block access tokens.
//!
//! Synchronous and free of I/O. Every secret type zeroizes its bytes on drop
//! and prints as `Name(..)`, never its value.
//!
//! | type | primitive |
//! |---|---|
//! | [`SymmetricKey`] | XChaCha20-Poly1305, random 24-byte nonces, `nonce ‖ ciphertext ‖ tag` |
//! | [`SigningKeyPair`] / [`PublicSigningKey`] | Ed25519 over `len(domain) ‖ domain ‖ message` ([`Domain`]) |
//! | [`BoxingKeyPair`] / [`PublicBoxingKey`] | sealed boxes: X25519, or hybrid X25519 + ML-KEM-768, HKDF-SHA256 |
//! | [`PublicKeyHash`] | identity CID of a public signing key |
//! | [`LoginParams`] / [`LoginKeys`] | scrypt (log2 N = 17, r = 8, p = 1) into a login key pair and root key |
//! | [`Bat`] / [`BatProof`] | 32-byte block access tokens, HMAC-SHA256 proofs bound to cid, requester and time |
//!
//! ```
//! use peergos_keys::{Domain, SigningKeyPair, SymmetricKey};
//!
//! let key = SymmetricKey::random();
//! let sealed = key.encrypt(b"hello");
//! assert_eq!(key.decrypt(&sealed)?, b"hello");
//!
//! const NOTE: Domain = Domain::new("example/note/v1");
//! let pair = SigningKeyPair::random();
//! let signature = pair.sign(NOTE, b"message");
//! pair.public().verify(NOTE, b"message", &signature)?;
//! # Ok::<(), peergos_keys::Error>(())
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

/// For a 32-byte secret newtype: a `Debug` that prints `Name(..)` and never
/// the bytes, and serde as a CBOR byte string of exactly 32 bytes.
macro_rules! secret_bytes {
    ($type:ident, $what:literal) => {
        impl std::fmt::Debug for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($type), "(..)"))
            }
        }

        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let bytes = <serde_bytes::ByteBuf as serde::Deserialize>::deserialize(d)?;
                $crate::array(&bytes, $what)
                    .map($type)
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}

pub(crate) use secret_bytes;

pub mod bat;
mod boxing;
mod error;
mod hash;
mod login;
mod signing;
mod symmetric;

pub use crate::bat::{Bat, BatId, BatProof};
pub use crate::boxing::{BoxingKeyPair, PublicBoxingKey};
pub use crate::error::Error;
pub use crate::hash::{sha256, PublicKeyHash};
pub use crate::login::{LoginKeys, LoginParams};
pub use crate::signing::{Domain, PublicSigningKey, Signature, SigningKeyPair};
pub use crate::symmetric::{pad, unpad, SymmetricKey};

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Fills a fixed-size array from the operating system's random source.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    use rand_core::RngCore;
    let mut bytes = [0u8; N];
    rand_core::OsRng.fill_bytes(&mut bytes);
    bytes
}

/// Copies a slice into a fixed-size array, or says what it expected.
pub(crate) fn array<const N: usize>(bytes: &[u8], what: &'static str) -> Result<[u8; N]> {
    bytes.try_into().map_err(|_| Error::InvalidLength {
        what,
        expected: N,
        actual: bytes.len(),
    })
}
