//! The Peergos wire API, shared by every client and the server: the
//! request and answer types (canonical DAG-CBOR), the framed put body,
//! the error codes, one table of routes ([`endpoint`]), and
//! [`NetworkAccess`], the API as a client sees it.
//!
//! `docs/PROTOCOL.md` section 13 is the spec; this crate is its Rust form.
//! It has no HTTP stack: `peergos-core` speaks it over HTTP,
//! `peergos-server` serves it (and implements [`NetworkAccess`] for
//! callers in the same process).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod account;
mod blocks;
pub mod endpoint;
mod error;
pub mod framing;
mod network;
mod put;
mod social;

pub use crate::account::{
    auth_message, ChangeRequest, DataRequest, LoginRequest, SignupRequest, Stamp, LOGIN_AUTH,
    MAX_CLOCK_SKEW_MS,
};
pub use crate::blocks::{
    ChampLookup, GetManyRequest, GetRequest, Info, PkiAnswer, Space, TxRequest, MAX_GET_MANY,
};
pub use crate::endpoint::{Endpoint, Route};
pub use crate::error::{Error, ErrorBody, ErrorCode, Result};
pub use crate::network::NetworkAccess;
pub use crate::put::{
    check_put_header, decode_put, encode_put, encode_put_parts, read_put, read_put_blocks,
    read_put_head, BadPut, BlockHeader, PutHead, PutHeader, MAX_PUT_BLOCKS, MAX_PUT_HEADER,
    PUT_CONTENT_TYPE,
};
pub use crate::social::{
    CreateLink, DeleteRequests, FollowPost, LinkStatus, OpenLink, OwnerRequest, PendingFollow,
    RevokeLink, UpdateLink, OWNER_AUTH,
};

/// The version prefix of every route.
pub const PREFIX: &str = "/v1";

/// The content type of every CBOR body.
pub const CBOR: &str = "application/cbor";

/// The largest request body the server reads (a put of up to 64 blocks of
/// at most 1 MiB each, plus framing).
pub const MAX_BODY: usize = 80 << 20;
