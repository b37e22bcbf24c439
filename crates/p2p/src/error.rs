//! The p2p layer's errors.

use libp2p::{Multiaddr, PeerId};

/// What went wrong in the p2p layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key does not make a libp2p identity.
    #[error("the server key is not a valid Ed25519 key: {0}")]
    Key(String),
    /// The transport could not be built.
    #[error("could not build the libp2p transport: {0}")]
    Transport(String),
    /// A listen address was refused.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// A bootstrap address has no `/p2p/<peer id>` at its end.
    #[error("the bootstrap address {0} does not end in /p2p/<peer id>")]
    BootstrapAddress(Multiaddr),
    /// A protocol is already being served.
    #[error("the protocol {0} is already served by this node")]
    AlreadyServed(String),
    /// The peer could not be reached.
    #[error("cannot reach peer {peer}: {reason}")]
    Unreachable {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// The peer does not speak the protocol.
    #[error("peer {peer} does not speak {protocol}")]
    Unsupported {
        /// The peer.
        peer: PeerId,
        /// The protocol.
        protocol: String,
    },
    /// Reading or writing a stream failed.
    #[error("p2p stream: {0}")]
    Io(#[from] std::io::Error),
    /// A message was larger than allowed.
    #[error("a p2p message of {size} bytes is larger than the limit of {limit}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The node has stopped.
    #[error("the p2p node has stopped")]
    Stopped,
}

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
