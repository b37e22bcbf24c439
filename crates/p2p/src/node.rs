//! [`Node`]: the handle to a running swarm, its setup, and the
//! conversions between server keys and peer ids.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::kad::{self, store::MemoryStore};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{autonat, dcutr, identify, noise, ping, relay, tcp, yamux};
use tokio::sync::{mpsc, oneshot};

use libp2p::{Multiaddr, PeerId, Stream, StreamProtocol};

use crate::swarm::run;
use crate::{frame, Error, Result};

/// The Kademlia protocol id: Peergos servers form their own DHT rather
/// than joining the public IPFS one.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/peergos/kad/1.0.0");

/// What identify announces as the agent's protocol.
pub const IDENTIFY_PROTOCOL: &str = "/peergos/id/1.0.0";

/// How many times [`Node::request`] asks again when the peer dropped the
/// stream before taking it.
pub const REQUEST_ATTEMPTS: u32 = 10;

/// How long [`Node::open`] waits for a peer to be found and connected.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one relayed connection may last.
pub(crate) const RELAY_CIRCUIT_DURATION: Duration = Duration::from_secs(30 * 60);
/// How many bytes one relayed connection may carry.
pub(crate) const RELAY_CIRCUIT_BYTES: u64 = 1 << 30;

/// How long a connection with no open stream stays up.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// How a node is set up.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Addresses to listen on (`/ip4/0.0.0.0/tcp/4001`,
    /// `/ip4/0.0.0.0/udp/4001/quic-v1`). Empty: listen nowhere (the node
    /// can still dial out).
    pub listen: Vec<Multiaddr>,
    /// Peers to join the network through, each `.../p2p/<peer id>`.
    pub bootstrap: Vec<Multiaddr>,
    /// Addresses to announce besides the ones the node observes (a public
    /// address in front of a port forward).
    pub external: Vec<Multiaddr>,
    /// Relays to be reachable through (each `.../p2p/<relay peer id>`),
    /// for a node that others cannot dial directly. A node that AutoNAT
    /// finds private also listens through its bootstrap peers.
    pub relays: Vec<Multiaddr>,
}

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) kad: kad::Behaviour<MemoryStore>,
    pub(crate) relay: relay::client::Behaviour,
    pub(crate) relay_server: relay::Behaviour,
    pub(crate) dcutr: dcutr::Behaviour,
    pub(crate) autonat: autonat::Behaviour,
    pub(crate) streams: libp2p_stream::Behaviour,
}

pub(crate) enum Command {
    /// Find a peer's addresses through Kademlia and dial it.
    Find(PeerId, oneshot::Sender<Result<(), String>>),
    /// Remember an address for a peer.
    AddAddress(PeerId, Multiaddr),
    /// The node's listen addresses.
    Listening(oneshot::Sender<Vec<Multiaddr>>),
    /// The peers connected now.
    Connected(oneshot::Sender<Vec<PeerId>>),
}

/// A running libp2p node. Cheap to clone; the swarm runs on its own task
/// until every clone is dropped.
#[derive(Clone)]
pub struct Node {
    peer_id: PeerId,
    control: libp2p_stream::Control,
    commands: mpsc::UnboundedSender<Command>,
}

/// The libp2p identity of an Ed25519 key seed.
pub fn keypair(seed: &[u8; 32]) -> Result<Keypair> {
    Keypair::ed25519_from_bytes(*seed).map_err(|e| Error::Key(e.to_string()))
}

/// The peer id an Ed25519 public key has.
pub fn peer_id_of(public: &[u8; 32]) -> Result<PeerId> {
    let key = libp2p::identity::ed25519::PublicKey::try_from_bytes(public)
        .map_err(|e| Error::Key(e.to_string()))?;
    Ok(libp2p::identity::PublicKey::from(key).to_peer_id())
}

/// The Ed25519 public key inside a peer id, if it carries one (every
/// Peergos server's does: Ed25519 ids embed the key).
pub fn ed25519_of(peer: &PeerId) -> Option<[u8; 32]> {
    let multihash = peer.as_ref();
    // Identity multihash (code 0): the digest is the protobuf public key.
    if multihash.code() != 0 {
        return None;
    }
    let key = libp2p::identity::PublicKey::try_decode_protobuf(multihash.digest()).ok()?;
    key.try_into_ed25519().ok().map(|k| k.to_bytes())
}

/// The relay service. Every server relays for the others, so a home
/// behind NAT is reachable through any of them until hole punching
/// (DCUtR) gives a direct connection.
///
/// Its status is fixed at enabled. Left to itself, libp2p's relay
/// server (0.22) enables and disables itself as confirmed external
/// addresses come and go, and each change sends an event to every
/// connection it knows, relayed ones included, whose handlers cannot take
/// it: the connection's task panics (`unreachable!` in libp2p-swarm's
/// `Either` handler). A home that lost its relay hit exactly that while a
/// relayed connection was still closing.
pub(crate) fn relay_server(id: PeerId) -> relay::Behaviour {
    let mut server = relay::Behaviour::new(
        id,
        relay::Config {
            max_circuit_duration: RELAY_CIRCUIT_DURATION,
            max_circuit_bytes: RELAY_CIRCUIT_BYTES,
            ..relay::Config::default()
        },
    );
    // No connection exists yet, so this change notifies none.
    server.set_status(Some(relay::Status::Enable));
    server
}

pub(crate) fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

impl Node {
    /// Starts a node with the identity of `seed` (the server's Ed25519
    /// key). It listens where `config` says and dials the bootstrap peers.
    pub async fn start(seed: &[u8; 32], config: &Config) -> Result<Node> {
        let key = keypair(seed)?;
        let peer_id = key.public().to_peer_id();
        let alone = config.bootstrap.is_empty();
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| Error::Transport(e.to_string()))?
            .with_quic()
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .map_err(|e| Error::Transport(e.to_string()))?
            .with_behaviour(|key, relay| {
                let id = key.public().to_peer_id();
                let mut kad_config = kad::Config::new(KAD_PROTOCOL);
                kad_config.set_query_timeout(OPEN_TIMEOUT);
                if alone {
                    // A network of one until someone joins: nothing to
                    // bootstrap from (peers that join fill the table).
                    kad_config.set_periodic_bootstrap_interval(None);
                }
                let mut kad = kad::Behaviour::with_config(id, MemoryStore::new(id), kad_config);
                // Every Peergos server is reachable by definition (it is
                // someone's home), so it serves the DHT from the start.
                kad.set_mode(Some(kad::Mode::Server));
                Behaviour {
                    identify: identify::Behaviour::new(
                        identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public())
                            .with_agent_version(format!("peergos-rs/{}", env!("CARGO_PKG_VERSION")))
                            // Tell connected peers at once when an address
                            // comes or goes (a reservation at a relay), so
                            // the DHT hands out how to reach us now.
                            .with_push_listen_addr_updates(true),
                    ),
                    ping: ping::Behaviour::default(),
                    kad,
                    relay,
                    relay_server: relay_server(id),
                    dcutr: dcutr::Behaviour::new(id),
                    autonat: autonat::Behaviour::new(id, autonat::Config::default()),
                    streams: libp2p_stream::Behaviour::new(),
                }
            })
            .map_err(|e| Error::Transport(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_TIMEOUT))
            .build();
        for addr in &config.listen {
            swarm.listen_on(addr.clone()).map_err(|e| Error::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
        }
        for addr in &config.external {
            swarm.add_external_address(addr.clone());
        }
        for addr in &config.bootstrap {
            let peer = peer_of(addr).ok_or_else(|| Error::BootstrapAddress(addr.clone()))?;
            swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
            if let Err(e) = swarm.dial(addr.clone()) {
                tracing::warn!(%addr, error = %e, "cannot dial a bootstrap peer");
            }
        }
        // Listening through a relay starts once connected to it (the relay
        // client refuses to dial a peer that a dial is already under way
        // to, such as a bootstrap peer).
        let mut relays = HashMap::new();
        for relay in &config.relays {
            let peer = peer_of(relay).ok_or_else(|| Error::BootstrapAddress(relay.clone()))?;
            if !config.bootstrap.contains(relay) {
                swarm.behaviour_mut().kad.add_address(&peer, relay.clone());
                if let Err(e) = swarm.dial(relay.clone()) {
                    tracing::warn!(%relay, error = %e, "cannot dial a relay");
                }
            }
            relays.insert(peer, relay.clone().with(Protocol::P2pCircuit));
        }
        let control = swarm.behaviour().streams.new_control();
        let (commands, receiver) = mpsc::unbounded_channel();
        // Wait until every listener is up, so the addresses are known.
        let mut pending = config.listen.len();
        while pending > 0 {
            match swarm.select_next_some().await {
                SwarmEvent::NewListenAddr { address, .. } => {
                    tracing::info!(%address, %peer_id, "p2p listening");
                    if !address.iter().any(|p| p == Protocol::P2pCircuit) {
                        pending -= 1;
                    }
                }
                SwarmEvent::ListenerError { error, .. } => {
                    return Err(Error::Transport(error.to_string()))
                }
                SwarmEvent::ListenerClosed { reason, .. } => {
                    return Err(Error::Transport(format!("a listener closed: {reason:?}")))
                }
                _ => {}
            }
        }
        tokio::spawn(run(
            swarm,
            receiver,
            alone,
            config.bootstrap.clone(),
            relays,
        ));
        Ok(Node {
            peer_id,
            control,
            commands,
        })
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The addresses the node listens on.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Listening(tx))
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// The peers connected now.
    pub async fn connected(&self) -> Result<Vec<PeerId>> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Connected(tx))
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Remembers an address of `peer` (for peers known out of band).
    pub fn add_address(&self, peer: PeerId, addr: Multiaddr) -> Result<()> {
        self.commands
            .send(Command::AddAddress(peer, addr))
            .map_err(|_| Error::Stopped)
    }

    /// Serves `protocol`: every stream a peer opens for it arrives here.
    pub fn accept(&self, protocol: StreamProtocol) -> Result<libp2p_stream::IncomingStreams> {
        self.control
            .clone()
            .accept(protocol.clone())
            .map_err(|_| Error::AlreadyServed(protocol.to_string()))
    }

    /// Opens a stream for `protocol` to `peer`, looking the peer up in the
    /// DHT first when no address of it is known.
    pub async fn open(&self, peer: PeerId, protocol: StreamProtocol) -> Result<Stream> {
        let mut control = self.control.clone();
        let first =
            match tokio::time::timeout(OPEN_TIMEOUT, control.open_stream(peer, protocol.clone()))
                .await
            {
                Ok(Ok(stream)) => return Ok(stream),
                Ok(Err(libp2p_stream::OpenStreamError::UnsupportedProtocol(_))) => {
                    return Err(Error::Unsupported {
                        peer,
                        protocol: protocol.to_string(),
                    })
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "timed out".to_string(),
            };
        tracing::debug!(%peer, reason = %first, "no direct route; asking the DHT");
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Find(peer, tx))
            .map_err(|_| Error::Stopped)?;
        match rx.await {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => {
                return Err(Error::Unreachable {
                    peer,
                    reason: format!("{first}; the DHT lookup: {reason}"),
                })
            }
            Err(_) => return Err(Error::Stopped),
        }
        match tokio::time::timeout(OPEN_TIMEOUT, control.open_stream(peer, protocol.clone())).await
        {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(libp2p_stream::OpenStreamError::UnsupportedProtocol(_))) => {
                Err(Error::Unsupported {
                    peer,
                    protocol: protocol.to_string(),
                })
            }
            Ok(Err(e)) => Err(Error::Unreachable {
                peer,
                reason: e.to_string(),
            }),
            Err(_) => Err(Error::Unreachable {
                peer,
                reason: "timed out opening a stream".into(),
            }),
        }
    }
}

impl Node {
    /// One request and its answer over a fresh stream for `protocol`:
    /// writes `message`, waits for the peer's [`frame::ACCEPTED`], reads
    /// the answer (at most `limit` bytes). A stream the peer dropped
    /// before taking it (it never saw the request) is retried, with a
    /// growing pause, up to [`REQUEST_ATTEMPTS`] times; any failure after
    /// the peer took the request is returned as is.
    pub async fn request(
        &self,
        peer: PeerId,
        protocol: StreamProtocol,
        message: &[u8],
        limit: usize,
    ) -> Result<Vec<u8>> {
        use futures::AsyncReadExt;
        let mut pause = Duration::from_millis(5);
        let mut attempt = 1;
        loop {
            let mut stream = self.open(peer, protocol.clone()).await?;
            let taken = async {
                frame::write(&mut stream, message).await?;
                let mut byte = [0u8; 1];
                stream.read_exact(&mut byte).await?;
                Ok::<bool, Error>(byte[0] == frame::ACCEPTED)
            }
            .await;
            match taken {
                Ok(true) => return frame::read(&mut stream, limit).await,
                Ok(false) => {
                    return Err(Error::Io(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("peer {peer} answered {protocol} without accepting the stream"),
                    )))
                }
                Err(e) if attempt < REQUEST_ATTEMPTS => {
                    tracing::debug!(%peer, %protocol, attempt, error = %e, "stream not taken; asking again");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ids_carry_their_ed25519_key() {
        let seed = [7u8; 32];
        let key = keypair(&seed).unwrap();
        let peer = key.public().to_peer_id();
        let public = ed25519_of(&peer).unwrap();
        assert_eq!(peer_id_of(&public).unwrap(), peer);
        // A different seed gives a different id.
        assert_ne!(keypair(&[8u8; 32]).unwrap().public().to_peer_id(), peer);
    }

    #[test]
    fn bootstrap_addresses_need_a_peer_id() {
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
        assert_eq!(peer_of(&addr), None);
        let peer = keypair(&[1u8; 32]).unwrap().public().to_peer_id();
        let with = addr.with(Protocol::P2p(peer));
        assert_eq!(peer_of(&with), Some(peer));
    }
}
