//! Servers talking to each other over libp2p.
//!
//! Three things run over the node's streams:
//! - **The HTTP tunnel** ([`HTTP_PROTOCOL`]): one API request per stream,
//!   answered by the receiving server's own router. A server forwards a
//!   client's request for a user homed elsewhere this way, so any server
//!   can stand in for any user's home.
//! - **Block exchange** ([`BLOCKS_PROTOCOL`]): a batch of (CID, access
//!   proof) pairs, answered block by block with the bytes, "not here", or
//!   a refusal. The asking server checks each hash, keeps the block in
//!   its cache, and serves it on only under the same access rules (the
//!   tokens are inside the block).
//! - **The PKI mirror**: a server that is not the PKI node follows the
//!   PKI node's pointer, copies every new block of the PKI tree, and
//!   accepts a new root only if it is an append-only extension of the
//!   last one it accepted. It then answers username lookups itself.
//!
//! Which server is a user's home comes from the PKI: the first server of
//! the user's current claim, as a peer id.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use peergos_blockstore::{BlockAuth, BlockStore, FileStore};
use peergos_champ::Value;
use peergos_ipld::{cbor, Block, Cid, Codec};
use peergos_keys::PublicKeyHash;
use peergos_p2p::{frame, Node, PeerId, StreamProtocol};
use peergos_pki::{KeyChain, Pki};
use peergos_pointers::SignedPointer;
use serde::{Deserialize, Serialize};

use crate::{now_ms, AccountStore, Error, Result, Server};
use peergos_api::endpoint::GET_POINTER;
use peergos_api::{ErrorBody, MAX_BODY};

/// API requests tunnelled to another server.
pub const HTTP_PROTOCOL: StreamProtocol = StreamProtocol::new("/peergos/http/1");
/// Block exchange between servers.
pub const BLOCKS_PROTOCOL: StreamProtocol = StreamProtocol::new("/peergos/blocks/2");
/// Blocks asked for in one exchange request.
pub const MAX_EXCHANGE: usize = 128;
/// The bytes of blocks one exchange answer carries at most; the rest of
/// the batch is left out, and the asker asks again.
pub const EXCHANGE_BUDGET: usize = 32 << 20;

/// The bytes of blocks one `get-many` answer holds from this server's
/// store and cache at most (past the first block): a longer request gets
/// a shorter answer, and the client asks again for the rest.
pub const GET_MANY_BUDGET: usize = 16 << 20;
/// How often a mirror asks the PKI node for its pointer.
pub const PKI_SYNC: Duration = Duration::from_secs(5);
/// A lookup of a name the mirror does not know asks the PKI node at most
/// this often.
const SYNC_ON_MISS: Duration = Duration::from_secs(1);

/// One API request through the tunnel.
///
/// CBOR: `{"m": text, "p": text, "t": text | null, "b": bytes}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TunnelRequest {
    /// The HTTP method.
    #[serde(rename = "m")]
    pub method: String,
    /// The path and query (`/v1/...`).
    #[serde(rename = "p")]
    pub path: String,
    /// The content type of the body.
    #[serde(rename = "t")]
    pub content_type: Option<String>,
    /// The body.
    #[serde(rename = "b", with = "serde_bytes")]
    pub body: Vec<u8>,
}

/// The answer to a [`TunnelRequest`].
///
/// CBOR: `{"s": uint, "t": text | null, "b": bytes}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TunnelResponse {
    /// The HTTP status.
    #[serde(rename = "s")]
    pub status: u16,
    /// The content type of the body.
    #[serde(rename = "t")]
    pub content_type: Option<String>,
    /// The body.
    #[serde(rename = "b", with = "serde_bytes")]
    pub body: Vec<u8>,
}

/// One block asked for in an exchange request (a request is a list of
/// these).
///
/// CBOR: `{"c": link, "a": BlockAuth | null}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Want {
    /// The block.
    #[serde(rename = "c")]
    pub cid: Cid,
    /// The access proof the client gave, passed on.
    #[serde(rename = "a")]
    pub auth: Option<BlockAuth>,
}

/// The answer for one [`Want`] (an answer is a list of these, in order,
/// possibly shorter than the request): the block, a refusal, or (both
/// None) not stored there. On the wire see [`encode_answer`].
#[derive(Clone, Debug, PartialEq)]
pub struct Have {
    /// The block's bytes.
    pub block: Option<Bytes>,
    /// Why it was refused.
    pub refused: Option<ErrorBody>,
}

/// What an exchange answer's header says about one [`Have`].
///
/// CBOR: `{"n": u64 | null, "e": ErrorBody | null}`: `n` is the length of
/// the block's bytes, which follow the header.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HaveHeader {
    /// The block's length in bytes, if the block is in the answer.
    #[serde(rename = "n")]
    pub len: Option<u64>,
    /// Why it was refused.
    #[serde(rename = "e")]
    pub refused: Option<ErrorBody>,
}

/// The largest CBOR header of an exchange answer.
pub const MAX_ANSWER_HEADER: usize = 1 << 20;

/// The header of an exchange answer: `u32 BE header length ‖ CBOR
/// [HaveHeader]`. The blocks' bytes follow it, in order, and are not
/// CBOR, so megabytes of ciphertext cross without being re-encoded or
/// copied: the answering server writes them straight from its store, the
/// asker slices them out of the frame.
pub fn answer_header(haves: &[Have]) -> Vec<u8> {
    let headers: Vec<HaveHeader> = haves
        .iter()
        .map(|h| HaveHeader {
            len: h.block.as_ref().map(|b| b.len() as u64),
            refused: h.refused.clone(),
        })
        .collect();
    // Plain fields and error bodies always encode.
    peergos_api::framing::prefixed(&cbor::to_vec(&headers).unwrap_or_default(), 0)
}

/// A whole exchange answer in one buffer ([`answer_header`], then the
/// blocks).
pub fn encode_answer(haves: &[Have]) -> Vec<u8> {
    let mut out = answer_header(haves);
    for block in haves.iter().filter_map(|h| h.block.as_ref()) {
        out.extend_from_slice(block);
    }
    out
}

/// Parses an exchange answer ([`encode_answer`]) without copying the
/// blocks: the header must be canonical CBOR, a block and a refusal
/// exclude each other, and the lengths must add up to exactly the rest
/// of the frame.
pub fn decode_answer(frame: &Bytes) -> std::result::Result<Vec<Have>, String> {
    let (header, mut bytes) =
        peergos_api::framing::Blocks::open(frame, MAX_ANSWER_HEADER, "exchange answer")?;
    let headers: Vec<HaveHeader> = decode_frame(header, MAX_ANSWER_HEADER)
        .map_err(|e| format!("exchange answer header: {e}"))?;
    if headers.len() > MAX_EXCHANGE {
        return Err(format!(
            "an exchange answer of {} blocks (at most {MAX_EXCHANGE})",
            headers.len()
        ));
    }
    let mut haves = Vec::with_capacity(headers.len());
    for h in headers {
        let block = match (h.len, &h.refused) {
            (Some(_), Some(_)) => {
                return Err("an exchange answer both sends and refuses a block".into())
            }
            (Some(len), None) => Some(bytes.take(len)?),
            (None, _) => None,
        };
        haves.push(Have {
            block,
            refused: h.refused,
        });
    }
    bytes.finish()?;
    Ok(haves)
}

/// The peer a tunnelled request came from, as a request extension: such
/// requests are answered here, never forwarded again.
#[derive(Clone, Copy, Debug)]
pub struct RemotePeer(pub PeerId);

/// The peer id a home-server entry of a PKI claim names: a peer id, or a
/// key hash (both carry the server's Ed25519 key).
pub fn parse_home(text: &str) -> Option<PeerId> {
    if let Ok(peer) = text.parse::<PeerId>() {
        return Some(peer);
    }
    let hash: PublicKeyHash = text.parse().ok()?;
    peer_of_key(&hash).ok()
}

/// The peer id of the server whose signing key `hash` names.
pub fn peer_of_key(hash: &PublicKeyHash) -> Result<PeerId> {
    let encoded = hash.key()?.to_bytes();
    let mut raw = [0u8; 32];
    raw.copy_from_slice(&encoded[1..]);
    peergos_p2p::peer_id_of(&raw).map_err(|e| Error::Internal(e.to_string()))
}

/// The key hash of the server with peer id `peer`.
pub fn key_of_peer(peer: &PeerId) -> Result<PublicKeyHash> {
    let bytes = peergos_p2p::ed25519_of(peer)
        .ok_or_else(|| Error::BadRequest(format!("{peer} is not an Ed25519 peer id")))?;
    let key = peergos_keys::PublicSigningKey::from_bytes(&[&[1u8][..], &bytes[..]].concat())?;
    Ok(PublicKeyHash::of(&key))
}

/// Where the mirror stands, for `/metrics` and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MirrorStatus {
    /// The PKI root accepted last.
    pub root: Option<Cid>,
    /// Its sequence number.
    pub sequence: u64,
    /// Why the last new root was refused, if it was.
    pub rejected: Option<String>,
    /// New roots accepted since start.
    pub accepted: u64,
}

/// A copy of the PKI node's PKI.
pub(crate) struct Mirror {
    store: Arc<FileStore>,
    pub(crate) pki: Pki<FileStore>,
    current: RwLock<Option<SignedPointer>>,
    status: Mutex<MirrorStatus>,
    sync_lock: tokio::sync::Mutex<()>,
    last_sync: Mutex<Option<Instant>>,
}

impl Mirror {
    /// Opens the mirror's block store in `dir`, with the accepted pointer
    /// from the account store. (Before accounts kept it, it was the file
    /// `pointer.cbor` in `dir`: one found there is moved in.)
    pub(crate) async fn open(dir: PathBuf, accounts: &dyn AccountStore) -> Result<Mirror> {
        let store = Arc::new(FileStore::open(&dir)?);
        let mut stored = accounts.mirror_pointer().await?;
        let legacy = dir.join("pointer.cbor");
        if stored.is_none() {
            match std::fs::read(&legacy) {
                Ok(bytes) => {
                    accounts.set_mirror_pointer(&bytes).await?;
                    stored = Some(bytes);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(crate::io_err("read", &legacy)(e)),
            }
        }
        if stored.is_some() && legacy.exists() {
            std::fs::remove_file(&legacy).map_err(crate::io_err("remove", &legacy))?;
        }
        let current = stored
            .map(|bytes| cbor::from_slice::<SignedPointer>(&bytes))
            .transpose()?;
        let status = MirrorStatus {
            root: current.as_ref().and_then(|p| p.update.current),
            sequence: current.as_ref().map_or(0, |p| p.update.sequence),
            ..MirrorStatus::default()
        };
        Ok(Mirror {
            pki: Pki::new(Arc::clone(&store)),
            store,
            current: RwLock::new(current),
            status: Mutex::new(status),
            sync_lock: tokio::sync::Mutex::new(()),
            last_sync: Mutex::new(None),
        })
    }

    pub(crate) fn store(&self) -> &Arc<FileStore> {
        &self.store
    }

    pub(crate) fn pointer(&self) -> Option<SignedPointer> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn status(&self) -> MirrorStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Decodes a frame of at most `max_size` bytes (frames carry whole
/// blocks, so the per-block default limit does not apply).
fn decode_frame<T: serde::de::DeserializeOwned + Serialize>(
    bytes: &[u8],
    max_size: usize,
) -> std::result::Result<T, peergos_ipld::Error> {
    cbor::from_slice_extensible(
        bytes,
        cbor::Limits {
            max_size,
            max_depth: 16,
        },
    )
}

/// The largest tunnel frame: a request or answer body plus its envelope.
const TUNNEL_FRAME: usize = MAX_BODY + (1 << 20);
/// The largest exchange answer.
const EXCHANGE_FRAME: usize = EXCHANGE_BUDGET + MAX_BODY;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Server {
    /// The p2p node, if this server runs one.
    pub fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }

    /// The server's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The PKI node's peer id (this server's own when it is the PKI node).
    pub fn pki_peer(&self) -> PeerId {
        self.pki_peer
    }

    /// The blocks this server keeps for users of other servers (fetched
    /// from their homes by block exchange).
    pub fn cache(&self) -> &FileStore {
        &self.cache
    }

    /// Where this server's PKI mirror stands (None: it is the PKI node).
    pub fn mirror_status(&self) -> Option<MirrorStatus> {
        self.mirror.as_ref().map(Mirror::status)
    }

    fn require_node(&self) -> Result<&Node> {
        self.node.as_ref().ok_or_else(|| {
            Error::Peer("this server runs no p2p node, so it cannot reach other servers".into())
        })
    }

    /// Whether a key-hash or peer-id string in a PKI claim names this
    /// server.
    pub(crate) fn is_me(&self, text: &str) -> bool {
        text == self.id.to_string() || parse_home(text) == Some(self.peer_id)
    }

    /// Sends one API request to `peer` through the tunnel.
    pub async fn forward(&self, peer: PeerId, request: &TunnelRequest) -> Result<TunnelResponse> {
        let node = self.require_node()?;
        let unreachable = |e: peergos_p2p::Error| {
            Error::Peer(format!("cannot reach the server {peer} over p2p: {e}"))
        };
        let answer = node
            .request(peer, HTTP_PROTOCOL, &cbor::to_vec(request)?, TUNNEL_FRAME)
            .await
            .map_err(unreachable)?;
        decode_frame(&answer, TUNNEL_FRAME).map_err(|e| {
            Error::Peer(format!(
                "the server {peer} answered a malformed tunnel frame: {e}"
            ))
        })
    }

    /// Asks `peer` for blocks (in batches of at most [`MAX_EXCHANGE`]):
    /// for each, the block (hash and form checked), None if `peer` does
    /// not have it, or its refusal.
    pub async fn exchange(
        &self,
        peer: PeerId,
        wants: &[Want],
    ) -> Result<Vec<std::result::Result<Option<Block>, ErrorBody>>> {
        self.exchange_until(peer, wants, usize::MAX).await
    }

    /// [`exchange`](Self::exchange), asking no more once the blocks
    /// received add up to `budget` bytes: the answers may then cover only
    /// the first of `wants`.
    pub async fn exchange_until(
        &self,
        peer: PeerId,
        wants: &[Want],
        budget: usize,
    ) -> Result<Vec<std::result::Result<Option<Block>, ErrorBody>>> {
        let node = self.require_node()?;
        let unreachable = |e: peergos_p2p::Error| {
            Error::Peer(format!("cannot fetch blocks from {peer} over p2p: {e}"))
        };
        let mut out = Vec::with_capacity(wants.len());
        let mut rest = wants;
        let mut received = 0usize;
        while !rest.is_empty() && received < budget {
            let batch = &rest[..rest.len().min(MAX_EXCHANGE)];
            let answer = node
                .request(
                    peer,
                    BLOCKS_PROTOCOL,
                    &cbor::to_vec(&batch)?,
                    EXCHANGE_FRAME,
                )
                .await
                .map_err(unreachable)?;
            let haves = decode_answer(&Bytes::from(answer)).map_err(|e| {
                Error::Peer(format!("{peer} answered a malformed block exchange: {e}"))
            })?;
            if haves.is_empty() || haves.len() > batch.len() {
                return Err(Error::Peer(format!(
                    "{peer} answered {} blocks for a request of {}",
                    haves.len(),
                    batch.len()
                )));
            }
            let answered = haves.len();
            let pairs: Vec<(Cid, Have)> = batch.iter().map(|w| w.cid).zip(haves).collect();
            // Hashing megabytes is blocking work: off the async threads.
            let checked = tokio::task::spawn_blocking(move || {
                pairs
                    .into_iter()
                    .map(|(cid, have)| match have {
                        Have {
                            block: Some(bytes), ..
                        } => Block::verified(cid, bytes)
                            .map(|block| Ok(Some(block)))
                            .map_err(|_| cid),
                        Have {
                            refused: Some(refusal),
                            ..
                        } => Ok(Err(refusal)),
                        Have { .. } => Ok(Ok(None)),
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| Error::Internal(format!("checking fetched blocks: {e}")))?;
            for have in checked {
                let have = have.map_err(|cid| {
                    Error::Peer(format!("{peer} sent bytes that are not block {cid}"))
                })?;
                if let Ok(Some(block)) = &have {
                    received += block.data().len();
                }
                out.push(have);
            }
            rest = &rest[answered..];
        }
        Ok(out)
    }

    /// Answers one exchange request: each block from the store or the
    /// cache, under its access check, until the answer is full.
    async fn answer_exchange(&self, wants: Vec<Want>) -> Vec<Have> {
        let mut haves = Vec::with_capacity(wants.len());
        let mut size = 0usize;
        for want in wants.into_iter().take(MAX_EXCHANGE) {
            let found = match self.blocks.get(&want.cid, want.auth.as_ref()).await {
                Ok(None) => self.cache.get(&want.cid, want.auth.as_ref()).await,
                other => other,
            };
            let have = match found {
                Ok(Some(bytes)) => {
                    if size > 0 && size + bytes.len() > EXCHANGE_BUDGET {
                        break;
                    }
                    size += bytes.len();
                    Have {
                        block: Some(bytes),
                        refused: None,
                    }
                }
                Ok(None) => Have {
                    block: None,
                    refused: None,
                },
                Err(e) => Have {
                    block: None,
                    refused: Some(Error::from(e).body()),
                },
            };
            haves.push(have);
        }
        haves
    }

    /// A block for a client: from the store, else the cache, else (when
    /// the client named the owner and the owner lives elsewhere) fetched
    /// from the owner's home and cached. Access rules are the same in all
    /// three cases: the tokens are inside the block.
    pub async fn get_routed(
        &self,
        cid: &Cid,
        auth: Option<&BlockAuth>,
        owner: Option<&PublicKeyHash>,
    ) -> Result<Option<Bytes>> {
        if let Some(bytes) = self.blocks.get(cid, auth).await? {
            return Ok(Some(bytes));
        }
        if let Some(bytes) = self.cache.get(cid, auth).await? {
            return Ok(Some(bytes));
        }
        match owner {
            // Boxed: the remote path is rare, and its future is large.
            Some(owner) => Box::pin(self.fetch_for(owner, cid, auth)).await,
            None => Ok(None),
        }
    }

    /// A block of `owner`'s that this server lacks, from the owner's home
    /// (if that is another server), through the cache.
    async fn fetch_for(
        &self,
        owner: &PublicKeyHash,
        cid: &Cid,
        auth: Option<&BlockAuth>,
    ) -> Result<Option<Bytes>> {
        let Some(home) = self.home_of_owner(owner).await? else {
            return Ok(None);
        };
        let want = Want {
            cid: *cid,
            auth: auth.cloned(),
        };
        let mut answers = self.exchange(home, std::slice::from_ref(&want)).await?;
        match answers.pop() {
            Some(Ok(Some(block))) => {
                // The same access check a store read runs.
                peergos_blockstore::check_access(cid, block.data(), auth)?;
                let bytes = block.data().clone();
                self.keep_in_cache(vec![block]);
                Ok(Some(bytes))
            }
            Some(Ok(None)) | None => Ok(None),
            Some(Err(body)) => Err(Error::Remote { status: 403, body }),
        }
    }

    /// The blocks of the first of `requests`, each as
    /// [`get_routed`](Self::get_routed) would answer, with the misses of
    /// each remote owner fetched in one exchange. The answer stops before
    /// the block that would take the bytes held here past
    /// [`GET_MANY_BUDGET`] (it always holds at least one answer), so it
    /// may be shorter than the request: the caller asks again for the
    /// rest.
    pub async fn get_many_routed(
        &self,
        requests: &[(Cid, Option<BlockAuth>, Option<PublicKeyHash>)],
    ) -> Result<Vec<Option<Bytes>>> {
        let mut found: Vec<Option<Bytes>> = Vec::with_capacity(requests.len());
        let mut size = 0usize;
        // Read from the store a few dozen at a time (one blocking task
        // each for the file store), so a long request of large blocks
        // holds little more than the budget.
        'answer: for part in requests.chunks(32) {
            let plain: Vec<(Cid, Option<BlockAuth>)> =
                part.iter().map(|(c, a, _)| (*c, a.clone())).collect();
            let mut stored = self.blocks.get_many(&plain).await?;
            if stored.len() != part.len() {
                return Err(Error::Internal(format!(
                    "the block store answered {} of {} reads",
                    stored.len(),
                    part.len()
                )));
            }
            // What the store lacks, from the cache in one batch too.
            let absent: Vec<usize> = (0..stored.len()).filter(|&i| stored[i].is_none()).collect();
            if !absent.is_empty() {
                let wanted: Vec<_> = absent.iter().map(|&i| plain[i].clone()).collect();
                for (i, bytes) in absent.into_iter().zip(self.cache.get_many(&wanted).await?) {
                    stored[i] = bytes;
                }
            }
            for bytes in stored {
                if let Some(bytes) = &bytes {
                    if size > 0 && size + bytes.len() > GET_MANY_BUDGET {
                        break 'answer;
                    }
                    size += bytes.len();
                }
                found.push(bytes);
            }
        }
        let requests = &requests[..found.len()];
        // Where the answer ends: before the first miss a home server left
        // for another exchange.
        let mut cut = found.len();
        let mut misses: HashMap<PeerId, Vec<usize>> = HashMap::new();
        for (i, (_, _, owner)) in requests.iter().enumerate() {
            if found[i].is_some() {
                continue;
            }
            if let Some(owner) = owner {
                if let Some(home) = self.home_of_owner(owner).await? {
                    misses.entry(home).or_default().push(i);
                }
            }
        }
        for (home, indices) in misses {
            let wants: Vec<Want> = indices
                .iter()
                .map(|&i| Want {
                    cid: requests[i].0,
                    auth: requests[i].1.clone(),
                })
                .collect();
            let answers = self.exchange_until(home, &wants, GET_MANY_BUDGET).await?;
            if let Some(&first_unanswered) = indices.get(answers.len()) {
                cut = cut.min(first_unanswered);
            }
            let mut fetched = Vec::new();
            for (&i, answer) in indices.iter().zip(answers) {
                match answer {
                    Ok(Some(block)) => {
                        let (cid, auth, _) = &requests[i];
                        peergos_blockstore::check_access(cid, block.data(), auth.as_ref())?;
                        found[i] = Some(block.data().clone());
                        fetched.push(block);
                    }
                    Ok(None) => {}
                    Err(body) => return Err(Error::Remote { status: 403, body }),
                }
            }
            self.keep_in_cache(fetched);
        }
        found.truncate(cut);
        Ok(found)
    }

    /// Writes fetched blocks to the cache in the background: the answer
    /// does not wait for the disk, and a failed write only costs a later
    /// fetch.
    fn keep_in_cache(&self, blocks: Vec<Block>) {
        if blocks.is_empty() {
            return;
        }
        let cache = self.cache.clone();
        tokio::spawn(async move {
            if let Err(e) = cache.put_verified(blocks).await {
                tracing::warn!(error = %e, "caching fetched blocks failed");
            }
        });
    }

    // ---- homes ----

    /// The home server of the user whose identity is `owner`, if it is
    /// another server (None: here, or unknown).
    pub async fn home_of_owner(&self, owner: &PublicKeyHash) -> Result<Option<PeerId>> {
        if owner == &self.id || self.accounts.space(owner).await?.is_some() {
            return Ok(None);
        }
        if owner == &self.pki_key {
            return Ok(Some(self.pki_peer).filter(|p| *p != self.peer_id));
        }
        let known = self
            .owners
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(owner)
            .copied();
        let home = match known {
            Some(home) => Some(home),
            None if self.mirror.is_some() => {
                self.sync_on_miss().await;
                self.owners
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(owner)
                    .copied()
            }
            None => None,
        };
        Ok(home.filter(|p| *p != self.peer_id))
    }

    /// The home server of `username`, if it is another server (None: the
    /// user is here, or unknown).
    pub async fn home_of_name(&self, username: &str) -> Result<Option<PeerId>> {
        if peergos_pki::check_username(username).is_err()
            || self.accounts.user(username).await?.is_some()
        {
            return Ok(None);
        }
        let mut chain = self.pki_chain(username).await?;
        if chain.is_none() && self.mirror.is_some() {
            self.sync_on_miss().await;
            chain = self.pki_chain(username).await?;
        }
        let Some(chain) = chain else { return Ok(None) };
        let home = chain.current().servers.first().and_then(|s| parse_home(s));
        Ok(home.filter(|p| *p != self.peer_id))
    }

    pub(crate) async fn pki_chain(&self, username: &str) -> Result<Option<KeyChain>> {
        let chain = match &self.mirror {
            Some(mirror) => match mirror.pointer().and_then(|p| p.update.current) {
                Some(root) => mirror.pki.lookup(&root, username).await?,
                None => None,
            },
            None => {
                let (root, _) = self.pki_root().await?;
                self.pki.lookup(&root, username).await?
            }
        };
        Ok(chain)
    }

    /// Remembers the homes of the identities in `chains`.
    fn index(&self, chains: &[KeyChain]) {
        let mut owners = self.owners.write().unwrap_or_else(|p| p.into_inner());
        for chain in chains {
            let claim = chain.current();
            if let Some(home) = claim.servers.first().and_then(|s| parse_home(s)) {
                owners.insert(claim.identity, home);
            }
        }
    }

    /// Indexes every name of the PKI at `root` (at start, and on a
    /// mirror's first root).
    pub(crate) async fn index_all<S: BlockStore + ?Sized>(
        &self,
        pki: &Pki<S>,
        root: &Cid,
    ) -> Result<()> {
        let mut chains = Vec::new();
        for (_, value) in pki.champ().entries(root).await? {
            if let Value::Link(cid) = value {
                if let Some(bytes) = pki.champ().store().get_trusted(&cid).await? {
                    chains.push(KeyChain::from_bytes(&bytes)?);
                }
            }
        }
        self.index(&chains);
        Ok(())
    }

    pub(crate) fn index_chain(&self, chain: &KeyChain) {
        self.index(std::slice::from_ref(chain));
    }

    // ---- the PKI mirror ----

    /// Asks the PKI node for news after a lookup missed: at once if the
    /// last sync is [`SYNC_ON_MISS`] old, else once that much time has
    /// passed (so a name claimed a moment ago is found, and misses cannot
    /// make the mirror hammer the PKI node).
    async fn sync_on_miss(&self) {
        let Some(mirror) = &self.mirror else { return };
        let last = *lock(&mirror.last_sync);
        if let Some(wait) = last.and_then(|t| SYNC_ON_MISS.checked_sub(t.elapsed())) {
            tokio::time::sleep(wait).await;
        }
        if *lock(&mirror.last_sync) != last {
            // Another lookup synced meanwhile.
            return;
        }
        if let Err(e) = self.sync_pki().await {
            tracing::warn!(error = %e, "PKI mirror sync failed");
        }
    }

    /// Brings the mirror up to the PKI node's current root, if that root
    /// is an append-only extension of the one accepted last. Returns
    /// whether the root moved. A root that rewrites history is refused
    /// (and reported by [`mirror_status`](Self::mirror_status)); the
    /// mirror keeps serving the old one.
    pub async fn sync_pki(&self) -> Result<bool> {
        let Some(mirror) = &self.mirror else {
            return Ok(false);
        };
        let _guard = mirror.sync_lock.lock().await;
        *lock(&mirror.last_sync) = Some(Instant::now());
        let pki = self.pki_key.to_string();
        let answer = self
            .forward(
                self.pki_peer,
                &TunnelRequest {
                    method: GET_POINTER.method.as_str().into(),
                    path: GET_POINTER.path_with(&[&pki, &pki]),
                    content_type: None,
                    body: Vec::new(),
                },
            )
            .await?;
        if answer.status == 404 {
            return Ok(false);
        }
        if answer.status != 200 {
            return Err(Error::Peer(format!(
                "the PKI node answered its pointer with status {}",
                answer.status
            )));
        }
        let signed: Option<SignedPointer> = cbor::from_slice(&answer.body)?;
        let Some(signed) = signed else {
            return Ok(false);
        };
        signed.verify(&self.pki_key, &self.pki_key)?;
        let current = mirror.pointer();
        if let Some(current) = &current {
            if signed.update.sequence <= current.update.sequence {
                if signed.update.sequence == current.update.sequence
                    && signed.update.current != current.update.current
                {
                    return Err(self.reject(
                        mirror,
                        format!(
                            "the PKI node signed two different roots with sequence {}",
                            signed.update.sequence
                        ),
                    ));
                }
                return Ok(false);
            }
        }
        let root = signed
            .update
            .current
            .ok_or_else(|| self.reject(mirror, "the PKI node emptied its PKI".into()))?;
        self.copy_dag(self.pki_peer, mirror.store(), &root).await?;
        let now = now_ms() / 1000;
        match current.as_ref().and_then(|c| c.update.current) {
            Some(old) => match mirror.pki.check_update(&old, &root, now).await {
                Ok(updates) => {
                    let mut chains = Vec::new();
                    for update in updates {
                        let (peergos_pki::Update::New(name)
                        | peergos_pki::Update::Extended(name)
                        | peergos_pki::Update::Reclaimed(name)) = update;
                        if let Some(chain) = mirror.pki.lookup(&root, &name).await? {
                            chains.push(chain);
                        }
                    }
                    self.index(&chains);
                }
                Err(e) => {
                    return Err(self.reject(
                        mirror,
                        format!("the PKI node's new root {root} is not an append-only extension of {old}: {e}"),
                    ))
                }
            },
            None => {
                // The first root is taken on trust (as a certificate
                // transparency client takes its first tree head), after
                // checking every chain in it.
                for (_, value) in mirror.pki.champ().entries(&root).await? {
                    if let Value::Link(cid) = value {
                        let bytes = mirror.store.get_trusted(&cid).await?.ok_or_else(|| {
                            Error::Peer(format!("the PKI lacks the chain block {cid}"))
                        })?;
                        KeyChain::from_bytes(&bytes)?.verify()?;
                    }
                }
                self.index_all(&mirror.pki, &root).await?;
            }
        }
        self.accounts
            .set_mirror_pointer(&cbor::to_vec(&signed)?)
            .await?;
        let sequence = signed.update.sequence;
        *mirror.current.write().unwrap_or_else(|p| p.into_inner()) = Some(signed);
        let mut status = lock(&mirror.status);
        status.root = Some(root);
        status.sequence = sequence;
        status.accepted += 1;
        status.rejected = None;
        tracing::debug!(%root, sequence, "PKI mirror advanced");
        Ok(true)
    }

    fn reject(&self, mirror: &Mirror, reason: String) -> Error {
        tracing::error!(%reason, "refusing the PKI node's new root");
        lock(&mirror.status).rejected = Some(reason.clone());
        Error::Peer(format!("refusing the PKI node's new root: {reason}"))
    }

    /// Copies every block reachable from `root` that `store` lacks from
    /// `peer`, checking each hash.
    async fn copy_dag(&self, peer: PeerId, store: &FileStore, root: &Cid) -> Result<usize> {
        let mut queue = VecDeque::from([*root]);
        let mut seen = HashSet::new();
        let mut copied = 0;
        while !queue.is_empty() {
            let mut wants = Vec::new();
            while let Some(cid) = queue.pop_front() {
                if cid.is_identity() || !seen.insert(cid) || store.has(&cid).await? {
                    continue;
                }
                wants.push(Want { cid, auth: None });
                if wants.len() == MAX_EXCHANGE {
                    break;
                }
            }
            if wants.is_empty() {
                continue;
            }
            let answers = self.exchange(peer, &wants).await?;
            let mut blocks = Vec::with_capacity(wants.len());
            for (want, answer) in wants.iter().zip(answers) {
                let block = match answer {
                    Ok(Some(block)) => block,
                    Ok(None) => {
                        return Err(Error::Peer(format!(
                            "{peer} does not have block {} of the tree it points to",
                            want.cid
                        )))
                    }
                    Err(body) => return Err(Error::Remote { status: 403, body }),
                };
                if block.cid().codec() == Some(Codec::DagCbor) {
                    let value = cbor::decode_value(block.data())?;
                    let mut links = Vec::new();
                    cbor::links(&value, &mut links)?;
                    queue.extend(links);
                }
                blocks.push(block);
            }
            copied += blocks.len();
            store.put_verified(blocks).await?;
        }
        Ok(copied)
    }
}

/// Serves the tunnel and block exchange on `server`'s node, and follows
/// the PKI node if this server mirrors it. The tasks hold the server
/// weakly and stop when it is dropped.
pub(crate) fn spawn(server: &Arc<Server>) -> Result<()> {
    let Some(node) = server.node() else {
        return Ok(());
    };
    let accept = |protocol| {
        node.accept(protocol)
            .map_err(|e| Error::Internal(e.to_string()))
    };
    let mut tunnel = accept(HTTP_PROTOCOL)?;
    let mut blocks = accept(BLOCKS_PROTOCOL)?;
    let weak = Arc::downgrade(server);
    tokio::spawn(async move {
        while let Some((peer, stream)) = tunnel.next().await {
            let Some(server) = weak.upgrade() else { return };
            tokio::spawn(async move {
                if let Err(e) = serve_tunnel(server, peer, stream).await {
                    tracing::debug!(%peer, error = %e, "tunnel request failed");
                }
            });
        }
    });
    let weak = Arc::downgrade(server);
    tokio::spawn(async move {
        while let Some((peer, mut stream)) = blocks.next().await {
            let Some(server) = weak.upgrade() else { return };
            tokio::spawn(async move {
                let outcome = async {
                    frame::accept(&mut stream).await?;
                    let request = frame::read(&mut stream, 1 << 20).await?;
                    let wants: Vec<Want> = match cbor::from_slice_extensible(
                        &request,
                        cbor::Limits::BLOCK,
                    ) {
                        Ok(wants) => wants,
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "malformed block exchange request");
                            return Ok(());
                        }
                    };
                    let haves = server.answer_exchange(wants).await;
                    let header = answer_header(&haves);
                    let mut parts: Vec<&[u8]> = vec![&header];
                    parts.extend(haves.iter().filter_map(|h| h.block.as_deref()));
                    frame::write_last_parts(&mut stream, &parts).await
                }
                .await;
                if let Err(e) = outcome {
                    tracing::debug!(%peer, error = %e, "block exchange failed");
                }
            });
        }
    });
    if server.mirror.is_some() {
        let weak: Weak<Server> = Arc::downgrade(server);
        tokio::spawn(async move {
            let mut timer = tokio::time::interval(PKI_SYNC);
            loop {
                timer.tick().await;
                let Some(server) = weak.upgrade() else { return };
                if let Err(e) = server.sync_pki().await {
                    tracing::warn!(error = %e, "PKI mirror sync failed");
                }
            }
        });
    }
    Ok(())
}

async fn serve_tunnel(
    server: Arc<Server>,
    peer: PeerId,
    mut stream: peergos_p2p::Stream,
) -> std::result::Result<(), peergos_p2p::Error> {
    use tower::ServiceExt;
    frame::accept(&mut stream).await?;
    let bytes = frame::read(&mut stream, TUNNEL_FRAME).await?;
    let response = match decode_frame::<TunnelRequest>(&bytes, TUNNEL_FRAME) {
        Ok(request) => answer_tunnel(server, peer, request).await,
        Err(e) => TunnelResponse {
            status: 400,
            content_type: None,
            body: format!("malformed tunnel request: {e}").into_bytes(),
        },
    };
    return match cbor::to_vec(&response) {
        Ok(bytes) => frame::write_last(&mut stream, &bytes).await,
        Err(_) => Ok(()),
    };

    async fn answer_tunnel(
        server: Arc<Server>,
        peer: PeerId,
        request: TunnelRequest,
    ) -> TunnelResponse {
        let fail = |status: u16, message: String| TunnelResponse {
            status,
            content_type: None,
            body: message.into_bytes(),
        };
        let mut builder = axum::http::Request::builder()
            .method(request.method.as_str())
            .uri(request.path.as_str())
            .extension(RemotePeer(peer));
        if let Some(kind) = &request.content_type {
            builder = builder.header(axum::http::header::CONTENT_TYPE, kind.as_str());
        }
        builder = builder.header(axum::http::header::CONTENT_LENGTH, request.body.len());
        let http = match builder.body(axum::body::Body::from(request.body)) {
            Ok(http) => http,
            Err(e) => return fail(400, format!("malformed tunnel request: {e}")),
        };
        let response = match crate::http::router(server).oneshot(http).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        match axum::body::to_bytes(response.into_body(), TUNNEL_FRAME).await {
            Ok(body) => TunnelResponse {
                status,
                content_type,
                body: body.to_vec(),
            },
            Err(e) => fail(500, format!("reading the answer: {e}")),
        }
    }
}
