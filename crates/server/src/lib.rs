//! The Peergos home server: accounts, the PKI node, quotas, and the HTTP
//! API over the block and pointer stores.
//!
//! [`Server`] holds the stores under one data directory (embedded
//! defaults: blocks as files, pointers and accounts in sqlite) and offers
//! every API operation as a typed async method; [`http::router`] exposes
//! them as versioned CBOR routes (`docs/PROTOCOL.md` section 13). Clients
//! in the same process (tests, apps that embed a server) call the methods
//! directly.
//!
//! The server is trusted with availability only. It sees opaque blocks and
//! signed pointers; it checks signatures, hashes, ownership, quotas and
//! freshness so that a bad client cannot corrupt another user's state, and
//! clients check everything it returns.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod accounts;
mod blocks;
mod config;
mod disk;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod gc;
pub mod guard;
pub mod http;
mod limits;
pub mod listen;
mod login;
pub mod metrics;
mod network;
pub mod peers;
mod pki_node;
mod scrub;
mod server;
mod social;
mod space;
mod uploads;

pub use crate::accounts::{
    AccountStore, LinkRefusal, NewUser, OpenTransaction, PostgresAccounts, SqliteAccounts, User,
};
pub(crate) use crate::config::PKI_ATTEMPTS;
pub use crate::config::{
    Config, SignupPolicy, DEFAULT_DISK_RESERVE, DEFAULT_QUOTA, DEFAULT_UPLOAD_LEASE, LOGIN_BURST,
    LOGIN_EVERY_SECS, PEER_LIMIT_FACTOR, QUOTA_SLACK, SIGNUP_BURST, SIGNUP_EVERY_SECS, SMALL_PUT,
};
pub use crate::error::Error;
pub use crate::gc::GcReport;
pub use crate::peers::MirrorStatus;
pub use crate::scrub::ScrubReport;
pub use crate::server::Server;
pub(crate) use crate::server::{io_err, now_ms, pki_answer};
pub use crate::social::{MAX_LINKS, MAX_PENDING_FOLLOWS};
pub use peergos_p2p::{Config as P2pConfig, Multiaddr, PeerId};

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
