//! The one table of routes: for each, its method, path, body and answer
//! types, who may call it and which rate budget it draws from. The
//! server's router, its rate limiter and home routing, and the HTTP client
//! all read these constants, so a route is written down once.

use std::marker::PhantomData;

use bytes::Bytes;
use peergos_blockstore::PutBlocks;
use peergos_ipld::Cid;
use peergos_keys::LoginParams;
use peergos_pki::KeyChain;
use peergos_pointers::SignedPointer;
use serde_bytes::ByteBuf;

use crate::{
    ChampLookup, ChangeRequest, CreateLink, DataRequest, DeleteRequests, FollowPost,
    GetManyRequest, GetRequest, Info, LinkStatus, LoginRequest, OpenLink, OwnerRequest,
    PendingFollow, PkiAnswer, RevokeLink, SignupRequest, Space, TxRequest, UpdateLink,
};

/// An HTTP method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`: no body; always safe to repeat.
    Get,
    /// `POST`: a body.
    Post,
}

impl Method {
    /// The method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// What authorises a call. The server checks it; the client supplies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Auth {
    /// Anyone: public values, or a block whose reader proves a right in
    /// the body (a block access token).
    Public,
    /// Signatures by the owner's writer keys inside the body (blocks,
    /// pointer updates, a PKI chain).
    Writer,
    /// A [`crate::Stamp`] by the user's login key.
    Login,
    /// A [`crate::Stamp`] by the user's identity key.
    Owner,
    /// Knowledge of a secret link's token.
    LinkToken,
    /// The admin token from the data directory (`Authorization: Bearer`).
    Admin,
    /// Another server, over the peer-to-peer tunnel only.
    Peer,
}

/// Which rate budget a route draws from, before anyone is authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RateClass {
    /// Bounded only by the connection, body and memory limits.
    Unlimited,
    /// Signups: a small burst per client address, then one per minute.
    Signup,
    /// Login parameters and answers: each costs the server a database
    /// read and a signature check.
    Login,
}

/// Where a request names the user it acts for, so a server can route it
/// to that user's home server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    /// Nobody in particular (public or server-wide routes).
    Nobody,
    /// An owner key as the first path parameter.
    OwnerInPath,
    /// A username as the first path parameter.
    NameInPath,
    /// The `owner` field of a [`TxRequest`] body.
    TxOwner,
    /// The `owner` field of an [`OpenLink`] body.
    LinkOwner,
    /// The owner in a put body's header.
    PutOwner,
}

/// How a route's body travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BodyKind {
    /// No body (`GET`).
    None,
    /// Canonical DAG-CBOR of the request type.
    Cbor,
    /// A framed put body ([`crate::encode_put`]).
    Put,
}

/// A route, untyped: what the server's middleware and the table's checks
/// read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    /// A short stable name, for metrics and messages.
    pub name: &'static str,
    /// The method.
    pub method: Method,
    /// The path, with `{param}` for each path parameter (the syntax the
    /// server's router takes).
    pub path: &'static str,
    /// What authorises a call.
    pub auth: Auth,
    /// Its rate budget.
    pub rate: RateClass,
    /// Whom it acts for.
    pub subject: Subject,
    /// How its body travels.
    pub body: BodyKind,
    /// Whether sending it twice has no effect beyond sending it once, so a
    /// client may resend it after a connection failure.
    pub idempotent: bool,
}

impl Route {
    /// The path with `params` in place of its `{param}`s, in order, each
    /// percent-encoded. Panics in debug builds if the count is wrong.
    pub fn path_with(&self, params: &[&str]) -> String {
        let mut out = String::with_capacity(self.path.len() + 64);
        let mut params = params.iter();
        let mut rest = self.path;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
            match params.next() {
                Some(param) => encode_segment(&mut out, param),
                None => debug_assert!(false, "{} needs more parameters", self.path),
            }
            rest = &rest[close..];
        }
        out.push_str(rest);
        debug_assert!(
            params.next().is_none(),
            "{} takes fewer parameters",
            self.path
        );
        out
    }
}

/// Appends `segment` with every byte outside the unreserved set
/// percent-encoded.
fn encode_segment(out: &mut String, segment: &str) {
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
}

/// A route with its request and answer types: `Req` is what the body
/// carries, `Resp` what a success answers.
pub struct Endpoint<Req, Resp> {
    /// The untyped route.
    pub route: Route,
    types: PhantomData<fn(Req) -> Resp>,
}

impl<Req, Resp> Endpoint<Req, Resp> {
    const fn new(route: Route) -> Self {
        Endpoint {
            route,
            types: PhantomData,
        }
    }
}

impl<Req, Resp> std::ops::Deref for Endpoint<Req, Resp> {
    type Target = Route;
    fn deref(&self) -> &Route {
        &self.route
    }
}

/// A route's fields, in table order: name, method, path, auth, rate,
/// subject, body, idempotent.
const fn route(
    name: &'static str,
    method: Method,
    path: &'static str,
    auth: Auth,
    rate: RateClass,
    subject: Subject,
    idempotent: bool,
) -> Route {
    let body = match method {
        Method::Get => BodyKind::None,
        Method::Post => BodyKind::Cbor,
    };
    Route {
        name,
        method,
        path,
        auth,
        rate,
        subject,
        body,
        idempotent,
    }
}

use Auth::*;
use Method::{Get, Post};
use RateClass::{Login as LoginRate, Signup as SignupRate, Unlimited};
use Subject::*;

/// `GET /health`: `ok` as plain text, for load balancers.
pub const HEALTH: Endpoint<(), String> = Endpoint::new(route(
    "health", Get, "/health", Public, Unlimited, Nobody, true,
));
/// `GET /metrics`: Prometheus text.
pub const METRICS: Endpoint<(), String> = Endpoint::new(route(
    "metrics", Get, "/metrics", Public, Unlimited, Nobody, true,
));
/// `GET /v1/info`: the server's ids and signup policy.
pub const INFO: Endpoint<(), Info> = Endpoint::new(route(
    "info", Get, "/v1/info", Public, Unlimited, Nobody, true,
));
/// `POST /v1/blocks/put`: stores signed blocks; answers their CIDs.
pub const PUT: Endpoint<PutBlocks, Vec<Cid>> = Endpoint::new(Route {
    body: BodyKind::Put,
    ..route(
        "blocks/put",
        Post,
        "/v1/blocks/put",
        Writer,
        Unlimited,
        PutOwner,
        false,
    )
});
/// `POST /v1/blocks/get`: a block's raw bytes (404 `not_found` if absent).
pub const GET: Endpoint<GetRequest, Bytes> = Endpoint::new(route(
    "blocks/get",
    Post,
    "/v1/blocks/get",
    Public,
    Unlimited,
    Nobody,
    true,
));
/// `POST /v1/blocks/get-many`: `[bytes | null]`, in request order, maybe
/// only a prefix of the requests.
pub const GET_MANY: Endpoint<GetManyRequest, Vec<Option<ByteBuf>>> = Endpoint::new(route(
    "blocks/get-many",
    Post,
    "/v1/blocks/get-many",
    Public,
    Unlimited,
    Nobody,
    true,
));
/// `GET /v1/blocks/has/{cid}`: whether the server holds a block.
pub const HAS: Endpoint<(), bool> = Endpoint::new(route(
    "blocks/has",
    Get,
    "/v1/blocks/has/{cid}",
    Public,
    Unlimited,
    Nobody,
    true,
));
/// `POST /v1/champ/lookup`: the CHAMP blocks from a root to a key.
pub const CHAMP_LOOKUP: Endpoint<ChampLookup, Vec<ByteBuf>> = Endpoint::new(route(
    "champ/lookup",
    Post,
    "/v1/champ/lookup",
    Public,
    Unlimited,
    Nobody,
    true,
));
/// `POST /v1/tx/start`: opens an upload transaction (16 id bytes). A
/// second start just expires unused, so it may be resent.
pub const TX_START: Endpoint<TxRequest, ByteBuf> = Endpoint::new(route(
    "tx/start",
    Post,
    "/v1/tx/start",
    Public,
    Unlimited,
    TxOwner,
    true,
));
/// `POST /v1/tx/close`: closes an upload transaction.
pub const TX_CLOSE: Endpoint<TxRequest, ()> = Endpoint::new(route(
    "tx/close",
    Post,
    "/v1/tx/close",
    Public,
    Unlimited,
    TxOwner,
    false,
));
/// `GET /v1/pointers/{owner}/{writer}`: a writer's signed pointer.
pub const GET_POINTER: Endpoint<(), Option<SignedPointer>> = Endpoint::new(route(
    "pointers/get",
    Get,
    "/v1/pointers/{owner}/{writer}",
    Public,
    Unlimited,
    OwnerInPath,
    true,
));
/// `POST /v1/pointers/{owner}/{writer}`: moves a pointer (compare and
/// swap, signed by the writer).
pub const SET_POINTER: Endpoint<SignedPointer, ()> = Endpoint::new(route(
    "pointers/set",
    Post,
    "/v1/pointers/{owner}/{writer}",
    Writer,
    Unlimited,
    OwnerInPath,
    false,
));
/// `GET /v1/pki/{name}`: a name's PKI entry with its proof.
pub const PKI_LOOKUP: Endpoint<(), PkiAnswer> = Endpoint::new(route(
    "pki/lookup",
    Get,
    "/v1/pki/{name}",
    Public,
    Unlimited,
    Nobody,
    true,
));
/// `POST /v1/pki/claim`: a server claims a name for a user signing up
/// there (the PKI node only; over the tunnel only).
pub const PKI_CLAIM: Endpoint<KeyChain, ()> = Endpoint::new(route(
    "pki/claim",
    Post,
    "/v1/pki/claim",
    Peer,
    Unlimited,
    Nobody,
    false,
));
/// `POST /v1/pki/renew`: a user extends their own name's chain.
pub const PKI_RENEW: Endpoint<KeyChain, ()> = Endpoint::new(route(
    "pki/renew",
    Post,
    "/v1/pki/renew",
    Writer,
    Unlimited,
    Nobody,
    false,
));
/// `POST /v1/signup`: creates an account.
pub const SIGNUP: Endpoint<SignupRequest, ()> = Endpoint::new(route(
    "signup",
    Post,
    "/v1/signup",
    Writer,
    SignupRate,
    Nobody,
    false,
));
/// `GET /v1/login/{name}/params`: a user's scrypt parameters.
pub const LOGIN_PARAMS: Endpoint<(), LoginParams> = Endpoint::new(route(
    "login/params",
    Get,
    "/v1/login/{name}/params",
    Public,
    LoginRate,
    NameInPath,
    true,
));
/// `POST /v1/login/{name}`: the user's encrypted login data.
pub const LOGIN: Endpoint<LoginRequest, ByteBuf> = Endpoint::new(route(
    "login",
    Post,
    "/v1/login/{name}",
    Login,
    LoginRate,
    NameInPath,
    false,
));
/// `POST /v1/login/{name}/data`: replaces the login data.
pub const UPDATE_DATA: Endpoint<DataRequest, ()> = Endpoint::new(route(
    "login/data",
    Post,
    "/v1/login/{name}/data",
    Login,
    Unlimited,
    NameInPath,
    false,
));
/// `POST /v1/login/{name}/change`: a password change.
pub const CHANGE_PASSWORD: Endpoint<ChangeRequest, ()> = Endpoint::new(route(
    "login/change",
    Post,
    "/v1/login/{name}/change",
    Login,
    Unlimited,
    NameInPath,
    false,
));
/// `GET /v1/space/{owner}`: space used and allowed.
pub const SPACE: Endpoint<(), Space> = Endpoint::new(route(
    "space",
    Get,
    "/v1/space/{owner}",
    Public,
    Unlimited,
    OwnerInPath,
    true,
));
/// `POST /v1/social/{name}/follow`: delivers a sealed follow request.
pub const POST_FOLLOW: Endpoint<FollowPost, ()> = Endpoint::new(route(
    "social/follow",
    Post,
    "/v1/social/{name}/follow",
    Public,
    Unlimited,
    NameInPath,
    false,
));
/// `POST /v1/social/{name}/requests`: the follow requests waiting.
pub const FOLLOW_REQUESTS: Endpoint<OwnerRequest, Vec<PendingFollow>> = Endpoint::new(route(
    "social/requests",
    Post,
    "/v1/social/{name}/requests",
    Owner,
    Unlimited,
    NameInPath,
    false,
));
/// `POST /v1/social/{name}/requests/delete`: deletes answered requests.
pub const DELETE_REQUESTS: Endpoint<DeleteRequests, ()> = Endpoint::new(route(
    "social/requests/delete",
    Post,
    "/v1/social/{name}/requests/delete",
    Owner,
    Unlimited,
    NameInPath,
    false,
));
/// `POST /v1/links/{name}/create`: stores a secret-link record.
pub const CREATE_LINK: Endpoint<CreateLink, ()> = Endpoint::new(route(
    "links/create",
    Post,
    "/v1/links/{name}/create",
    Owner,
    Unlimited,
    NameInPath,
    false,
));
/// `POST /v1/links/{name}/list`: the owner's links and their use counts.
pub const LIST_LINKS: Endpoint<OwnerRequest, Vec<LinkStatus>> = Endpoint::new(route(
    "links/list",
    Post,
    "/v1/links/{name}/list",
    Owner,
    Unlimited,
    NameInPath,
    false,
));
/// `POST /v1/links/{name}/revoke`: revokes a link.
pub const REVOKE_LINK: Endpoint<RevokeLink, ()> = Endpoint::new(route(
    "links/revoke",
    Post,
    "/v1/links/{name}/revoke",
    Owner,
    Unlimited,
    NameInPath,
    false,
));
/// `POST /v1/links/{name}/update`: points a link at a new capability.
pub const UPDATE_LINK: Endpoint<UpdateLink, ()> = Endpoint::new(route(
    "links/update",
    Post,
    "/v1/links/{name}/update",
    Owner,
    Unlimited,
    NameInPath,
    false,
));
/// `POST /v1/links/open`: opens a link (counts a use), answering its
/// encrypted capability.
pub const OPEN_LINK: Endpoint<OpenLink, ByteBuf> = Endpoint::new(route(
    "links/open",
    Post,
    "/v1/links/open",
    LinkToken,
    Unlimited,
    LinkOwner,
    false,
));
/// `POST /v1/admin/gc`: a garbage collection now.
pub const ADMIN_GC: Endpoint<(), Bytes> = Endpoint::new(route(
    "admin/gc",
    Post,
    "/v1/admin/gc",
    Admin,
    Unlimited,
    Nobody,
    false,
));
/// `POST /v1/admin/scrub`: re-hashes every stored block now.
pub const ADMIN_SCRUB: Endpoint<(), Bytes> = Endpoint::new(route(
    "admin/scrub",
    Post,
    "/v1/admin/scrub",
    Admin,
    Unlimited,
    Nobody,
    false,
));

/// Every route, in table order.
pub const ROUTES: &[Route] = &[
    HEALTH.route,
    METRICS.route,
    INFO.route,
    PUT.route,
    GET.route,
    GET_MANY.route,
    HAS.route,
    CHAMP_LOOKUP.route,
    TX_START.route,
    TX_CLOSE.route,
    GET_POINTER.route,
    SET_POINTER.route,
    PKI_LOOKUP.route,
    PKI_CLAIM.route,
    PKI_RENEW.route,
    SIGNUP.route,
    LOGIN_PARAMS.route,
    LOGIN.route,
    UPDATE_DATA.route,
    CHANGE_PASSWORD.route,
    SPACE.route,
    POST_FOLLOW.route,
    FOLLOW_REQUESTS.route,
    DELETE_REQUESTS.route,
    CREATE_LINK.route,
    LIST_LINKS.route,
    REVOKE_LINK.route,
    UPDATE_LINK.route,
    OPEN_LINK.route,
    ADMIN_GC.route,
    ADMIN_SCRUB.route,
];

/// The route a request matched, by its method and router path (the
/// pattern, not the request's own path).
pub fn route_of(method: Method, pattern: &str) -> Option<&'static Route> {
    ROUTES
        .iter()
        .find(|r| r.method == method && r.path == pattern)
}

/// The route a concrete request path (`/v1/login/alice`) matches, for
/// tools that see requests without a router (proxies in tests).
pub fn match_path(method: Method, path: &str) -> Option<&'static Route> {
    let path = path.split('?').next().unwrap_or(path);
    ROUTES.iter().find(|r| {
        r.method == method && {
            let mut want = r.path.split('/');
            let mut got = path.split('/');
            loop {
                match (want.next(), got.next()) {
                    (None, None) => break true,
                    (Some(w), Some(g)) if w.starts_with('{') => {
                        if g.is_empty() {
                            break false;
                        }
                    }
                    (Some(w), Some(g)) if w == g => {}
                    _ => break false,
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_method_paths_are_unique() {
        let mut names = std::collections::HashSet::new();
        let mut paths = std::collections::HashSet::new();
        for r in ROUTES {
            assert!(names.insert(r.name), "{} twice", r.name);
            assert!(paths.insert((r.method, r.path)), "{} twice", r.path);
            assert_eq!(
                r.method == Method::Get,
                r.body == BodyKind::None,
                "{}",
                r.name
            );
            if r.method == Method::Get {
                assert!(r.idempotent, "{}: every GET may be repeated", r.name);
            }
        }
    }

    #[test]
    fn paths_fill_their_parameters_encoded() {
        assert_eq!(GET_POINTER.path_with(&["a", "b"]), "/v1/pointers/a/b");
        assert_eq!(LOGIN.path_with(&["al/ice?"]), "/v1/login/al%2Fice%3F");
        assert_eq!(INFO.path_with(&[]), "/v1/info");
    }

    #[test]
    fn concrete_paths_find_their_route() {
        let cases = [
            (Method::Post, "/v1/login/alice", Some("login")),
            (Method::Get, "/v1/login/alice/params", Some("login/params")),
            (Method::Post, "/v1/login/alice/params", None),
            (Method::Get, "/v1/pointers/x/y", Some("pointers/get")),
            (Method::Post, "/v1/pointers/x/y", Some("pointers/set")),
            (Method::Post, "/v1/links/open", Some("links/open")),
            (Method::Post, "/v1/links/bob/open", None),
            (Method::Get, "/v1/login/", None),
            (Method::Get, "/v2/info", None),
        ];
        for (method, path, name) in cases {
            assert_eq!(match_path(method, path).map(|r| r.name), name, "{path}");
        }
    }
}
