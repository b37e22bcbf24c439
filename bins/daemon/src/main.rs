//! `peergos-daemon`: the home server. Argument parsing, configuration and
//! wiring only; the server is `peergos-server`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use peergos_server::guard::Limits;
use peergos_server::{
    AccountStore, Config, PostgresAccounts, Server, SignupPolicy, SqliteAccounts, DEFAULT_QUOTA,
};
use serde::{Deserialize, Serialize};

/// The Peergos home server: encrypted blocks, signed pointers, accounts
/// and the PKI, served over HTTP. Runs `serve` when no command is given.
#[derive(Parser)]
#[command(name = "peergos-daemon", version)]
struct Cli {
    /// Data directory (blocks, databases, server key, config.toml).
    #[arg(long, env = "PEERGOS_PATH", global = true)]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    serve: ServeArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on for HTTP [default: 127.0.0.1:8000]; port 0
    /// picks a free port (the chosen one is printed).
    #[arg(long, env = "PEERGOS_LISTEN")]
    listen: Option<SocketAddr>,
    /// Who may sign up: "open" or "token" [default: open].
    #[arg(long, env = "PEERGOS_SIGNUP")]
    signup: Option<SignupPolicy>,
    /// Quota for new users, in bytes [default: 10 GiB].
    #[arg(long, env = "PEERGOS_DEFAULT_QUOTA")]
    default_quota: Option<u64>,
    /// The URL users reach this server at, used in signup links
    /// [default: http://LISTEN].
    #[arg(long, env = "PEERGOS_PUBLIC_URL")]
    public_url: Option<String>,
    /// Print a single-use signup link on startup.
    #[arg(long)]
    generate_token: bool,
    /// Hours between garbage collections; 0 turns the schedule off
    /// (`peergos-daemon gc` still runs one) [default: 24].
    #[arg(long, env = "PEERGOS_GC_INTERVAL_HOURS")]
    gc_interval_hours: Option<f64>,
    /// Write and read block files around the kernel's page cache (direct
    /// I/O), which saves copying every byte; "false" goes through the page
    /// cache, which then keeps recently used blocks in spare memory
    /// [default: true].
    #[arg(long, env = "PEERGOS_DIRECT_IO")]
    direct_io: Option<bool>,
    /// Re-hash raw block files (encrypted file fragments) on every read,
    /// not only on a scrub; structured blocks are always re-hashed.
    /// Clients re-hash everything they download either way [default:
    /// false].
    #[arg(long, env = "PEERGOS_VERIFY_READS")]
    verify_reads: Option<bool>,
    /// Keep blocks in this S3-compatible service instead of files under
    /// the data directory (`http://127.0.0.1:9000`, or an https URL).
    /// Credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
    #[arg(long, env = "PEERGOS_S3_ENDPOINT", requires = "s3_bucket")]
    s3_endpoint: Option<String>,
    /// The bucket (it must exist).
    #[arg(long, env = "PEERGOS_S3_BUCKET")]
    s3_bucket: Option<String>,
    /// The region [default: us-east-1].
    #[arg(long, env = "PEERGOS_S3_REGION")]
    s3_region: Option<String>,
    /// A prefix for the object names, so the bucket can be shared
    /// [default: none].
    #[arg(long, env = "PEERGOS_S3_PREFIX")]
    s3_prefix: Option<String>,
    /// Keep pointers and accounts in this Postgres database instead of
    /// pointers.sqlite and accounts.sqlite (`host=... user=...
    /// password=... dbname=...` or a postgresql:// URL).
    #[arg(long, env = "PEERGOS_POSTGRES")]
    postgres: Option<String>,
    /// libp2p addresses to listen on, comma separated
    /// [default: /ip4/0.0.0.0/tcp/4001,/ip4/0.0.0.0/udp/4001/quic-v1];
    /// "none" runs no p2p node (the server then serves only its own
    /// users).
    #[arg(long, env = "PEERGOS_P2P_LISTEN", value_delimiter = ',')]
    p2p_listen: Option<Vec<String>>,
    /// Servers to join the network through, comma separated, each a
    /// multiaddr ending in /p2p/PEER_ID (another server prints its own at
    /// start) [default: none, a network of one].
    #[arg(long, env = "PEERGOS_BOOTSTRAP", value_delimiter = ',')]
    bootstrap: Option<Vec<String>>,
    /// Addresses other servers should dial this one at, besides the ones
    /// it observes (a public address in front of a port forward), comma
    /// separated.
    #[arg(long, env = "PEERGOS_P2P_EXTERNAL", value_delimiter = ',')]
    p2p_external: Option<Vec<String>>,
    /// Servers to be reachable through when other servers cannot dial
    /// this one (behind NAT with no port forward), comma separated, each
    /// ending in /p2p/PEER_ID [default: none; a server that finds itself
    /// unreachable uses its bootstrap servers].
    #[arg(long, env = "PEERGOS_RELAY", value_delimiter = ',')]
    relay: Option<Vec<String>>,
    /// The peer id of the PKI node this server mirrors [default: this
    /// server is its own PKI node]. Fixed on first run.
    #[arg(long, env = "PEERGOS_PKI_NODE")]
    pki_node: Option<String>,
    /// Connections served at once; more are answered 503 and closed
    /// [default: 4096].
    #[arg(long, env = "PEERGOS_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// MiB of request bodies held in memory at once over all connections
    /// [default: 320].
    #[arg(long, env = "PEERGOS_BODY_MEMORY_MIB")]
    body_memory_mib: Option<usize>,
    /// Seconds a client may take to send a request's headers, sit idle
    /// between requests, or go without sending body bytes; twice that to
    /// send a whole small body or to take an answer [default: 30].
    #[arg(long, env = "PEERGOS_CLIENT_TIMEOUT_SECS")]
    client_timeout_secs: Option<u64>,
    /// Seconds an unfinished upload's bytes keep counting against its
    /// owner's quota after its last put [default: 600].
    #[arg(long, env = "PEERGOS_UPLOAD_LEASE_SECS")]
    upload_lease_secs: Option<u64>,
    /// MiB kept free on the data directory's disk: uploads that would eat
    /// into it are refused ("the server's disk is full") while deletes and
    /// garbage collection keep working; 0 turns the check off
    /// [default: 256].
    #[arg(long, env = "PEERGOS_DISK_RESERVE_MIB")]
    disk_reserve_mib: Option<u64>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Print a single-use signup link (works while the server runs).
    Token,
    /// Set a user's quota in bytes.
    Quota {
        /// The username.
        username: String,
        /// The new quota in bytes.
        bytes: u64,
    },
    /// List users with their usage and quota.
    Usage,
    /// Ask the running daemon to collect garbage now, and print what it
    /// freed.
    Gc,
    /// Ask the running daemon to re-hash every stored block now, and name
    /// any whose bytes no longer match (exit status 1 if there are any).
    Scrub,
}

/// `config.toml` in the data directory: written on first run with the
/// settings in effect, read on later runs. Flags and environment
/// variables override it.
#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    signup: Option<String>,
    default_quota: Option<u64>,
    public_url: Option<String>,
    gc_interval_hours: Option<f64>,
    direct_io: Option<bool>,
    verify_reads: Option<bool>,
    s3_endpoint: Option<String>,
    s3_bucket: Option<String>,
    s3_region: Option<String>,
    s3_prefix: Option<String>,
    /// "sqlite" or "postgres": where this data directory's pointers and
    /// accounts are.
    pointers: Option<String>,
    p2p_listen: Option<Vec<String>>,
    bootstrap: Option<Vec<String>>,
    p2p_external: Option<Vec<String>>,
    relay: Option<Vec<String>>,
    /// The PKI node's peer id (absent: this server is the PKI node).
    pki_node: Option<String>,
    max_connections: Option<usize>,
    body_memory_mib: Option<usize>,
    client_timeout_secs: Option<u64>,
    upload_lease_secs: Option<u64>,
    disk_reserve_mib: Option<u64>,
}

/// Hours between scheduled garbage collections unless configured.
const DEFAULT_GC_HOURS: f64 = 24.0;

const DEFAULT_LISTEN: &str = "127.0.0.1:8000";

/// Where the p2p node listens unless configured: every interface, TCP and
/// QUIC on port 4001 (the port to open in a firewall).
const DEFAULT_P2P_LISTEN: [&str; 2] = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"];

fn multiaddrs(what: &str, texts: &[String]) -> Result<Vec<peergos_server::Multiaddr>> {
    texts
        .iter()
        .filter(|t| !t.trim().is_empty())
        .map(|t| {
            t.trim().parse().with_context(|| {
                format!("{what} '{t}' is not a multiaddr (like /ip4/1.2.3.4/tcp/4001)")
            })
        })
        .collect()
}

fn default_data_dir() -> Result<PathBuf> {
    let home =
        std::env::var_os("HOME").context("HOME is not set; pass --data-dir or set PEERGOS_PATH")?;
    Ok(PathBuf::from(home).join(".peergos"))
}

fn read_config(path: &Path) -> Result<Option<FileConfig>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(
            toml::from_str(&text).with_context(|| format!("reading {}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

struct Settings {
    config: Config,
    limits: Limits,
    listen: SocketAddr,
    public_url: Option<String>,
    gc_hours: f64,
}

/// Flags and environment over the config file over the defaults; saves
/// the file on first run.
fn settings(data_dir: PathBuf, args: &ServeArgs) -> Result<Settings> {
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let path = data_dir.join("config.toml");
    let file = read_config(&path)?;
    let first_run = file.is_none();
    let file = file.unwrap_or_default();
    let listen = match args.listen.or(file.listen) {
        Some(listen) => listen,
        None => DEFAULT_LISTEN.parse()?,
    };
    let signup = match (&args.signup, &file.signup) {
        (Some(policy), _) => *policy,
        (None, Some(text)) => text
            .parse()
            .map_err(|e: String| anyhow::anyhow!("{}: {e}", path.display()))?,
        (None, None) => SignupPolicy::Open,
    };
    let default_quota = args
        .default_quota
        .or(file.default_quota)
        .unwrap_or(DEFAULT_QUOTA);
    let public_url = args.public_url.clone().or(file.public_url);
    let gc_hours = args
        .gc_interval_hours
        .or(file.gc_interval_hours)
        .unwrap_or(DEFAULT_GC_HOURS);
    let direct_io = args.direct_io.or(file.direct_io).unwrap_or(true);
    let verify_reads = args.verify_reads.or(file.verify_reads).unwrap_or(false);
    if !gc_hours.is_finite() || gc_hours < 0.0 {
        bail!("the garbage collection interval must be 0 (off) or a positive number of hours, not {gc_hours}");
    }
    if !first_run && file.s3_endpoint.is_none() && args.s3_endpoint.is_some() {
        bail!(
            "{} keeps its blocks in files (chosen on its first run); moving them to S3 is not \
             supported in place: start a new data directory with the S3 flags",
            data_dir.display()
        );
    }
    let pointers = if args.postgres.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    match (
        first_run,
        file.pointers.as_deref().unwrap_or("sqlite"),
        pointers,
    ) {
        (false, "postgres", "sqlite") => bail!(
            "{} keeps its pointers and accounts in Postgres: pass --postgres (or set PEERGOS_POSTGRES)",
            data_dir.display()
        ),
        (false, "sqlite", "postgres") => bail!(
            "{} keeps its pointers and accounts in sqlite (chosen on its first run); moving \
             them to Postgres is not supported in place: start a new data directory with --postgres",
            data_dir.display()
        ),
        _ => {}
    }
    let s3_endpoint = args.s3_endpoint.clone().or(file.s3_endpoint);
    let s3_bucket = args.s3_bucket.clone().or(file.s3_bucket);
    let s3_region = args.s3_region.clone().or(file.s3_region);
    let s3_prefix = args.s3_prefix.clone().or(file.s3_prefix);
    let s3 = match (&s3_endpoint, &s3_bucket) {
        (None, None) => None,
        (Some(endpoint), Some(bucket)) => {
            let key = |name: &str| {
                std::env::var(name).with_context(|| {
                    format!("S3 blocks need credentials: set {name} (and its pair)")
                })
            };
            Some(peergos_blockstore::S3Config {
                endpoint: endpoint.clone(),
                bucket: bucket.clone(),
                region: s3_region.clone().unwrap_or_else(|| "us-east-1".into()),
                access_key: key("AWS_ACCESS_KEY_ID")?,
                secret_key: key("AWS_SECRET_ACCESS_KEY")?,
                prefix: s3_prefix.clone().unwrap_or_default(),
            })
        }
        _ => bail!("S3 blocks need both an endpoint (--s3-endpoint) and a bucket (--s3-bucket)"),
    };
    let p2p_listen = args
        .p2p_listen
        .clone()
        .or(file.p2p_listen)
        .unwrap_or_else(|| DEFAULT_P2P_LISTEN.map(String::from).to_vec());
    let bootstrap = args
        .bootstrap
        .clone()
        .or(file.bootstrap)
        .unwrap_or_default();
    let p2p_external = args
        .p2p_external
        .clone()
        .or(file.p2p_external)
        .unwrap_or_default();
    let relays = args.relay.clone().or(file.relay).unwrap_or_default();
    if !first_run && args.pki_node.is_some() && args.pki_node != file.pki_node {
        bail!(
            "{} was set up with {} as its PKI node; the PKI node cannot be changed in place",
            data_dir.display(),
            file.pki_node.as_deref().unwrap_or("itself")
        );
    }
    let pki_node = args.pki_node.clone().or(file.pki_node);
    let p2p = if p2p_listen.iter().any(|a| a == "none") {
        if pki_node.is_some() {
            bail!("mirroring a PKI node (--pki-node) needs the p2p node; drop --p2p-listen none");
        }
        None
    } else {
        Some(peergos_server::P2pConfig {
            listen: multiaddrs("the p2p listen address", &p2p_listen)?,
            bootstrap: multiaddrs("the bootstrap address", &bootstrap)?,
            external: multiaddrs("the external address", &p2p_external)?,
            relays: multiaddrs("the relay address", &relays)?,
        })
    };
    let pki_peer = match &pki_node {
        Some(text) => Some(
            text.parse::<peergos_server::PeerId>()
                .with_context(|| format!("--pki-node '{text}' is not a peer id (12D3KooW...)"))?,
        ),
        None => None,
    };
    let mut limits = Limits::default();
    if let Some(max) = args.max_connections.or(file.max_connections) {
        if max == 0 {
            bail!("--max-connections must be at least 1");
        }
        limits.max_connections = max;
    }
    if let Some(mib) = args.body_memory_mib.or(file.body_memory_mib) {
        if mib < 81 {
            bail!("--body-memory-mib must be at least 81 (one whole put body)");
        }
        limits.body_memory = mib << 20;
    }
    if let Some(secs) = args.client_timeout_secs.or(file.client_timeout_secs) {
        if secs == 0 {
            bail!("--client-timeout-secs must be at least 1");
        }
        let secs = std::time::Duration::from_secs(secs);
        limits.header_timeout = secs;
        limits.body_stall = secs;
        limits.body_timeout = 2 * secs;
        limits.write_stall = 2 * secs;
    }
    let upload_lease = std::time::Duration::from_secs(
        args.upload_lease_secs
            .or(file.upload_lease_secs)
            .unwrap_or(peergos_server::DEFAULT_UPLOAD_LEASE.as_secs()),
    );
    let disk_reserve = args
        .disk_reserve_mib
        .or(file.disk_reserve_mib)
        .map_or(peergos_server::DEFAULT_DISK_RESERVE, |mib| mib << 20);
    if first_run {
        let saved = FileConfig {
            listen: Some(listen),
            signup: Some(signup.as_str().to_string()),
            default_quota: Some(default_quota),
            public_url: public_url.clone(),
            gc_interval_hours: Some(gc_hours),
            direct_io: Some(direct_io),
            verify_reads: Some(verify_reads),
            s3_endpoint,
            s3_bucket,
            s3_region,
            s3_prefix,
            pointers: Some(pointers.to_string()),
            p2p_listen: Some(p2p_listen),
            bootstrap: Some(bootstrap),
            p2p_external: Some(p2p_external),
            relay: Some(relays),
            pki_node,
            max_connections: Some(limits.max_connections),
            body_memory_mib: Some(limits.body_memory >> 20),
            client_timeout_secs: Some(limits.header_timeout.as_secs()),
            upload_lease_secs: Some(upload_lease.as_secs()),
            disk_reserve_mib: Some(disk_reserve >> 20),
        };
        let text = format!(
            "# peergos-daemon settings, written on first run. Flags and\n\
             # PEERGOS_* environment variables override them.\n{}",
            toml::to_string(&saved)?
        );
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let mut config = Config::new(data_dir);
    config.signup = signup;
    config.default_quota = default_quota;
    config.direct_io = direct_io;
    config.verify_reads = verify_reads;
    config.s3 = s3;
    // Only the choice is saved to config.toml: the connection string may
    // hold a password.
    config.postgres = args.postgres.clone();
    config.p2p = p2p;
    config.pki_node = pki_peer;
    config.upload_lease = upload_lease;
    config.disk_reserve = disk_reserve;
    Ok(Settings {
        config,
        limits,
        listen,
        public_url,
        gc_hours,
    })
}

fn signup_link(base: &str, token: &str) -> String {
    format!("{}/?token={token}", base.trim_end_matches('/'))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}

async fn serve(data_dir: PathBuf, args: &ServeArgs) -> Result<()> {
    let settings = settings(data_dir, args)?;
    // Each connection takes a descriptor: raise the soft limit to the hard
    // one so the connection cap, not the descriptor limit, is what turns
    // clients away.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(files) if files < settings.limits.max_connections as u64 + 256 => tracing::warn!(
            files,
            max_connections = settings.limits.max_connections,
            "the open-file limit is below the connection cap: raise it (ulimit -n) or lower --max-connections"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
    let data_dir = settings.config.data_dir.clone();
    let server = Server::open(settings.config)
        .await
        .with_context(|| format!("opening the data directory {}", data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("listening on {}", settings.listen))?;
    let address = listener.local_addr()?;
    let base = settings
        .public_url
        .unwrap_or_else(|| format!("http://{address}"));
    tracing::info!(%address, data = %data_dir.display(), signup = server.config().signup.as_str(), "serving");
    if let Some(node) = server.node() {
        println!("p2p peer id {}", server.peer_id());
        let own = format!("/p2p/{}", server.peer_id());
        for addr in node.listen_addrs().await? {
            // An address through a relay already ends in our id.
            let addr = addr.to_string();
            if addr.ends_with(&own) {
                println!("p2p address: {addr}");
            } else {
                println!("p2p address: {addr}{own}");
            }
        }
        if server.pki_peer() != server.peer_id() {
            println!("PKI mirrored from {}", server.pki_peer());
        }
    }
    println!(
        "peergos-daemon listening on http://{address} (data in {})",
        data_dir.display()
    );
    if args.generate_token {
        let token = server.new_signup_token().await?;
        println!("signup link (single use):");
        println!("{}", signup_link(&base, &token));
    }
    // Where `peergos-daemon gc` and `scrub` find this run.
    let addr_file = data_dir.join("daemon.addr");
    std::fs::write(&addr_file, address.to_string())
        .with_context(|| format!("writing {}", addr_file.display()))?;
    let schedule = (settings.gc_hours > 0.0).then(|| {
        let server = std::sync::Arc::clone(&server);
        let every = std::time::Duration::from_secs_f64(settings.gc_hours * 3600.0);
        tokio::spawn(async move {
            let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                timer.tick().await;
                // Skipped when another replica on the same database
                // collected within the period.
                if let Err(e) = server.collect_garbage_if_due(every).await {
                    tracing::warn!("scheduled garbage collection failed: {e}");
                }
            }
        })
    });
    peergos_server::listen::serve(server, listener, settings.limits, shutdown_signal()).await?;
    if let Some(task) = schedule {
        task.abort();
    }
    let _ = std::fs::remove_file(&addr_file);
    Ok(())
}

/// `peergos-daemon gc`: asks the daemon running on `data_dir` to collect
/// garbage.
async fn run_gc(data_dir: &Path) -> Result<()> {
    let report: peergos_server::GcReport = admin_request(data_dir, "gc").await?;
    println!(
        "deleted {} blocks ({} bytes) of {} stored; {} reachable from {} pointers; {} kept for uploads in progress; {} ms",
        report.deleted, report.freed_bytes, report.stored, report.reachable, report.roots, report.protected, report.elapsed_ms
    );
    Ok(())
}

/// `peergos-daemon scrub`: asks the daemon running on `data_dir` to
/// re-hash every block; fails if any is corrupt.
async fn run_scrub(data_dir: &Path) -> Result<()> {
    let report: peergos_server::ScrubReport = admin_request(data_dir, "scrub").await?;
    for cid in &report.corrupt {
        println!("corrupt: {cid}");
    }
    println!(
        "checked {} blocks ({} bytes); {} corrupt; {} ms",
        report.checked,
        report.bytes,
        report.corrupt.len(),
        report.elapsed_ms
    );
    if !report.corrupt.is_empty() {
        bail!(
            "{} blocks do not match their hashes: restore them from a backup (files and S3 \
             objects are named by CID; docs/OPERATIONS.md, backups)",
            report.corrupt.len()
        );
    }
    Ok(())
}

/// Posts to `/v1/admin/{what}` on the daemon running on `data_dir`, with
/// the admin token it wrote there, and decodes its answer.
async fn admin_request<T: serde::de::DeserializeOwned + Serialize>(
    data_dir: &Path,
    what: &str,
) -> Result<T> {
    let read = |name: &str| {
        let path = data_dir.join(name);
        std::fs::read_to_string(&path)
            .with_context(|| {
                format!(
                    "reading {} (is the daemon running on {}?)",
                    path.display(),
                    data_dir.display()
                )
            })
            .map(|s| s.trim().to_string())
    };
    let (addr, token) = (read("daemon.addr")?, read("admin.token")?);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/v1/admin/{what}"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .with_context(|| format!("reaching the daemon at {addr}"))?;
    let status = response.status();
    let body = response.bytes().await?;
    if !status.is_success() {
        let message = peergos_api::ErrorBody::from_answer(&body)
            .map(|b| b.message)
            .unwrap_or_else(|| String::from_utf8_lossy(&body).to_string());
        bail!("the daemon refused ({status}): {message}");
    }
    Ok(peergos_ipld::cbor::from_slice(&body)?)
}

/// The log filter: `RUST_LOG` (default `info`), except that Kademlia's
/// complaint about having no peers to bootstrap from is dropped unless
/// `RUST_LOG` names `libp2p_kad`. A daemon with no `--bootstrap` is a
/// network of one until another server joins, and libp2p-kad tries to
/// bootstrap as soon as it has a listen address (a warning 0.5 s after
/// every start, with no setting to turn that attempt off). Our own p2p
/// code warns when it cannot dial a configured bootstrap peer.
fn log_filter(rust_log: Option<&str>) -> tracing_subscriber::EnvFilter {
    const QUIET_KAD: &str = "libp2p_kad::behaviour=error";
    let spec = rust_log.filter(|s| !s.trim().is_empty()).unwrap_or("info");
    let spec = if spec.contains("libp2p_kad") {
        spec.to_string()
    } else {
        format!("{spec},{QUIET_KAD}")
    };
    tracing_subscriber::EnvFilter::try_new(&spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("info,{QUIET_KAD}")))
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(log_filter(std::env::var("RUST_LOG").ok().as_deref()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let data_dir = match cli.data_dir {
        Some(dir) => dir,
        None => default_data_dir()?,
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(serve(data_dir, &cli.serve)),
        Command::Token => block_on(token(data_dir, &cli.serve)),
        Command::Quota { username, bytes } => {
            block_on(set_quota(&data_dir, &cli.serve, &username, bytes))
        }
        Command::Usage => block_on(usage(&data_dir, &cli.serve)),
        Command::Gc => block_on(run_gc(&data_dir)),
        Command::Scrub => block_on(run_scrub(&data_dir)),
    }
}

fn block_on(job: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(job)
}

/// Prints a new single-use signup link.
async fn token(data_dir: PathBuf, args: &ServeArgs) -> Result<()> {
    // The link's base first, so a bad configuration spends no token.
    let base = link_base(&data_dir, args)?;
    let token = open_accounts(&data_dir, args)
        .await?
        .new_signup_token()
        .await?;
    println!("{}", signup_link(&base, &token));
    Ok(())
}

/// What signup links start with: the public URL (flag, then config
/// file), else `http://` and the listen address. Read on its own, without
/// the rest of the settings, so admin commands need no storage
/// credentials.
fn link_base(data_dir: &Path, args: &ServeArgs) -> Result<String> {
    let file = read_config(&data_dir.join("config.toml"))?.unwrap_or_default();
    if let Some(url) = args.public_url.clone().or(file.public_url) {
        return Ok(url);
    }
    let listen = match args.listen.or(file.listen) {
        Some(listen) => listen,
        None => DEFAULT_LISTEN.parse()?,
    };
    Ok(format!("http://{listen}"))
}

async fn set_quota(data_dir: &Path, args: &ServeArgs, username: &str, bytes: u64) -> Result<()> {
    if !open_accounts(data_dir, args)
        .await?
        .set_quota(username, bytes)
        .await?
    {
        bail!("no user '{username}' on this server");
    }
    println!("quota of {username} set to {bytes} bytes");
    Ok(())
}

async fn usage(data_dir: &Path, args: &ServeArgs) -> Result<()> {
    for (name, used, quota) in open_accounts(data_dir, args).await?.usage().await? {
        println!("{name}\t{used}\t{quota}");
    }
    Ok(())
}

/// The account store of a data directory that has been started before:
/// accounts.sqlite, or the Postgres database its first run chose.
async fn open_accounts(data_dir: &Path, args: &ServeArgs) -> Result<Box<dyn AccountStore>> {
    let not_started = || {
        anyhow::anyhow!(
            "{} has no accounts yet; start the daemon there first",
            data_dir.display()
        )
    };
    let file = read_config(&data_dir.join("config.toml"))?.ok_or_else(not_started)?;
    if file.pointers.as_deref() == Some("postgres") {
        let url = args.postgres.as_deref().with_context(|| {
            format!(
                "{} keeps its accounts in Postgres: pass --postgres (or set PEERGOS_POSTGRES)",
                data_dir.display()
            )
        })?;
        return Ok(Box::new(PostgresAccounts::connect(url).await?));
    }
    let path = data_dir.join("accounts.sqlite");
    if !path.exists() {
        return Err(not_started());
    }
    Ok(Box::new(SqliteAccounts::open(&path)?))
}
