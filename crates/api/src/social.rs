//! The requests and answers of the social routes: follow requests and
//! secret links.

use bytes::Bytes;
use peergos_ipld::cbor;
use peergos_keys::Domain;
use serde::{Deserialize, Serialize};

use crate::Stamp;

/// Domain of the signatures by a user's identity key that authorise
/// reading and deleting their follow requests and managing their links.
pub const OWNER_AUTH: Domain = Domain::new("peergos/owner-auth/v1");

/// `POST /v1/social/{name}/follow`: a sealed follow request for `name`.
/// Anyone may send one; the server learns only the target.
///
/// CBOR: `{"sealed": bytes}` (at most 4 KiB).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FollowPost {
    /// The sealed request.
    pub sealed: Bytes,
}

/// A request signed by the user's identity key over a fresh time: `POST
/// /v1/social/{name}/requests` (action `"requests"`) and `POST
/// /v1/links/{name}/list` (action `"links"`), both with an empty payload.
///
/// CBOR: `{"stamp": Stamp}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OwnerRequest {
    /// The identity key's signature.
    pub stamp: Stamp,
}

/// One stored follow request.
///
/// CBOR: `{"id": bytes(32), "sealed": bytes, "t": u64 ms}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingFollow {
    /// SHA-256 of the sealed bytes.
    #[serde(with = "serde_bytes")]
    pub id: [u8; 32],
    /// The sealed request.
    pub sealed: Bytes,
    /// When the server received it, in milliseconds since the Unix epoch.
    #[serde(rename = "t")]
    pub received: u64,
}

/// `POST /v1/social/{name}/requests/delete` (action `"delete-requests"`,
/// payload the CBOR of `ids`).
///
/// CBOR: `{"ids": [bytes(32)], "stamp": Stamp}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeleteRequests {
    /// The identity key's signature.
    pub stamp: Stamp,
    /// The requests to delete.
    pub ids: Vec<serde_bytes::ByteBuf>,
}

impl DeleteRequests {
    /// The payload the stamp covers.
    pub fn payload(ids: &[serde_bytes::ByteBuf]) -> Vec<u8> {
        cbor::to_vec(ids).unwrap_or_default()
    }
}

/// `POST /v1/links/{name}/create` (action `"link-create"`, payload the
/// CBOR of `record`).
///
/// CBOR: `{"record": LinkRecord, "stamp": Stamp}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreateLink {
    /// The identity key's signature.
    pub stamp: Stamp,
    /// The record to store.
    pub record: peergos_social::LinkRecord,
}

/// `POST /v1/links/{name}/revoke` (action `"link-revoke"`, payload the id).
///
/// CBOR: `{"id": text, "stamp": Stamp}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RevokeLink {
    /// The identity key's signature.
    pub stamp: Stamp,
    /// The link.
    pub id: String,
}

/// `POST /v1/links/{name}/update`: points a link at a new encrypted
/// capability (after the target's keys changed) keeping its id, token,
/// limits and count (action `"link-update"`, payload [`UpdateLink::payload`]).
///
/// CBOR: `{"blob": bytes, "id": text, "stamp": Stamp}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UpdateLink {
    /// The identity key's signature.
    pub stamp: Stamp,
    /// The link.
    pub id: String,
    /// The new encrypted capability.
    pub blob: Bytes,
}

impl UpdateLink {
    /// The payload the stamp covers: CBOR `[id, blob]`.
    pub fn payload(id: &str, blob: &[u8]) -> Vec<u8> {
        cbor::to_vec(&(id, serde_bytes::Bytes::new(blob))).unwrap_or_default()
    }
}

/// What the owner's link listing tells about one link.
///
/// CBOR: `{"exp": u64 | null, "id": text, "max": u64 | null, "revoked": bool, "uses": u64}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    /// The link id.
    pub id: String,
    /// Times opened.
    pub uses: u64,
    /// Expiry, in milliseconds since the Unix epoch.
    #[serde(rename = "exp")]
    pub expiry: Option<u64>,
    /// The use limit.
    #[serde(rename = "max")]
    pub max_uses: Option<u64>,
    /// Whether the owner revoked it.
    pub revoked: bool,
}

/// `POST /v1/links/open`: answers the encrypted capability as a CBOR byte
/// string, counting one use. No account needed.
///
/// CBOR: `{"id": text, "owner": text, "token": bytes(32)}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OpenLink {
    /// The link id.
    pub id: String,
    /// The link owner's username (the request goes to their home server).
    pub owner: String,
    /// The access token derived from the link's secret (and password).
    #[serde(with = "serde_bytes")]
    pub token: [u8; 32],
}
