//! How a client reaches a server: [`NetworkAccess`], over HTTP
//! ([`HttpNetwork`]) or to a server in the same process ([`InProcess`]).
//!
//! Both speak the same typed API and report refusals the same way (the
//! server's [`ErrorBody`]), so code and tests written against one hold for
//! the other. Nothing here trusts the server: the callers check every
//! hash, signature and proof.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use peergos_blockstore::{BlockAuth, PutBlocks, TransactionId};
use peergos_ipld::{cbor, Cid};
use peergos_keys::{LoginParams, PublicKeyHash};
use peergos_pki::KeyChain;
use peergos_pointers::SignedPointer;
use peergos_server::api::{
    ChampLookup, ChangeRequest, CreateLink, DataRequest, DeleteRequests, ErrorBody, FollowPost,
    GetManyRequest, GetRequest, Info, LinkStatus, LoginRequest, OpenLink, OwnerRequest,
    PendingFollow, PkiAnswer, RevokeLink, SignupRequest, Space, TxRequest, UpdateLink, CBOR,
    MAX_GET_MANY, PUT_CONTENT_TYPE,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Error, Result};

/// How long a client waits to connect before reporting the server
/// unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a client waits for the next bytes of an answer before it
/// reports the server stalled (an answer that keeps arriving is never cut
/// off).
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// How many times a request that reads (or only opens an upload) is sent
/// again after the connection failed or a proxy answered 502, 503 or 504,
/// pausing 0.1, 0.3 and 0.9 s.
pub const RETRIES: u32 = 3;

/// Whether a POST to `path` may be sent twice with no effect beyond
/// sending it once (every GET may): block reads, and opening an upload (a
/// second one just expires unused).
fn repeatable_post(path: &str) -> bool {
    matches!(
        path,
        "/v1/blocks/get" | "/v1/blocks/get-many" | "/v1/champ/lookup" | "/v1/tx/start"
    )
}

fn retryable_error(e: &reqwest::Error) -> bool {
    e.is_connect() || (e.is_request() && !e.is_timeout())
}

fn retryable_status(status: u16) -> bool {
    matches!(status, 502..=504)
}

/// The server API as a client sees it.
#[async_trait]
pub trait NetworkAccess: Send + Sync + 'static {
    /// Where requests go (for messages).
    fn address(&self) -> String;
    /// The server's id, PKI key and signup policy.
    async fn info(&self) -> Result<Info>;
    /// Stores blocks.
    async fn put(&self, request: &PutBlocks) -> Result<Vec<Cid>>;
    /// A block (None if the server does not have it). `owner`, whose
    /// space the block is in, lets a server that does not hold the block
    /// fetch it from the owner's home server.
    async fn get(
        &self,
        cid: &Cid,
        auth: Option<&BlockAuth>,
        owner: Option<&PublicKeyHash>,
    ) -> Result<Option<Bytes>>;
    /// Many blocks in one round trip, in request order (None for a block
    /// the server does not have). The answer may cover only the first of
    /// `requests` (the server bounds each answer's bytes): ask again for
    /// the rest. `owner` is as for [`get`](Self::get).
    async fn get_many(
        &self,
        requests: &[(Cid, Option<BlockAuth>)],
        owner: Option<&PublicKeyHash>,
    ) -> Result<Vec<Option<Bytes>>>;
    /// Whether the server has a block.
    async fn has(&self, cid: &Cid) -> Result<bool>;
    /// The CHAMP blocks from `root` to `key`.
    async fn champ_lookup(&self, root: &Cid, key: [u8; 32]) -> Result<Vec<Bytes>>;
    /// Opens a transaction.
    async fn start_transaction(&self, owner: &PublicKeyHash) -> Result<TransactionId>;
    /// Closes a transaction.
    async fn close_transaction(&self, owner: &PublicKeyHash, id: &TransactionId) -> Result<()>;
    /// A pointer's current signed update.
    async fn get_pointer(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
    ) -> Result<Option<SignedPointer>>;
    /// Moves a pointer.
    async fn set_pointer(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
        update: &SignedPointer,
    ) -> Result<()>;
    /// A name's PKI entry with its proof.
    async fn pki_lookup(&self, username: &str) -> Result<PkiAnswer>;
    /// Extends the caller's own name's chain (a renewal).
    async fn renew_name(&self, chain: &KeyChain) -> Result<()>;
    /// Creates an account.
    async fn signup(&self, request: &SignupRequest) -> Result<()>;
    /// A user's login parameters.
    async fn login_params(&self, username: &str) -> Result<LoginParams>;
    /// A user's encrypted static data.
    async fn login(&self, username: &str, request: &LoginRequest) -> Result<Bytes>;
    /// Replaces a user's static data.
    async fn update_data(&self, username: &str, request: &DataRequest) -> Result<()>;
    /// Changes a user's login key.
    async fn change_password(&self, username: &str, request: &ChangeRequest) -> Result<()>;
    /// Space used and allowed.
    async fn space(&self, owner: &PublicKeyHash) -> Result<Space>;
    /// Delivers a sealed follow request to `target`.
    async fn post_follow(&self, target: &str, sealed: &[u8]) -> Result<()>;
    /// The follow requests waiting for `username`.
    async fn follow_requests(
        &self,
        username: &str,
        request: &OwnerRequest,
    ) -> Result<Vec<PendingFollow>>;
    /// Deletes answered follow requests.
    async fn delete_follow_requests(&self, username: &str, request: &DeleteRequests) -> Result<()>;
    /// Stores a secret-link record.
    async fn create_link(&self, username: &str, request: &CreateLink) -> Result<()>;
    /// The owner's secret links and their use counts.
    async fn list_links(&self, username: &str, request: &OwnerRequest) -> Result<Vec<LinkStatus>>;
    /// Revokes a secret link.
    async fn revoke_link(&self, username: &str, request: &RevokeLink) -> Result<()>;
    /// Points a secret link at a new encrypted capability.
    async fn update_link(&self, username: &str, request: &UpdateLink) -> Result<()>;
    /// Opens a secret link (counts a use): the encrypted capability.
    async fn open_link(&self, request: &OpenLink) -> Result<Bytes>;
}

/// Installs the TLS crypto provider (rustls on ring) for this process,
/// once; later calls do nothing. [`HttpNetwork::new`] calls it, so
/// `https://` servers work; call it yourself before building any other
/// `reqwest` client in a program that links this crate.
pub fn init_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A server over HTTP or HTTPS (certificates checked against the
/// system's roots).
#[derive(Clone)]
pub struct HttpNetwork {
    client: reqwest::Client,
    base: String,
    read_timeout: Duration,
}

impl HttpNetwork {
    /// A client for the server at `url` (e.g. `http://127.0.0.1:8000`).
    pub fn new(url: &str) -> Result<Self> {
        Self::with_read_timeout(url, READ_TIMEOUT)
    }

    /// A client that reports the server stalled after `read_timeout`
    /// without a byte of an answer.
    pub fn with_read_timeout(url: &str, read_timeout: Duration) -> Result<Self> {
        let base = url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Unreachable {
                address: url.to_string(),
                reason: "the server address must start with http:// or https://".into(),
            });
        }
        init_tls();
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(read_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Error::Task(format!("building the HTTP client: {e}")))?;
        Ok(HttpNetwork {
            client,
            base,
            read_timeout,
        })
    }

    fn unreachable(&self, e: &reqwest::Error) -> Error {
        if e.is_timeout() && !e.is_connect() {
            return Error::Unreachable {
                address: self.base.clone(),
                reason: format!(
                    "the server stopped answering (nothing for {} s)",
                    self.read_timeout.as_secs_f64()
                ),
            };
        }
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            reason = format!("{reason}: {s}");
            source = s.source();
        }
        Error::Unreachable {
            address: self.base.clone(),
            reason,
        }
    }

    /// Sends a request; `Ok(None)` for a 404 `not_found` answer.
    async fn send(&self, path: &str, body: Option<Vec<u8>>) -> Result<Option<Bytes>> {
        match body {
            Some(body) => self.send_typed(path, CBOR, body).await,
            None => {
                let url = format!("{}{path}", self.base);
                self.answer(&url, self.client.get(&url), true).await
            }
        }
    }

    /// POSTs a body of the given content type.
    async fn send_typed(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Result<Option<Bytes>> {
        let url = format!("{}{path}", self.base);
        let request = self
            .client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        self.answer(&url, request, repeatable_post(path)).await
    }

    async fn answer(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
        repeatable: bool,
    ) -> Result<Option<Bytes>> {
        // A request that reads or only opens something is sent again when
        // the server (one replica behind a load balancer, say) went away
        // or a proxy in front of it answered that it could not reach it.
        let retry = repeatable.then(|| request.try_clone()).flatten();
        let (status, bytes) = match (Self::exchange(request).await, retry) {
            (Err(e), Some(again)) if retryable_error(&e) => self.again(again, e).await?,
            (Ok((status, _)), Some(again)) if retryable_status(status) => {
                let e = None::<reqwest::Error>;
                self.again_after_status(again, status, e).await?
            }
            (outcome, _) => outcome.map_err(|e| self.unreachable(&e))?,
        };
        if (200..300).contains(&status) {
            return Ok(Some(bytes));
        }
        let body: ErrorBody = cbor::from_slice(&bytes).unwrap_or_else(|_| ErrorBody {
            code: format!("http_{status}"),
            message: format!(
                "HTTP {status} from {url}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ),
            actual: None,
            quota: None,
        });
        if status == 404 && body.code == "not_found" {
            return Ok(None);
        }
        Err(Error::refused(status, body))
    }

    /// Sends `request` and reads its whole answer.
    async fn exchange(request: reqwest::RequestBuilder) -> reqwest::Result<(u16, Bytes)> {
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.bytes().await?))
    }

    /// Sends `request` again, up to [`RETRIES`] times with a growing pause,
    /// after it failed with `first`.
    async fn again(
        &self,
        request: reqwest::RequestBuilder,
        first: reqwest::Error,
    ) -> Result<(u16, Bytes)> {
        self.again_after_status(request, 0, Some(first)).await
    }

    async fn again_after_status(
        &self,
        request: reqwest::RequestBuilder,
        mut status: u16,
        mut error: Option<reqwest::Error>,
    ) -> Result<(u16, Bytes)> {
        let mut last: Option<(u16, Bytes)> = None;
        for attempt in 0..RETRIES {
            tokio::time::sleep(Duration::from_millis(100 * 3u64.pow(attempt))).await;
            let Some(next) = request.try_clone() else {
                break;
            };
            match Self::exchange(next).await {
                Ok((s, bytes)) if retryable_status(s) => {
                    status = s;
                    last = Some((s, bytes));
                }
                Ok(answer) => return Ok(answer),
                Err(e) if retryable_error(&e) => error = Some(e),
                Err(e) => return Err(self.unreachable(&e)),
            }
        }
        match (last, error) {
            (Some(answer), _) => Ok(answer),
            (None, Some(e)) => Err(match self.unreachable(&e) {
                Error::Unreachable { address, reason } => Error::Unreachable {
                    address,
                    reason: format!("{reason} (tried {} times)", RETRIES + 1),
                },
                other => other,
            }),
            (None, None) => Err(Error::Unreachable {
                address: self.base.clone(),
                reason: format!("HTTP {status} (tried {} times)", RETRIES + 1),
            }),
        }
    }

    async fn call<T: DeserializeOwned + Serialize>(
        &self,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T> {
        let bytes = self.send(path, body).await?.ok_or_else(|| Error::Refused {
            status: 404,
            body: ErrorBody {
                code: "not_found".into(),
                message: format!("{}{path} was not found", self.base),
                actual: None,
                quota: None,
            },
        })?;
        decode(&bytes)
    }
}

/// A request body sent as a list of buffers one after another (a put's
/// header, then its blocks' bytes as the blocks hold them), so the blocks
/// are not copied into one buffer first. Its length is known, so it goes
/// with a `Content-Length`.
struct Parts {
    parts: std::collections::VecDeque<Bytes>,
    remaining: u64,
}

impl Parts {
    fn new(parts: Vec<Bytes>) -> Self {
        let remaining = parts.iter().map(|p| p.len() as u64).sum();
        Parts {
            parts: parts.into(),
            remaining,
        }
    }
}

impl http_body::Body for Parts {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<std::result::Result<http_body::Frame<Bytes>, Self::Error>>> {
        let next = self.parts.pop_front();
        if let Some(part) = &next {
            self.remaining -= part.len() as u64;
        }
        std::task::Poll::Ready(next.map(|part| Ok(http_body::Frame::data(part))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

fn decode<T: DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<T> {
    cbor::from_slice_with(
        bytes,
        cbor::Limits {
            max_size: peergos_server::api::MAX_BODY,
            max_depth: 16,
        },
    )
    .map_err(|e| Error::Invalid(e.to_string()))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    Ok(cbor::to_vec(value)?)
}

#[async_trait]
impl NetworkAccess for HttpNetwork {
    fn address(&self) -> String {
        self.base.clone()
    }

    async fn info(&self) -> Result<Info> {
        self.call("/v1/info", None).await
    }

    async fn put(&self, request: &PutBlocks) -> Result<Vec<Cid>> {
        let body = Parts::new(peergos_server::api::encode_put_parts(request));
        let bytes = self
            .send_typed(
                "/v1/blocks/put",
                PUT_CONTENT_TYPE,
                reqwest::Body::wrap(body),
            )
            .await?
            .ok_or_else(|| Error::Invalid("the server answered a put with 404".into()))?;
        decode(&bytes)
    }

    async fn get(
        &self,
        cid: &Cid,
        auth: Option<&BlockAuth>,
        owner: Option<&PublicKeyHash>,
    ) -> Result<Option<Bytes>> {
        let body = encode(&GetRequest {
            cid: *cid,
            auth: auth.cloned(),
            owner: owner.copied(),
        })?;
        self.send("/v1/blocks/get", Some(body)).await
    }

    async fn get_many(
        &self,
        requests: &[(Cid, Option<BlockAuth>)],
        owner: Option<&PublicKeyHash>,
    ) -> Result<Vec<Option<Bytes>>> {
        let requests = &requests[..requests.len().min(MAX_GET_MANY)];
        let body: GetManyRequest = requests
            .iter()
            .map(|(cid, auth)| GetRequest {
                cid: *cid,
                auth: auth.clone(),
                owner: owner.copied(),
            })
            .collect();
        let answer: Vec<Option<serde_bytes::ByteBuf>> = self
            .call("/v1/blocks/get-many", Some(encode(&body)?))
            .await?;
        if answer.is_empty() != requests.is_empty() || answer.len() > requests.len() {
            return Err(Error::Invalid(format!(
                "the server answered {} blocks for a request of {}",
                answer.len(),
                requests.len()
            )));
        }
        Ok(answer
            .into_iter()
            .map(|b| b.map(|b| Bytes::from(b.into_vec())))
            .collect())
    }

    async fn has(&self, cid: &Cid) -> Result<bool> {
        self.call(&format!("/v1/blocks/has/{cid}"), None).await
    }

    async fn champ_lookup(&self, root: &Cid, key: [u8; 32]) -> Result<Vec<Bytes>> {
        let body = encode(&ChampLookup { root: *root, key })?;
        self.call("/v1/champ/lookup", Some(body)).await
    }

    async fn start_transaction(&self, owner: &PublicKeyHash) -> Result<TransactionId> {
        let body = encode(&TxRequest {
            owner: *owner,
            transaction: None,
        })?;
        let id: serde_bytes::ByteBuf = self.call("/v1/tx/start", Some(body)).await?;
        let id: [u8; 16] = id
            .as_slice()
            .try_into()
            .map_err(|_| Error::Invalid("a transaction id is not 16 bytes".into()))?;
        Ok(TransactionId::from_bytes(id))
    }

    async fn close_transaction(&self, owner: &PublicKeyHash, id: &TransactionId) -> Result<()> {
        let body = encode(&TxRequest {
            owner: *owner,
            transaction: Some(id.to_bytes()),
        })?;
        self.call("/v1/tx/close", Some(body)).await
    }

    async fn get_pointer(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
    ) -> Result<Option<SignedPointer>> {
        self.call(&format!("/v1/pointers/{owner}/{writer}"), None)
            .await
    }

    async fn set_pointer(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
        update: &SignedPointer,
    ) -> Result<()> {
        self.call(
            &format!("/v1/pointers/{owner}/{writer}"),
            Some(encode(update)?),
        )
        .await
    }

    async fn pki_lookup(&self, username: &str) -> Result<PkiAnswer> {
        peergos_pki::check_username(username)?;
        self.call(&format!("/v1/pki/{username}"), None).await
    }

    async fn renew_name(&self, chain: &KeyChain) -> Result<()> {
        let body = chain.to_bytes()?;
        self.send("/v1/pki/renew", Some(body)).await?;
        Ok(())
    }

    async fn signup(&self, request: &SignupRequest) -> Result<()> {
        self.call("/v1/signup", Some(encode(request)?)).await
    }

    async fn login_params(&self, username: &str) -> Result<LoginParams> {
        peergos_pki::check_username(username)?;
        self.call(&format!("/v1/login/{username}/params"), None)
            .await
    }

    async fn login(&self, username: &str, request: &LoginRequest) -> Result<Bytes> {
        let data: serde_bytes::ByteBuf = self
            .call(&format!("/v1/login/{username}"), Some(encode(request)?))
            .await?;
        Ok(Bytes::from(data.into_vec()))
    }

    async fn update_data(&self, username: &str, request: &DataRequest) -> Result<()> {
        self.call(
            &format!("/v1/login/{username}/data"),
            Some(encode(request)?),
        )
        .await
    }

    async fn change_password(&self, username: &str, request: &ChangeRequest) -> Result<()> {
        self.call(
            &format!("/v1/login/{username}/change"),
            Some(encode(request)?),
        )
        .await
    }

    async fn space(&self, owner: &PublicKeyHash) -> Result<Space> {
        self.call(&format!("/v1/space/{owner}"), None).await
    }

    async fn post_follow(&self, target: &str, sealed: &[u8]) -> Result<()> {
        peergos_pki::check_username(target)?;
        let body = encode(&FollowPost {
            sealed: Bytes::copy_from_slice(sealed),
        })?;
        self.call(&format!("/v1/social/{target}/follow"), Some(body))
            .await
    }

    async fn follow_requests(
        &self,
        username: &str,
        request: &OwnerRequest,
    ) -> Result<Vec<PendingFollow>> {
        peergos_pki::check_username(username)?;
        self.call(
            &format!("/v1/social/{username}/requests"),
            Some(encode(request)?),
        )
        .await
    }

    async fn delete_follow_requests(&self, username: &str, request: &DeleteRequests) -> Result<()> {
        peergos_pki::check_username(username)?;
        self.call(
            &format!("/v1/social/{username}/requests/delete"),
            Some(encode(request)?),
        )
        .await
    }

    async fn create_link(&self, username: &str, request: &CreateLink) -> Result<()> {
        peergos_pki::check_username(username)?;
        self.call(
            &format!("/v1/links/{username}/create"),
            Some(encode(request)?),
        )
        .await
    }

    async fn list_links(&self, username: &str, request: &OwnerRequest) -> Result<Vec<LinkStatus>> {
        peergos_pki::check_username(username)?;
        self.call(
            &format!("/v1/links/{username}/list"),
            Some(encode(request)?),
        )
        .await
    }

    async fn revoke_link(&self, username: &str, request: &RevokeLink) -> Result<()> {
        peergos_pki::check_username(username)?;
        self.call(
            &format!("/v1/links/{username}/revoke"),
            Some(encode(request)?),
        )
        .await
    }

    async fn update_link(&self, username: &str, request: &UpdateLink) -> Result<()> {
        peergos_pki::check_username(username)?;
        self.call(
            &format!("/v1/links/{username}/update"),
            Some(encode(request)?),
        )
        .await
    }

    async fn open_link(&self, request: &OpenLink) -> Result<Bytes> {
        let blob: serde_bytes::ByteBuf =
            self.call("/v1/links/open", Some(encode(request)?)).await?;
        Ok(Bytes::from(blob.into_vec()))
    }
}
