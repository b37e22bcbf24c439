//! A hostile server: an HTTP proxy between a client and a real daemon that
//! tampers with what passes, in the [`Mode`] a test sets.
//!
//! The proxy records what it forwards (every pointer answer, the first
//! login answer of each user, every block answer), so the replay modes can
//! serve old answers later. A test does honest work through it, switches a
//! mode on, and checks the client ends in correct data or a loud error.

use peergos_api::endpoint::{self as ep, Method, Route};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// What the proxy does to the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forwards everything unchanged.
    Honest,
    /// Flips one bit in the middle of every block answer
    /// (`/v1/blocks/get` and `/v1/blocks/get-many`).
    FlipBlocks,
    /// Cuts every block answer to half its length.
    TruncateBlocks,
    /// Answers a block request with another block's answer seen before.
    SwapBlocks,
    /// Answers every pointer write with success without forwarding it.
    DropPointerWrites,
    /// Answers every pointer read with the answer seen before the newest
    /// one for that pointer (one step back).
    ReplayPointers,
    /// Answers every login, and the login parameters, with the first
    /// answers seen for that user (the login data as it was at signup,
    /// when the signup went through the proxy), without asking the
    /// daemon: a server replaying an old account.
    ReplayLogin,
    /// Flips one bit of every login answer.
    CorruptLogin,
    /// Serves login parameters that cost 4 GiB of memory (log2 N = 20,
    /// r = 32).
    CostlyLoginParams,
    /// Holds every request without answering.
    Stall,
}

struct Proxy {
    /// Where requests go, in turn (one daemon, or the replicas of one
    /// service behind a round-robin load balancer).
    upstreams: Mutex<Vec<String>>,
    next: std::sync::atomic::AtomicUsize,
    client: reqwest::Client,
    mode: Mutex<Mode>,
    /// Every distinct answer seen for each pointer read, oldest first (the
    /// newest is the last).
    pointers: Mutex<HashMap<String, Vec<Bytes>>>,
    /// The first successful answer of each login and login-parameters
    /// route.
    logins: Mutex<HashMap<String, Bytes>>,
    /// Block answers by request body.
    blocks: Mutex<Vec<(Bytes, Bytes)>>,
    /// How many answers were altered.
    tampered: Mutex<u64>,
}

/// A running hostile proxy; stops when dropped.
pub struct HostileProxy {
    url: String,
    proxy: Arc<Proxy>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HostileProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HostileProxy {
    /// Starts a proxy on a free loopback port in front of `upstream` (a
    /// daemon's `http://` URL), honest to begin with.
    pub async fn start(upstream: &str) -> Self {
        Self::round_robin(&[upstream]).await
    }

    /// A proxy that sends each request to the next of `upstreams` in turn,
    /// as a plain load balancer does, answering 502 when the one whose
    /// turn it is cannot be reached.
    pub async fn round_robin(upstreams: &[&str]) -> Self {
        // reqwest is built without a TLS provider of its own here.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let proxy = Arc::new(Proxy {
            upstreams: Mutex::new(
                upstreams
                    .iter()
                    .map(|u| u.trim_end_matches('/').to_string())
                    .collect(),
            ),
            next: std::sync::atomic::AtomicUsize::new(0),
            client: reqwest::Client::new(),
            mode: Mutex::new(Mode::Honest),
            pointers: Mutex::default(),
            logins: Mutex::default(),
            blocks: Mutex::default(),
            tampered: Mutex::new(0),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(Arc::clone(&proxy));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        HostileProxy { url, proxy, task }
    }

    /// The proxy's URL, for the client.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Replaces the upstreams (a replica restarted on another port).
    pub fn set_upstreams(&self, upstreams: &[&str]) {
        *self.proxy.upstreams.lock().unwrap() = upstreams
            .iter()
            .map(|u| u.trim_end_matches('/').to_string())
            .collect();
    }

    /// Switches to `mode`.
    pub fn set(&self, mode: Mode) {
        *self.proxy.mode.lock().unwrap() = mode;
    }

    /// How many answers the proxy has altered so far.
    pub fn tampered(&self) -> u64 {
        *self.proxy.tampered.lock().unwrap()
    }
}

/// The route of a request, from the API's table.
fn route(method: &axum::http::Method, path: &str) -> Option<&'static Route> {
    let method = if method == axum::http::Method::GET {
        Method::Get
    } else {
        Method::Post
    };
    ep::match_path(method, path)
}

fn is_route(route: Option<&Route>, endpoints: &[&Route]) -> bool {
    route.is_some_and(|r| endpoints.contains(&r))
}

async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let mode = *proxy.mode.lock().unwrap();
    if mode == Mode::Stall {
        std::future::pending::<()>().await;
    }
    let path = request.uri().path().to_string();
    let query = request
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let method = request.method().clone();
    let content_type = request.headers().get("content-type").cloned();
    let real_ip = request.headers().get("x-real-ip").cloned();
    let Ok(body) = axum::body::to_bytes(request.into_body(), 200 << 20).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let route = route(&method, &path);
    let is_block_route = is_route(route, &[&ep::GET, &ep::GET_MANY]);
    let is_login_route = is_route(route, &[&ep::LOGIN]);
    let is_params_route = is_route(route, &[&ep::LOGIN_PARAMS]);
    if is_route(route, &[&ep::SET_POINTER]) && mode == Mode::DropPointerWrites {
        *proxy.tampered.lock().unwrap() += 1;
        return (StatusCode::OK, cbor_null()).into_response();
    }
    if mode == Mode::ReplayLogin && (is_login_route || is_params_route) {
        let recorded = proxy.logins.lock().unwrap().get(&path).cloned();
        if let Some(old) = recorded {
            *proxy.tampered.lock().unwrap() += 1;
            return (StatusCode::OK, old).into_response();
        }
    }
    if is_params_route && mode == Mode::CostlyLoginParams {
        *proxy.tampered.lock().unwrap() += 1;
        return (StatusCode::OK, costly_params()).into_response();
    }
    let upstream = {
        let upstreams = proxy.upstreams.lock().unwrap();
        let turn = proxy
            .next
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        upstreams[turn % upstreams.len()].clone()
    };
    let url = format!("{upstream}{path}{query}");
    let mut upstream = match method.as_str() {
        "GET" => proxy.client.get(&url),
        _ => proxy.client.post(&url).body(body.clone()),
    };
    if let Some(content_type) = content_type {
        upstream = upstream.header("content-type", content_type);
    }
    if let Some(real_ip) = real_ip {
        upstream = upstream.header("x-real-ip", real_ip);
    }
    let Ok(answer) = upstream.send().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let status = answer.status();
    let Ok(mut answer) = answer.bytes().await.map(|b| b.to_vec()) else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let mut tampered = false;
    if is_route(route, &[&ep::SIGNUP]) && status.is_success() {
        // What a server knows of a new account: its first login answer.
        if let Ok(signup) = peergos_ipld::cbor::from_slice::<peergos_api::SignupRequest>(&body) {
            let answer = serde_bytes::ByteBuf::from(signup.data.to_vec());
            proxy.logins.lock().unwrap().insert(
                ep::LOGIN.path_with(&[&signup.username]),
                Bytes::from(peergos_ipld::cbor::to_vec(&answer).unwrap()),
            );
        }
    }
    if is_route(route, &[&ep::GET_POINTER]) && status.is_success() {
        let mut seen = proxy.pointers.lock().unwrap();
        let list = seen.entry(path.clone()).or_default();
        if list.last().is_none_or(|last| last[..] != answer[..]) {
            list.push(Bytes::from(answer.clone()));
        }
        if mode == Mode::ReplayPointers && list.len() >= 2 {
            answer = list[list.len() - 2].to_vec();
            tampered = true;
        }
    }
    if (is_login_route || is_params_route) && status.is_success() {
        let mut seen = proxy.logins.lock().unwrap();
        seen.entry(path.clone())
            .or_insert_with(|| Bytes::from(answer.clone()));
        if mode == Mode::CorruptLogin && is_login_route && !answer.is_empty() {
            let middle = answer.len() / 2;
            answer[middle] ^= 0x01;
            tampered = true;
        }
    }
    if is_block_route && status.is_success() && !answer.is_empty() {
        match mode {
            Mode::FlipBlocks => {
                let middle = answer.len() / 2;
                answer[middle] ^= 0x01;
                tampered = true;
            }
            Mode::TruncateBlocks => {
                answer.truncate(answer.len() / 2);
                tampered = true;
            }
            Mode::SwapBlocks => {
                let blocks = proxy.blocks.lock().unwrap();
                if let Some((_, other)) = blocks
                    .iter()
                    .rev()
                    .find(|(request, other)| request[..] != body[..] && other[..] != answer[..])
                {
                    answer = other.to_vec();
                    tampered = true;
                }
            }
            _ => {}
        }
        if !tampered {
            let mut blocks = proxy.blocks.lock().unwrap();
            if blocks.len() < 4096 {
                blocks.push((body, Bytes::from(answer.clone())));
            }
        }
    }
    if tampered {
        *proxy.tampered.lock().unwrap() += 1;
    }
    (status, answer).into_response()
}

/// CBOR `null`: the answer to a successful pointer write.
fn cbor_null() -> Vec<u8> {
    vec![0xf6]
}

/// Login parameters with log2 N = 20 and r = 32 (4 GiB), a zero salt.
fn costly_params() -> Vec<u8> {
    let params = peergos_keys::LoginParams {
        log_n: 20,
        r: 32,
        p: 1,
        salt: [0; 32],
    };
    peergos_ipld::cbor::to_vec(&params).unwrap()
}
