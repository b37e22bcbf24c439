//! The swarm task behind a [`crate::Node`]: commands from handles, swarm
//! events, Kademlia lookups, and the relays the node listens through.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use libp2p::kad::{self};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{autonat, identify, Swarm};
use tokio::sync::{mpsc, oneshot};

use libp2p::{Multiaddr, PeerId};

use crate::node::{peer_of, Behaviour, BehaviourEvent, Command, KAD_PROTOCOL};
use crate::Result;

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
pub(crate) struct Circuits {
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
pub(crate) async fn run(
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
