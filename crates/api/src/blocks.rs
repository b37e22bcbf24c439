//! The requests and answers of the block, pointer, PKI and space routes.

use bytes::Bytes;
use peergos_blockstore::BlockAuth;
use peergos_ipld::Cid;
use peergos_keys::PublicKeyHash;
use peergos_pointers::SignedPointer;
use serde::{Deserialize, Serialize};

/// What `GET /v1/info` answers.
///
/// CBOR: `{"version": text, "server": link, "peer": text, "pki": link,
/// "pki_peer": text, "signup": text}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// The server software's version.
    pub version: String,
    /// The server's id (the hash of its signing key).
    pub server: PublicKeyHash,
    /// The same key as a libp2p peer id (`12D3KooW...`): what users homed
    /// here name in their PKI claim, and what other servers dial.
    pub peer: String,
    /// The key whose pointer is the PKI root this server serves (its own,
    /// or the PKI node's that it mirrors).
    pub pki: PublicKeyHash,
    /// The PKI node's peer id.
    pub pki_peer: String,
    /// `"open"` or `"token"`.
    pub signup: String,
}

/// `POST /v1/blocks/get`: answers the raw block bytes (404 if absent).
///
/// CBOR: `{"c": link, "a": BlockAuth | null, "o": link | null}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GetRequest {
    /// The block.
    #[serde(rename = "c")]
    pub cid: Cid,
    /// The access proof, for blocks that list tokens.
    #[serde(rename = "a")]
    pub auth: Option<BlockAuth>,
    /// Whose space the block is in, if the client knows: a server that
    /// does not hold the block fetches it from the owner's home server.
    #[serde(rename = "o")]
    pub owner: Option<PublicKeyHash>,
}

/// `POST /v1/blocks/get-many`: answers `[bytes | null]` in order.
pub type GetManyRequest = Vec<GetRequest>;

/// The most blocks one `POST /v1/blocks/get-many` may ask for.
pub const MAX_GET_MANY: usize = 1024;

/// `POST /v1/champ/lookup`: answers the blocks on the path from `root` to
/// `key` (a proof the client checks with `peergos_champ::verify_proof`).
///
/// CBOR: `{"r": link, "k": bytes(32)}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChampLookup {
    /// The CHAMP root.
    #[serde(rename = "r")]
    pub root: Cid,
    /// The key.
    #[serde(rename = "k", with = "serde_bytes")]
    pub key: [u8; 32],
}

/// `POST /v1/tx/start` and `/v1/tx/close`.
///
/// CBOR: `{"o": link, "t": bytes(16) | null}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TxRequest {
    /// The owner.
    #[serde(rename = "o")]
    pub owner: PublicKeyHash,
    /// The transaction (close only).
    #[serde(rename = "t", with = "serde_bytes")]
    pub transaction: Option<[u8; 16]>,
}

/// `GET /v1/pki/{name}`: the PKI pointer, the CHAMP path to the name and
/// its chain block, all checked by the client.
///
/// CBOR: `{"p": SignedPointer | null, "proof": [bytes], "chain": bytes | null}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PkiAnswer {
    /// The PKI root pointer, signed by the PKI key.
    #[serde(rename = "p")]
    pub pointer: Option<SignedPointer>,
    /// The CHAMP blocks from the root to the name.
    pub proof: Vec<Bytes>,
    /// The name's chain block, if the name is claimed.
    pub chain: Option<Bytes>,
}

/// `GET /v1/space/{owner}`.
///
/// CBOR: `{"used": u64, "quota": u64, "pending"?: u64}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Space {
    /// Bytes in use.
    pub used: u64,
    /// The limit.
    pub quota: u64,
    /// Bytes of uploads in progress (open transactions put to within the
    /// upload lease), which count against the quota too; left out when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pending: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
