//! The HTTP API's request and answer types, shared by the server and the
//! client (`peergos-core`). Every body is canonical DAG-CBOR; paths start
//! with [`PREFIX`]. `docs/PROTOCOL.md` section 13 lists the routes.

use std::collections::VecDeque;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use peergos_blockstore::{
    BlockAuth, BlockBuf, PutBlocks, SignedBlock, TransactionId, SMALL_BLOCK_MAX,
};
use peergos_ipld::{cbor, Cid, Codec, HashFn};
use peergos_keys::{Domain, LoginParams, PublicKeyHash, PublicSigningKey, Signature};
use peergos_pki::KeyChain;
use peergos_pointers::SignedPointer;
use serde::{Deserialize, Serialize};

/// The version prefix of every route.
pub const PREFIX: &str = "/v1";

/// The content type of every CBOR body.
pub const CBOR: &str = "application/cbor";

/// The largest request body the server reads (a put of up to 64 blocks of
/// at most 1 MiB each, plus framing).
pub const MAX_BODY: usize = 80 << 20;

/// How far a signed timestamp may be from the server's clock.
pub const MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;

/// Domain of the signatures that authorise login-data requests.
pub const LOGIN_AUTH: Domain = Domain::new("peergos/login-auth/v1");

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

/// The content type of a put body ([`encode_put`]).
pub const PUT_CONTENT_TYPE: &str = "application/vnd.peergos.put";

/// The largest CBOR header of a put body.
pub const MAX_PUT_HEADER: usize = 256 << 10;

/// The most blocks in one put.
pub const MAX_PUT_BLOCKS: usize = 1024;

/// What a put body says about one block.
///
/// CBOR: `{"c": u64 codec, ?"h": u64 multihash, "n": u64 length, "s":
/// bytes(64)}`; without `"h"` the block is named with sha2-256 (0x12), as
/// before BLAKE3 names (0x1e) existed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlockHeader {
    /// Codec (0x71 dag-cbor, 0x55 raw).
    #[serde(rename = "c")]
    pub codec: u64,
    /// The multihash code that names the block (0x12 sha2-256, 0x1e
    /// BLAKE3); left out for sha2-256.
    #[serde(
        rename = "h",
        default = "sha2_code",
        skip_serializing_if = "is_sha2_code"
    )]
    pub hash: u64,
    /// The block's length in bytes.
    #[serde(rename = "n")]
    pub len: u64,
    /// The writer's signature over the CID.
    #[serde(rename = "s")]
    pub signature: Signature,
}

fn sha2_code() -> u64 {
    HashFn::Sha2_256.code()
}

fn is_sha2_code(code: &u64) -> bool {
    *code == sha2_code()
}

/// The header of a put body.
///
/// CBOR: `{"o": link, "w": link, "t": bytes(16), "b": [BlockHeader]}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PutHeader {
    /// Owner.
    #[serde(rename = "o")]
    pub owner: PublicKeyHash,
    /// Writer.
    #[serde(rename = "w")]
    pub writer: PublicKeyHash,
    /// Transaction.
    #[serde(rename = "t", with = "serde_bytes")]
    pub transaction: [u8; 16],
    /// The blocks, in the order their bytes follow.
    #[serde(rename = "b")]
    pub blocks: Vec<BlockHeader>,
}

/// The body of `POST /v1/blocks/put`: `u32 BE header length ‖ CBOR
/// PutHeader ‖ every block's bytes, in order`. Block bytes are not CBOR,
/// so megabytes of ciphertext are neither re-encoded nor copied on the
/// way in; the server slices them out of the body.
pub fn encode_put(put: &PutBlocks) -> Vec<u8> {
    encode_put_parts(put).concat()
}

/// A put body ([`encode_put`]) as the buffers it is made of: the framed
/// header, then each block's bytes (shared, not copied), for a client that
/// sends them one after another.
pub fn encode_put_parts(put: &PutBlocks) -> Vec<Bytes> {
    let header = PutHeader {
        owner: put.owner,
        writer: put.writer,
        transaction: put.transaction.to_bytes(),
        blocks: put
            .blocks
            .iter()
            .map(|b| BlockHeader {
                codec: b.codec.code(),
                hash: b.hash.code(),
                len: b.data.len() as u64,
                signature: b.signature,
            })
            .collect(),
    };
    // A header of plain fields always encodes.
    let header = cbor::to_vec(&header).unwrap_or_default();
    let mut parts = Vec::with_capacity(1 + put.blocks.len());
    parts.push(Bytes::from(crate::framing::prefixed(&header, 0)));
    parts.extend(put.blocks.iter().map(|b| b.data.clone()));
    parts
}

/// Why a put body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadPut {
    /// Its blocks add up to more than [`MAX_BODY`].
    TooLarge,
    /// It is not a put body: the reason.
    Malformed(String),
}

impl std::fmt::Display for BadPut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadPut::TooLarge => write!(f, "a put body over the {} MiB limit", MAX_BODY >> 20),
            BadPut::Malformed(reason) => f.write_str(reason),
        }
    }
}

/// The start of a put body read from its frames: the header, every frame
/// read so far (whole, so the body can be passed on unchanged), and where
/// the blocks start in them.
pub struct PutHead {
    /// The parsed header.
    pub header: PutHeader,
    /// The frames read, in order.
    pub frames: Vec<Bytes>,
    /// How many bytes of `frames` the length prefix and header take.
    pub blocks_at: usize,
}

/// Reads a put body's frames until its header is complete, and parses the
/// header (which must be canonical CBOR of at most [`MAX_PUT_HEADER`]
/// bytes). Only the header is copied.
pub async fn read_put_head<S, E>(frames: &mut S) -> Result<PutHead, BadPut>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut read: Vec<Bytes> = Vec::new();
    let (mut have, mut need, mut header_len) = (0, 4, None);
    loop {
        while have < need {
            let frame = next_frame(frames).await?.ok_or_else(|| {
                BadPut::Malformed(match header_len {
                    None => "a put body starts with a 4-byte header length".into(),
                    Some(_) => "the put body is shorter than its header length".into(),
                })
            })?;
            have += frame.len();
            read.push(frame);
        }
        if header_len.is_some() {
            break;
        }
        let prefix = first_bytes(&read, 4);
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if len > MAX_PUT_HEADER {
            return Err(BadPut::Malformed(format!(
                "a put body header of {len} bytes (at most {MAX_PUT_HEADER})"
            )));
        }
        header_len = Some(len);
        need = 4 + len;
    }
    let header = cbor::from_slice_with(
        &first_bytes(&read, need)[4..],
        cbor::Limits {
            max_size: MAX_PUT_HEADER,
            max_depth: 8,
        },
    )
    .map_err(|e| BadPut::Malformed(format!("put header: {e}")))?;
    Ok(PutHead {
        header,
        frames: read,
        blocks_at: need,
    })
}

/// The next non-empty frame, None at the end of the body.
async fn next_frame<S, E>(frames: &mut S) -> Result<Option<Bytes>, BadPut>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    loop {
        match frames.next().await {
            Some(Ok(frame)) if frame.is_empty() => {}
            Some(Ok(frame)) => return Ok(Some(frame)),
            Some(Err(e)) => return Err(BadPut::Malformed(format!("reading the put body: {e}"))),
            None => return Ok(None),
        }
    }
}

/// A copy of the first `n` bytes of `frames` (which hold at least that).
fn first_bytes(frames: &[Bytes], n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    for frame in frames {
        let take = (n - out.len()).min(frame.len());
        out.extend_from_slice(&frame[..take]);
        if out.len() == n {
            break;
        }
    }
    out
}

/// Reads a put body ([`encode_put`]) as its frames arrive: its head, the
/// header's bounds ([`check_put_header`]), then its blocks
/// ([`read_put_blocks`]).
pub async fn read_put<S, E>(frames: &mut S) -> Result<PutBlocks, BadPut>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let head = read_put_head(frames).await?;
    check_put_header(&head.header)?;
    read_put_blocks(head, frames).await
}

/// Checks a put header's bounds before any block's bytes are read or
/// memory is set aside for them: at most [`MAX_PUT_BLOCKS`] blocks, each
/// at most [`peergos_ipld::MAX_BLOCK_SIZE`], at most [`MAX_BODY`] in all.
/// Returns the total the blocks declare.
pub fn check_put_header(header: &PutHeader) -> Result<u64, BadPut> {
    if header.blocks.len() > MAX_PUT_BLOCKS {
        return Err(BadPut::Malformed(format!(
            "at most {MAX_PUT_BLOCKS} blocks per put"
        )));
    }
    let mut total: u64 = 0;
    for b in &header.blocks {
        if b.len > peergos_ipld::MAX_BLOCK_SIZE as u64 {
            return Err(BadPut::Malformed(format!(
                "a block of {} bytes (at most {} per block)",
                b.len,
                peergos_ipld::MAX_BLOCK_SIZE
            )));
        }
        total = total.saturating_add(b.len);
    }
    if total > MAX_BODY as u64 {
        return Err(BadPut::TooLarge);
    }
    Ok(total)
}

/// Reads the blocks of a put body whose head ([`read_put_head`]) was read
/// and whose header was checked ([`check_put_header`]). Each block
/// larger than [`peergos_blockstore::SMALL_BLOCK_MAX`] is copied once,
/// into a pooled, aligned [`peergos_blockstore::BlockBuf`] that the file
/// store writes to the disk from where it lies; a smaller one is a slice
/// of its frame when it fits in one. The lengths the header names must add
/// up to exactly the rest of the body.
pub async fn read_put_blocks<S, E>(head: PutHead, frames: &mut S) -> Result<PutBlocks, BadPut>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let header = head.header;
    check_put_header(&header)?;
    // The bytes after the header in the frames read so far.
    let mut pending: VecDeque<Bytes> = VecDeque::new();
    let mut skip = head.blocks_at;
    for frame in head.frames {
        if skip >= frame.len() {
            skip -= frame.len();
        } else {
            pending.push_back(frame.slice(skip..));
            skip = 0;
        }
    }
    let short = || BadPut::Malformed("the put body is shorter than its blocks' lengths".into());
    let mut blocks = Vec::with_capacity(header.blocks.len());
    for b in &header.blocks {
        let codec = Codec::from_code(b.codec)
            .ok_or_else(|| BadPut::Malformed(format!("unknown codec 0x{:x}", b.codec)))?;
        let hash = HashFn::from_code(b.hash).ok_or_else(|| {
            BadPut::Malformed(format!(
                "unknown multihash 0x{:x} (expected 0x12 sha2-256 or 0x1e blake3)",
                b.hash
            ))
        })?;
        // Within MAX_BODY, checked above.
        let len = b.len as usize;
        if pending.is_empty() && len > 0 {
            pending.push_back(next_frame(frames).await?.ok_or_else(short)?);
        }
        let data = match pending.front_mut() {
            Some(front) if len <= SMALL_BLOCK_MAX && front.len() >= len => front.split_to(len),
            _ => {
                let mut buf = BlockBuf::new(len);
                let into = buf.as_mut_slice();
                let mut filled = 0;
                while filled < len {
                    let mut piece = match pending.pop_front() {
                        Some(piece) => piece,
                        None => next_frame(frames).await?.ok_or_else(short)?,
                    };
                    let take = piece.len().min(len - filled);
                    into[filled..filled + take].copy_from_slice(&piece.split_to(take));
                    filled += take;
                    if !piece.is_empty() {
                        pending.push_front(piece);
                    }
                }
                buf.freeze()
            }
        };
        if pending.front().is_some_and(Bytes::is_empty) {
            pending.pop_front();
        }
        blocks.push(SignedBlock {
            codec,
            hash,
            data,
            signature: b.signature,
        });
    }
    let mut extra: usize = pending.iter().map(Bytes::len).sum();
    while extra <= MAX_BODY {
        match next_frame(frames).await? {
            Some(frame) => extra += frame.len(),
            None => break,
        }
    }
    if extra > 0 {
        return Err(BadPut::Malformed(format!(
            "{extra} bytes after the last block of the put body"
        )));
    }
    Ok(PutBlocks {
        owner: header.owner,
        writer: header.writer,
        transaction: TransactionId::from_bytes(header.transaction),
        blocks,
    })
}

/// Parses a put body ([`encode_put`]) held whole: [`read_put`] on one
/// frame.
pub fn decode_put(body: &Bytes) -> Result<PutBlocks, String> {
    let mut frames = futures::stream::iter([Ok::<_, std::convert::Infallible>(body.clone())]);
    futures::executor::block_on(read_put(&mut frames)).map_err(|e| e.to_string())
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

/// `POST /v1/signup`.
///
/// CBOR: `{"u": text, "chain": KeyChain, "login": LoginParams, "lk":
/// bytes(33), "data": bytes, "token": text | null}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SignupRequest {
    /// The username.
    #[serde(rename = "u")]
    pub username: String,
    /// The first PKI claim, signed by the new identity key.
    pub chain: KeyChain,
    /// The scrypt parameters the login keys came from.
    pub login: LoginParams,
    /// The public login key.
    #[serde(rename = "lk")]
    pub login_key: PublicSigningKey,
    /// The encrypted static data.
    pub data: Bytes,
    /// A signup token, when the server needs one.
    pub token: Option<String>,
}

/// A signature by the login key over a fresh timestamp, the action, the
/// username and a digest of the request's payload ([`auth_message`]).
///
/// CBOR: `{"t": u64 ms, "s": bytes(64)}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stamp {
    /// Milliseconds since the Unix epoch; must be newer than the last one
    /// the server accepted for this user.
    #[serde(rename = "t")]
    pub time_ms: u64,
    /// The signature.
    #[serde(rename = "s")]
    pub signature: Signature,
}

/// The bytes a [`Stamp`] signs: CBOR `{"a": action, "p": sha256(payload),
/// "t": time, "u": username}`.
pub fn auth_message(action: &str, username: &str, time_ms: u64, payload: &[u8]) -> Vec<u8> {
    #[derive(Serialize)]
    struct Message<'a> {
        a: &'a str,
        #[serde(with = "serde_bytes")]
        p: [u8; 32],
        t: u64,
        u: &'a str,
    }
    // Encoding four plain fields cannot fail.
    cbor::to_vec(&Message {
        a: action,
        p: peergos_keys::sha256(payload),
        t: time_ms,
        u: username,
    })
    .unwrap_or_default()
}

/// `POST /v1/login/{name}`: answers the encrypted static data.
///
/// CBOR: `{"stamp": Stamp}` (action `"login"`, empty payload).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoginRequest {
    /// The login key's signature.
    pub stamp: Stamp,
}

/// `POST /v1/login/{name}/data`: replaces the static data (action
/// `"data"`, payload the new data).
///
/// CBOR: `{"stamp": Stamp, "data": bytes}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DataRequest {
    /// The login key's signature.
    pub stamp: Stamp,
    /// The new encrypted static data.
    pub data: Bytes,
}

/// `POST /v1/login/{name}/change`: a password change, signed by the old
/// login key (action `"change"`, payload CBOR of `{login, lk, data}`).
///
/// CBOR: `{"stamp": Stamp, "login": LoginParams, "lk": bytes(33), "data": bytes}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChangeRequest {
    /// The old login key's signature.
    pub stamp: Stamp,
    /// New parameters.
    pub login: LoginParams,
    /// New public login key.
    #[serde(rename = "lk")]
    pub login_key: PublicSigningKey,
    /// Static data under the new root key.
    pub data: Bytes,
}

impl ChangeRequest {
    /// The payload the stamp covers.
    pub fn payload(login: &LoginParams, login_key: &PublicSigningKey, data: &[u8]) -> Vec<u8> {
        #[derive(Serialize)]
        struct Payload<'a> {
            data: &'a serde_bytes::Bytes,
            lk: &'a PublicSigningKey,
            login: &'a LoginParams,
        }
        cbor::to_vec(&Payload {
            data: serde_bytes::Bytes::new(data),
            lk: login_key,
            login,
        })
        .unwrap_or_default()
    }
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

/// The body of every error answer.
///
/// CBOR: `{"code": text, "message": text, "actual": link | null}`;
/// `actual` is the stored value on a pointer conflict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable machine-readable code (see [`crate::Error::code`]).
    pub code: String,
    /// What was wrong, for people.
    pub message: String,
    /// The pointer's stored value, on `cas_conflict`.
    pub actual: Option<Cid>,
    /// Quota figures, on `quota_exceeded`: `[used, quota, requested]`.
    pub quota: Option<[u64; 3]>,
}

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
