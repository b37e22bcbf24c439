/// Everything that can go wrong with keys, ciphertexts, signatures and tokens.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Authenticated decryption failed: wrong key, or the bytes were changed.
    #[error("decryption failed: wrong key or tampered ciphertext")]
    DecryptionFailed,
    /// A ciphertext, key or token had the wrong length.
    #[error("{what} must be {expected} bytes, got {actual}")]
    InvalidLength {
        /// What was being read.
        what: &'static str,
        /// The length it must have (or at least have, for ciphertexts).
        expected: usize,
        /// The length it had.
        actual: usize,
    },
    /// A signature did not verify under the given key and domain.
    #[error("invalid signature for domain {domain}")]
    BadSignature {
        /// The domain the signature was checked under.
        domain: &'static str,
    },
    /// Bytes that should be a key are not a valid key.
    #[error("invalid {kind} key: {reason}")]
    InvalidKey {
        /// Which kind of key.
        kind: &'static str,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// An encoded key, box or token names an algorithm we do not know.
    #[error("unknown {kind} algorithm {id:#04x}")]
    UnknownAlgorithm {
        /// What was being read.
        kind: &'static str,
        /// The algorithm byte found.
        id: u8,
    },
    /// A sealed box was made for a different kind of recipient key.
    #[error("sealed box uses {found} mode but the recipient key is {expected}")]
    BoxMode {
        /// The mode the recipient's key needs.
        expected: &'static str,
        /// The mode of the box.
        found: &'static str,
    },
    /// An X25519 exchange gave the all-zero secret (a low-order point).
    #[error("key exchange with a low-order public key")]
    NonContributory,
    /// Padding was missing or malformed.
    #[error("invalid padding")]
    BadPadding,
    /// Login parameters outside the accepted range.
    #[error("login parameters rejected: {reason}")]
    LoginParams {
        /// Which bound was broken.
        reason: String,
    },
    /// A block-access-token proof is older than its lifetime.
    #[error("block access proof expired: made {age} s ago, valid for {max} s")]
    ProofExpired {
        /// Its age in seconds.
        age: u64,
        /// The lifetime in seconds.
        max: u64,
    },
    /// A block-access-token proof is dated too far in the future.
    #[error("block access proof dated {ahead} s in the future (allowed skew {max} s)")]
    ProofFromFuture {
        /// How far ahead, in seconds.
        ahead: u64,
        /// The allowed clock skew.
        max: u64,
    },
    /// No block access token listed on the block matches the proof.
    #[error("block access proof does not match any token of the block")]
    ProofInvalid,
    /// The block-access-token frame of a block is malformed.
    #[error("malformed block access tokens: {reason}")]
    MalformedBats {
        /// What was wrong.
        reason: &'static str,
    },
    /// An encoding error from the layer below.
    #[error(transparent)]
    Ipld(#[from] peergos_ipld::Error),
}
