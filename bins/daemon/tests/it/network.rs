//! Multi-daemon scenarios: three real `peergos-daemon` processes on
//! 127.0.0.1, each with its own data directory, HTTP port and p2p port.
//! A is the PKI node; B and C mirror it and join the network through it.
//!
//! Two more scenarios put home servers behind real NAT routers (network
//! namespaces and nftables, as root; see `peergos_testkit::netns`): two
//! homes reach each other through a relay on the internet and punch a
//! hole for a direct connection, or, behind symmetric NATs where no hole
//! can be punched, keep talking through the relay.
//!
//! Run with `cargo xtask integration` (which `cargo xtask ci` runs); they
//! are ignored by a plain `cargo test` so that each scenario runs once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use peergos_core::{open_link, HttpNetwork, LinkOptions, NetworkAccess, Place, UserContext};
use peergos_testkit::daemon::TempDaemon;
use peergos_testkit::netns::{Lab, Nat, PUBLIC_IP};

const DAEMON: &str = env!("CARGO_BIN_EXE_peergos-daemon");

fn http(url: &str) -> Arc<dyn NetworkAccess> {
    peergos_core::init_tls();
    Arc::new(HttpNetwork::new(url).unwrap())
}

/// A free loopback TCP port (for a p2p address that must survive a
/// restart).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Network {
    a: TempDaemon,
    b: TempDaemon,
    c: TempDaemon,
    _dirs: Vec<tempfile::TempDir>,
}

impl Network {
    fn start() -> Network {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let a_listen = format!("/ip4/127.0.0.1/tcp/{}", free_port());
        let a = TempDaemon::start(DAEMON, dirs[0].path(), &["--p2p-listen", &a_listen]);
        let bootstrap = a.p2p_addrs()[0].clone();
        assert!(bootstrap.ends_with(a.peer_id()), "{bootstrap}");
        let joined = |dir: &std::path::Path| {
            TempDaemon::start(
                DAEMON,
                dir,
                &["--bootstrap", &bootstrap, "--pki-node", a.peer_id()],
            )
        };
        let b = joined(dirs[1].path());
        let c = joined(dirs[2].path());
        Network {
            a,
            b,
            c,
            _dirs: dirs,
        }
    }
}

async fn signup(url: &str, name: &str) -> UserContext {
    UserContext::signup(http(url), name, &format!("{name} password"), None)
        .await
        .unwrap_or_else(|e| panic!("signing up {name} on {url}: {e}"))
}

async fn login(url: &str, name: &str) -> UserContext {
    UserContext::login(http(url), name, &format!("{name} password"))
        .await
        .unwrap_or_else(|e| panic!("logging in {name} through {url}: {e}"))
}

async fn read(user: &UserContext, path: &str) -> Vec<u8> {
    try_read(user, path)
        .await
        .unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Downloads `path` as `user` sees it, or says why not.
async fn try_read(user: &UserContext, path: &str) -> Result<Vec<u8>, String> {
    match user.locate(path).await.map_err(|e| e.to_string())? {
        Place::Fs { fs, path } => {
            let mut out = Vec::new();
            fs.download(&path, &mut out)
                .await
                .map_err(|e| e.to_string())?;
            Ok(out)
        }
        Place::Virtual { .. } => Err(format!("{path} is a virtual directory")),
    }
}

/// Tries `attempt` every half second until it succeeds or `secs` seconds
/// pass; then panics with the last error, saying what was awaited.
async fn eventually<T, E, F>(what: &str, secs: u64, mut attempt: impl FnMut() -> F) -> T
where
    E: std::fmt::Display,
    F: std::future::Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting: {what}: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("{what}: gave up after {secs} s: {e}"),
        }
    }
}

/// A name's chain as the server at `url` answers it (the CHAMP proof is
/// checked by the client library elsewhere; here only the chain matters).
async fn pki_chain_of(url: &str, name: &str) -> Result<peergos_pki::KeyChain, String> {
    let answer = http(url)
        .pki_lookup(name)
        .await
        .map_err(|e| e.to_string())?;
    let bytes = answer.chain.ok_or("no chain")?;
    peergos_pki::KeyChain::from_bytes(&bytes).map_err(|e| e.to_string())
}

/// What a secret link opens, read through the server at `url`.
async fn open(url: &str, link: &peergos_core::SecretLink) -> Vec<u8> {
    let view = open_link(http(url), link, None).await.unwrap();
    let mut out = Vec::new();
    view.fs().download("/", &mut out).await.unwrap();
    out
}

/// How many blocks the server with data directory `dir` stores.
fn stored_blocks(dir: &std::path::Path) -> usize {
    peergos_blockstore::file::stored_blocks(dir.join("blocks"))
        .unwrap()
        .len()
}

/// The block files under a file store's root (blocks held as database
/// rows are not files).
fn block_files(root: &std::path::Path) -> std::collections::BTreeSet<std::path::PathBuf> {
    let Ok(shards) = std::fs::read_dir(root.join("blocks")) else {
        return Default::default();
    };
    shards
        .flat_map(|shard| std::fs::read_dir(shard.unwrap().path()).unwrap())
        .map(|entry| entry.unwrap().path())
        .collect()
}

fn data(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "multi-daemon scenarios: run by cargo xtask integration"]
async fn three_daemons() {
    let started = Instant::now();
    let mut net = Network::start();
    let (a_url, b_url, c_url) = (
        net.a.url().to_string(),
        net.b.url().to_string(),
        net.c.url().to_string(),
    );
    eprintln!("three daemons up in {:?}", started.elapsed());

    // Signup on A (the PKI node) and on C (a mirror, whose claim goes to A).
    let alice = signup(&a_url, "alice").await;
    let carol = signup(&c_url, "carol").await;
    eprintln!("signed up alice on A and carol on C");

    // carol's name comes due (a simulated clock 200 days on): C forwards
    // the renewal to A, and the mirror B accepts it.
    let due = carol.name_expiry() - peergos_core::RENEW_WITHIN_SECS + 1;
    assert_eq!(carol.renew_name_at(due - 2).await.unwrap(), None);
    let renewed = carol.renew_name_at(due).await.unwrap().expect("due");
    assert_eq!(renewed, due + peergos_core::CLAIM_LIFETIME_SECS);
    let seen_on_b = eventually("B's mirror showing carol's renewal", 60, || async {
        let chain = pki_chain_of(&b_url, "carol").await?;
        if chain.current().expiry == renewed {
            Ok(chain)
        } else {
            Err(format!("expiry {}", chain.current().expiry))
        }
    })
    .await;
    assert_eq!(seen_on_b.links().len(), 2);
    // A renewal signed by any key but carol's is refused at the door.
    let mallory = peergos_keys::SigningKeyPair::random();
    let mut forged = seen_on_b.links().to_vec();
    let mut claim = forged[1].claim.clone();
    claim.expiry += 1000;
    forged.push(claim.sign(&mallory).unwrap());
    let answer = reqwest::Client::new()
        .post(format!("{c_url}/v1/pki/renew"))
        .body(peergos_ipld::cbor::to_vec(&forged).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 400);
    assert_eq!(
        pki_chain_of(&a_url, "carol")
            .await
            .unwrap()
            .current()
            .expiry,
        renewed
    );
    eprintln!("carol's renewal through C reached A and B; a forged one was refused");

    // alice logs in through B with B's address alone; her upload through
    // B lands on A.
    let b_dir = net._dirs[1].path().to_path_buf();
    let b_before = stored_blocks(&b_dir);
    let a_before = stored_blocks(net._dirs[0].path());
    let via_b = login(&b_url, "alice").await;
    let report = data(4 << 20, 3);
    via_b.fs().mkdir("/docs").await.unwrap();
    via_b
        .fs()
        .write_file("/docs/report.pdf", &report)
        .await
        .unwrap();
    assert_eq!(stored_blocks(&b_dir), b_before, "B kept alice's blocks");
    assert!(stored_blocks(net._dirs[0].path()) > a_before);
    let mut back = Vec::new();
    alice
        .fs()
        .download("/docs/report.pdf", &mut back)
        .await
        .unwrap();
    assert_eq!(back, report, "the upload through B is on A");
    eprintln!("login and upload through B landed on A");

    // carol (C) follows alice (A); alice accepts and shares a folder;
    // carol reads it through C.
    carol.follow("alice").await.unwrap();
    let pending = alice.follow_requests().await.unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    alice.accept("carol", false).await.unwrap();
    carol.follow_requests().await.unwrap();
    alice.share("/alice/docs", &["carol"], false).await.unwrap();
    assert_eq!(read(&carol, "/alice/docs/report.pdf").await, report);
    eprintln!("carol on C reads alice's share from A");

    // A secret link made on A opens through B and C.
    let link = alice
        .create_link("/alice/docs/report.pdf", LinkOptions::default())
        .await
        .unwrap();
    for url in [&b_url, &c_url] {
        assert_eq!(open(url, &link).await, report, "the link through {url}");
    }
    eprintln!("the link opens through B and C");

    // Stopping B does not affect A and C.
    drop(via_b);
    net.b.stop();
    let more = data(1 << 20, 9);
    alice
        .fs()
        .write_file("/docs/more.bin", &more)
        .await
        .unwrap();
    let carol = login(&c_url, "carol").await;
    assert_eq!(read(&carol, "/alice/docs/more.bin").await, more);
    assert_eq!(open(&c_url, &link).await, report);
    eprintln!("with B stopped, A and C work");

    // A fragment that rots on A's disk (A reads raw blocks without
    // re-hashing them) is refused by C, which checks every block it
    // fetches from a peer, and never enters C's cache.
    let a_store = net._dirs[0].path().join("blocks");
    let before = block_files(&a_store);
    alice
        .fs()
        .write_file("/docs/rot.bin", &data(2 << 20, 5))
        .await
        .unwrap();
    let rotten = block_files(&a_store)
        .into_iter()
        .filter(|path| !before.contains(path))
        .max_by_key(|path| std::fs::metadata(path).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&rotten).unwrap();
    bytes[1000] ^= 1;
    std::fs::write(&rotten, &bytes).unwrap();
    let name = rotten.file_name().unwrap().to_str().unwrap().to_string();
    let refused = try_read(&carol, "/alice/docs/rot.bin").await.unwrap_err();
    assert!(refused.contains(&name), "{refused}");
    let c_cache = net._dirs[2].path().join("cache");
    assert!(
        !block_files(&c_cache).iter().any(|p| p.ends_with(&name)),
        "C cached the rotten block"
    );
    eprintln!("a block rotten on A is refused through C: {refused}");

    // Stopping and restarting A loses nothing: everyone's data and the
    // cross-server paths come back.
    drop((alice, carol));
    net.a.restart();
    let a_url = net.a.url().to_string();
    let alice = login(&a_url, "alice").await;
    let mut back = Vec::new();
    alice
        .fs()
        .download("/docs/report.pdf", &mut back)
        .await
        .unwrap();
    assert_eq!(back, report);
    // C reaches the restarted A again (its p2p address is the same).
    let carol = eventually("carol logging in through C after A restarted", 30, || {
        UserContext::login(http(&c_url), "carol", "carol password")
    })
    .await;
    assert_eq!(read(&carol, "/alice/docs/more.bin").await, more);
    let pending = alice.follow_requests().await.unwrap();
    assert!(pending.is_empty(), "{pending:?}");
    // A new user on C after A's restart is claimed at A.
    signup(&c_url, "dave").await;
    assert!(alice.follow("dave").await.is_ok());
    eprintln!("after A's restart nothing is lost");
    eprintln!("scenarios done in {:?}", started.elapsed());
}

/// Daemons on a NAT lab: A on the internet (the PKI node, and the relay
/// the homes listen through), and one home server in each home, which
/// joins through A and is reachable from the test only on its management
/// address.
struct Homes {
    a: TempDaemon,
    homes: Vec<TempDaemon>,
    lab: Lab,
    _dirs: Vec<tempfile::TempDir>,
}

impl Homes {
    /// Builds the lab and starts the daemons; `None` (with a SKIPPED
    /// line) when this machine cannot build a lab and CI did not say it
    /// must (`PEERGOS_REQUIRE_NETNS`).
    fn start(scenario: &str, homes: usize, nat: Nat) -> Option<Homes> {
        let lab = match Lab::build(homes, nat) {
            Ok(lab) => lab,
            Err(why) if std::env::var_os("PEERGOS_REQUIRE_NETNS").is_none() => {
                eprintln!("SKIPPED {scenario}: cannot build the NAT lab: {why}");
                return None;
            }
            Err(why) => panic!("cannot build the NAT lab: {why}"),
        };
        let dirs: Vec<_> = (0..=homes).map(|_| tempfile::tempdir().unwrap()).collect();
        let a_p2p = format!("/ip4/{PUBLIC_IP}/tcp/{}", free_port());
        let a = TempDaemon::start(
            DAEMON,
            dirs[0].path(),
            &["--p2p-listen", &a_p2p, "--p2p-external", &a_p2p],
        );
        let a_addr = a.p2p_addrs()[0].clone();
        let homes = (0..homes)
            .map(|i| {
                let home = lab.home(i);
                let lan = &home.lan_ip;
                TempDaemon::start_in_netns(
                    &home.ns,
                    DAEMON,
                    dirs[i + 1].path(),
                    &format!("{}:0", home.management_ip),
                    &[
                        "--p2p-listen",
                        &format!("/ip4/{lan}/tcp/0,/ip4/{lan}/udp/0/quic-v1"),
                        "--bootstrap",
                        &a_addr,
                        "--pki-node",
                        a.peer_id(),
                        "--relay",
                        &a_addr,
                    ],
                )
            })
            .collect();
        Some(Homes {
            a,
            homes,
            lab,
            _dirs: dirs,
        })
    }

    /// Checks what each home announces: its LAN addresses, and (once A
    /// has granted its reservation, which may come after the home printed
    /// its addresses) its circuit through A, each naming the home's peer
    /// id once. Nothing else could reach it: no router forwards a port.
    fn assert_announced_addresses(&self) {
        let a_addr = &self.a.p2p_addrs()[0];
        for (i, home) in self.homes.iter().enumerate() {
            let id = home.peer_id();
            let lan = format!("/ip4/{}/", self.lab.home(i).lan_ip);
            let circuit = format!("{a_addr}/p2p-circuit/p2p/{id}");
            for addr in home.p2p_addrs() {
                assert_eq!(addr.matches(id).count(), 1, "home {i} announces {addr}");
                assert!(
                    (addr.starts_with(&lan) && addr.ends_with(&format!("/p2p/{id}")))
                        || *addr == circuit,
                    "home {i} announces {addr}"
                );
            }
        }
    }
}

/// hank (home 0) shares a folder with holly (home 1): holly follows him,
/// he accepts and shares `/hank/photos` holding `photo`.
async fn share_between_homes(net: &Homes, photo: &[u8]) -> (UserContext, UserContext) {
    let hank = signup(net.homes[0].url(), "hank").await;
    let holly = signup(net.homes[1].url(), "holly").await;
    eprintln!("signed up hank and holly, each on the server in their home");
    hank.fs().mkdir("/photos").await.unwrap();
    hank.fs()
        .write_file("/photos/beach.jpg", photo)
        .await
        .unwrap();
    // holly's request reaches hank's home through her server.
    eventually("holly's follow request reaching hank's home", 30, || {
        holly.follow("hank")
    })
    .await;
    let pending = hank.follow_requests().await.unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    hank.accept("holly", false).await.unwrap();
    holly.follow_requests().await.unwrap();
    hank.share("/hank/photos", &["holly"], false).await.unwrap();
    (hank, holly)
}

/// hank writes `name` (1 MiB) into his shared `/photos`; holly reads the
/// same bytes through the server in her home as soon as it reaches his.
async fn hank_adds_a_photo_holly_sees(
    hank: &UserContext,
    holly: &UserContext,
    name: &str,
    seed: u8,
) {
    let photo = data(1 << 20, seed);
    hank.fs()
        .write_file(&format!("/photos/{name}"), &photo)
        .await
        .unwrap();
    let path = format!("/hank/photos/{name}");
    let seen = eventually(&format!("holly reading {path}"), 30, || {
        try_read(holly, &path)
    })
    .await;
    assert_eq!(seen, photo, "{path} as holly reads it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "multi-daemon scenarios: run by cargo xtask integration"]
async fn homes_behind_nat_punch_a_hole_through_the_relay() {
    let started = Instant::now();
    let scenario = "homes_behind_nat_punch_a_hole_through_the_relay";
    let Some(mut net) = Homes::start(scenario, 2, Nat::PortPreserving) else {
        return;
    };
    // C: a public server that joins after the homes.
    let c_dir = tempfile::tempdir().unwrap();
    let c = TempDaemon::start(
        DAEMON,
        c_dir.path(),
        &[
            "--p2p-listen",
            &format!("/ip4/{PUBLIC_IP}/tcp/0"),
            "--bootstrap",
            &net.a.p2p_addrs()[0],
            "--pki-node",
            net.a.peer_id(),
        ],
    );
    net.assert_announced_addresses();
    eprintln!(
        "A and C on the internet, two homes behind NAT, up in {:?}",
        started.elapsed()
    );

    // holly reads hank's share through the server in her home, which
    // reaches the server in his first through A's relay.
    let photo = data(3 << 20, 5);
    let (hank, holly) = share_between_homes(&net, &photo).await;
    assert_eq!(read(&holly, "/hank/photos/beach.jpg").await, photo);
    eprintln!("holly reads hank's share, home to home");

    // hank logs in through C (a public server) and uploads: it lands in
    // his home. A secret link of his opens through A, C and holly's home.
    let via_c = eventually("hank logging in through C", 30, || {
        UserContext::login(http(c.url()), "hank", "hank password")
    })
    .await;
    let notes = data(1 << 20, 8);
    via_c
        .fs()
        .write_file("/photos/notes.txt", &notes)
        .await
        .unwrap();
    let mut back = Vec::new();
    hank.fs()
        .download("/photos/notes.txt", &mut back)
        .await
        .unwrap();
    assert_eq!(back, notes, "the upload through C is in hank's home");
    let link = hank
        .create_link("/hank/photos/beach.jpg", LinkOptions::default())
        .await
        .unwrap();
    for url in [net.a.url(), c.url(), net.homes[1].url()] {
        assert_eq!(open(url, &link).await, photo, "the link through {url}");
    }
    eprintln!("hank's login through C and his link through A, C and holly's home work");

    // The homes' first connection went through A; hole punching (DCUtR)
    // then opened a direct one through both routers.
    eventually("a direct connection between the homes", 30, || async {
        let counts = [
            net.lab.packets_from_other_homes(0)?,
            net.lab.packets_from_other_homes(1)?,
        ];
        if counts.iter().all(|&n| n > 0) {
            Ok(())
        } else {
            Err(format!("packets let in from the other home: {counts:?}"))
        }
    })
    .await;
    eprintln!("the homes punched a hole through their routers");

    // With the relay gone, holly still reads what hank writes next: the
    // two homes talk directly.
    drop((via_c, c));
    net.a.stop();
    hank_adds_a_photo_holly_sees(&hank, &holly, "more.jpg", 11).await;
    eprintln!("with A stopped, the homes still reach each other directly");
    eprintln!("NAT scenario done in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "multi-daemon scenarios: run by cargo xtask integration"]
async fn homes_behind_symmetric_nat_talk_through_the_relay() {
    let started = Instant::now();
    let scenario = "homes_behind_symmetric_nat_talk_through_the_relay";
    let Some(mut net) = Homes::start(scenario, 2, Nat::Symmetric) else {
        return;
    };
    net.assert_announced_addresses();

    let photo = data(3 << 20, 6);
    let (hank, holly) = share_between_homes(&net, &photo).await;
    assert_eq!(read(&holly, "/hank/photos/beach.jpg").await, photo);
    eprintln!("holly reads hank's share, home to home");

    // A restarted home comes back through the relay.
    drop(hank);
    net.homes[0].restart();
    let hank = login(net.homes[0].url(), "hank").await;
    hank_adds_a_photo_holly_sees(&hank, &holly, "after.jpg", 12).await;
    eprintln!("after hank's home restarted, holly reads his share again");

    // No hole can be punched through these routers: not one packet went
    // from one home to the other directly.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for i in 0..2 {
        assert_eq!(net.lab.packets_from_other_homes(i), Ok(0), "home {i}");
    }
    // So with the relay gone, holly's server cannot reach hank's, and
    // says so.
    net.a.stop();
    let more = data(1 << 20, 13);
    hank.fs()
        .write_file("/photos/more.jpg", &more)
        .await
        .unwrap();
    let refused = try_read(&holly, "/hank/photos/more.jpg")
        .await
        .expect_err("holly read hank's photo with no path between the homes");
    assert!(
        refused.contains("cannot reach the server") && refused.contains(net.homes[0].peer_id()),
        "{refused}"
    );
    eprintln!("with A stopped, holly's server says it cannot reach hank's: {refused}");

    // The relay comes back (same address): both homes ask it for a
    // reservation again by themselves, and holly reads the new photo.
    net.a.restart();
    let read_more = eventually("holly reading hank's photo after A restarted", 60, || {
        try_read(&holly, "/hank/photos/more.jpg")
    })
    .await;
    assert_eq!(read_more, more);
    eprintln!("after A restarted, the homes reach each other through it again");
    eprintln!("NAT scenario done in {:?}", started.elapsed());
}
