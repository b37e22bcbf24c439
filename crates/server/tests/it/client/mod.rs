//! `peergos-core` against a real server: accounts, garbage collection
//! under uploads, batched reads, peer-to-peer homes, sharing and links,
//! and what the server stores of a user's social life.

mod account;
mod gc;
mod get_many;
mod p2p;
mod social;
mod social_privacy;
mod transfer;
