//! Claims, key chains and the username rules.
//!
//! ```text
//! Claim       = {"e": uint,          expiry, seconds since the Unix epoch
//!                "k": link,          the identity key's PublicKeyHash
//!                "s": [text],        storage servers (peer ids), 0..=8
//!                "u": text}          the username
//! SignedClaim = {"c": Claim, "s": bytes(64)}   Ed25519 over CBOR(Claim), domain peergos/pki-claim/v1
//! KeyChain    = [SignedClaim, ...]   1..=256 links, oldest first
//! ```

use peergos_ipld::cbor;
use peergos_keys::{Domain, PublicKeyHash, Signature, SigningKeyPair};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The signature domain of claims.
pub const CLAIM_DOMAIN: Domain = Domain::new("peergos/pki-claim/v1");
/// The longest username.
pub const MAX_USERNAME_LEN: usize = 32;
/// The most storage servers a claim lists.
pub const MAX_SERVERS: usize = 8;
/// The most links in one chain (a yearly renewal for centuries).
pub const MAX_CHAIN_LINKS: usize = 256;
/// The longest storage server id, in bytes.
const MAX_SERVER_LEN: usize = 128;

/// Checks the naming rules: 1 to 32 characters, each a lowercase ASCII
/// letter, a digit, `_` or `-`.
pub fn check_username(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > MAX_USERNAME_LEN {
        "it is longer than 32 characters"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        "only lowercase letters, digits, '_' and '-' are allowed"
    } else {
        return Ok(());
    };
    Err(Error::BadUsername {
        name: name.chars().take(64).collect(),
        reason,
    })
}

/// One statement about a username.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The username.
    #[serde(rename = "u")]
    pub username: String,
    /// The identity key the name belongs to.
    #[serde(rename = "k")]
    pub identity: PublicKeyHash,
    /// When the claim lapses, in seconds since the Unix epoch.
    #[serde(rename = "e")]
    pub expiry: u64,
    /// The servers that store the user's data (peer ids).
    #[serde(rename = "s")]
    pub servers: Vec<String>,
}

impl Claim {
    /// Signs the claim with `key`.
    pub fn sign(self, key: &SigningKeyPair) -> Result<SignedClaim> {
        let signature = key.sign(CLAIM_DOMAIN, &cbor::to_vec(&self)?);
        Ok(SignedClaim {
            claim: self,
            signature,
        })
    }

    fn check_fields(&self) -> Result<()> {
        check_username(&self.username)?;
        let bad = |reason: &str| {
            Err(Error::BadChain {
                username: self.username.clone(),
                reason: reason.to_string(),
            })
        };
        if self.servers.len() > MAX_SERVERS {
            return bad("more than 8 storage servers");
        }
        if self
            .servers
            .iter()
            .any(|s| s.is_empty() || s.len() > MAX_SERVER_LEN)
        {
            return bad("a storage server id is empty or longer than 128 bytes");
        }
        self.identity.key()?;
        Ok(())
    }
}

/// A claim with the signature of the key that vouches for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedClaim {
    /// The claim.
    #[serde(rename = "c")]
    pub claim: Claim,
    /// Ed25519 over CBOR(claim) in [`CLAIM_DOMAIN`].
    #[serde(rename = "s")]
    pub signature: Signature,
}

impl SignedClaim {
    /// Checks the signature under `signer`.
    pub fn verify_by(&self, signer: &PublicKeyHash) -> Result<()> {
        let key = signer.key()?;
        key.verify(CLAIM_DOMAIN, &cbor::to_vec(&self.claim)?, &self.signature)
            .map_err(|_| Error::BadChain {
                username: self.claim.username.clone(),
                reason: format!("a claim's signature does not verify under {signer}"),
            })
    }
}

/// A username's history, oldest claim first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<SignedClaim>", into = "Vec<SignedClaim>")]
pub struct KeyChain {
    links: Vec<SignedClaim>,
}

impl TryFrom<Vec<SignedClaim>> for KeyChain {
    type Error = &'static str;

    fn try_from(links: Vec<SignedClaim>) -> std::result::Result<Self, Self::Error> {
        if links.is_empty() {
            Err("a key chain has at least one claim")
        } else {
            Ok(KeyChain { links })
        }
    }
}

impl From<KeyChain> for Vec<SignedClaim> {
    fn from(chain: KeyChain) -> Self {
        chain.links
    }
}

impl KeyChain {
    /// A new chain: the first claim, signed by its own identity key.
    pub fn new(claim: Claim, identity: &SigningKeyPair) -> Result<Self> {
        let chain = KeyChain {
            links: vec![claim.sign(identity)?],
        };
        chain.verify()?;
        Ok(chain)
    }

    /// The chain with `claim` appended, signed by the current identity
    /// key (`current`): a renewal, a change of servers or a change of key.
    pub fn extend(&self, claim: Claim, current: &SigningKeyPair) -> Result<Self> {
        let mut links = self.links.clone();
        links.push(claim.sign(current)?);
        let chain = KeyChain { links };
        chain.verify()?;
        Ok(chain)
    }

    /// The claims, oldest first.
    pub fn links(&self) -> &[SignedClaim] {
        &self.links
    }

    /// The newest claim.
    pub fn current(&self) -> &Claim {
        // Every way to build a chain (new, extend, decoding through
        // TryFrom) refuses an empty one, so the last index exists.
        &self.links[self.links.len().saturating_sub(1)].claim
    }

    /// The username.
    pub fn username(&self) -> &str {
        &self.current().username
    }

    /// Checks the chain on its own: 1 to 256 links for one valid name, the
    /// first signed by its own key, each later one by the key before it,
    /// expiries never going back.
    pub fn verify(&self) -> Result<()> {
        let Some(first) = self.links.first() else {
            return Err(Error::BadChain {
                username: String::new(),
                reason: "a chain has no claims".into(),
            });
        };
        let username = &first.claim.username;
        let bad = |reason: String| {
            Err(Error::BadChain {
                username: username.clone(),
                reason,
            })
        };
        if self.links.len() > MAX_CHAIN_LINKS {
            return bad(format!("more than {MAX_CHAIN_LINKS} claims"));
        }
        let mut signer = first.claim.identity;
        let mut expiry = 0;
        for (i, link) in self.links.iter().enumerate() {
            link.claim.check_fields()?;
            if link.claim.username != *username {
                return bad(format!("claim {i} names another user"));
            }
            if link.claim.expiry < expiry {
                return bad(format!("claim {i} expires before the claim it follows"));
            }
            link.verify_by(&signer)?;
            signer = link.claim.identity;
            expiry = link.claim.expiry;
        }
        Ok(())
    }

    /// True if this chain is `prefix` followed by at least one more claim.
    pub fn extends(&self, prefix: &KeyChain) -> bool {
        self.links.len() > prefix.links.len() && self.links.starts_with(&prefix.links)
    }

    /// The canonical block bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(cbor::to_vec(self)?)
    }

    /// Decodes (strictly) and verifies a chain block.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let chain: KeyChain = cbor::from_slice(bytes)?;
        chain.verify()?;
        Ok(chain)
    }
}
