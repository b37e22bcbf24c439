//! XChaCha20-Poly1305 secret keys and padding.

use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit, Payload};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
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
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        // One buffer, encrypted in place: no second copy of a 5 MiB chunk.
        let mut out = Vec::with_capacity(Self::OVERHEAD + plaintext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        // Encryption fails only for plaintexts over 256 GiB.
        let tag = cipher
            .encrypt_in_place_detached(
                XNonce::from_slice(&nonce),
                aad,
                &mut out[Self::NONCE_SIZE..],
            )
            .unwrap_or_else(|_| unreachable!("XChaCha20 message length limit is 256 GiB"));
        out.extend_from_slice(&tag);
        out
    }

    /// Encrypts into `prefix ‖ nonce ‖ ciphertext ‖ tag` in one buffer: for
    /// blocks whose ciphertext follows a header (such as a block-access-token
    /// frame), without copying the ciphertext again. The prefix is not
    /// authenticated unless it is also in `aad`.
    pub fn encrypt_after(&self, prefix: &[u8], plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let nonce: [u8; Self::NONCE_SIZE] = random_bytes();
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let mut out = Vec::with_capacity(prefix.len() + Self::OVERHEAD + plaintext.len());
        out.extend_from_slice(prefix);
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plaintext);
        let tag = cipher
            .encrypt_in_place_detached(XNonce::from_slice(&nonce), aad, &mut out[start..])
            .unwrap_or_else(|_| unreachable!("XChaCha20 message length limit is 256 GiB"));
        out.extend_from_slice(&tag);
        out
    }

    /// Decrypts `nonce ‖ ciphertext ‖ tag`.
    pub fn decrypt(&self, sealed: &[u8]) -> Result<Vec<u8>> {
        self.decrypt_with_aad(sealed, &[])
    }

    /// Decrypts, checking the `aad` given at encryption.
    pub fn decrypt_with_aad(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        if sealed.len() < Self::OVERHEAD {
            return Err(Error::InvalidLength {
                what: "ciphertext",
                expected: Self::OVERHEAD,
                actual: sealed.len(),
            });
        }
        let (nonce, body) = sealed.split_at(Self::NONCE_SIZE);
        XChaCha20Poly1305::new((&self.0).into())
            .decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad })
            .map_err(|_| Error::DecryptionFailed)
    }

    /// Decrypts `nonce ‖ ciphertext ‖ tag` where it lies, checking the
    /// `aad` given at encryption: the plaintext replaces the ciphertext and
    /// its range in `sealed` is returned. Nothing is allocated or copied
    /// (a 1 MiB fragment read from the network is decrypted in the buffer
    /// it arrived in). The tag is checked first, so a failure leaves
    /// `sealed` as it was.
    pub fn decrypt_in_place_with_aad(
        &self,
        sealed: &mut [u8],
        aad: &[u8],
    ) -> Result<std::ops::Range<usize>> {
        if sealed.len() < Self::OVERHEAD {
            return Err(Error::InvalidLength {
                what: "ciphertext",
                expected: Self::OVERHEAD,
                actual: sealed.len(),
            });
        }
        let end = sealed.len() - Self::TAG_SIZE;
        let (head, tag) = sealed.split_at_mut(end);
        let (nonce, body) = head.split_at_mut(Self::NONCE_SIZE);
        XChaCha20Poly1305::new((&self.0).into())
            .decrypt_in_place_detached(XNonce::from_slice(nonce), aad, body, Tag::from_slice(tag))
            .map_err(|_| Error::DecryptionFailed)?;
        Ok(Self::NONCE_SIZE..end)
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
