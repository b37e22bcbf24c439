//! The embeddable Peergos client.
//!
//! - [`UserContext`]: sign up, log in, change password, and the user's
//!   encrypted filesystem ([`UserContext::fs`]: every operation of
//!   [`peergos_cryptree::Filesystem`]), and space usage.
//! - [`NetworkAccess`] (from `peergos-api`): the server API, over HTTP
//!   ([`HttpNetwork`]); a `peergos_server::Server` in the same process
//!   implements it too.
//! - [`Remote`]: a server's stores as a `BlockStore` and `PointerStore`.
//! - [`transfer`]: files and folders to and from the local disk (batched,
//!   resumable, skipping what is unchanged), for every front end.
//! - Social: [`UserContext::follow`], [`UserContext::accept`],
//!   [`UserContext::share`], [`UserContext::unshare`],
//!   [`UserContext::create_link`] and [`open_link`] (no account needed);
//!   [`UserContext::locate`] finds a path in the user's own space or in
//!   what a friend shared.
//!
//! The client trusts the server with nothing but availability: every
//! block's hash, every pointer's signature and sequence (a rollback is
//! refused), and every PKI answer's proof are checked here.
//!
//! ```no_run
//! use std::sync::Arc;
//! use peergos_core::{HttpNetwork, UserContext};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let net = Arc::new(HttpNetwork::new("http://127.0.0.1:8000")?);
//! let alice = UserContext::login(net, "alice", "correct horse battery").await?;
//! alice.fs().write_file("/notes.txt", b"hello").await?;
//! for entry in alice.fs().ls("/").await? {
//!     println!("{} {}", entry.name, entry.size);
//! }
//! # Ok(()) }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod device;
mod error;
mod http_api;
mod links;
mod network;
mod remote;
mod social;
pub mod transfer;
mod user;

pub use crate::device::{Device, DEFAULT_MAX_KDF_MEMORY};
pub use crate::error::Error;
pub use crate::links::{open_link, LinkListing, LinkOptions, SharedView};
pub use crate::network::{init_tls, HttpNetwork, CONNECT_TIMEOUT, READ_TIMEOUT, RETRIES};
pub use crate::remote::Remote;
pub use crate::social::{PendingRequest, Place};
pub use crate::user::{RemoteFs, UserContext, CLAIM_LIFETIME_SECS, RENEW_WITHIN_SECS, SHARED_DIR};
pub use peergos_api::{ErrorCode, NetworkAccess};
pub use peergos_social::{SecretLink, ShareItem, SocialState};

pub use peergos_api::Space;
pub use peergos_cryptree::{Entry, Kind, UploadOptions};

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
