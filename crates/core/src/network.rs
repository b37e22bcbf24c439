//! [`HttpNetwork`]: the API of [`peergos_api::endpoint`] over HTTP or
//! HTTPS, with bounded waits and retries of the requests the route table
//! marks idempotent. The trait it implements, [`NetworkAccess`], is in
//! `peergos-api` (`http_api.rs` has the implementation).
//!
//! Nothing here trusts the server: the callers check every hash,
//! signature and proof.

use std::time::Duration;

use bytes::Bytes;
use peergos_api::endpoint::{Endpoint, Method, Route};
use peergos_api::{Error as ApiError, ErrorBody, ErrorCode, Result as ApiResult, CBOR, MAX_BODY};
use peergos_ipld::cbor;
use serde::de::DeserializeOwned;
use serde::Serialize;

#[cfg(doc)]
use peergos_api::NetworkAccess;

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

fn retryable_error(e: &reqwest::Error) -> bool {
    e.is_connect() || (e.is_request() && !e.is_timeout())
}

fn retryable_status(status: u16) -> bool {
    matches!(status, 502..=504)
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
    pub fn new(url: &str) -> ApiResult<Self> {
        Self::with_read_timeout(url, READ_TIMEOUT)
    }

    /// A client that reports the server stalled after `read_timeout`
    /// without a byte of an answer.
    pub fn with_read_timeout(url: &str, read_timeout: Duration) -> ApiResult<Self> {
        let base = url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ApiError::Unreachable {
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
            .map_err(|e| ApiError::Unreachable {
                address: base.clone(),
                reason: format!("the HTTP client could not be built: {e}"),
            })?;
        Ok(HttpNetwork {
            client,
            base,
            read_timeout,
        })
    }

    /// The server's address, as given (without a trailing `/`).
    pub fn base(&self) -> &str {
        &self.base
    }

    fn unreachable(&self, e: &reqwest::Error) -> ApiError {
        if e.is_timeout() && !e.is_connect() {
            return ApiError::Unreachable {
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
        ApiError::Unreachable {
            address: self.base.clone(),
            reason,
        }
    }

    /// Sends a request on `route` to `path` (the route's path with its
    /// parameters filled in); `Ok(None)` for a 404 `not_found` answer.
    async fn send(
        &self,
        route: &Route,
        path: &str,
        body: Option<(&'static str, reqwest::Body)>,
    ) -> ApiResult<Option<Bytes>> {
        let url = format!("{}{path}", self.base);
        let request = match (route.method, body) {
            (Method::Get, _) => self.client.get(&url),
            (Method::Post, body) => {
                let (content_type, body) = body.unwrap_or((CBOR, reqwest::Body::from(Vec::new())));
                self.client
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, content_type)
                    .body(body)
            }
        };
        self.answer(&url, request, route.idempotent).await
    }

    async fn answer(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
        repeatable: bool,
    ) -> ApiResult<Option<Bytes>> {
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
        let body = ErrorBody::from_answer(&bytes).unwrap_or_else(|| {
            ErrorBody::new(
                ErrorCode::Unrecognised,
                format!(
                    "HTTP {status} from {url}: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                ),
            )
        });
        if status == 404 && body.code == ErrorCode::NotFound {
            return Ok(None);
        }
        Err(ApiError::Refused { status, body })
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
    ) -> ApiResult<(u16, Bytes)> {
        self.again_after_status(request, 0, Some(first)).await
    }

    async fn again_after_status(
        &self,
        request: reqwest::RequestBuilder,
        mut status: u16,
        mut error: Option<reqwest::Error>,
    ) -> ApiResult<(u16, Bytes)> {
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
                ApiError::Unreachable { address, reason } => ApiError::Unreachable {
                    address,
                    reason: format!("{reason} (tried {} times)", RETRIES + 1),
                },
                other => other,
            }),
            (None, None) => Err(ApiError::Unreachable {
                address: self.base.clone(),
                reason: format!("HTTP {status} (tried {} times)", RETRIES + 1),
            }),
        }
    }

    /// Calls `endpoint` with `params` in its path and `body` (CBOR) and
    /// decodes its answer; a 404 `not_found` is an error here.
    pub(crate) async fn call<Req, Resp>(
        &self,
        endpoint: &Endpoint<Req, Resp>,
        params: &[&str],
        body: Option<&Req>,
    ) -> ApiResult<Resp>
    where
        Req: Serialize,
        Resp: DeserializeOwned + Serialize,
    {
        let path = endpoint.path_with(params);
        let bytes = self
            .send(endpoint, &path, encode(endpoint, body)?)
            .await?
            .ok_or_else(|| ApiError::Refused {
                status: 404,
                body: ErrorBody::new(
                    ErrorCode::NotFound,
                    format!("{}{path} was not found", self.base),
                ),
            })?;
        decode(endpoint, &bytes)
    }

    /// Calls `endpoint` with a body of its own content type.
    pub(crate) async fn call_raw(
        &self,
        route: &Route,
        content_type: &'static str,
        body: reqwest::Body,
    ) -> ApiResult<Option<Bytes>> {
        self.send(route, route.path, Some((content_type, body)))
            .await
    }

    /// Calls `endpoint` and answers its raw body (None for 404 `not_found`).
    pub(crate) async fn fetch<Req: Serialize, Resp>(
        &self,
        endpoint: &Endpoint<Req, Resp>,
        params: &[&str],
        body: Option<&Req>,
    ) -> ApiResult<Option<Bytes>> {
        let path = endpoint.path_with(params);
        self.send(endpoint, &path, encode(endpoint, body)?).await
    }
}

/// A request body sent as a list of buffers one after another (a put's
/// header, then its blocks' bytes as the blocks hold them), so the blocks
/// are not copied into one buffer first. Its length is known, so it goes
/// with a `Content-Length`.
pub(crate) struct Parts {
    parts: std::collections::VecDeque<Bytes>,
    remaining: u64,
}

impl Parts {
    pub(crate) fn new(parts: Vec<Bytes>) -> Self {
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

/// Decodes `endpoint`'s answer: canonical CBOR within the body bound.
pub(crate) fn decode<Req, Resp: DeserializeOwned + Serialize>(
    endpoint: &Endpoint<Req, Resp>,
    bytes: &[u8],
) -> ApiResult<Resp> {
    cbor::from_slice_extensible(
        bytes,
        cbor::Limits {
            max_size: MAX_BODY,
            max_depth: 16,
        },
    )
    .map_err(|source| ApiError::BadAnswer {
        route: endpoint.name,
        source,
    })
}

/// `body` as a CBOR request body of `endpoint`.
fn encode<Req: Serialize, Resp>(
    endpoint: &Endpoint<Req, Resp>,
    body: Option<&Req>,
) -> ApiResult<Option<(&'static str, reqwest::Body)>> {
    let Some(body) = body else {
        return Ok(None);
    };
    let bytes = cbor::to_vec(body).map_err(|source| ApiError::Encode {
        route: endpoint.name,
        source,
    })?;
    Ok(Some((CBOR, reqwest::Body::from(bytes))))
}
