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

mod exchange;
mod homes;
mod mirror;

pub use self::exchange::{
    answer_header, decode_answer, encode_answer, Have, HaveHeader, Want, MAX_ANSWER_HEADER,
};
pub(crate) use self::mirror::Mirror;
pub use self::mirror::MirrorStatus;
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
    peergos_p2p::peer_id_of(&raw).map_err(|source| Error::P2p {
        context: "a server key as a peer id",
        source,
    })
}

/// The key hash of the server with peer id `peer`.
pub fn key_of_peer(peer: &PeerId) -> Result<PublicKeyHash> {
    let bytes = peergos_p2p::ed25519_of(peer)
        .ok_or_else(|| Error::BadRequest(format!("{peer} is not an Ed25519 peer id")))?;
    let key = peergos_keys::PublicSigningKey::from_bytes(&[&[1u8][..], &bytes[..]].concat())?;
    Ok(PublicKeyHash::of(&key))
}

/// Decodes a frame of at most `max_size` bytes (frames carry whole
/// blocks, so the per-block default limit does not apply).
pub(crate) fn decode_frame<T: serde::de::DeserializeOwned + Serialize>(
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
pub(crate) const TUNNEL_FRAME: usize = MAX_BODY + (1 << 20);
/// The largest exchange answer.
const EXCHANGE_FRAME: usize = EXCHANGE_BUDGET + MAX_BODY;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Server {
    /// The p2p node, if this server runs one.
    pub fn node(&self) -> Option<&Node> {
        self.net.node.as_ref()
    }

    /// The server's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.net.peer_id
    }

    /// The PKI node's peer id (this server's own when it is the PKI node).
    pub fn pki_peer(&self) -> PeerId {
        self.pki.peer
    }

    /// The blocks this server keeps for users of other servers (fetched
    /// from their homes by block exchange).
    pub fn cache(&self) -> &FileStore {
        &self.net.cache
    }

    /// Where this server's PKI mirror stands (None: it is the PKI node).
    pub fn mirror_status(&self) -> Option<MirrorStatus> {
        self.pki.mirror.as_ref().map(Mirror::status)
    }

    fn require_node(&self) -> Result<&Node> {
        self.net.node.as_ref().ok_or_else(|| {
            Error::Peer("this server runs no p2p node, so it cannot reach other servers".into())
        })
    }

    /// Whether a key-hash or peer-id string in a PKI claim names this
    /// server.
    pub(crate) fn is_me(&self, text: &str) -> bool {
        text == self.identity.id.to_string() || parse_home(text) == Some(self.net.peer_id)
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
}

/// Serves block exchange on `server`'s node, and follows the PKI node if
/// this server mirrors it (the tunnel is served by `http::tunnel`). The
/// tasks hold the server weakly and stop when it is dropped.
pub(crate) fn spawn(server: &Arc<Server>) -> Result<()> {
    let Some(node) = server.node() else {
        return Ok(());
    };
    let accept = |protocol| {
        node.accept(protocol).map_err(|source| Error::P2p {
            context: "serving block exchange",
            source,
        })
    };
    let mut blocks = accept(BLOCKS_PROTOCOL)?;
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
    if server.pki.mirror.is_some() {
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
