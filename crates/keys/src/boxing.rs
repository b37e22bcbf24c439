//! Sealed boxes to a recipient's public key: ephemeral-static X25519, or
//! hybrid X25519 + ML-KEM-768 so that what is sealed today stays private
//! against a future quantum adversary.
//!
//! Box layout (mode byte first):
//!
//! ```text
//! classic: 0x01 ‖ ephemeral X25519 public (32) ‖ nonce (24) ‖ ciphertext ‖ tag (16)
//! hybrid:  0x02 ‖ ephemeral X25519 public (32) ‖ ML-KEM-768 ciphertext (1088)
//!               ‖ nonce (24) ‖ ciphertext ‖ tag (16)
//! ```
//!
//! The XChaCha20-Poly1305 key is HKDF-SHA256 with salt
//! `peergos/sealed-box/v1`, input key material `x25519 secret [‖ ML-KEM
//! secret]`, and info `mode ‖ ephemeral public ‖ recipient X25519 public [‖
//! ML-KEM ciphertext ‖ SHA-256(recipient ML-KEM key)]`, binding the key to
//! every public value of the exchange.

use hkdf::Hkdf;
use ml_kem::kem::{Decapsulate, DecapsulationKey, Encapsulate, EncapsulationKey};
use ml_kem::{EncodedSizeUser, KemCore, MlKem768, MlKem768Params, B32};
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::{array, random_bytes, sha256, Error, Result, SymmetricKey};

const CLASSIC: u8 = 0x01;
const HYBRID: u8 = 0x02;
const SALT: &[u8] = b"peergos/sealed-box/v1";
const X25519_SIZE: usize = 32;
/// Bytes of an encoded ML-KEM-768 encapsulation key.
const MLKEM_KEY_SIZE: usize = 1184;
/// Bytes of an ML-KEM-768 ciphertext.
const MLKEM_CT_SIZE: usize = 1088;

type MlKemPublic = EncapsulationKey<MlKem768Params>;
type MlKemSecret = DecapsulationKey<MlKem768Params>;

fn mode_name(mode: u8) -> &'static str {
    if mode == HYBRID {
        "hybrid X25519+ML-KEM-768"
    } else {
        "classic X25519"
    }
}

/// A recipient's public boxing key: X25519, plus ML-KEM-768 in hybrid mode.
///
/// Encoded as `0x01 ‖ x25519` or `0x02 ‖ x25519 ‖ ML-KEM-768 key`.
#[derive(Clone, PartialEq)]
pub struct PublicBoxingKey {
    x25519: PublicKey,
    mlkem: Option<Box<MlKemPublic>>,
}

impl PublicBoxingKey {
    /// True when boxes to this key are post-quantum (hybrid mode).
    pub fn is_hybrid(&self) -> bool {
        self.mlkem.is_some()
    }

    /// The encoded form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + X25519_SIZE + MLKEM_KEY_SIZE);
        match &self.mlkem {
            None => out.push(CLASSIC),
            Some(_) => out.push(HYBRID),
        }
        out.extend_from_slice(self.x25519.as_bytes());
        if let Some(mlkem) = &self.mlkem {
            out.extend_from_slice(&mlkem.as_bytes());
        }
        out
    }

    /// Parses the encoded form, checking the ML-KEM key as FIPS 203 asks
    /// (every coefficient reduced, so it re-encodes to the same bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (&mode, rest) = bytes.split_first().ok_or(Error::InvalidLength {
            what: "public boxing key",
            expected: 1 + X25519_SIZE,
            actual: 0,
        })?;
        let (x, ml) = match mode {
            CLASSIC => (rest, None),
            HYBRID if rest.len() >= X25519_SIZE => {
                let (x, ml) = rest.split_at(X25519_SIZE);
                (x, Some(ml))
            }
            HYBRID => (rest, Some(&[][..])),
            id => return Err(Error::UnknownAlgorithm { kind: "boxing", id }),
        };
        let x25519 = PublicKey::from(array::<X25519_SIZE>(x, "X25519 public key")?);
        let mlkem = match ml {
            None => None,
            Some(ml) => {
                let encoded =
                    ml_kem::array::Array::try_from(ml).map_err(|_| Error::InvalidLength {
                        what: "ML-KEM-768 public key",
                        expected: MLKEM_KEY_SIZE,
                        actual: ml.len(),
                    })?;
                let key = MlKemPublic::from_bytes(&encoded);
                if key.as_bytes().as_slice() != ml {
                    return Err(Error::InvalidKey {
                        kind: "ML-KEM-768",
                        reason: "coefficients not reduced modulo q",
                    });
                }
                Some(Box::new(key))
            }
        };
        Ok(PublicBoxingKey { x25519, mlkem })
    }

    /// Seals `plaintext` so only the holder of the matching secret can open
    /// it. The box reveals nothing about the sender.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>> {
        let ephemeral = StaticSecret::from(random_bytes::<32>());
        let kem =
            match &self.mlkem {
                Some(mlkem) => Some(mlkem.encapsulate(&mut rand_core::OsRng).map_err(|_| {
                    Error::InvalidKey {
                        kind: "ML-KEM-768",
                        reason: "encapsulation failed",
                    }
                })?),
                None => None,
            };
        self.seal_with(ephemeral, kem, random_bytes(), plaintext)
    }

    fn seal_with(
        &self,
        ephemeral: StaticSecret,
        kem: Option<(ml_kem::Ciphertext<MlKem768>, ml_kem::SharedKey<MlKem768>)>,
        nonce: [u8; 24],
        plaintext: &[u8],
    ) -> Result<Vec<u8>> {
        let ephemeral_public = PublicKey::from(&ephemeral);
        let shared = ephemeral.diffie_hellman(&self.x25519);
        if !shared.was_contributory() {
            return Err(Error::NonContributory);
        }
        let mode = if kem.is_some() { HYBRID } else { CLASSIC };
        let mut header = vec![mode];
        header.extend_from_slice(ephemeral_public.as_bytes());
        let mut ikm = Zeroizing::new(shared.as_bytes().to_vec());
        let mut info = header.clone();
        info.extend_from_slice(self.x25519.as_bytes());
        if let (Some((ct, ss)), Some(mlkem)) = (&kem, &self.mlkem) {
            header.extend_from_slice(ct.as_slice());
            ikm.extend_from_slice(ss.as_slice());
            info.extend_from_slice(ct.as_slice());
            info.extend_from_slice(&sha256(&mlkem.as_bytes()));
        }
        let key = derive_key(&ikm, &info);
        let mut out = header;
        out.extend_from_slice(&key.encrypt_with_nonce(nonce, plaintext, &[mode]));
        Ok(out)
    }
}

fn derive_key(ikm: &[u8], info: &[u8]) -> SymmetricKey {
    let mut okm = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(SALT), ikm)
        .expand(info, okm.as_mut())
        .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF-SHA256 output length"));
    SymmetricKey::from_bytes(*okm)
}

impl std::fmt::Debug for PublicBoxingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.x25519.as_bytes();
        write!(
            f,
            "PublicBoxingKey({}, {:02x}{:02x}{:02x}{:02x}..)",
            mode_name(if self.is_hybrid() { HYBRID } else { CLASSIC }),
            b[0],
            b[1],
            b[2],
            b[3]
        )
    }
}

/// A boxing key pair. The secret is an X25519 scalar and, in hybrid mode,
/// the 64-byte ML-KEM-768 seed `d ‖ z` (FIPS 203) from which the
/// decapsulation key is rebuilt; both are zeroized on drop.
#[derive(Clone)]
pub struct BoxingKeyPair {
    x25519: StaticSecret,
    mlkem: Option<(Zeroizing<[u8; 64]>, Box<MlKemSecret>)>,
    public: PublicBoxingKey,
}

impl BoxingKeyPair {
    /// A fresh hybrid (X25519 + ML-KEM-768) key pair: the default.
    pub fn random() -> Self {
        Self::build(random_bytes(), Some(Zeroizing::new(random_bytes())))
    }

    /// A fresh X25519-only key pair (not post-quantum).
    pub fn random_classic() -> Self {
        Self::build(random_bytes(), None)
    }

    fn build(x: [u8; 32], seed: Option<Zeroizing<[u8; 64]>>) -> Self {
        let x25519 = StaticSecret::from(x);
        let (mlkem, mlkem_public) = match seed {
            Some(seed) => {
                let d =
                    B32::try_from(&seed[..32]).unwrap_or_else(|_| unreachable!("32 of 64 bytes"));
                let z =
                    B32::try_from(&seed[32..]).unwrap_or_else(|_| unreachable!("32 of 64 bytes"));
                let (dk, ek) = MlKem768::generate_deterministic(&d, &z);
                (Some((seed, Box::new(dk))), Some(Box::new(ek)))
            }
            None => (None, None),
        };
        let public = PublicBoxingKey {
            x25519: PublicKey::from(&x25519),
            mlkem: mlkem_public,
        };
        BoxingKeyPair {
            x25519,
            mlkem,
            public,
        }
    }

    /// The public half.
    pub fn public(&self) -> &PublicBoxingKey {
        &self.public
    }

    /// The secret in encoded form: `0x01 ‖ x25519` or `0x02 ‖ x25519 ‖ d ‖ z`.
    /// Handle with care.
    pub fn to_secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(97));
        match &self.mlkem {
            None => out.push(CLASSIC),
            Some(_) => out.push(HYBRID),
        }
        out.extend_from_slice(self.x25519.as_bytes());
        if let Some((seed, _)) = &self.mlkem {
            out.extend_from_slice(seed.as_ref());
        }
        out
    }

    /// Rebuilds a key pair from [`to_secret_bytes`](Self::to_secret_bytes).
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self> {
        match bytes.split_first() {
            Some((&CLASSIC, x)) => Ok(Self::build(array(x, "X25519 secret key")?, None)),
            Some((&HYBRID, rest)) if rest.len() == 96 => Ok(Self::build(
                array(&rest[..32], "X25519 secret key")?,
                Some(Zeroizing::new(array(&rest[32..], "ML-KEM seed")?)),
            )),
            Some((&HYBRID, rest)) => Err(Error::InvalidLength {
                what: "hybrid boxing secret",
                expected: 96,
                actual: rest.len(),
            }),
            Some((&id, _)) => Err(Error::UnknownAlgorithm { kind: "boxing", id }),
            None => Err(Error::InvalidLength {
                what: "boxing secret",
                expected: 33,
                actual: 0,
            }),
        }
    }

    /// Opens a box sealed to this key pair's public key. A box whose mode
    /// differs from this key pair's (say, classic sent to a hybrid key) is
    /// refused, so a sender bug cannot silently drop post-quantum protection.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>> {
        let expected = if self.mlkem.is_some() {
            HYBRID
        } else {
            CLASSIC
        };
        let (&mode, rest) = sealed.split_first().ok_or(Error::InvalidLength {
            what: "sealed box",
            expected: 1,
            actual: 0,
        })?;
        if mode != CLASSIC && mode != HYBRID {
            return Err(Error::UnknownAlgorithm {
                kind: "sealed box",
                id: mode,
            });
        }
        if mode != expected {
            return Err(Error::BoxMode {
                expected: mode_name(expected),
                found: mode_name(mode),
            });
        }
        let kem_len = if mode == HYBRID { MLKEM_CT_SIZE } else { 0 };
        let header_len = 1 + X25519_SIZE + kem_len;
        let min = header_len + SymmetricKey::OVERHEAD;
        if sealed.len() < min {
            return Err(Error::InvalidLength {
                what: "sealed box",
                expected: min,
                actual: sealed.len(),
            });
        }
        let ephemeral = PublicKey::from(array::<32>(&rest[..X25519_SIZE], "X25519 public key")?);
        let shared = self.x25519.diffie_hellman(&ephemeral);
        if !shared.was_contributory() {
            return Err(Error::NonContributory);
        }
        let mut ikm = Zeroizing::new(shared.as_bytes().to_vec());
        let mut info = sealed[..1 + X25519_SIZE].to_vec();
        info.extend_from_slice(self.public.x25519.as_bytes());
        if let (Some((_, dk)), Some(ek)) = (&self.mlkem, &self.public.mlkem) {
            let ct_bytes = &sealed[1 + X25519_SIZE..header_len];
            let ct = ml_kem::Ciphertext::<MlKem768>::try_from(ct_bytes).map_err(|_| {
                Error::InvalidLength {
                    what: "ML-KEM-768 ciphertext",
                    expected: MLKEM_CT_SIZE,
                    actual: ct_bytes.len(),
                }
            })?;
            // ML-KEM decapsulation never fails on well-sized input: a wrong
            // ciphertext gives a pseudorandom key and the AEAD rejects it.
            let ss = dk.decapsulate(&ct).map_err(|_| Error::DecryptionFailed)?;
            ikm.extend_from_slice(ss.as_slice());
            info.extend_from_slice(ct_bytes);
            info.extend_from_slice(&sha256(&ek.as_bytes()));
        }
        derive_key(&ikm, &info).decrypt_with_aad(&sealed[header_len..], &[mode])
    }
}

impl std::fmt::Debug for BoxingKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BoxingKeyPair({:?}, ..)", self.public)
    }
}

crate::signing::serde_as_bytes!(PublicBoxingKey);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x25519_rfc7748_known_answer() {
        let alice: [u8; 32] =
            hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
                .unwrap()
                .try_into()
                .unwrap();
        let bob_public: [u8; 32] =
            hex::decode("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
                .unwrap()
                .try_into()
                .unwrap();
        let pair = BoxingKeyPair::from_secret_bytes(&[&[CLASSIC][..], &alice].concat()).unwrap();
        assert_eq!(
            hex::encode(pair.public().x25519.as_bytes()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        let shared = StaticSecret::from(alice).diffie_hellman(&PublicKey::from(bob_public));
        assert_eq!(
            hex::encode(shared.as_bytes()),
            "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
        );
    }

    #[test]
    fn sealed_box_vector_is_stable() {
        // Fixed inputs pin the box layout and key derivation against
        // accidental change (the primitives have their own known answers).
        let pair = BoxingKeyPair::from_secret_bytes(&[CLASSIC; 33]).unwrap();
        let sealed = pair
            .public()
            .seal_with(StaticSecret::from([7u8; 32]), None, [9u8; 24], b"peergos")
            .unwrap();
        assert_eq!(
            hex::encode(&sealed),
            include_str!("../tests/vectors/sealed_box_classic.hex").trim()
        );
        assert_eq!(pair.open(&sealed).unwrap(), b"peergos");
    }

    #[test]
    fn hybrid_round_trip_and_secret_encoding() {
        let pair = BoxingKeyPair::random();
        assert!(pair.public().is_hybrid());
        let sealed = pair.public().seal(b"capability").unwrap();
        assert_eq!(sealed.len(), 1 + 32 + 1088 + 40 + 10);
        assert_eq!(pair.open(&sealed).unwrap(), b"capability");
        let again = BoxingKeyPair::from_secret_bytes(&pair.to_secret_bytes()).unwrap();
        assert_eq!(again.public(), pair.public());
        assert_eq!(again.open(&sealed).unwrap(), b"capability");
        let public = PublicBoxingKey::from_bytes(&pair.public().to_bytes()).unwrap();
        assert_eq!(&public, pair.public());
    }

    #[test]
    fn tampered_boxes_and_wrong_keys_fail_typed() {
        let pair = BoxingKeyPair::random();
        let sealed = pair.public().seal(b"secret").unwrap();
        for index in [1, 40, 500, 1121, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[index] ^= 0x20;
            assert!(
                matches!(pair.open(&bad), Err(Error::DecryptionFailed)),
                "flip at {index}"
            );
        }
        assert!(matches!(
            BoxingKeyPair::random().open(&sealed),
            Err(Error::DecryptionFailed)
        ));
        assert!(matches!(
            pair.open(&sealed[..100]),
            Err(Error::InvalidLength { .. })
        ));
        let classic = BoxingKeyPair::random_classic();
        let classic_box = classic.public().seal(b"x").unwrap();
        assert!(matches!(
            pair.open(&classic_box),
            Err(Error::BoxMode { .. })
        ));
        assert!(matches!(classic.open(&sealed), Err(Error::BoxMode { .. })));
        assert!(matches!(
            pair.open(&[9, 1, 2]),
            Err(Error::UnknownAlgorithm { id: 9, .. })
        ));
    }

    #[test]
    fn low_order_public_key_is_refused() {
        let public = PublicBoxingKey::from_bytes(&[&[CLASSIC][..], &[0u8; 32]].concat()).unwrap();
        assert!(matches!(public.seal(b"x"), Err(Error::NonContributory)));
    }

    #[test]
    fn unreduced_mlkem_key_is_refused() {
        let mut bytes = BoxingKeyPair::random().public().to_bytes();
        // Set the first 12-bit coefficient to 0xfff (> q = 3329).
        bytes[33] = 0xff;
        bytes[34] |= 0x0f;
        assert!(matches!(
            PublicBoxingKey::from_bytes(&bytes),
            Err(Error::InvalidKey {
                kind: "ML-KEM-768",
                ..
            })
        ));
    }
}
