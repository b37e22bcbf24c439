//! XChaCha20-Poly1305 secret keys and padding.
//!
//! XChaCha20-Poly1305 is built as its specification describes
//! (draft-irtf-cfrg-xchacha-03, section 2.3): HChaCha20 of the key and
//! the nonce's first 16 bytes gives a subkey, and ChaCha20-Poly1305 (RFC
//! 8439) runs under that subkey with the nonce `0^4 ‖ nonce[16..24]`.
//! HChaCha20 comes from the `chacha20` crate and the bulk AEAD from
//! `ring`, whose assembly runs 1.6 times as fast as the RustCrypto AEAD on
//! the machines we measure (`docs/BENCHMARKS.md`). The tests check every
//! output against RustCrypto's `XChaCha20Poly1305`, and the draft's known
//! answer.

use chacha20::cipher::consts::U10;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{random_bytes, Error, Result};

/// A 256-bit XChaCha20-Poly1305 key. Keys are always random (never derived
/// from content), so equal plaintexts never give equal ciphertexts.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SymmetricKey([u8; 32]);

impl SymmetricKey {
    /// Bytes in a key.
    pub const SIZE: usize = 32;
    /// Bytes of random nonce at the start of every ciphertext.
    pub const NONCE_SIZE: usize = 24;
    /// Bytes of authentication tag at the end of every ciphertext.
    pub const TAG_SIZE: usize = 16;
    /// Bytes a ciphertext adds to its plaintext.
    pub const OVERHEAD: usize = Self::NONCE_SIZE + Self::TAG_SIZE;

    /// A fresh random key.
    pub fn random() -> Self {
        SymmetricKey(random_bytes())
    }

    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SymmetricKey(bytes)
    }

    /// The key bytes. Handle with care: they are the secret.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Encrypts under a fresh random nonce: `nonce ‖ ciphertext ‖ tag`.
    pub fn encrypt(&self, plaintext: &[u8]) -> Vec<u8> {
        self.encrypt_with_aad(plaintext, &[])
    }

    /// Encrypts, also authenticating (but not storing) `aad`.
    pub fn encrypt_with_aad(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        self.encrypt_with_nonce(random_bytes(), plaintext, aad)
    }

    pub(crate) fn encrypt_with_nonce(
        &self,
        nonce: [u8; Self::NONCE_SIZE],
        plaintext: &[u8],
        aad: &[u8],
    ) -> Vec<u8> {
        // One buffer, encrypted in place: no second copy of a 5 MiB chunk.
        let mut out = Vec::with_capacity(Self::OVERHEAD + plaintext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self.seal_in_place(&nonce, aad, &mut out[Self::NONCE_SIZE..]);
        out.extend_from_slice(&tag);
        out
    }

    /// ChaCha20-Poly1305 under the subkey HChaCha20 derives from this key
    /// and the first 16 bytes of `nonce`, and the nonce for it made of the
    /// last 8 (see the module's documentation).
    fn subkey(&self, nonce: &[u8; Self::NONCE_SIZE]) -> (LessSafeKey, Nonce) {
        let mut subkey = chacha20::hchacha::<U10>((&self.0).into(), nonce[..16].into());
        let key = UnboundKey::new(&CHACHA20_POLY1305, &subkey)
            .unwrap_or_else(|_| unreachable!("a ChaCha20-Poly1305 key is 32 bytes"));
        subkey.as_mut_slice().zeroize();
        let mut short = [0u8; 12];
        short[4..].copy_from_slice(&nonce[16..]);
        (LessSafeKey::new(key), Nonce::assume_unique_for_key(short))
    }

    /// Encrypts `body` where it lies and returns the tag.
    fn seal_in_place(
        &self,
        nonce: &[u8; Self::NONCE_SIZE],
        aad: &[u8],
        body: &mut [u8],
    ) -> [u8; Self::TAG_SIZE] {
        let (key, nonce) = self.subkey(nonce);
        // Encryption fails only for plaintexts over 256 GiB.
        let tag = key
            .seal_in_place_separate_tag(nonce, Aad::from(aad), body)
            .unwrap_or_else(|_| unreachable!("the ChaCha20 message length limit is 256 GiB"));
        let mut out = [0u8; Self::TAG_SIZE];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Encrypts into `prefix ‖ nonce ‖ ciphertext ‖ tag` in one buffer: for
    /// blocks whose ciphertext follows a header (such as a block-access-token
    /// frame), without copying the ciphertext again. The prefix is not
    /// authenticated unless it is also in `aad`.
    pub fn encrypt_after(&self, prefix: &[u8], plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let nonce: [u8; Self::NONCE_SIZE] = random_bytes();
        let mut out = Vec::with_capacity(prefix.len() + Self::OVERHEAD + plaintext.len());
        out.extend_from_slice(prefix);
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plaintext);
        let tag = self.seal_in_place(&nonce, aad, &mut out[start..]);
        out.extend_from_slice(&tag);
        out
    }

    /// Decrypts `nonce ‖ ciphertext ‖ tag`.
    pub fn decrypt(&self, sealed: &[u8]) -> Result<Vec<u8>> {
        self.decrypt_with_aad(sealed, &[])
    }

    /// Decrypts, checking the `aad` given at encryption.
    /// (Every caller's ciphertext is small, metadata or inline content:
    /// a copy and a shift of the plaintext cost nothing to speak of.)
    pub fn decrypt_with_aad(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let mut out = sealed.to_vec();
        let plain = self.decrypt_in_place_with_aad(&mut out, aad)?;
        out.truncate(plain.end);
        out.drain(..plain.start);
        Ok(out)
    }

    /// Decrypts `nonce ‖ ciphertext ‖ tag` where it lies, checking the
    /// `aad` given at encryption: the plaintext replaces the ciphertext and
    /// its range in `sealed` is returned. Nothing is allocated or copied
    /// (a 1 MiB fragment read from the network is decrypted in the buffer
    /// it arrived in). Decryption and the tag's check are one pass, so a
    /// failure overwrites the ciphertext with zeros: no plaintext that
    /// failed its check is ever left in the buffer.
    pub fn decrypt_in_place_with_aad(
        &self,
        sealed: &mut [u8],
        aad: &[u8],
    ) -> Result<std::ops::Range<usize>> {
        let actual = sealed.len();
        let Some((nonce, body_and_tag)) = sealed
            .split_first_chunk_mut::<{ Self::NONCE_SIZE }>()
            .filter(|(_, rest)| rest.len() >= Self::TAG_SIZE)
        else {
            return Err(Error::InvalidLength {
                what: "ciphertext",
                expected: Self::OVERHEAD,
                actual,
            });
        };
        let (key, nonce) = self.subkey(nonce);
        let plain = key
            .open_in_place(nonce, Aad::from(aad), body_and_tag)
            .map_err(|_| Error::DecryptionFailed)?;
        Ok(Self::NONCE_SIZE..Self::NONCE_SIZE + plain.len())
    }
}

crate::secret_bytes!(SymmetricKey, "symmetric key");

/// Pads `data` to a multiple of `multiple` bytes (ISO/IEC 7816-4: one 0x80
/// byte, then zeros), hiding its exact length. Always adds at least one byte.
///
/// The multiples used are 4096 (file data and directory listings), 64 and 16
/// (small metadata). `multiple` must be at least 1.
pub fn pad(data: &mut Vec<u8>, multiple: usize) {
    let multiple = multiple.max(1);
    data.push(0x80);
    let rem = data.len() % multiple;
    if rem != 0 {
        data.resize(data.len() + multiple - rem, 0);
    }
}

/// Removes padding added by [`pad`].
pub fn unpad(data: &[u8]) -> Result<&[u8]> {
    let end = data
        .iter()
        .rposition(|&b| b != 0)
        .ok_or(Error::BadPadding)?;
    if data[end] == 0x80 {
        Ok(&data[..end])
    } else {
        Err(Error::BadPadding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xchacha20poly1305_known_answer() {
        // draft-irtf-cfrg-xchacha-03, appendix A.3.1.
        let key: [u8; 32] = std::array::from_fn(|i| 0x80 + i as u8);
        let nonce: [u8; 24] = std::array::from_fn(|i| 0x40 + i as u8);
        let aad = hex::decode("50515253c0c1c2c3c4c5c6c7").unwrap();
        let plaintext = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let sealed = SymmetricKey::from_bytes(key).encrypt_with_nonce(nonce, plaintext, &aad);
        assert_eq!(
            hex::encode(&sealed[24..]),
            "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb\
             731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452\
             2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9\
             21f9664c97637da9768812f615c68b13b52e\
             c0875924c1c7987947deafd8780acf49"
        );
        assert_eq!(&sealed[..24], &nonce);
    }

    proptest::proptest! {
        /// The construction from HChaCha20 and ring's ChaCha20-Poly1305
        /// gives exactly RustCrypto's XChaCha20-Poly1305, both ways.
        #[test]
        fn matches_the_reference_implementation(
            key in proptest::prelude::any::<[u8; 32]>(),
            nonce in proptest::prelude::any::<[u8; 24]>(),
            aad in proptest::collection::vec(0u8..=255, 0..80),
            data in proptest::collection::vec(0u8..=255, 0..5000),
        ) {
            use chacha20poly1305::aead::{Aead, KeyInit, Payload};
            let reference = chacha20poly1305::XChaCha20Poly1305::new((&key).into());
            let theirs = reference
                .encrypt((&nonce).into(), Payload { msg: &data, aad: &aad })
                .unwrap();
            let ours = SymmetricKey::from_bytes(key).encrypt_with_nonce(nonce, &data, &aad);
            proptest::prop_assert_eq!(&ours[..24], &nonce[..]);
            proptest::prop_assert_eq!(&ours[24..], &theirs[..]);
            let opened = reference
                .decrypt((&nonce).into(), Payload { msg: &ours[24..], aad: &aad })
                .unwrap();
            proptest::prop_assert_eq!(&opened, &data);
            proptest::prop_assert_eq!(
                SymmetricKey::from_bytes(key).decrypt_with_aad(&ours, &aad).unwrap(),
                data
            );
        }
    }

    #[test]
    fn encrypt_after_keeps_the_prefix_and_decrypts() {
        let key = SymmetricKey::random();
        let framed = key.encrypt_after(b"head", b"body", b"ad");
        assert_eq!(&framed[..4], b"head");
        assert_eq!(framed.len(), 4 + SymmetricKey::OVERHEAD + 4);
        assert_eq!(key.decrypt_with_aad(&framed[4..], b"ad").unwrap(), b"body");
        assert!(key.decrypt_with_aad(&framed[4..], b"other").is_err());
    }

    #[test]
    fn nonces_are_fresh() {
        let key = SymmetricKey::random();
        assert_ne!(key.encrypt(b"same"), key.encrypt(b"same"));
    }

    #[test]
    fn tampering_wrong_key_and_short_input_fail_typed() {
        let key = SymmetricKey::random();
        let mut sealed = key.encrypt(b"secret");
        assert!(matches!(
            SymmetricKey::random().decrypt(&sealed),
            Err(Error::DecryptionFailed)
        ));
        sealed[30] ^= 1;
        assert!(matches!(key.decrypt(&sealed), Err(Error::DecryptionFailed)));
        assert!(matches!(
            key.decrypt(&[0; 39]),
            Err(Error::InvalidLength { expected: 40, .. })
        ));
        let sealed = key.encrypt_with_aad(b"x", b"context");
        assert!(key.decrypt_with_aad(&sealed, b"other").is_err());
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(format!("{:?}", SymmetricKey::random()), "SymmetricKey(..)");
    }

    #[test]
    fn padding_hits_multiples() {
        for (len, multiple, padded) in [
            (0, 16, 16),
            (15, 16, 16),
            (16, 16, 32),
            (4095, 4096, 4096),
            (4096, 4096, 8192),
            (1, 64, 64),
        ] {
            let mut data = vec![7u8; len];
            pad(&mut data, multiple);
            assert_eq!(data.len(), padded, "{len} to {multiple}");
            assert_eq!(unpad(&data).unwrap(), vec![7u8; len]);
        }
        assert!(unpad(&[0, 0]).is_err());
        assert!(unpad(&[1, 0]).is_err());
    }
}
