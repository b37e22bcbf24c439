//! Several servers in one process, each with its own data directory, HTTP
//! port and libp2p node on loopback: users reach each other across
//! servers, any server stands in for a user's home, mirrors follow the
//! PKI node and refuse a PKI that rewrites history, and block exchange
//! keeps the access rules.

use std::sync::Arc;

use peergos_blockstore::LocalBlockStore;
use peergos_core::{open_link, HttpNetwork, LinkOptions, NetworkAccess, Place, UserContext};
use peergos_server::peers::Want;
use peergos_server::{Config, Multiaddr, P2pConfig, Server};

struct Node {
    server: Arc<Server>,
    url: String,
    _dir: tempfile::TempDir,
}

impl Node {
    /// A server on fresh loopback ports; mirroring `pki`'s PKI when given.
    async fn start(pki: Option<&Node>) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path());
        config.p2p = Some(P2pConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            bootstrap: match pki {
                Some(pki) => vec![pki.p2p_addr().await],
                None => Vec::new(),
            },
            external: Vec::new(),
            relays: Vec::new(),
        });
        config.pki_node = pki.map(|p| p.server.peer_id());
        let server = Server::open(config).await.unwrap();
        let url = peergos_testkit::daemon::serve_on_loopback(Arc::clone(&server)).await;
        Node {
            server,
            url,
            _dir: dir,
        }
    }

    async fn p2p_addr(&self) -> Multiaddr {
        let node = self.server.node().unwrap();
        let addr = node.listen_addrs().await.unwrap()[0].clone();
        format!("{addr}/p2p/{}", self.server.peer_id())
            .parse()
            .unwrap()
    }

    fn net(&self) -> Arc<dyn NetworkAccess> {
        peergos_core::init_tls();
        Arc::new(HttpNetwork::new(&self.url).unwrap())
    }

    async fn stored(&self) -> usize {
        use futures::StreamExt;
        self.server.blocks().list().count().await
    }
}

async fn cached(node: &Node) -> usize {
    use futures::StreamExt;
    node.server.cache().list().count().await
}

async fn signup(node: &Node, name: &str) -> UserContext {
    UserContext::signup(node.net(), name, &format!("{name} password"), None)
        .await
        .unwrap()
}

async fn login(node: &Node, name: &str) -> UserContext {
    UserContext::login(node.net(), name, &format!("{name} password"))
        .await
        .unwrap()
}

async fn read(user: &UserContext, path: &str) -> Vec<u8> {
    match user.locate(path).await.unwrap() {
        Place::Fs { fs, path } => {
            let mut out = Vec::new();
            fs.download(&path, &mut out).await.unwrap();
            out
        }
        Place::Virtual { .. } => panic!("{path} is a virtual directory"),
    }
}

fn data(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_reach_each_other_through_any_server() {
    let a = Node::start(None).await;
    let b = Node::start(Some(&a)).await;
    let c = Node::start(Some(&a)).await;

    // alice lives on A (the PKI node), carol on C (a mirror): carol's
    // claim went to A, and every mirror serves both names.
    let alice = signup(&a, "alice").await;
    let carol = signup(&c, "carol").await;
    for node in [&a, &b, &c] {
        for name in ["alice", "carol"] {
            assert!(
                node.server.pki_lookup(name).await.unwrap().chain.is_some(),
                "{name} on {}",
                node.url
            );
        }
    }
    assert_eq!(
        a.server.home_of_name("carol").await.unwrap(),
        Some(c.server.peer_id())
    );

    // alice logs in through B with B's address alone, and her upload
    // through B lands on A: B stores none of it.
    let b_before = b.stored().await;
    let a_before = a.stored().await;
    let through_b = login(&b, "alice").await;
    let file = data(3 << 20, 1);
    through_b
        .fs()
        .write_file("/via-b.bin", &file)
        .await
        .unwrap();
    assert_eq!(b.stored().await, b_before, "B stored blocks of alice's");
    assert!(a.stored().await > a_before);
    // The client on A sees it at once; the one on B reads it back.
    let mut back = Vec::new();
    alice.fs().download("/via-b.bin", &mut back).await.unwrap();
    assert_eq!(back, file);
    assert_eq!(read(&through_b, "/alice/via-b.bin").await, file);
    assert!(through_b.space().await.unwrap().used >= file.len() as u64);

    // carol (on C) follows alice (on A); alice accepts and shares.
    carol.follow("alice").await.unwrap();
    let pending = alice.follow_requests().await.unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].from, "carol");
    alice.accept("carol", true).await.unwrap();
    assert!(carol.follow_requests().await.unwrap().is_empty());
    assert!(alice.follow_requests().await.unwrap().is_empty());
    alice.fs().mkdir("/photos").await.unwrap();
    let photo = data(6 << 20, 2);
    alice
        .fs()
        .write_file("/photos/beach.jpg", &photo)
        .await
        .unwrap();
    alice
        .share("/alice/photos", &["carol"], false)
        .await
        .unwrap();
    // carol reads it through her own server, which fetches the blocks
    // from A over block exchange and keeps them in its cache.
    let before = cached(&c).await;
    assert_eq!(read(&carol, "/alice/photos/beach.jpg").await, photo);
    // The cache is written in the background.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while cached(&c).await <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "C did not cache what it fetched"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(c.server.pki_lookup("alice").await.unwrap().chain.is_some());
    // alice follows carol back (reciprocated) and sees carol's shares.
    carol.fs().mkdir("/notes").await.unwrap();
    carol
        .fs()
        .write_file("/notes/hi.txt", b"hello alice")
        .await
        .unwrap();
    carol
        .share("/carol/notes", &["alice"], false)
        .await
        .unwrap();
    assert_eq!(read(&alice, "/carol/notes/hi.txt").await, b"hello alice");

    // A secret link made on A opens through B and through C.
    let link = alice
        .create_link("/alice/photos/beach.jpg", LinkOptions::default())
        .await
        .unwrap();
    for node in [&b, &c] {
        let view = open_link(node.net(), &link, None).await.unwrap();
        let mut out = Vec::new();
        view.fs().download("/", &mut out).await.unwrap();
        assert_eq!(out, photo, "through {}", node.url);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_refuses_a_pki_that_rewrites_history() {
    use peergos_champ::{Champ, Writer};
    use peergos_keys::SigningKeyPair;
    use peergos_pointers::{PointerUpdate, SignedPointer};

    let a = Node::start(None).await;
    let b = Node::start(Some(&a)).await;
    signup(&a, "alice").await;
    signup(&a, "bob").await;
    assert!(b.server.sync_pki().await.is_ok());
    let status = b.server.mirror_status().unwrap();
    assert!(status.rejected.is_none());
    assert!(b.server.pki_lookup("bob").await.unwrap().chain.is_some());

    // The PKI node drops bob, signing the new root with its own key.
    let seed: [u8; 32] = std::fs::read(a._dir.path().join("server.key"))
        .unwrap()
        .try_into()
        .unwrap();
    let key = SigningKeyPair::from_seed(zeroize::Zeroizing::new(seed));
    let pki = *a.server.id();
    let current = a.server.pointers().get(&pki, &pki).await.unwrap().unwrap();
    let root = current.update.current.unwrap();
    let champ = Champ::new(Arc::clone(a.server.blocks()));
    let name = peergos_pki::name_key("bob");
    let value = champ.get(&root, &name).await.unwrap().unwrap();
    let tx = a.server.blocks().start_transaction(&pki).await.unwrap();
    let writer = Writer {
        owner: pki,
        keys: key.clone(),
        transaction: tx,
    };
    let forged = champ.remove(&writer, &root, &name, &value).await.unwrap();
    let update = PointerUpdate {
        previous: Some(root),
        current: Some(forged),
        sequence: current.update.sequence + 1,
    };
    let signed = SignedPointer::sign(&key, &pki, update).unwrap();
    a.server.pointers().set(&pki, &pki, signed).await.unwrap();

    // The mirror refuses it, says why, and keeps serving bob.
    let err = b.server.sync_pki().await.unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    let status = b.server.mirror_status().unwrap();
    assert_eq!(status.root, Some(root));
    assert!(status.rejected.unwrap().contains("a name was removed"));
    let metrics = b.server.render_metrics().await.unwrap();
    assert!(
        metrics.contains("peergos_pki_mirror_rejected 1"),
        "{metrics}"
    );
    assert!(b.server.pki_lookup("bob").await.unwrap().chain.is_some());
    // A client of B still logs in as bob, with the PKI checked.
    login(&b, "bob").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_exchange_keeps_the_access_rules() {
    let a = Node::start(None).await;
    let c = Node::start(Some(&a)).await;
    let alice = signup(&a, "alice").await;
    alice
        .fs()
        .write_file("/secret.txt", b"for alice's friends only")
        .await
        .unwrap();

    // Every block of alice's that carries access tokens is refused to a
    // server that asks without a proof; blocks without tokens (CHAMP
    // nodes, writer data) are served.
    use futures::StreamExt;
    let cids: Vec<_> = a.server.blocks().list().map(|c| c.unwrap()).collect().await;
    let wants: Vec<Want> = cids.iter().map(|&cid| Want { cid, auth: None }).collect();
    let answers = c.server.exchange(a.server.peer_id(), &wants).await.unwrap();
    assert_eq!(answers.len(), wants.len());
    let mut refused = 0;
    for (want, answer) in wants.iter().zip(&answers) {
        let local = a.server.blocks().get(&want.cid, None).await;
        match (local, answer) {
            (Ok(Some(bytes)), Ok(Some(sent))) => assert_eq!(&bytes, sent.data()),
            (Err(_), Err(body)) => {
                assert_eq!(body.code, peergos_api::ErrorCode::AccessDenied, "{body:?}");
                refused += 1;
            }
            (local, answer) => panic!("{}: {local:?} but {answer:?}", want.cid),
        }
    }
    assert!(refused > 0, "no block with access tokens was asked for");

    // A block nobody has: answered as absent, not as an error.
    let missing = peergos_ipld::Cid::hash(peergos_ipld::Codec::Raw, b"nobody stored this");
    let answer = c
        .server
        .exchange(
            a.server.peer_id(),
            &[Want {
                cid: missing,
                auth: None,
            }],
        )
        .await
        .unwrap();
    assert!(matches!(answer.as_slice(), [Ok(None)]));

    // A PKI claim sent by a client rather than a server is refused.
    let client = reqwest::Client::new();
    peergos_core::init_tls();
    let response = client
        .post(format!("{}/v1/pki/claim", a.url))
        .body(vec![0xa0])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnelled_logins_are_limited_per_server() {
    use peergos_server::peers::TunnelRequest;
    use peergos_server::{LOGIN_BURST, LOGIN_EVERY_SECS, PEER_LIMIT_FACTOR};

    let a = Node::start(None).await;
    let b = Node::start(Some(&a)).await;
    signup(&a, "alice").await;
    let params = TunnelRequest {
        method: "GET".into(),
        path: "/v1/login/alice/params".into(),
        content_type: None,
        body: Vec::new(),
    };
    // Server b asks a for alice's login parameters as fast as it can, as
    // a server guessing passwords for her would.
    let started = std::time::Instant::now();
    let mut answered = 0u32;
    let refused = loop {
        let answer = b.server.forward(a.server.peer_id(), &params).await.unwrap();
        if answer.status != 200 {
            break answer;
        }
        answered += 1;
        assert!(answered < 10_000, "the tunnel is never limited");
    };
    assert_eq!(refused.status, 429);
    let message = String::from_utf8_lossy(&refused.body).to_string();
    assert!(
        message.contains(&b.server.peer_id().to_string()),
        "the refusal names the server: {message}"
    );
    // The burst of ten clients' worth, plus what refilled meanwhile.
    let burst = LOGIN_BURST * PEER_LIMIT_FACTOR;
    let refill_every = LOGIN_EVERY_SECS as f64 / f64::from(PEER_LIMIT_FACTOR);
    let refilled = (started.elapsed().as_secs_f64() / refill_every).ceil() as u32;
    assert!(
        answered >= burst && answered <= burst + refilled,
        "{answered} answered; burst {burst}, {refilled} refilled"
    );
    // Clients reaching a directly are counted on their own.
    a.net().login_params("alice").await.unwrap();
    let metrics = a.server.render_metrics().await.unwrap();
    assert!(
        metrics.contains("peergos_rate_limited_total{route=\"/v1/login/{name}/params\"} 1"),
        "{metrics}"
    );
}
