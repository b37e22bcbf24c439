//! Real nodes on loopback: streams, both transports, and finding a peer
//! through the DHT.

use futures::StreamExt;
use peergos_p2p::{frame, Config, Multiaddr, Node, StreamProtocol};

const ECHO: StreamProtocol = StreamProtocol::new("/peergos/test-echo/1");

fn tcp() -> Config {
    Config {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        ..Config::default()
    }
}

fn with_peer(node: &Node, addr: &Multiaddr) -> Multiaddr {
    addr.clone().with(libp2p_p2p_protocol(node.peer_id()))
}

fn libp2p_p2p_protocol(peer: peergos_p2p::PeerId) -> libp2p::multiaddr::Protocol<'static> {
    libp2p::multiaddr::Protocol::P2p(peer)
}

/// A node that listens nowhere and knows one peer's address.
async fn client(seed: u8, bootstrap: Multiaddr) -> Node {
    Node::start(
        &[seed; 32],
        &Config {
            bootstrap: vec![bootstrap],
            ..Config::default()
        },
    )
    .await
    .unwrap()
}

/// A loopback TCP address nothing listens on yet (for a node that must
/// know its address before it starts, or come back on it).
fn free_loopback_addr() -> Multiaddr {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()
}

/// Echoes every message back, uppercased.
fn serve_echo(node: &Node) {
    let mut incoming = node.accept(ECHO).unwrap();
    tokio::spawn(async move {
        while let Some((_, mut stream)) = incoming.next().await {
            tokio::spawn(async move {
                while let Ok(message) = frame::read(&mut stream, 1 << 20).await {
                    if frame::write(&mut stream, &message.to_ascii_uppercase())
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
}

async fn echo(node: &Node, peer: peergos_p2p::PeerId, text: &[u8]) -> Vec<u8> {
    let mut stream = node.open(peer, ECHO).await.unwrap();
    frame::write(&mut stream, text).await.unwrap();
    frame::read(&mut stream, 1 << 20).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_over_tcp_and_quic() {
    let a = Node::start(
        &[1; 32],
        &Config {
            listen: vec![
                "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
                "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap(),
            ],
            ..Config::default()
        },
    )
    .await
    .unwrap();
    serve_echo(&a);
    let addrs = a.listen_addrs().await.unwrap();
    assert_eq!(addrs.len(), 2, "{addrs:?}");
    for addr in addrs {
        // A fresh client per transport, bootstrapped on that address only.
        let quic = addr.to_string().contains("quic");
        let b = client(if quic { 3 } else { 2 }, with_peer(&a, &addr)).await;
        assert_eq!(echo(&b, a.peer_id(), b"hello").await, b"HELLO", "{addr}");
        // Many messages on one stream, and a large one.
        let mut stream = b.open(a.peer_id(), ECHO).await.unwrap();
        for i in 0..20u8 {
            frame::write(&mut stream, &[b'a' + i; 1000]).await.unwrap();
            assert_eq!(
                frame::read(&mut stream, 1 << 20).await.unwrap(),
                vec![b'A' + i; 1000]
            );
        }
        let big = vec![b'x'; 600_000];
        frame::write(&mut stream, &big).await.unwrap();
        assert_eq!(
            frame::read(&mut stream, 1 << 20).await.unwrap().len(),
            600_000
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_is_found_through_the_dht() {
    // a is the bootstrap node; b and c know only a's address.
    let a = Node::start(&[10; 32], &tcp()).await.unwrap();
    let a_addr = with_peer(&a, &a.listen_addrs().await.unwrap()[0]);
    let joined = Config {
        bootstrap: vec![a_addr],
        ..tcp()
    };
    let b = Node::start(&[11; 32], &joined).await.unwrap();
    serve_echo(&b);
    let c = Node::start(&[12; 32], &joined).await.unwrap();
    // Wait until a has heard b's listen address (identify).
    let mut answer = None;
    for _ in 0..50 {
        if a.connected().await.unwrap().contains(&b.peer_id()) {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            answer = Some(echo(&c, b.peer_id(), b"found").await);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(answer.as_deref(), Some(&b"FOUND"[..]));
    assert!(c.connected().await.unwrap().contains(&b.peer_id()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_peers_and_protocols_are_clear_errors() {
    let a = Node::start(&[20; 32], &tcp()).await.unwrap();
    let a_addr = with_peer(&a, &a.listen_addrs().await.unwrap()[0]);
    let b = client(21, a_addr).await;
    // a serves no echo.
    let err = b.open(a.peer_id(), ECHO).await.unwrap_err();
    assert!(err.to_string().contains("does not speak"), "{err}");
    // Nobody knows this peer.
    let stranger = peergos_p2p::keypair(&[99; 32])
        .unwrap()
        .public()
        .to_peer_id();
    let err = b.open(stranger, ECHO).await.unwrap_err();
    assert!(err.to_string().contains("cannot reach peer"), "{err}");
    // A bootstrap address without a peer id.
    let err = Node::start(
        &[22; 32],
        &Config {
            bootstrap: vec!["/ip4/127.0.0.1/tcp/1".parse().unwrap()],
            ..Config::default()
        },
    )
    .await
    .err()
    .unwrap();
    assert!(err.to_string().contains("/p2p/<peer id>"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_of_requests_are_all_answered_whole() {
    const ASK: StreamProtocol = StreamProtocol::new("/peergos/test-ask/1");
    let a = Node::start(&[30; 32], &tcp()).await.unwrap();
    let a_addr = with_peer(&a, &a.listen_addrs().await.unwrap()[0]);
    let mut incoming = a.accept(ASK).unwrap();
    tokio::spawn(async move {
        while let Some((_, mut stream)) = incoming.next().await {
            tokio::spawn(async move {
                frame::accept(&mut stream).await.unwrap();
                let size = frame::read(&mut stream, 64).await.unwrap();
                let size = usize::from(size[0]) << 20;
                // Written, closed and dropped at once, with far more than
                // the stream's flow-control window still queued.
                frame::write_last(&mut stream, &vec![7u8; size])
                    .await
                    .unwrap();
            });
        }
    });
    let b = client(31, a_addr).await;
    // Many at once on one connection, as a server's block exchange runs:
    // more than libp2p-stream hands over at once, so some streams are
    // dropped before they are taken, and asked again.
    let asks: Vec<_> = (0..64u8)
        .map(|round| {
            let b = b.clone();
            let peer = a.peer_id();
            tokio::spawn(async move {
                let answer = b.request(peer, ASK, &[2], 16 << 20).await.unwrap();
                assert_eq!(answer.len(), 2 << 20, "request {round}");
                assert!(answer.iter().all(|&b| b == 7));
            })
        })
        .collect();
    for ask in asks {
        ask.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_public_address_is_reached_through_a_relay() {
    // a is public (it knows its address, as AutoNAT or --p2p-external
    // would tell it); n listens nowhere directly, only through a; b knows
    // a.
    let public = free_loopback_addr();
    let a = public_relay(&public).await;
    let a_addr = with_peer(&a, &a.listen_addrs().await.unwrap()[0]);
    let n = Node::start(
        &[41; 32],
        &Config {
            bootstrap: vec![a_addr.clone()],
            relays: vec![a_addr.clone()],
            ..Config::default()
        },
    )
    .await
    .unwrap();
    serve_echo(&n);
    // Wait for the relay to grant n its reservation.
    let mut circuit = None;
    for _ in 0..100 {
        let addrs = n.listen_addrs().await.unwrap();
        if let Some(addr) = addrs.iter().find(|a| a.to_string().contains("p2p-circuit")) {
            circuit = Some(addr.clone());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let circuit = circuit.expect("the relay gave no reservation");
    assert!(
        circuit.to_string().starts_with(&a_addr.to_string()),
        "{circuit}"
    );
    let b = client(42, a_addr).await;
    // b has no address of n's but a's circuit, found through the DHT.
    assert_eq!(
        echo_once_reachable(&b, &n, b"relayed").await.as_deref(),
        Some(&b"RELAYED"[..])
    );

    // The relay goes away while the relayed connection is open: n loses
    // its only external address, and both nodes keep running (libp2p's
    // relay server, left to change its status by itself, could panic a
    // connection's task at this point).
    drop(a);
    for _ in 0..20 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        for node in [&n, &b] {
            node.connected()
                .await
                .expect("a node stopped when its relay went away");
        }
    }
    let addrs = n.listen_addrs().await.unwrap();
    assert!(
        addrs.iter().all(|a| !a.to_string().contains("p2p-circuit")),
        "n still listens through the stopped relay: {addrs:?}"
    );

    // While the relay is down, b cannot reach n (and its DHT forgets the
    // circuit address that failed).
    assert!(b.open(n.peer_id(), ECHO).await.is_err());

    // The relay comes back (same key, same address): n asks it for a
    // reservation again by itself, and b reaches n through it once more,
    // finding the circuit again through the DHT.
    let _a = public_relay(&public).await;
    assert_eq!(
        echo_once_reachable(&b, &n, b"again").await.as_deref(),
        Some(&b"AGAIN"[..])
    );
}

/// A node that knows its public address `public` (as AutoNAT or
/// --p2p-external would tell it), so it relays for others.
async fn public_relay(public: &Multiaddr) -> Node {
    Node::start(
        &[40; 32],
        &Config {
            listen: vec![public.clone()],
            external: vec![public.clone()],
            ..Config::default()
        },
    )
    .await
    .unwrap()
}

/// Echoes `text` from `from` to `to` as soon as `to` can be reached (for
/// up to 10 s); None if it never could.
async fn echo_once_reachable(from: &Node, to: &Node, text: &[u8]) -> Option<Vec<u8>> {
    for _ in 0..40 {
        if let Ok(mut stream) = from.open(to.peer_id(), ECHO).await {
            frame::write(&mut stream, text).await.unwrap();
            return Some(frame::read(&mut stream, 1 << 20).await.unwrap());
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_relay_starts_later_is_reached_through_it() {
    // n starts while its relay is down (its dial to it fails): it keeps
    // asking, and is reachable through the relay once that is up.
    let public = free_loopback_addr();
    let relay_id = libp2p::identity::Keypair::ed25519_from_bytes([40; 32])
        .unwrap()
        .public()
        .to_peer_id();
    let relay_addr = public.clone().with(libp2p_p2p_protocol(relay_id));
    let n = Node::start(
        &[43; 32],
        &Config {
            bootstrap: vec![relay_addr.clone()],
            relays: vec![relay_addr.clone()],
            ..Config::default()
        },
    )
    .await
    .unwrap();
    serve_echo(&n);
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let _a = public_relay(&public).await;
    let b = client(44, relay_addr).await;
    assert_eq!(
        echo_once_reachable(&b, &n, b"late").await.as_deref(),
        Some(&b"LATE"[..])
    );
}
