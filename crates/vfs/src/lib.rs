//! A POSIX-shaped view of an encrypted Peergos filesystem: inode numbers,
//! open file handles with buffered writes, and caches that spare the
//! server repeated questions. `peergos-fuse` is a thin adapter from the
//! kernel's FUSE requests to [`Vfs`]; nothing here knows about FUSE, so the
//! layer can back other front ends (an NFS or 9P server, a test harness).
//!
//! - **Inodes**: every path the kernel is told about gets a number that
//!   lasts until the kernel forgets it; renames keep numbers.
//! - **Caching**: directory listings (which hold every child's size and
//!   time) are kept until something changes them. This mount's own
//!   changes edit the cache in place; changes by other clients are found
//!   by [`Vfs::refresh`], which reads the writers' pointers and drops the
//!   cache when any moved ([`Vfs::spawn_refresher`] runs it on a timer).
//! - **Writes** gather in the handle ([`Dirty`]) and are committed a chunk
//!   (5 MiB) at a time in the background, one commit in flight per handle;
//!   `flush`, `fsync` and `release` commit the rest and report any failure.
//!   Each commit is atomic, so a crash leaves the file as of the last
//!   commit, never a torn chunk.
//! - **Reads** go through a snapshot of the file taken at the first read
//!   (renewed after this handle commits or the cache is dropped): small
//!   reads fetch only the 1 MiB fragments they touch, sequential reads
//!   switch to whole chunks with the next three fetched ahead. Bytes still
//!   waiting to be committed are laid over what the server holds.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod dirty;
mod error;
mod inode;
mod view;

pub use crate::dirty::{CommitFirst, Dirty};
pub use crate::error::Error;
pub use crate::inode::{child, Inodes, ROOT};
pub use crate::view::{
    Attr, Counters, DirEntry, Options, SpaceSource, StatFs, Vfs, RENAME_NOREPLACE,
};

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
