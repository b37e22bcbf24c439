//! Bounds on what a connection may hold before anyone is authenticated:
//! time to send headers and bodies, memory for put bodies, and the number
//! of connections ([`Limits`]; the listener in [`crate::listen`] applies
//! the connection-level ones).
//!
//! Request bodies are held only within one budget shared by every
//! connection ([`Limits::body_memory`]). A put's share is set aside only
//! after its header passed the cheap checks (sizes, an account here, an
//! owned writer, quota); every other body is at most
//! [`MAX_REQUEST_BODY`] and is read whole within [`Limits::body_timeout`]
//! once its share is set aside. A body that cannot get its share within
//! [`Limits::body_stall`] is answered 503.
//!
//! So memory held for requests is bounded by `body_memory` plus, per
//! connection, hyper's buffers ([`CONNECTION_BUFFER`] each way): with the
//! defaults, 320 MiB + 4096 × 128 KiB = 832 MiB at most, however many
//! clients stall, trickle or send oversized requests.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::Stream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use peergos_api::{ErrorBody, ErrorCode, MAX_BODY};

/// The largest body of any request but a put.
pub const MAX_REQUEST_BODY: usize = 1 << 20;

/// The slowest a put body may arrive, in bytes a second, on top of
/// [`Limits::body_timeout`]: a 16 MiB put (what clients send) gets 256 s
/// more.
pub const MIN_PUT_RATE: u64 = 64 << 10;

/// The largest buffer hyper keeps for a connection in each direction.
pub const CONNECTION_BUFFER: usize = 64 << 10;

/// The daemon's bounds on connections and request bodies.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once; more are closed as they arrive.
    pub max_connections: usize,
    /// How long a connection may take to send a request's headers, and
    /// how long it may sit idle between requests.
    pub header_timeout: Duration,
    /// How long a request body may go without a byte arriving (and how
    /// long a put waits for its share of the put budget).
    pub body_stall: Duration,
    /// How long a whole body other than a put's may take to arrive.
    pub body_timeout: Duration,
    /// How long an answer may wait for the client to take its bytes.
    pub write_stall: Duration,
    /// Bytes of request bodies held in memory at once, over all
    /// connections.
    pub body_memory: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            header_timeout: Duration::from_secs(30),
            body_stall: Duration::from_secs(30),
            body_timeout: Duration::from_secs(60),
            write_stall: Duration::from_secs(60),
            body_memory: 4 * MAX_BODY,
        }
    }
}

/// The shared state of the bounds: the body budget.
pub struct Guard {
    limits: Limits,
    budget: Arc<Semaphore>,
}

impl Guard {
    /// The guard for `limits`.
    pub fn new(limits: Limits) -> Arc<Self> {
        let budget = limits.body_memory.min(Semaphore::MAX_PERMITS);
        Arc::new(Guard {
            budget: Arc::new(Semaphore::new(budget)),
            limits,
        })
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Sets aside `bytes` of the body budget, waiting at most
    /// [`Limits::body_stall`]; None when the server is too busy.
    pub async fn reserve(&self, bytes: u64) -> Option<OwnedSemaphorePermit> {
        let bytes = u32::try_from(bytes.max(1)).ok()?;
        let wanted = Arc::clone(&self.budget).acquire_many_owned(bytes);
        tokio::time::timeout(self.limits.body_stall, wanted)
            .await
            .ok()?
            .ok()
    }
}

fn refusal(status: StatusCode, code: ErrorCode, message: String) -> Response {
    let body = ErrorBody::new(code, message);
    // A struct of plain fields always encodes.
    let bytes = peergos_ipld::cbor::to_vec(&body).unwrap_or_default();
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/cbor")],
        bytes,
    )
        .into_response()
}

/// The answer to a body that stopped arriving.
pub(crate) fn body_timed_out(after: Duration) -> Response {
    refusal(
        StatusCode::REQUEST_TIMEOUT,
        ErrorCode::BodyTimeout,
        format!(
            "the request body did not arrive in time (stalled, or slower than allowed, for {} s)",
            after.as_secs()
        ),
    )
}

/// The answer to a request that could not get memory for its body.
pub(crate) fn busy() -> Response {
    refusal(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Busy,
        "the server is busy receiving other requests; try again shortly".into(),
    )
}

fn body_too_large(limit: usize) -> Response {
    refusal(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::TooLarge,
        format!(
            "the request body is larger than the {} KiB limit of this request (or was cut off)",
            limit >> 10
        ),
    )
}

/// Middleware: reads every body but a put's whole, within
/// [`Limits::body_timeout`] and [`MAX_REQUEST_BODY`], holding its share of
/// the body budget while the request runs, before anything else looks at
/// it.
pub(crate) async fn bounded_body(
    axum::extract::State(guard): axum::extract::State<Arc<Guard>>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == peergos_api::endpoint::PUT.path {
        return next.run(request).await;
    }
    // A request a peer server tunnelled in arrives whole, already bounded
    // by the tunnel.
    if request
        .extensions()
        .get::<crate::peers::RemotePeer>()
        .is_some()
    {
        return next.run(request).await;
    }
    let most = MAX_REQUEST_BODY;
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > most as u64) {
        return body_too_large(most);
    }
    let share = declared.unwrap_or(most as u64);
    let _share = if share > 0 {
        match guard.reserve(share).await {
            Some(permit) => Some(permit),
            None => return busy(),
        }
    } else {
        None
    };
    let (parts, body) = request.into_parts();
    let limit = guard.limits.body_timeout;
    match tokio::time::timeout(limit, axum::body::to_bytes(body, most)).await {
        Err(_) => body_timed_out(limit),
        Ok(Err(_)) => body_too_large(most),
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
    }
}

/// A body's frames, failing when none arrives for `stall`.
pub(crate) struct Stalling<S> {
    inner: S,
    stall: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

/// Why a stream of body frames ended early.
#[derive(Debug)]
pub(crate) enum BodyError<E> {
    /// No frame for the stall limit.
    Stalled(Duration),
    /// The body itself failed.
    Body(E),
}

impl<E: std::fmt::Display> std::fmt::Display for BodyError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Stalled(after) => {
                write!(f, "no bytes of the body for {} s", after.as_secs())
            }
            BodyError::Body(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for BodyError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BodyError::Stalled(_) => None,
            BodyError::Body(e) => Some(e),
        }
    }
}

impl<S> Stalling<S> {
    pub(crate) fn new(inner: S, stall: Duration) -> Self {
        Stalling {
            inner,
            stall,
            timer: Box::pin(tokio::time::sleep(stall)),
        }
    }

    /// Whether the stream ended because it stalled.
    pub(crate) fn stalled(&self) -> bool {
        self.timer.is_elapsed()
    }
}

impl<S, E> Stream for Stalling<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    type Item = Result<Bytes, BodyError<E>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(item)) => {
                let deadline = tokio::time::Instant::now() + this.stall;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(Some(item.map_err(BodyError::Body)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(BodyError::Stalled(this.stall)))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}
