//! Login key derivation: scrypt over the password and a public salt bound to
//! the username.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{random_bytes, Error, Result, SigningKeyPair, SymmetricKey};

/// The smallest scrypt cost a client accepts. A server that offers weaker
/// parameters could brute-force the password from the login signature
/// cheaply, so weaker ones are refused rather than used.
pub const MIN_LOG_N: u8 = 17;
/// The largest scrypt cost accepted (2^22 × r × 128 bytes of memory).
pub const MAX_LOG_N: u8 = 22;

/// Public, per-user login parameters, stored with the user on their home
/// server so a user can later move to harder ones.
///
/// CBOR: `{"p": u32, "r": u32, "logN": u8, "salt": bytes(32)}`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginParams {
    /// log2 of the scrypt cost N.
    #[serde(rename = "logN")]
    pub log_n: u8,
    /// scrypt block size.
    pub r: u32,
    /// scrypt parallelism.
    pub p: u32,
    /// Random public salt.
    #[serde(with = "serde_bytes")]
    pub salt: [u8; 32],
}

impl LoginParams {
    /// The defaults (log2 N = 17, r = 8, p = 1) with a fresh random salt.
    pub fn new_random() -> Self {
        LoginParams {
            log_n: 17,
            r: 8,
            p: 1,
            salt: random_bytes(),
        }
    }

    /// Checks the parameters are within the accepted bounds.
    pub fn validate(&self) -> Result<()> {
        let reject = |reason: String| Err(Error::LoginParams { reason });
        if !(MIN_LOG_N..=MAX_LOG_N).contains(&self.log_n) {
            return reject(format!(
                "log2 N = {} is outside {MIN_LOG_N}..={MAX_LOG_N}",
                self.log_n
            ));
        }
        if !(1..=32).contains(&self.r) {
            return reject(format!("r = {} is outside 1..=32", self.r));
        }
        if !(1..=16).contains(&self.p) {
            return reject(format!("p = {} is outside 1..=16", self.p));
        }
        Ok(())
    }

    /// Runs scrypt (CPU- and memory-heavy: call it off the async threads)
    /// and splits the output into the login key pair and the root key.
    ///
    /// scrypt's salt is `peergos/login/v1 ‖ len(username) ‖ username ‖ salt`,
    /// so the same password and salt give different keys for another name.
    pub fn derive(&self, username: &str, password: &str) -> Result<LoginKeys> {
        self.validate()?;
        if username.len() > 255 {
            return Err(Error::LoginParams {
                reason: "username longer than 255 bytes".into(),
            });
        }
        let params = scrypt::Params::new(self.log_n, self.r, self.p, 64).map_err(|e| {
            Error::LoginParams {
                reason: e.to_string(),
            }
        })?;
        let mut salt = b"peergos/login/v1".to_vec();
        salt.push(username.len() as u8);
        salt.extend_from_slice(username.as_bytes());
        salt.extend_from_slice(&self.salt);
        let mut out = Zeroizing::new([0u8; 64]);
        scrypt::scrypt(password.as_bytes(), &salt, &params, out.as_mut()).map_err(|e| {
            Error::LoginParams {
                reason: e.to_string(),
            }
        })?;
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&out[..32]);
        let mut root = [0u8; 32];
        root.copy_from_slice(&out[32..]);
        Ok(LoginKeys {
            signing: SigningKeyPair::from_seed(seed),
            root_key: SymmetricKey::from_bytes(root),
            params: self.clone(),
        })
    }
}

impl std::fmt::Debug for LoginParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LoginParams(scrypt log2 N = {}, r = {}, p = {})",
            self.log_n, self.r, self.p
        )
    }
}

/// What a password unlocks: the login signing key (it authorises fetching the
/// user's encrypted static data) and the root key (it decrypts that data),
/// with the parameters that produced them.
#[derive(Debug, Clone)]
pub struct LoginKeys {
    /// Signs login requests; its public half is stored by the home server.
    pub signing: SigningKeyPair,
    /// Decrypts the user's static data; never leaves the client.
    pub root_key: SymmetricKey,
    /// The parameters used.
    pub params: LoginParams,
}

#[cfg(test)]
mod tests {
    use super::*;
    use peergos_ipld::cbor;

    #[test]
    fn scrypt_rfc7914_known_answer() {
        // RFC 7914 section 12, third vector (N = 16384, r = 8, p = 1).
        let params = scrypt::Params::new(14, 8, 1, 64).unwrap();
        let mut out = [0u8; 64];
        scrypt::scrypt(b"pleaseletmein", b"SodiumChloride", &params, &mut out).unwrap();
        assert_eq!(
            hex::encode(out),
            "7023bdcb3afd7348461c06cd81fd38ebfda8fbba904f8e3ea9b543f6545da1f2\
             d5432955613f0fcf62d49705242a9af9e61e85dc0d651e40dfcf017b45575887"
        );
    }

    fn fixed() -> LoginParams {
        LoginParams {
            log_n: 17,
            r: 8,
            p: 1,
            salt: [5u8; 32],
        }
    }

    #[test]
    fn derivation_is_pinned_and_bound_to_username_and_password() {
        let keys = fixed().derive("alice", "correct horse").unwrap();
        assert_eq!(
            hex::encode(keys.signing.public().to_bytes()),
            include_str!("../tests/vectors/login_alice.hex").trim()
        );
        let again = fixed().derive("alice", "correct horse").unwrap();
        assert_eq!(again.root_key, keys.root_key);
        let other_user = fixed().derive("alicf", "correct horse").unwrap();
        assert_ne!(other_user.root_key, keys.root_key);
        assert_ne!(other_user.signing.public(), keys.signing.public());
        let other_password = fixed().derive("alice", "correct horsf").unwrap();
        assert_ne!(other_password.root_key, keys.root_key);
    }

    #[test]
    fn weak_or_absurd_parameters_are_refused() {
        for params in [
            LoginParams {
                log_n: 10,
                ..fixed()
            },
            LoginParams {
                log_n: 40,
                ..fixed()
            },
            LoginParams { r: 0, ..fixed() },
            LoginParams { p: 99, ..fixed() },
        ] {
            assert!(matches!(
                params.derive("alice", "pw"),
                Err(Error::LoginParams { .. })
            ));
        }
    }

    #[test]
    fn params_round_trip_in_cbor() {
        let params = LoginParams::new_random();
        let bytes = cbor::to_vec(&params).unwrap();
        assert_eq!(cbor::from_slice::<LoginParams>(&bytes).unwrap(), params);
    }
}
