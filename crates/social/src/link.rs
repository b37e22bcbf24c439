//! Secret links: a capability anyone holding the link can open, with no
//! account.
//!
//! A link is `{server}/link/{owner}/{id}#s={secret}` (with `&pw=1` when
//! it also needs a password). The owner's username lets any server route
//! the opening to the owner's home server (found through the PKI); the id
//! (16 random bytes, base32) names a record there; the secret (32 random bytes, base32) is in the URL
//! fragment, which browsers and this client never send to a server.
//!
//! From the secret, the optional password and the id come two values
//! (HKDF-SHA256, salt `peergos/secret-link/v1`, input `secret ‖
//! password key`, info `id`): the key that encrypts the capability, and
//! an access token. The password key is scrypt (log2 N = 17, r = 8, p = 1)
//! of the password with a salt derived from the secret, so the password
//! cannot be attacked without the link.
//!
//! The server stores a [`LinkRecord`]: the encrypted capability and the
//! SHA-256 of the token, plus the expiry and the use limit it enforces. To
//! open the link a client sends the token; the server checks its hash,
//! counts a use and answers the encrypted capability. So the server never
//! sees the capability or the secret, a wrong password is refused without
//! using up the link, and the owner can revoke the record.
//!
//! ```text
//! LinkRecord:  {"blob": bytes, "exp": u64 ms | null, "id": text, "max": u64 | null, "th": bytes(32)}
//! blob:        XChaCha20-Poly1305 under the link key, AAD "peergos/secret-link/v1 " ‖ id,
//!              of CBOR {"cap": AbsoluteCapability, "v": 1} padded to a multiple of 256
//! ```

use hkdf::Hkdf;
use peergos_cryptree::AbsoluteCapability;
use peergos_ipld::cbor;
use peergos_keys::{pad, sha256, unpad, Bat, LoginParams, SymmetricKey};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::{Error, Result};

const HKDF_SALT: &[u8] = b"peergos/secret-link/v1";
const AAD_PREFIX: &[u8] = b"peergos/secret-link/v1 ";

/// Bytes of a link id.
pub const ID_SIZE: usize = 16;

/// The largest encrypted capability a server stores.
pub const MAX_BLOB_SIZE: usize = 4096;

fn b32(bytes: &[u8]) -> String {
    data_encoding::BASE32_NOPAD
        .encode(bytes)
        .to_ascii_lowercase()
}

fn unb32(text: &str, what: &str) -> Result<Vec<u8>> {
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(Error::BadLink {
            reason: format!("the {what} has upper-case letters"),
        });
    }
    data_encoding::BASE32_NOPAD
        .decode(text.to_ascii_uppercase().as_bytes())
        .map_err(|e| Error::BadLink {
            reason: format!("the {what} is not base32: {e}"),
        })
}

/// Checks a link id's text form (26 characters of lower-case base32).
pub fn check_id(id: &str) -> Result<()> {
    let bytes = unb32(id, "link id")?;
    if bytes.len() != ID_SIZE {
        return Err(Error::BadLink {
            reason: format!("a link id is {ID_SIZE} bytes, not {}", bytes.len()),
        });
    }
    Ok(())
}

/// A parsed secret link.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretLink {
    /// The server the link was made through (`http://host:port`); any
    /// server of the network can open it.
    pub server: String,
    /// The owner's username: any server finds the owner's home through
    /// the PKI, so the link keeps working when the owner moves.
    pub owner: String,
    /// The record's id on the owner's home server.
    pub id: String,
    secret: Zeroizing<[u8; 32]>,
    /// Whether opening it needs a password too.
    pub password: bool,
}

impl std::fmt::Debug for SecretLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretLink")
            .field("server", &self.server)
            .field("owner", &self.owner)
            .field("id", &self.id)
            .field("password", &self.password)
            .finish_non_exhaustive()
    }
}

impl SecretLink {
    /// A new link of `owner`'s, made through `server`, with a fresh id
    /// and secret.
    pub fn random(server: &str, owner: &str, password: bool) -> Self {
        let id = Bat::random();
        SecretLink {
            server: server.trim_end_matches('/').to_string(),
            owner: owner.to_string(),
            id: b32(&id.as_bytes()[..ID_SIZE]),
            secret: Zeroizing::new(*Bat::random().as_bytes()),
            password,
        }
    }

    /// The link's text: `{server}/link/{owner}/{id}#s={secret}[&pw=1]`.
    pub fn to_url(&self) -> String {
        let pw = if self.password { "&pw=1" } else { "" };
        format!(
            "{}/link/{}/{}#s={}{pw}",
            self.server,
            self.owner,
            self.id,
            b32(self.secret.as_ref())
        )
    }

    /// Parses a link's text exactly.
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |reason: &str| Error::BadLink {
            reason: reason.to_string(),
        };
        let (location, fragment) = url
            .split_once('#')
            .ok_or_else(|| bad("it has no '#' part (the secret is after the '#')"))?;
        let (server, path) = location
            .rsplit_once("/link/")
            .ok_or_else(|| bad("it does not contain /link/"))?;
        let (owner, id) = path
            .split_once('/')
            .ok_or_else(|| bad("it does not name the owner (/link/{owner}/{id})"))?;
        peergos_pki::check_username(owner).map_err(|_| bad("the owner is not a valid username"))?;
        let scheme_ok = server.split_once("://").is_some_and(|(scheme, host)| {
            !scheme.is_empty()
                && !host.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
        if !scheme_ok {
            return Err(bad("it does not start with a server address (http://...)"));
        }
        check_id(id)?;
        let mut secret = None;
        let mut password = false;
        for part in fragment.split('&') {
            match part.split_once('=') {
                Some(("s", value)) => {
                    let bytes = Zeroizing::new(unb32(value, "secret")?);
                    let array: [u8; 32] = bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| bad("the secret is not 32 bytes"))?;
                    secret = Some(Zeroizing::new(array));
                }
                Some(("pw", "1")) => password = true,
                _ => return Err(bad("unknown part after '#'")),
            }
        }
        Ok(SecretLink {
            server: server.to_string(),
            owner: owner.to_string(),
            id: id.to_string(),
            secret: secret.ok_or_else(|| bad("the secret (s=...) is missing"))?,
            password,
        })
    }

    /// Derives the capability key and the access token. With a password
    /// this runs scrypt (about a second of CPU): call it off async threads.
    pub fn keys(&self, password: Option<&str>) -> Result<LinkKeys> {
        let mut ikm = Zeroizing::new(self.secret.to_vec());
        match (self.password, password) {
            (true, Some(password)) => {
                let params = LoginParams {
                    log_n: 17,
                    r: 8,
                    p: 1,
                    salt: sha256(
                        &[b"peergos/link-password/v1".as_slice(), &self.secret[..]].concat(),
                    ),
                };
                let derived = params.derive(&self.id, password)?;
                ikm.extend_from_slice(derived.root_key.as_bytes());
            }
            (true, None) => {
                return Err(Error::BadLink {
                    reason: "this link needs a password".into(),
                })
            }
            (false, _) => {}
        }
        let mut okm = Zeroizing::new([0u8; 64]);
        Hkdf::<Sha256>::new(Some(HKDF_SALT), &ikm)
            .expand(self.id.as_bytes(), okm.as_mut())
            .map_err(|_| Error::BadLink {
                reason: "key derivation failed".into(),
            })?;
        let mut key = [0u8; 32];
        key.copy_from_slice(&okm[..32]);
        let mut token = [0u8; 32];
        token.copy_from_slice(&okm[32..]);
        Ok(LinkKeys {
            key: SymmetricKey::from_bytes(key),
            token: Zeroizing::new(token),
            id: self.id.clone(),
        })
    }
}

/// What a link's secret (and password) give.
pub struct LinkKeys {
    key: SymmetricKey,
    token: Zeroizing<[u8; 32]>,
    id: String,
}

/// Encrypts a capability into a link record's blob under the link's key
/// (the owner keeps the key, so a link can be pointed at a capability
/// that changed, after a rotation, without its secret or password).
pub fn seal_capability(key: &SymmetricKey, id: &str, cap: &AbsoluteCapability) -> Result<Vec<u8>> {
    let mut plain = Zeroizing::new(cbor::to_vec(&LinkPayload {
        v: 1,
        cap: cap.clone(),
    })?);
    pad(&mut plain, 256);
    Ok(key.encrypt_with_aad(&plain, &[AAD_PREFIX, id.as_bytes()].concat()))
}

impl LinkKeys {
    /// The key that encrypts the capability.
    pub fn key(&self) -> &SymmetricKey {
        &self.key
    }

    /// The access token the opener sends.
    pub fn token(&self) -> [u8; 32] {
        *self.token
    }

    /// What the server stores to check the token.
    pub fn token_hash(&self) -> [u8; 32] {
        sha256(self.token.as_ref())
    }

    fn aad(&self) -> Vec<u8> {
        [AAD_PREFIX, self.id.as_bytes()].concat()
    }

    /// Encrypts the capability into a record's blob.
    pub fn seal(&self, cap: &AbsoluteCapability) -> Result<Vec<u8>> {
        seal_capability(&self.key, &self.id, cap)
    }

    /// Decrypts a record's blob into the capability.
    pub fn open(&self, blob: &[u8]) -> Result<AbsoluteCapability> {
        let plain = Zeroizing::new(
            self.key
                .decrypt_with_aad(blob, &self.aad())
                .map_err(|_| Error::LinkDoesNotOpen)?,
        );
        let body = unpad(&plain).map_err(|_| Error::LinkDoesNotOpen)?;
        let what = "secret link payload";
        let payload: LinkPayload = cbor::from_slice_versioned(body, what, 1)
            .map_err(|source| Error::Decode { what, source })?;
        Ok(payload.cap)
    }
}

#[derive(Serialize, Deserialize)]
struct LinkPayload {
    v: u64,
    cap: AbsoluteCapability,
}

/// What the owner's server stores for a link (and what the owner sends to
/// create one). Nothing in it opens the capability.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRecord {
    /// The link id.
    pub id: String,
    /// The encrypted capability.
    #[serde(with = "serde_bytes")]
    pub blob: Vec<u8>,
    /// SHA-256 of the access token.
    #[serde(rename = "th", with = "serde_bytes")]
    pub token_hash: [u8; 32],
    /// When the link stops working, in milliseconds since the Unix epoch.
    #[serde(rename = "exp")]
    pub expiry: Option<u64>,
    /// How many times it may be opened.
    #[serde(rename = "max")]
    pub max_uses: Option<u64>,
}

impl LinkRecord {
    /// Checks the parts a server can check.
    pub fn validate(&self) -> Result<()> {
        check_id(&self.id)?;
        if self.blob.len() > MAX_BLOB_SIZE {
            return Err(Error::TooLarge {
                what: "a secret link's capability",
                size: self.blob.len(),
                max: MAX_BLOB_SIZE,
            });
        }
        if self.max_uses == Some(0) {
            return Err(Error::BadLink {
                reason: "a link that may be opened 0 times".into(),
            });
        }
        Ok(())
    }
}
