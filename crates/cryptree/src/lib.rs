//! The encrypted filesystem: capabilities, per-writer state, cryptree
//! nodes, and the filesystem API over them.
//!
//! - [`Label`] and [`AbsoluteCapability`]: what a holder needs to find,
//!   read and (optionally) write one node, and the
//!   compact, checksummed text form used in links ([`AbsoluteCapability::to_text`]).
//! - [`WriterData`]: the root block of one signing key's state (its
//!   filesystem CHAMP, owned sub-writers, boxing key, login parameters), and
//!   [`Committer`], which moves a writer's pointer to a new `WriterData` by
//!   compare-and-swap, re-reading and re-applying the change when another
//!   writer got there first, so neither change is lost.
//! - [`node`]: the cryptree node format (no I/O): encrypted base, parent
//!   and content parts, 4 KiB padding, 1 MiB fragments, the chunk chain.
//! - [`Filesystem`]: directories and streaming files by path over any
//!   `BlockStore` and `PointerStore`, every change committed atomically.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod capability;
mod error;
pub mod fs;
pub mod node;
mod ownership;
mod properties;
mod writer_data;

pub use crate::capability::{AbsoluteCapability, Label, TEXT_PREFIX};
pub use crate::error::Error;
pub use crate::fs::{Entry, Filesystem, Kind, OpenFile, Patch, UploadOptions, UPLOADS_DIR};
pub use crate::ownership::WriterOwnership;
pub use crate::properties::{
    Owner, Properties, Unknown, MAX_SYMLINK_TARGET, MAX_THUMBNAIL, PROPERTIES_VERSION,
};
pub use crate::writer_data::{
    Committed, Committer, Turn, WriterData, MAX_COMMIT_ATTEMPTS, RECENT_STATE,
};

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Compiles the README's examples as doctests, so they cannot rot (this
/// crate depends on everything they use).
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctest;
