//! Dev-only helpers shared by the peergos test suites.
//!
//! - [`blockstore`]: the conformance suite every `BlockStore` backend runs,
//!   via [`blockstore_conformance!`].
//! - [`cryptree`]: a filesystem over memory stores, and test data.
//! - [`daemon`]: a real `peergos-daemon` process on a free port.
//! - [`netns`]: networks of Linux namespaces with homes behind NAT routers.
//! - [`hostile`]: a proxy in front of a real daemon that flips,
//!   truncates, swaps, drops, replays or stalls what passes.
//! - [`fuzz`]: the bodies of the cargo-fuzz targets, so that `fuzz/` and the
//!   corpus replay test (`tests/fuzz_corpora.rs`) run the same code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod blockstore;
pub mod cryptree;
pub mod daemon;
pub mod fuzz;
pub mod hostile;
pub mod netns;
pub mod pointers;
pub mod postgres;
pub mod s3;
