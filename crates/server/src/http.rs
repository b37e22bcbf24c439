//! The HTTP API: versioned routes with CBOR bodies over [`Server`].
//!
//! Every error is answered with a 4xx or 5xx status and a CBOR
//! [`ErrorBody`] naming what was wrong; a bad
//! request never stops the server.

use std::future::Future;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::StreamExt;
use peergos_blockstore::{BlockAuth, TransactionId};
use peergos_ipld::cbor::{self, Limits};
use peergos_ipld::Cid;
use peergos_keys::PublicKeyHash;
use peergos_pointers::SignedPointer;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::guard::{body_timed_out, busy, Guard, Stalling};
use crate::{Error, Server};
use peergos_api::endpoint::{Method, Route};
use peergos_api::{
    BadPut, ChampLookup, ChangeRequest, CreateLink, DataRequest, DeleteRequests, ErrorBody,
    ErrorCode, FollowPost, GetManyRequest, GetRequest, LoginRequest, OpenLink, OwnerRequest,
    RevokeLink, SignupRequest, TxRequest, UpdateLink, CBOR, MAX_BODY,
};

mod middleware;
pub(crate) mod tunnel;

type Shared = State<Arc<Server>>;

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, "request refused");
        }
        cbor_response(status, &self.body())
    }
}

fn cbor_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match cbor::to_vec(value) {
        Ok(bytes) => (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(CBOR))],
            bytes,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn ok<T: Serialize>(value: &T) -> Response {
    cbor_response(StatusCode::OK, value)
}

/// Decodes a request body: canonical CBOR of the route's type, at most
/// [`MAX_BODY`] bytes, under the extension rule (fields a newer client
/// added are ignored; PROTOCOL.md, "Formats that grow").
pub(crate) fn decode<T: DeserializeOwned + Serialize>(body: &[u8]) -> Result<T, Error> {
    cbor::from_slice_extensible(
        body,
        Limits {
            max_size: MAX_BODY,
            max_depth: 16,
        },
    )
    .map_err(|source| Error::Malformed {
        what: "request body".into(),
        source,
    })
}

fn parse_key(text: &str) -> Result<PublicKeyHash, Error> {
    text.parse().map_err(|source| Error::BadKey {
        text: text.to_string(),
        source,
    })
}

/// `handler` under the method of `route` (the path is the route's too).
fn on<H, T>(route: &Route, handler: H) -> axum::routing::MethodRouter<Arc<Server>>
where
    H: axum::handler::Handler<T, Arc<Server>>,
    T: 'static,
{
    let filter = match route.method {
        Method::Get => axum::routing::MethodFilter::GET,
        Method::Post => axum::routing::MethodFilter::POST,
    };
    axum::routing::on(filter, handler)
}

/// The route a request matched (set by the router before the
/// middleware runs).
pub(crate) fn route_of(request: &axum::extract::Request) -> Option<&'static Route> {
    let pattern = request.extensions().get::<axum::extract::MatchedPath>()?;
    let method = match *request.method() {
        axum::http::Method::GET => Method::Get,
        axum::http::Method::POST => Method::Post,
        _ => return None,
    };
    peergos_api::endpoint::route_of(method, pattern.as_str())
}

/// The router for `server`.
pub fn router(server: Arc<Server>) -> Router {
    router_with(server, Guard::new(crate::guard::Limits::default()))
}

/// [`router`], with the bounds of `guard` on bodies and put memory.
pub fn router_with(server: Arc<Server>, guard: Arc<Guard>) -> Router {
    use peergos_api::endpoint as ep;
    Router::new()
        .route(ep::HEALTH.path, on(&ep::HEALTH, || async { "ok" }))
        .route(ep::INFO.path, on(&ep::INFO, info))
        .route(ep::PUT.path, on(&ep::PUT, put))
        .route(ep::GET.path, on(&ep::GET, get_block))
        .route(ep::GET_MANY.path, on(&ep::GET_MANY, get_many))
        .route(ep::HAS.path, on(&ep::HAS, has))
        .route(ep::CHAMP_LOOKUP.path, on(&ep::CHAMP_LOOKUP, champ_lookup))
        .route(ep::TX_START.path, on(&ep::TX_START, tx_start))
        .route(ep::TX_CLOSE.path, on(&ep::TX_CLOSE, tx_close))
        .route(ep::GET_POINTER.path, on(&ep::GET_POINTER, get_pointer))
        .route(ep::SET_POINTER.path, on(&ep::SET_POINTER, set_pointer))
        .route(ep::PKI_LOOKUP.path, on(&ep::PKI_LOOKUP, pki))
        .route(ep::PKI_CLAIM.path, on(&ep::PKI_CLAIM, pki_claim))
        .route(ep::PKI_RENEW.path, on(&ep::PKI_RENEW, pki_renew))
        .route(ep::SIGNUP.path, on(&ep::SIGNUP, signup))
        .route(ep::LOGIN_PARAMS.path, on(&ep::LOGIN_PARAMS, login_params))
        .route(ep::LOGIN.path, on(&ep::LOGIN, login))
        .route(ep::UPDATE_DATA.path, on(&ep::UPDATE_DATA, update_data))
        .route(
            ep::CHANGE_PASSWORD.path,
            on(&ep::CHANGE_PASSWORD, change_password),
        )
        .route(ep::SPACE.path, on(&ep::SPACE, space))
        .route(ep::POST_FOLLOW.path, on(&ep::POST_FOLLOW, post_follow))
        .route(
            ep::FOLLOW_REQUESTS.path,
            on(&ep::FOLLOW_REQUESTS, follow_requests),
        )
        .route(
            ep::DELETE_REQUESTS.path,
            on(&ep::DELETE_REQUESTS, delete_requests),
        )
        .route(ep::CREATE_LINK.path, on(&ep::CREATE_LINK, create_link))
        .route(ep::LIST_LINKS.path, on(&ep::LIST_LINKS, list_links))
        .route(ep::REVOKE_LINK.path, on(&ep::REVOKE_LINK, revoke_link))
        .route(ep::UPDATE_LINK.path, on(&ep::UPDATE_LINK, update_link))
        .route(ep::OPEN_LINK.path, on(&ep::OPEN_LINK, open_link))
        .route(ep::METRICS.path, on(&ep::METRICS, metrics))
        .route(ep::ADMIN_GC.path, on(&ep::ADMIN_GC, admin_gc))
        .route(ep::ADMIN_SCRUB.path, on(&ep::ADMIN_SCRUB, admin_scrub))
        .fallback(|| async {
            cbor_response(
                StatusCode::NOT_FOUND,
                &ErrorBody::new(
                    ErrorCode::NotFound,
                    "no such route (this server speaks API v1)",
                ),
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&server),
            middleware::route_home,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&server),
            middleware::track,
        ))
        // Outermost: every body but a put's arrives whole and in time
        // before routing or rate limiting look at it.
        .layer(axum::Extension(Arc::clone(&guard)))
        .layer(axum::middleware::from_fn_with_state(
            guard,
            crate::guard::bounded_body,
        ))
        .with_state(server)
}

/// The answer to a body over [`MAX_BODY`] (or one that could not be read).
fn too_large() -> Response {
    cbor_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        &ErrorBody::new(
            ErrorCode::TooLarge,
            format!(
                "the request body is larger than the {} MiB limit (or was cut off)",
                MAX_BODY >> 20
            ),
        ),
    )
}

async fn metrics(State(server): Shared) -> Result<Response, Error> {
    let text = server.render_metrics().await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        text,
    )
        .into_response())
}

/// Runs a garbage collection now, for `peergos-daemon gc`.
async fn admin_gc(
    State(server): Shared,
    headers: axum::http::HeaderMap,
) -> Result<Response, Error> {
    admin_only(&server, &headers)?;
    Ok(ok(&server.collect_garbage().await?))
}

/// Re-hashes every stored block now, for `peergos-daemon scrub`.
async fn admin_scrub(
    State(server): Shared,
    headers: axum::http::HeaderMap,
) -> Result<Response, Error> {
    admin_only(&server, &headers)?;
    Ok(ok(&server.scrub().await?))
}

/// Admin requests carry the admin token from the data directory as
/// `Authorization: Bearer TOKEN`.
fn admin_only(server: &Server, headers: &axum::http::HeaderMap) -> Result<(), Error> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if server.is_admin(token) {
        Ok(())
    } else {
        Err(Error::AdminOnly)
    }
}

/// Serves `server` on `listener` within the default [`Limits`] until
/// `shutdown` completes, then lets requests in flight finish
/// ([`crate::listen::serve`]).
pub async fn serve(
    server: Arc<Server>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::listen::serve(server, listener, crate::guard::Limits::default(), shutdown).await
}

async fn info(State(server): Shared) -> Response {
    ok(&server.info())
}

/// Puts stream: each large block is copied once out of the body's frames,
/// into a buffer the file store writes from ([`peergos_api::read_put`]).
/// Before any block is read, the header must pass its bounds and the
/// server's cheap checks ([`Server::admit_put`]), and the put must get its
/// share of the memory budget ([`Guard`]); a body that stops arriving is
/// answered 408.
async fn put(
    State(server): Shared,
    axum::Extension(guard): axum::Extension<Arc<Guard>>,
    request: axum::extract::Request,
) -> Response {
    let too_large = declared_too_large(request.headers());
    let stall = guard.limits().body_stall;
    let mut frames = Stalling::new(request.into_body().into_data_stream(), stall);
    if too_large {
        return refused_put(bad_put(BadPut::TooLarge), frames).await;
    }
    let head = match peergos_api::read_put_head(&mut frames).await {
        Ok(head) => head,
        Err(_) if frames.stalled() => return body_timed_out(stall),
        Err(e) => return refused_put(bad_put(e), frames).await,
    };
    let total = match peergos_api::check_put_header(&head.header) {
        Ok(total) => total,
        Err(e) => return refused_put(bad_put(e), frames).await,
    };
    let (owner, writer) = (head.header.owner, head.header.writer);
    if let Err(e) = server.admit_put(&owner, &writer, total).await {
        return refused_put(e.into_response(), frames).await;
    }
    let Some(_budget) = guard.reserve(total).await else {
        return refused_put(busy(), frames).await;
    };
    // A body that trickles in never stalls; it must still keep up a
    // minimum rate, or it would hold its share of the budget forever.
    let deadline = guard.limits().body_timeout
        + std::time::Duration::from_secs(total / crate::guard::MIN_PUT_RATE);
    let read =
        tokio::time::timeout(deadline, peergos_api::read_put_blocks(head, &mut frames)).await;
    match read {
        Err(_) => body_timed_out(deadline),
        Ok(Ok(put)) => match server.put(put).await {
            Ok(cids) => ok(&cids),
            Err(e) => e.into_response(),
        },
        Ok(Err(_)) if frames.stalled() => body_timed_out(stall),
        Ok(Err(e)) => refused_put(bad_put(e), frames).await,
    }
}

/// The answer to a put body that is not one, or is too large.
pub(crate) fn bad_put(e: BadPut) -> Response {
    match e {
        BadPut::TooLarge => too_large(),
        BadPut::Malformed(reason) => Error::BadRequest(reason).into_response(),
    }
}

/// Whether a request's `Content-Length` is over [`MAX_BODY`].
fn declared_too_large(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|len| len > MAX_BODY as u64)
}

/// The answer to a put body that was refused, given once the client has
/// sent the rest of it: a client still sending when the connection closes
/// sees a broken pipe, not the reason. Up to twice [`MAX_BODY`] is read
/// and dropped as it arrives (no memory is held for it), so a body
/// somewhat over the limit gets its 413 (reading only up to the limit left
/// the last bytes of such a body racing the answer); a sender of more than
/// that, or one that stalls, sees the connection close.
async fn refused_put<S, E>(answer: Response, mut frames: S) -> Response
where
    S: futures::Stream<Item = Result<Bytes, E>> + Unpin,
{
    let mut drained = 0;
    while drained <= 2 * MAX_BODY {
        match frames.next().await {
            Some(Ok(frame)) => drained += frame.len(),
            _ => break,
        }
    }
    answer
}

async fn get_block(State(server): Shared, body: Bytes) -> Result<Response, Error> {
    let request: GetRequest = decode(&body)?;
    match server
        .get_routed(&request.cid, request.auth.as_ref(), request.owner.as_ref())
        .await?
    {
        Some(bytes) => Ok((
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            )],
            bytes,
        )
            .into_response()),
        None => Ok(not_found(format!(
            "block {} is not stored here",
            request.cid
        ))),
    }
}

fn not_found(message: String) -> Response {
    cbor_response(
        StatusCode::NOT_FOUND,
        &ErrorBody::new(ErrorCode::NotFound, message),
    )
}

async fn get_many(State(server): Shared, body: Bytes) -> Result<Response, Error> {
    let request: GetManyRequest = decode(&body)?;
    if request.len() > peergos_api::MAX_GET_MANY {
        return Err(Error::BadRequest(format!(
            "at most {} blocks per request",
            peergos_api::MAX_GET_MANY
        )));
    }
    let requests: Vec<(Cid, Option<BlockAuth>, Option<PublicKeyHash>)> = request
        .into_iter()
        .map(|r| (r.cid, r.auth, r.owner))
        .collect();
    Ok(blocks_response(server.get_many_routed(&requests).await?))
}

/// A block at least this large goes out as its own chunk of a streamed
/// block list; smaller ones are copied into the running buffer, so a list
/// of many small nodes is a few chunks, not one per node.
const OWN_CHUNK: usize = 64 << 10;

/// The answer to `get_many` (and `champ_lookup`, which has no absent
/// entries): the CBOR array of `null | bytes`, streamed as the item heads
/// and small blocks in one buffer, with each large block's own buffer
/// between them, so megabytes of blocks go out without being copied
/// into one body. Byte-for-byte the canonical encoding of
/// `Vec<Option<ByteBuf>>`.
fn blocks_response(blocks: Vec<Option<Bytes>>) -> Response {
    let mut chunks = Vec::new();
    let mut buffer = Vec::new();
    cbor::head(&mut buffer, 4, blocks.len() as u64);
    for block in blocks {
        match block {
            None => buffer.push(0xf6),
            Some(bytes) => {
                cbor::head(&mut buffer, 2, bytes.len() as u64);
                if bytes.len() < OWN_CHUNK {
                    buffer.extend_from_slice(&bytes);
                } else {
                    chunks.push(Bytes::from(std::mem::take(&mut buffer)));
                    chunks.push(bytes);
                }
            }
        }
    }
    if !buffer.is_empty() {
        chunks.push(Bytes::from(buffer));
    }
    let length: usize = chunks.iter().map(Bytes::len).sum();
    let body = futures::stream::iter(chunks.into_iter().map(Ok::<_, std::convert::Infallible>));
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(CBOR)),
            (header::CONTENT_LENGTH, HeaderValue::from(length)),
        ],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

async fn has(State(server): Shared, Path(cid): Path<String>) -> Result<Response, Error> {
    let cid: Cid = cid.parse().map_err(|source| Error::Malformed {
        what: format!("'{cid}' as a CID"),
        source,
    })?;
    Ok(ok(&server.has(&cid).await?))
}

async fn champ_lookup(State(server): Shared, body: Bytes) -> Result<Response, Error> {
    let request: ChampLookup = decode(&body)?;
    let blocks = server.champ_lookup(&request.root, request.key).await?;
    // With no absent entries, the same bytes as `Vec<ByteBuf>`.
    Ok(blocks_response(blocks.into_iter().map(Some).collect()))
}

async fn tx_start(State(server): Shared, body: Bytes) -> Result<Response, Error> {
    let request: TxRequest = decode(&body)?;
    let id = server.start_transaction(&request.owner).await?;
    Ok(ok(&serde_bytes::ByteBuf::from(id.to_bytes().to_vec())))
}

async fn tx_close(State(server): Shared, body: Bytes) -> Result<Response, Error> {
    let request: TxRequest = decode(&body)?;
    let id = request
        .transaction
        .ok_or_else(|| Error::BadRequest("closing needs a transaction id".into()))?;
    server
        .close_transaction(&request.owner, &TransactionId::from_bytes(id))
        .await?;
    Ok(ok(&()))
}

async fn get_pointer(
    State(server): Shared,
    Path((owner, writer)): Path<(String, String)>,
) -> Result<Response, Error> {
    let (owner, writer) = (parse_key(&owner)?, parse_key(&writer)?);
    Ok(ok(&server.get_pointer(&owner, &writer).await?))
}

async fn set_pointer(
    State(server): Shared,
    Path((owner, writer)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, Error> {
    let (owner, writer) = (parse_key(&owner)?, parse_key(&writer)?);
    let update: SignedPointer = decode(&body)?;
    server.set_pointer(&owner, &writer, update).await?;
    Ok(ok(&()))
}

async fn pki(State(server): Shared, Path(name): Path<String>) -> Result<Response, Error> {
    Ok(ok(&server.pki_lookup(&name).await?))
}

/// A claim another server sends for a user signing up there (this server
/// being the PKI node); only accepted through the p2p tunnel, from the
/// server the claim names as the user's home.
/// `POST /v1/pki/renew`: a client extends its own name's chain (body: the
/// whole new `KeyChain`).
async fn pki_renew(State(server): Shared, body: Bytes) -> Result<Response, Error> {
    let chain = peergos_pki::KeyChain::from_bytes(&body)?;
    server.pki_renew(&chain).await?;
    Ok(ok(&()))
}

async fn pki_claim(
    State(server): Shared,
    peer: Option<axum::Extension<crate::peers::RemotePeer>>,
    body: Bytes,
) -> Result<Response, Error> {
    let Some(axum::Extension(crate::peers::RemotePeer(peer))) = peer else {
        return Err(Error::NotPki(
            "claims are sent by servers over the p2p network, not by clients".into(),
        ));
    };
    let chain = peergos_pki::KeyChain::from_bytes(&body)?;
    server.pki_claim(&peer, &chain).await?;
    Ok(ok(&()))
}

async fn signup(State(server): Shared, body: Bytes) -> Result<Response, Error> {
    let request: SignupRequest = decode(&body)?;
    server.signup(request).await?;
    Ok(ok(&()))
}

async fn login_params(State(server): Shared, Path(name): Path<String>) -> Result<Response, Error> {
    peergos_pki::check_username(&name)?;
    Ok(ok(&server.login_params(&name).await?))
}

async fn login(
    State(server): Shared,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, Error> {
    let request: LoginRequest = decode(&body)?;
    let data = server.login(&name, &request).await?;
    Ok(ok(&serde_bytes::ByteBuf::from(data.to_vec())))
}

async fn update_data(
    State(server): Shared,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, Error> {
    let request: DataRequest = decode(&body)?;
    server.update_data(&name, &request).await?;
    Ok(ok(&()))
}

async fn change_password(
    State(server): Shared,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, Error> {
    let request: ChangeRequest = decode(&body)?;
    server.change_password(&name, &request).await?;
    Ok(ok(&()))
}

async fn space(State(server): Shared, Path(owner): Path<String>) -> Result<Response, Error> {
    let owner = parse_key(&owner)?;
    Ok(ok(&server.space(&owner).await?))
}

/// The request of a route for the user named in the path: checks the
/// name and decodes the body as `T`.
fn user_request<T>(name: &str, body: &[u8]) -> Result<T, Error>
where
    T: DeserializeOwned + Serialize,
{
    peergos_pki::check_username(name)?;
    decode(body)
}

async fn post_follow(
    State(server): Shared,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, Error> {
    let r: FollowPost = user_request(&name, &body)?;
    Ok(ok(&server.post_follow(&name, &r.sealed).await?))
}

async fn follow_requests(
    State(server): Shared,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, Error> {
    let r: OwnerRequest = user_request(&name, &body)?;
    Ok(ok(&server.follow_requests(&name, &r).await?))
}

async fn delete_requests(
    State(server): Shared,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, Error> {
    let r: DeleteRequests = user_request(&name, &body)?;
    Ok(ok(&server.delete_follow_requests(&name, &r).await?))
}

async fn create_link(
    State(server): Shared,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, Error> {
    let r: CreateLink = user_request(&name, &body)?;
    Ok(ok(&server.create_link(&name, &r).await?))
}

async fn list_links(
    State(server): Shared,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, Error> {
    let r: OwnerRequest = user_request(&name, &body)?;
    Ok(ok(&server.list_links(&name, &r).await?))
}

async fn revoke_link(
    State(server): Shared,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, Error> {
    let r: RevokeLink = user_request(&name, &body)?;
    Ok(ok(&server.revoke_link(&name, &r).await?))
}

async fn update_link(
    State(server): Shared,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, Error> {
    let r: UpdateLink = user_request(&name, &body)?;
    Ok(ok(&server.update_link(&name, &r).await?))
}

async fn open_link(State(server): Shared, body: Bytes) -> Result<Response, Error> {
    let request: OpenLink = decode(&body)?;
    let blob = server.open_link(&request).await?;
    Ok(ok(&serde_bytes::ByteBuf::from(blob.to_vec())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_streamed_block_answer_is_the_canonical_encoding() {
        let cases: Vec<Vec<Option<Bytes>>> = vec![
            vec![],
            vec![None],
            vec![Some(Bytes::new())],
            vec![
                None,
                Some(Bytes::from(vec![1u8; 300])),
                None,
                None,
                Some(Bytes::from_static(b"abc")),
                Some(Bytes::from(vec![9u8; 70_000])),
                None,
            ],
            vec![
                Some(Bytes::from(vec![4u8; OWN_CHUNK])),
                Some(Bytes::from(vec![5u8; OWN_CHUNK + 1])),
            ],
        ];
        for blocks in cases {
            let expected: Vec<Option<serde_bytes::ByteBuf>> = blocks
                .iter()
                .map(|b| b.as_ref().map(|b| serde_bytes::ByteBuf::from(b.to_vec())))
                .collect();
            let response = blocks_response(blocks);
            assert_eq!(response.status(), StatusCode::OK);
            let length = response.headers()[header::CONTENT_LENGTH].clone();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            assert_eq!(length.to_str().unwrap(), body.len().to_string());
            assert_eq!(body.to_vec(), cbor::to_vec(&expected).unwrap());
            let decoded: Vec<Option<serde_bytes::ByteBuf>> = decode(&body).unwrap();
            assert_eq!(decoded, expected);
        }
        // No absent entries (`champ_lookup`): a plain list of byte strings.
        let nodes = [Bytes::from_static(b"node"), Bytes::from(vec![3u8; 40])];
        let response = blocks_response(nodes.iter().cloned().map(Some).collect());
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let plain: Vec<serde_bytes::ByteBuf> = nodes
            .iter()
            .map(|b| serde_bytes::ByteBuf::from(b.to_vec()))
            .collect();
        assert_eq!(body.to_vec(), cbor::to_vec(&plain).unwrap());
    }

    /// Small blocks share one buffer; a large one goes out as its own
    /// buffer, not a copy.
    #[tokio::test]
    async fn a_block_list_copies_small_blocks_and_lends_large_ones() {
        let large = Bytes::from(vec![7u8; OWN_CHUNK]);
        let mut blocks: Vec<Option<Bytes>> = (0..256u16)
            .map(|i| Some(Bytes::from(i.to_be_bytes().repeat(500))))
            .collect();
        blocks.push(Some(large.clone()));
        blocks.push(None);
        let mut body = blocks_response(blocks).into_body().into_data_stream();
        let mut chunks = Vec::new();
        while let Some(chunk) = body.next().await {
            chunks.push(chunk.unwrap());
        }
        // The heads and the 256 small nodes, the large block, the last null.
        assert_eq!(chunks.len(), 3);
        assert!(chunks[0].len() > 256 * 1000);
        assert_eq!(chunks[1].as_ptr(), large.as_ptr(), "not copied");
        assert_eq!(&chunks[2][..], &[0xf6]);
    }
}
