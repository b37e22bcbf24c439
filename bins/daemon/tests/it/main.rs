//! The daemon's integration tests, one binary: the daemon as a process, hostile servers, resource bounds, a full disk, operations, social routes, and (ignored, run by `cargo xtask integration`) the multi-daemon network and replica scenarios.

mod daemon;
mod disk;
mod hostile;
mod network;
mod operations;
mod replicas;
mod resources;
mod social;
