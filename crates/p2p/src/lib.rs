//! The libp2p node every Peergos server runs.
//!
//! A [`Node`] is a libp2p swarm over TCP and QUIC (Noise and Yamux on
//! TCP), with identify, ping, Kademlia under Peergos' own protocol id
//! ([`KAD_PROTOCOL`]) for finding servers by peer id, and a relay client,
//! hole punching (DCUtR) and AutoNAT so a home server behind NAT stays
//! reachable. Its peer id comes from the server's Ed25519 key, so the id a
//! user's PKI claim names is the id the network authenticates.
//!
//! What servers say to each other runs over streams (`libp2p-stream`):
//! [`Node::open`] opens a stream for a protocol to a peer (finding it
//! through Kademlia when it is not connected), [`Node::accept`] serves
//! one, and [`frame`] moves one length-prefixed message at a time. The
//! protocols themselves (the HTTP tunnel, block exchange) are defined by
//! the server; this crate knows nothing of blocks or users.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod error;
pub mod frame;
mod node;
mod swarm;

pub use crate::error::{Error, Result};
pub use crate::node::{
    ed25519_of, keypair, peer_id_of, Config, Node, IDENTIFY_PROTOCOL, KAD_PROTOCOL, OPEN_TIMEOUT,
    REQUEST_ATTEMPTS,
};
pub use libp2p::{Multiaddr, PeerId, Stream, StreamProtocol};
