//! Block access tokens (BATs).
//!
//! A BAT is a 32-byte secret. A block lists the BATs that may read it; a
//! reader proves it holds one with an HMAC-SHA256 over the block's CID, the
//! requesting peer's id and the time, so an overheard proof cannot be replayed
//! by another peer, for another block, or after its lifetime.
//!
//! The server that stores a block must be able to check proofs, so the block
//! carries the token itself ([`BatId::Inline`]). That lets the servers holding
//! the block learn the token, which gives them nothing they lack: they hold
//! the block already. It stops everyone else from fetching ciphertext by CID.
//!
//! Where blocks list their tokens:
//! - DAG-CBOR blocks: a top-level map field `"bats"`, a list of encoded
//!   [`BatId`]s.
//! - raw blocks: a prefix `MAGIC (7 bytes) ‖ count (1 byte) ‖ count × BatId`
//!   before the payload. A raw block that does not start with the magic
//!   lists no tokens.

use hmac::{Hmac, Mac};
use peergos_ipld::{cbor, Cid, Codec};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{array, random_bytes, Error, Result};

/// How long a proof stays valid, in seconds.
pub const PROOF_LIFETIME_SECS: u64 = 300;
/// How far in the future a proof may be dated (clock skew), in seconds.
pub const MAX_CLOCK_SKEW_SECS: u64 = 60;
/// The most tokens one block may list.
pub const MAX_BATS_PER_BLOCK: usize = 4;
/// The magic that starts a raw block with a token prefix.
pub const RAW_MAGIC: [u8; 7] = [0xfe, b'p', b'g', b'b', b'a', b't', 0x01];
/// The CBOR field of a structured block that lists its tokens.
pub const CBOR_FIELD: &str = "bats";

const PROOF_DOMAIN: &[u8] = b"peergos/bat-proof/v1";
const INLINE: u8 = 0x00;

/// A block access token: a 32-byte secret.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Bat([u8; 32]);

impl Bat {
    /// A fresh random token.
    pub fn random() -> Self {
        Bat(random_bytes())
    }

    /// A token from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Bat(bytes)
    }

    /// The token bytes. Handle with care.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// How a block lists this token.
    pub fn id(&self) -> BatId {
        BatId::Inline(self.clone())
    }

    /// Proves possession of this token to read `cid`, as `requester`, at
    /// `time` (seconds since the Unix epoch).
    pub fn prove(&self, cid: &Cid, requester: &[u8], time: u64) -> BatProof {
        BatProof {
            time,
            mac: self
                .mac(cid, requester, time)
                .finalize()
                .into_bytes()
                .into(),
        }
    }

    fn mac(&self, cid: &Cid, requester: &[u8], time: u64) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        let cid = cid.to_bytes();
        mac.update(PROOF_DOMAIN);
        mac.update(&(cid.len() as u32).to_be_bytes());
        mac.update(&cid);
        mac.update(&(requester.len() as u32).to_be_bytes());
        mac.update(requester);
        mac.update(&time.to_be_bytes());
        mac
    }
}

crate::secret_bytes!(Bat, "block access token");

/// How a block names a token that may read it. Encoded as a kind byte and
/// the kind's bytes; today the only kind is `0x00`, the token itself.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum BatId {
    /// The token itself, so the storing server can check proofs.
    Inline(Bat),
}

impl BatId {
    /// Bytes in the encoded form.
    pub const ENCODED_SIZE: usize = 33;

    /// The encoded form.
    pub fn to_bytes(&self) -> [u8; Self::ENCODED_SIZE] {
        let mut out = [0u8; Self::ENCODED_SIZE];
        match self {
            BatId::Inline(bat) => {
                out[0] = INLINE;
                out[1..].copy_from_slice(bat.as_bytes());
            }
        }
        out
    }

    /// Parses the encoded form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        match bytes.split_first() {
            Some((&INLINE, rest)) => Ok(BatId::Inline(Bat(array(rest, "inline BAT id")?))),
            Some((&id, _)) => Err(Error::UnknownAlgorithm { kind: "BAT id", id }),
            None => Err(Error::InvalidLength {
                what: "BAT id",
                expected: Self::ENCODED_SIZE,
                actual: 0,
            }),
        }
    }

    /// Checks `proof` against this token.
    fn matches(&self, proof: &BatProof, cid: &Cid, requester: &[u8]) -> bool {
        match self {
            BatId::Inline(bat) => bat
                .mac(cid, requester, proof.time)
                .verify_slice(&proof.mac)
                .is_ok(),
        }
    }
}

crate::signing::serde_as_bytes!(BatId);

/// Proof that the requester holds a token of a block, valid for
/// [`PROOF_LIFETIME_SECS`]. CBOR: `{"m": bytes(32), "t": u64}`.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatProof {
    /// When the proof was made, in seconds since the Unix epoch.
    #[serde(rename = "t")]
    pub time: u64,
    /// HMAC-SHA256 over the domain, CID, requester and time.
    #[serde(rename = "m", with = "serde_bytes")]
    pub mac: [u8; 32],
}

impl BatProof {
    /// Checks this proof lets `requester` read block `cid` that lists `ids`,
    /// at time `now` (seconds since the Unix epoch).
    pub fn verify(&self, ids: &[BatId], cid: &Cid, requester: &[u8], now: u64) -> Result<()> {
        if self.time > now + MAX_CLOCK_SKEW_SECS {
            return Err(Error::ProofFromFuture {
                ahead: self.time - now,
                max: MAX_CLOCK_SKEW_SECS,
            });
        }
        let age = now.saturating_sub(self.time);
        if age > PROOF_LIFETIME_SECS {
            return Err(Error::ProofExpired {
                age,
                max: PROOF_LIFETIME_SECS,
            });
        }
        if ids.iter().any(|id| id.matches(self, cid, requester)) {
            Ok(())
        } else {
            Err(Error::ProofInvalid)
        }
    }
}

impl std::fmt::Debug for BatProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BatProof(t = {})", self.time)
    }
}

/// Prefixes a raw payload with the tokens that may read it.
pub fn frame_raw(ids: &[BatId], payload: &[u8]) -> Result<Vec<u8>> {
    if ids.is_empty() || ids.len() > MAX_BATS_PER_BLOCK {
        return Err(Error::MalformedBats {
            reason: "a raw block lists 1 to 4 tokens",
        });
    }
    let mut out =
        Vec::with_capacity(RAW_MAGIC.len() + 1 + ids.len() * BatId::ENCODED_SIZE + payload.len());
    out.extend_from_slice(&RAW_MAGIC);
    out.push(ids.len() as u8);
    for id in ids {
        out.extend_from_slice(&id.to_bytes());
    }
    out.extend_from_slice(payload);
    Ok(out)
}

/// The token frame [`frame_raw`] puts before a raw payload.
pub fn raw_prefix(ids: &[BatId]) -> Result<Vec<u8>> {
    if ids.is_empty() || ids.len() > MAX_BATS_PER_BLOCK {
        return Err(Error::MalformedBats {
            reason: "a raw block lists 1 to 4 tokens",
        });
    }
    let mut out = Vec::with_capacity(RAW_MAGIC.len() + 1 + ids.len() * BatId::ENCODED_SIZE);
    out.extend_from_slice(&RAW_MAGIC);
    out.push(ids.len() as u8);
    for id in ids {
        out.extend_from_slice(&id.to_bytes());
    }
    Ok(out)
}

/// Splits a raw block into its tokens and its payload. A block without the
/// magic has no tokens and is all payload.
pub fn split_raw(block: &[u8]) -> Result<(Vec<BatId>, &[u8])> {
    let Some(rest) = block.strip_prefix(&RAW_MAGIC[..]) else {
        return Ok((Vec::new(), block));
    };
    let (&count, mut rest) = rest.split_first().ok_or(Error::MalformedBats {
        reason: "raw block ends before the token count",
    })?;
    let count = count as usize;
    if count == 0 || count > MAX_BATS_PER_BLOCK {
        return Err(Error::MalformedBats {
            reason: "a raw block lists 1 to 4 tokens",
        });
    }
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        if rest.len() < BatId::ENCODED_SIZE {
            return Err(Error::MalformedBats {
                reason: "raw block ends inside its token list",
            });
        }
        let (id, tail) = rest.split_at(BatId::ENCODED_SIZE);
        ids.push(BatId::from_bytes(id)?);
        rest = tail;
    }
    Ok((ids, rest))
}

/// The tokens a block lists (none means anyone may read it).
pub fn block_bats(cid: &Cid, block: &[u8]) -> Result<Vec<BatId>> {
    match cid.codec() {
        Some(Codec::Raw) => Ok(split_raw(block)?.0),
        Some(Codec::DagCbor) => cbor_bats(&cbor::decode_value(block)?),
        None => Err(peergos_ipld::Error::UnsupportedCid {
            reason: "unknown codec".into(),
        }
        .into()),
    }
}

/// The tokens a decoded DAG-CBOR block lists in its `"bats"` field.
pub fn cbor_bats(value: &cbor::Value) -> Result<Vec<BatId>> {
    let cbor::Value::Map(entries) = value else {
        return Ok(Vec::new());
    };
    let Some((_, list)) = entries
        .iter()
        .find(|(key, _)| matches!(key, cbor::Value::Text(k) if k == CBOR_FIELD))
    else {
        return Ok(Vec::new());
    };
    let cbor::Value::Array(items) = list else {
        return Err(Error::MalformedBats {
            reason: "\"bats\" must be a list",
        });
    };
    if items.len() > MAX_BATS_PER_BLOCK {
        return Err(Error::MalformedBats {
            reason: "more than 4 tokens on one block",
        });
    }
    items
        .iter()
        .map(|item| match item {
            cbor::Value::Bytes(bytes) => BatId::from_bytes(bytes),
            _ => Err(Error::MalformedBats {
                reason: "\"bats\" entries must be byte strings",
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn hmac_sha256_rfc4231_case_2() {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn proof_is_bound_to_cid_requester_and_time() {
        let bat = Bat::random();
        let ids = [bat.id()];
        let cid = Cid::hash(Codec::Raw, b"block");
        let proof = bat.prove(&cid, b"peer-a", 1_000);
        proof.verify(&ids, &cid, b"peer-a", 1_000).unwrap();
        proof
            .verify(&ids, &cid, b"peer-a", 1_000 + PROOF_LIFETIME_SECS)
            .unwrap();
        assert!(matches!(
            proof.verify(&ids, &cid, b"peer-b", 1_000),
            Err(Error::ProofInvalid)
        ));
        let other = Cid::hash(Codec::Raw, b"other");
        assert!(matches!(
            proof.verify(&ids, &other, b"peer-a", 1_000),
            Err(Error::ProofInvalid)
        ));
        assert!(matches!(
            proof.verify(&ids, &cid, b"peer-a", 1_000 + PROOF_LIFETIME_SECS + 1),
            Err(Error::ProofExpired { .. })
        ));
        assert!(matches!(
            proof.verify(&ids, &cid, b"peer-a", 1_000 - MAX_CLOCK_SKEW_SECS - 1),
            Err(Error::ProofFromFuture { .. })
        ));
        assert!(matches!(
            proof.verify(&[Bat::random().id()], &cid, b"peer-a", 1_000),
            Err(Error::ProofInvalid)
        ));
        let mut forged = proof.clone();
        forged.time += 1;
        assert!(forged.verify(&ids, &cid, b"peer-a", 1_000).is_err());
    }

    #[test]
    fn raw_frames_round_trip() {
        let ids = vec![Bat::random().id(), Bat::random().id()];
        let framed = frame_raw(&ids, b"ciphertext").unwrap();
        let (back, payload) = split_raw(&framed).unwrap();
        assert_eq!(back, ids);
        assert_eq!(payload, b"ciphertext");
        let cid = Cid::hash(Codec::Raw, &framed);
        assert_eq!(block_bats(&cid, &framed).unwrap(), ids);
        assert_eq!(split_raw(b"plain").unwrap().0, vec![]);
        assert!(split_raw(&framed[..20]).is_err());
        assert!(frame_raw(&[], b"x").is_err());
    }

    #[test]
    fn cbor_blocks_list_bats_in_a_field() {
        #[derive(serde::Serialize)]
        struct Node {
            bats: Vec<BatId>,
            data: u8,
        }
        let id = Bat::random().id();
        let bytes = cbor::to_vec(&Node {
            bats: vec![id.clone()],
            data: 1,
        })
        .unwrap();
        let cid = Cid::hash(Codec::DagCbor, &bytes);
        assert_eq!(block_bats(&cid, &bytes).unwrap(), vec![id]);
        let plain = cbor::to_vec(&BTreeMap::from([("x".to_string(), 1u8)])).unwrap();
        assert!(block_bats(&Cid::hash(Codec::DagCbor, &plain), &plain)
            .unwrap()
            .is_empty());
        let bad = cbor::to_vec(&BTreeMap::from([("bats".to_string(), 1u8)])).unwrap();
        assert!(matches!(
            block_bats(&Cid::hash(Codec::DagCbor, &bad), &bad),
            Err(Error::MalformedBats { .. })
        ));
    }
}
