//! The libp2p node's integration tests, one binary.

mod node;
