//! The server's integration tests, one binary: the stores and routes
//! directly, and (`client`) the real client (`peergos-core`) against a
//! server in the same process or on loopback.

mod accounts;
mod client;
mod common;
mod exchange_codec;
mod fuzz_seeds;
mod social;
mod transactions;
