//! The middleware in front of the routes: forwarding a request for a user
//! homed on another server to that server (over the p2p tunnel), and
//! counting every request for `/metrics` and the rate limits.

use peergos_api::endpoint::{BodyKind, RateClass, Subject as Who};

use super::*;

/// The client a rate limit counts: the `X-Real-IP` a reverse proxy on
/// this machine sets, else the connection's address. Clients on this
/// machine without a proxy header are not limited.
pub(super) fn client_of(request: &axum::extract::Request) -> Option<std::net::IpAddr> {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip())?;
    if peer.is_loopback() {
        return request
            .headers()
            .get("x-real-ip")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
    }
    Some(peer)
}

/// Whose request this is: the owner or username a route acts for, read
/// from the path or (for the routes that carry it in the body) the body,
/// where the route table says it is.
enum Subject {
    Owner(PublicKeyHash),
    Name(String),
    Nobody,
}

/// The first path parameter of `path`, which matched `route`.
fn first_param<'a>(route: &Route, path: &'a str) -> Option<&'a str> {
    let at = route.path.split('/').position(|s| s.starts_with('{'))?;
    path.split('/').nth(at)
}

fn subject_of(route: &Route, path: &str, body: Option<&Bytes>) -> Subject {
    let owner = |text: &str| text.parse().map_or(Subject::Nobody, Subject::Owner);
    match (route.subject, body) {
        (Who::OwnerInPath, _) => first_param(route, path).map_or(Subject::Nobody, owner),
        (Who::NameInPath, _) => {
            first_param(route, path).map_or(Subject::Nobody, |name| Subject::Name(name.to_string()))
        }
        (Who::TxOwner, Some(body)) => {
            decode::<TxRequest>(body).map_or(Subject::Nobody, |r| Subject::Owner(r.owner))
        }
        (Who::LinkOwner, Some(body)) => {
            decode::<OpenLink>(body).map_or(Subject::Nobody, |r| Subject::Name(r.owner))
        }
        _ => Subject::Nobody,
    }
}

/// Forwards a request for a user homed on another server to that server
/// over the p2p tunnel, and passes its answer back; everything else goes
/// on to this server's handlers. Requests that came through the tunnel
/// are always answered here, so a request is forwarded at most once.
pub(super) async fn route_home(
    State(server): Shared,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if server.node().is_none()
        || request
            .extensions()
            .get::<crate::peers::RemotePeer>()
            .is_some()
    {
        return next.run(request).await;
    }
    let Some(route) = route_of(&request) else {
        return next.run(request).await;
    };
    let path = request.uri().path().to_string();
    let (subject, request) = if route.body == BodyKind::Put {
        // Only the header is read here; the blocks stream on.
        let too_large = declared_too_large(request.headers());
        let stall = request
            .extensions()
            .get::<Arc<Guard>>()
            .map_or(crate::guard::Limits::default().body_stall, |g| {
                g.limits().body_stall
            });
        let (parts, body) = request.into_parts();
        let mut frames = body.into_data_stream();
        if too_large {
            return refused_put(bad_put(BadPut::TooLarge), frames).await;
        }
        // The put handler bounds the rest of the body the same way.
        let head = match tokio::time::timeout(stall, peergos_api::read_put_head(&mut frames)).await
        {
            Err(_) => return body_timed_out(stall),
            Ok(Ok(head)) => head,
            Ok(Err(e)) => return refused_put(bad_put(e), frames).await,
        };
        let read = futures::stream::iter(head.frames.into_iter().map(Ok::<_, axum::Error>));
        let body = axum::body::Body::from_stream(read.chain(frames));
        (
            Subject::Owner(head.header.owner),
            axum::extract::Request::from_parts(parts, body),
        )
    } else if matches!(route.subject, Who::TxOwner | Who::LinkOwner) {
        let (parts, body) = request.into_parts();
        let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
            Ok(bytes) => bytes,
            Err(_) => return too_large(),
        };
        let subject = subject_of(route, &path, Some(&bytes));
        let body = axum::body::Body::from(bytes);
        (subject, axum::extract::Request::from_parts(parts, body))
    } else {
        (subject_of(route, &path, None), request)
    };
    let home = match subject {
        Subject::Owner(owner) => server.home_of_owner(&owner).await,
        Subject::Name(name) => server.home_of_name(&name).await,
        Subject::Nobody => Ok(None),
    };
    let home = match home {
        Ok(home) => home,
        Err(e) => return e.into_response(),
    };
    let Some(home) = home else {
        return next.run(request).await;
    };
    // A put for another server's user is held whole to be tunnelled: it
    // takes its share of the body budget like any put.
    let _share = match request.extensions().get::<Arc<Guard>>() {
        Some(guard) if route.body == BodyKind::Put => match guard.reserve(MAX_BODY as u64).await {
            Some(share) => Some(share),
            None => return busy(),
        },
        _ => None,
    };
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(body) => body,
        Err(_) => return too_large(),
    };
    let tunnelled = crate::peers::TunnelRequest {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| path.clone(), |p| p.to_string()),
        content_type: parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: body.to_vec(),
    };
    match server.forward(home, &tunnelled).await {
        Ok(answer) => {
            let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut response = (status, answer.body).into_response();
            if let Some(kind) = answer
                .content_type
                .and_then(|t| HeaderValue::from_str(&t).ok())
            {
                response.headers_mut().insert(header::CONTENT_TYPE, kind);
            }
            response
        }
        Err(e) => e.into_response(),
    }
}

/// Counts every request for `/metrics` and applies the rate limits.
pub(super) async fn track(
    State(server): Shared,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let started = std::time::Instant::now();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let length = |headers: &axum::http::HeaderMap| {
        headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let bytes_in = length(request.headers());
    let class = route_of(&request).map_or(RateClass::Unlimited, |r| r.rate);
    if class != RateClass::Unlimited {
        // A request tunnelled from another server counts against that
        // server; any other against its address.
        let tunnelled = request
            .extensions()
            .get::<crate::peers::RemotePeer>()
            .map(|remote| remote.0);
        let limited = match tunnelled {
            Some(peer) => server
                .rate_limit_peer(class, peer)
                .await
                .map_err(|wait| (format!("the server {peer}"), wait)),
            None => match client_of(&request) {
                Some(client) => server
                    .rate_limit(class, client)
                    .await
                    .map_err(|wait| (client.to_string(), wait)),
                None => Ok(()),
            },
        };
        if let Err((client, wait)) = limited {
            server.metrics().record_limited(&route);
            let mut answer = Error::TooMany(format!(
                "too many requests from {client}; try again in {} s",
                wait.as_secs() + 1
            ))
            .into_response();
            if let Ok(value) = HeaderValue::from_str(&(wait.as_secs() + 1).to_string()) {
                answer.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return answer;
        }
    }
    let response = next.run(request).await;
    let bytes_out = length(response.headers());
    server.metrics().record(
        &route,
        response.status().as_u16(),
        started.elapsed(),
        bytes_in,
        bytes_out,
    );
    response
}
