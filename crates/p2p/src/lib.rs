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

pub mod frame;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::kad::{self, store::MemoryStore};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{autonat, dcutr, identify, noise, ping, relay, tcp, yamux, Swarm};
use tokio::sync::{mpsc, oneshot};

pub use libp2p::{Multiaddr, PeerId, Stream, StreamProtocol};

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
const RELAY_CIRCUIT_DURATION: Duration = Duration::from_secs(30 * 60);
/// How many bytes one relayed connection may carry.
const RELAY_CIRCUIT_BYTES: u64 = 1 << 30;

/// How long a connection with no open stream stays up.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

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
struct Behaviour {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    kad: kad::Behaviour<MemoryStore>,
    relay: relay::client::Behaviour,
    relay_server: relay::Behaviour,
    dcutr: dcutr::Behaviour,
    autonat: autonat::Behaviour,
    streams: libp2p_stream::Behaviour,
}

enum Command {
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
fn relay_server(id: PeerId) -> relay::Behaviour {
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

fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
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

type Finds = HashMap<kad::QueryId, (PeerId, Vec<oneshot::Sender<Result<(), String>>>)>;

/// The first pause before listening through a relay again after losing
/// it; it doubles after each failure, up to [`RELAY_RETRY_MAX`].
const RELAY_RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest pause between attempts to listen through a lost relay.
const RELAY_RETRY_MAX: Duration = Duration::from_secs(60);
/// How long a configured relay waits for its connection (usually the
/// bootstrap dial) before the node asks it for a reservation anyway.
const RELAY_FIRST_WAIT: Duration = Duration::from_secs(5);

/// The relays a node listens through (`.../p2p/<relay>/p2p-circuit`): the
/// configured ones once connected to them, its bootstrap peers once
/// AutoNAT finds it private. A reservation that ends (the relay
/// restarted, the connection dropped) is asked for again with a growing
/// pause, so a home behind NAT becomes reachable again by itself.
struct Circuits {
    /// Configured relays, listened through once first connected.
    waiting: HashMap<PeerId, Multiaddr>,
    /// Listeners up or being set up, by id.
    active: HashMap<libp2p::core::transport::ListenerId, Multiaddr>,
    /// Circuits to listen through at a given time: lost ones, and
    /// configured ones whose connection never came.
    retry: Vec<(tokio::time::Instant, Multiaddr)>,
    /// The pause to use when a circuit is lost again.
    pause: HashMap<Multiaddr, Duration>,
}

impl Circuits {
    /// Starts with the configured relays: those already connected (while
    /// the node was starting) are listened through now, the others once
    /// connected, and all of them after [`RELAY_FIRST_WAIT`] at the
    /// latest, so a connection event missed or a dial that failed does
    /// not leave the node without its relays.
    fn start(swarm: &mut Swarm<Behaviour>, waiting: HashMap<PeerId, Multiaddr>) -> Circuits {
        let first = tokio::time::Instant::now() + RELAY_FIRST_WAIT;
        let mut circuits = Circuits {
            retry: waiting.values().map(|c| (first, c.clone())).collect(),
            waiting,
            active: HashMap::new(),
            pause: HashMap::new(),
        };
        let connected: Vec<PeerId> = circuits
            .waiting
            .keys()
            .filter(|peer| swarm.is_connected(peer))
            .copied()
            .collect();
        for peer in connected {
            if let Some(circuit) = circuits.waiting.remove(&peer) {
                circuits.listen(swarm, circuit);
            }
        }
        circuits
    }

    /// Starts listening through `circuit`; a refusal is tried again later.
    fn listen(&mut self, swarm: &mut Swarm<Behaviour>, circuit: Multiaddr) {
        if self.active.values().any(|c| *c == circuit) {
            return;
        }
        match swarm.listen_on(circuit.clone()) {
            Ok(id) => {
                self.active.insert(id, circuit);
            }
            Err(e) => {
                tracing::warn!(%circuit, error = %e, "cannot listen through a relay");
                self.lost(circuit);
            }
        }
    }

    /// Schedules another attempt at `circuit`.
    fn lost(&mut self, circuit: Multiaddr) {
        let pause = self
            .pause
            .get(&circuit)
            .copied()
            .unwrap_or(RELAY_RETRY_FIRST);
        self.pause
            .insert(circuit.clone(), (pause * 2).min(RELAY_RETRY_MAX));
        tracing::info!(%circuit, ?pause, "lost a relay reservation; asking again later");
        self.retry
            .push((tokio::time::Instant::now() + pause, circuit));
    }

    /// What the swarm reported, as far as relay listeners go.
    fn on_event(&mut self, swarm: &mut Swarm<Behaviour>, event: &SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                if let Some(circuit) = self.waiting.remove(peer_id) {
                    self.listen(swarm, circuit);
                }
            }
            // A reservation granted: the next loss starts from a short
            // pause again.
            SwarmEvent::NewListenAddr { listener_id, .. } => {
                if let Some(circuit) = self.active.get(listener_id) {
                    self.pause.remove(circuit);
                }
            }
            SwarmEvent::ListenerClosed { listener_id, .. } => {
                if let Some(circuit) = self.active.remove(listener_id) {
                    self.lost(circuit);
                }
            }
            _ => {}
        }
    }

    /// When the next attempt is due, if any is waiting.
    fn next_retry(&self) -> Option<tokio::time::Instant> {
        self.retry.iter().map(|(at, _)| *at).min()
    }

    /// Listens through every circuit whose time has come (a lost one after
    /// its pause, a configured one after its first wait).
    fn retry_due(&mut self, swarm: &mut Swarm<Behaviour>) {
        let now = tokio::time::Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = self.retry.drain(..).partition(|(at, _)| *at <= now);
        self.retry = later;
        for (_, circuit) in due {
            self.listen(swarm, circuit);
        }
    }
}

/// The swarm's event loop: answers commands, feeds identified listen
/// addresses to Kademlia, finishes DHT lookups, and keeps the relay
/// reservations up.
async fn run(
    mut swarm: Swarm<Behaviour>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    alone: bool,
    bootstrap: Vec<Multiaddr>,
    relays: HashMap<PeerId, Multiaddr>,
) {
    let mut circuits = Circuits::start(&mut swarm, relays);
    let mut relayed = false;
    let finds: Arc<Mutex<Finds>> = Arc::default();
    if !alone {
        if let Err(e) = swarm.behaviour_mut().kad.bootstrap() {
            tracing::debug!(error = %e, "no DHT bootstrap");
        }
    }
    loop {
        let next_retry = circuits.next_retry();
        tokio::select! {
            command = commands.recv() => {
                let Some(command) = command else { return };
                handle_command(&mut swarm, command, &finds, &bootstrap);
            }
            () = async {
                match next_retry {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => circuits.retry_due(&mut swarm),
            event = swarm.select_next_some() => {
                if let SwarmEvent::Behaviour(BehaviourEvent::Autonat(
                    autonat::Event::StatusChanged { new, .. },
                )) = &event
                {
                    tracing::info!(status = ?new, "p2p reachability");
                    if *new == autonat::NatStatus::Private && !relayed {
                        // Others cannot dial us: be reachable through the
                        // servers we joined by.
                        relayed = true;
                        for addr in &bootstrap {
                            circuits.listen(&mut swarm, addr.clone().with(Protocol::P2pCircuit));
                        }
                    }
                }
                circuits.on_event(&mut swarm, &event);
                handle_event(&mut swarm, event, &finds)
            }
        }
    }
}

fn handle_command(
    swarm: &mut Swarm<Behaviour>,
    command: Command,
    finds: &Mutex<Finds>,
    bootstrap: &[Multiaddr],
) {
    match command {
        Command::Find(peer, reply) => {
            // Every address we hold for the peer just failed (Node::open
            // tried them). Forget them, or the lookup tries them first,
            // waits for them to time out, and never dials the addresses
            // the network answers with (a lookup contacts each peer once):
            // a home that is back behind a new reservation would stay
            // unreachable. A bootstrap peer keeps its configured address.
            let kad = &mut swarm.behaviour_mut().kad;
            kad.remove_peer(&peer);
            for addr in bootstrap.iter().filter(|a| peer_of(a) == Some(peer)) {
                kad.add_address(&peer, addr.clone());
            }
            let id = swarm.behaviour_mut().kad.get_closest_peers(peer);
            let mut finds = finds.lock().unwrap_or_else(|p| p.into_inner());
            finds
                .entry(id)
                .or_insert_with(|| (peer, Vec::new()))
                .1
                .push(reply);
        }
        Command::AddAddress(peer, addr) => {
            swarm.behaviour_mut().kad.add_address(&peer, addr);
        }
        Command::Listening(reply) => {
            let _ = reply.send(swarm.listeners().cloned().collect());
        }
        Command::Connected(reply) => {
            let _ = reply.send(swarm.connected_peers().copied().collect());
        }
    }
}

fn handle_event(
    swarm: &mut Swarm<Behaviour>,
    event: SwarmEvent<BehaviourEvent>,
    finds: &Mutex<Finds>,
) {
    match event {
        // Only peers that speak our DHT go into its routing table.
        SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
            peer_id,
            info,
            ..
        })) if info.protocols.contains(&KAD_PROTOCOL) => {
            for addr in info.listen_addrs {
                swarm.behaviour_mut().kad.add_address(&peer_id, addr);
            }
        }
        SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
            id,
            result: kad::QueryResult::GetClosestPeers(result),
            step,
            ..
        })) => {
            if let Ok(ok) = &result {
                tracing::debug!(
                    target = ?PeerId::from_bytes(&ok.key).ok(),
                    found = ?ok.peers.iter().map(|p| (p.peer_id, &p.addrs)).collect::<Vec<_>>(),
                    last = step.last,
                    "DHT lookup step"
                );
            }
            let found = match &result {
                Ok(ok) => ok.peers.iter().find_map(|p| {
                    finds
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&id)
                        .filter(|(wanted, _)| *wanted == p.peer_id)
                        .map(|_| p.addrs.clone())
                }),
                Err(_) => None,
            };
            if let Some(addrs) = found {
                let mut finds = finds.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((peer, replies)) = finds.remove(&id) {
                    for addr in addrs {
                        swarm.behaviour_mut().kad.add_address(&peer, addr);
                    }
                    if let Some(mut query) = swarm.behaviour_mut().kad.query_mut(&id) {
                        query.finish();
                    }
                    for reply in replies {
                        let _ = reply.send(Ok(()));
                    }
                }
            } else if step.last {
                let mut finds = finds.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((peer, replies)) = finds.remove(&id) {
                    let reason = match result {
                        Err(e) => e.to_string(),
                        Ok(_) => format!("no server in the network knows {peer}"),
                    };
                    for reply in replies {
                        let _ = reply.send(Err(reason.clone()));
                    }
                }
            }
        }
        SwarmEvent::ConnectionEstablished {
            peer_id, endpoint, ..
        } => {
            tracing::debug!(%peer_id, address = %endpoint.get_remote_address(), "p2p connected");
        }
        SwarmEvent::ConnectionClosed { peer_id, cause, .. } => {
            tracing::debug!(%peer_id, ?cause, "p2p disconnected");
        }
        SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
            tracing::debug!(?peer_id, %error, "p2p dial failed");
        }
        SwarmEvent::NewListenAddr { address, .. } => {
            tracing::info!(%address, "p2p listening");
        }
        SwarmEvent::ListenerClosed {
            addresses, reason, ..
        } => {
            tracing::warn!(?addresses, ?reason, "a p2p listener closed");
        }
        SwarmEvent::ListenerError { error, .. } => {
            tracing::warn!(%error, "a p2p listener failed");
        }
        SwarmEvent::ExternalAddrConfirmed { address } => {
            tracing::info!(%address, "p2p address confirmed reachable");
        }
        _ => {}
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
