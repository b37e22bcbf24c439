//! Capabilities: everything needed to find, read and write one node.
//!
//! CBOR of an absolute capability (short keys keep links short):
//!
//! ```text
//! {"b": bytes(32) | null,   block access token of the node's blocks
//!  "k": bytes(32) | null,   write key (decrypts the link to the writer's signing key)
//!  "l": bytes(32),          label: the node's key in the writer's CHAMP
//!  "o": link,               owner's PublicKeyHash
//!  "r": bytes(32),          read key
//!  "w": link}               writer's PublicKeyHash
//! ```
//!
//! Text form: [`TEXT_PREFIX`] then base32 (RFC 4648, lower case, no
//! padding) of `CBOR ‖ checksum`, where the checksum is the first 4 bytes
//! of SHA-256(`peergos/cap-text/v1` ‖ CBOR).

use std::fmt;

use peergos_ipld::cbor;
use peergos_keys::{sha256, Bat, PublicKeyHash, SymmetricKey};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What starts the text form of a capability; the `1` is the version.
pub const TEXT_PREFIX: &str = "pcap1";
const CHECKSUM_DOMAIN: &[u8] = b"peergos/cap-text/v1";
const CHECKSUM_SIZE: usize = 4;

/// Where a node lives in its writer's CHAMP: 32 random bytes. Labels are
/// random so nothing about a node can be guessed from where it is stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label(pub [u8; 32]);

impl Label {
    /// A fresh random label.
    pub fn random() -> Self {
        Label(*Bat::random().as_bytes())
    }

    /// The CHAMP key for this label.
    pub fn key(&self) -> peergos_champ::Key {
        peergos_champ::Key(self.0)
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Label(")?;
        self.0
            .iter()
            .take(6)
            .try_for_each(|b| write!(f, "{b:02x}"))?;
        write!(f, "..)")
    }
}

impl Serialize for Label {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(d)?;
        <[u8; 32]>::try_from(bytes.as_ref())
            .map(Label)
            .map_err(|_| serde::de::Error::custom("labels are 32 bytes"))
    }
}

/// A capability that stands alone: whose space, which writer, where, and
/// the keys. Read access to a directory gives read access to everything
/// below it; a write key additionally lets the holder write.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbsoluteCapability {
    /// The owner of the space.
    #[serde(rename = "o")]
    pub owner: PublicKeyHash,
    /// The writer key whose CHAMP holds the node.
    #[serde(rename = "w")]
    pub writer: PublicKeyHash,
    /// The node's label in that CHAMP.
    #[serde(rename = "l")]
    pub label: Label,
    /// The access token the node's blocks list, if any.
    #[serde(rename = "b")]
    pub bat: Option<Bat>,
    /// The base read key.
    #[serde(rename = "r")]
    pub read: SymmetricKey,
    /// The base write key, for a writable capability.
    #[serde(rename = "k")]
    pub write: Option<SymmetricKey>,
}

impl AbsoluteCapability {
    /// True if the capability can write.
    pub fn is_writable(&self) -> bool {
        self.write.is_some()
    }

    /// The same capability without its write key.
    pub fn read_only(&self) -> Self {
        AbsoluteCapability {
            write: None,
            ..self.clone()
        }
    }

    /// The compact text form for links: `pcap1` + base32 of CBOR and a
    /// checksum. Treat it as a secret: it carries the keys.
    pub fn to_text(&self) -> Result<String> {
        let mut payload = cbor::to_vec(self)?;
        let sum = checksum(&payload);
        payload.extend_from_slice(&sum);
        let body = data_encoding::BASE32_NOPAD
            .encode(&payload)
            .to_ascii_lowercase();
        Ok(format!("{TEXT_PREFIX}{body}"))
    }

    /// Parses the text form, exactly: the version prefix, lower-case
    /// base32, the checksum, then strict CBOR.
    pub fn from_text(text: &str) -> Result<Self> {
        let bad = |reason: &str| Error::BadCapabilityText {
            reason: reason.to_string(),
        };
        let Some(body) = text.strip_prefix(TEXT_PREFIX) else {
            // "pcap" then a version: a newer one is for a newer client.
            let version = text
                .strip_prefix("pcap")
                .map(|rest| {
                    rest.bytes()
                        .take_while(u8::is_ascii_digit)
                        .collect::<Vec<u8>>()
                })
                .and_then(|digits| std::str::from_utf8(&digits).ok()?.parse::<u64>().ok());
            return Err(match version {
                Some(found) => peergos_ipld::check_version("capability link", found, 1)
                    .err()
                    .map_or_else(|| bad("it does not start with pcap1"), Error::Encoding),
                None => bad("it does not start with pcap1"),
            });
        };
        if body.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad("upper-case letters (the form is lower case)"));
        }
        let payload = data_encoding::BASE32_NOPAD
            .decode(body.to_ascii_uppercase().as_bytes())
            .map_err(|e| bad(&format!("invalid base32: {e}")))?;
        if payload.len() <= CHECKSUM_SIZE {
            return Err(bad("too short"));
        }
        let (cbor_bytes, sum) = payload.split_at(payload.len() - CHECKSUM_SIZE);
        if checksum(cbor_bytes) != sum {
            return Err(Error::ChecksumMismatch);
        }
        let cap: AbsoluteCapability = cbor::from_slice(cbor_bytes)?;
        cap.writer.key()?;
        cap.owner.key()?;
        Ok(cap)
    }
}

fn checksum(payload: &[u8]) -> [u8; CHECKSUM_SIZE] {
    let mut input = CHECKSUM_DOMAIN.to_vec();
    input.extend_from_slice(payload);
    let digest = sha256(&input);
    let mut sum = [0u8; CHECKSUM_SIZE];
    sum.copy_from_slice(&digest[..CHECKSUM_SIZE]);
    sum
}

impl fmt::Debug for AbsoluteCapability {
    /// Shows where the capability points, never its keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AbsoluteCapability")
            .field("owner", &self.owner)
            .field("writer", &self.writer)
            .field("label", &self.label)
            .field("writable", &self.is_writable())
            .finish_non_exhaustive()
    }
}
