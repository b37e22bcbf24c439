//! The Peergos home server: accounts, the PKI node, quotas, and the HTTP
//! API over the block and pointer stores.
//!
//! [`Server`] holds the stores under one data directory (embedded
//! defaults: blocks as files, pointers and accounts in sqlite) and offers
//! every API operation as a typed async method; [`http::router`] exposes
//! them as versioned CBOR routes (`docs/PROTOCOL.md` section 13). Clients
//! in the same process (tests, apps that embed a server) call the methods
//! directly.
//!
//! The server is trusted with availability only. It sees opaque blocks and
//! signed pointers; it checks signatures, hashes, ownership, quotas and
//! freshness so that a bad client cannot corrupt another user's state, and
//! clients check everything it returns.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod accounts;
pub mod api;
mod disk;
mod error;
mod framing;
mod gc;
pub mod guard;
pub mod http;
pub mod listen;
pub mod metrics;
pub mod peers;
mod scrub;
mod social;
mod space;
mod uploads;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use peergos_blockstore::{
    BlockAuth, BlockStore, FileOptions, FileStore, PutBlocks, TransactionId, TRANSACTION_TIMEOUT,
};
use peergos_champ::{Champ, Config as ChampConfig, Key, Writer};
use peergos_cryptree::WriterOwnership;
use peergos_ipld::Cid;
use peergos_keys::{LoginParams, PublicKeyHash, SigningKeyPair};
use peergos_pki::{name_key, KeyChain, Pki};
use peergos_pointers::{
    Durability, Ownership, PointerStore, PointerUpdate, SignedPointer, SqlitePointerStore,
};
use zeroize::Zeroizing;

pub use crate::accounts::{
    AccountStore, LinkRefusal, NewUser, OpenTransaction, PostgresAccounts, SqliteAccounts, User,
};
pub use crate::error::Error;
pub use crate::gc::GcReport;
pub use crate::peers::MirrorStatus;
pub use crate::scrub::ScrubReport;
pub use crate::social::{MAX_LINKS, MAX_PENDING_FOLLOWS};
pub use peergos_p2p::{Config as P2pConfig, Multiaddr, PeerId};

use crate::api::{
    auth_message, ChangeRequest, DataRequest, Info, LoginRequest, PkiAnswer, SignupRequest, Space,
    Stamp, MAX_CLOCK_SKEW_MS,
};

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How much a user may write past their quota in uncommitted blocks: one
/// chunk and its metadata, so that deleting and truncating (which write a
/// few small blocks, or rewrite one chunk) always work when the space is
/// full. Commits that grow usage past the quota are refused.
pub const QUOTA_SLACK: u64 = 8 << 20;

/// The default per-user quota: 10 GiB.
pub const DEFAULT_QUOTA: u64 = 10 << 30;

/// Who may sign up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignupPolicy {
    /// Anyone who can reach the server.
    Open,
    /// Only holders of a single-use token (`peergos-daemon token`).
    Token,
}

impl SignupPolicy {
    /// The name used in configuration and [`Info::signup`].
    pub fn as_str(self) -> &'static str {
        match self {
            SignupPolicy::Open => "open",
            SignupPolicy::Token => "token",
        }
    }
}

impl std::str::FromStr for SignupPolicy {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "open" => Ok(SignupPolicy::Open),
            "token" => Ok(SignupPolicy::Token),
            other => Err(format!(
                "unknown signup policy '{other}' (use 'open' or 'token')"
            )),
        }
    }
}

/// What a server is built from.
#[derive(Clone, Debug)]
pub struct Config {
    /// The data directory (blocks, databases, the server key).
    pub data_dir: PathBuf,
    /// Who may sign up.
    pub signup: SignupPolicy,
    /// The quota new users get, in bytes.
    pub default_quota: u64,
    /// Whether pointer commits wait for the disk (`Full`) or only for the
    /// log (`Normal`, survives a process crash but not a power cut).
    pub durability: Durability,
    /// Whether block files (the user's and the cache of other servers')
    /// bypass the kernel's page cache: see
    /// [`peergos_blockstore::FileOptions::direct_io`].
    pub direct_io: bool,
    /// Whether block files re-hash raw blocks on every read: see
    /// [`peergos_blockstore::FileOptions::verify_reads`].
    pub verify_reads: bool,
    /// Where blocks are kept: files under `data_dir/blocks` (None), or an
    /// S3-compatible bucket.
    pub s3: Option<peergos_blockstore::S3Config>,
    /// Where pointers are kept: `pointers.sqlite` in the data directory
    /// (None), or this Postgres database (a connection string).
    pub postgres: Option<String>,
    /// The libp2p node's listen and bootstrap addresses (None: no node;
    /// the server then serves only its own users).
    pub p2p: Option<peergos_p2p::Config>,
    /// The PKI node to mirror (None, or this server's own peer id: this
    /// server is the PKI node).
    pub pki_node: Option<PeerId>,
    /// How long an open upload's bytes count against the quota after its
    /// last put: every put renews the lease.
    pub upload_lease: std::time::Duration,
    /// Bytes kept free on the data directory's disk: a put that would
    /// leave less is refused ([`Error::DiskFull`]), except small ones
    /// (deletes, renames) while a quarter of it is left.
    pub disk_reserve: u64,
}

impl Config {
    /// The embedded defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            data_dir: data_dir.into(),
            signup: SignupPolicy::Open,
            default_quota: DEFAULT_QUOTA,
            durability: Durability::Full,
            direct_io: true,
            verify_reads: false,
            s3: None,
            postgres: None,
            p2p: None,
            pki_node: None,
            upload_lease: DEFAULT_UPLOAD_LEASE,
            disk_reserve: DEFAULT_DISK_RESERVE,
        }
    }
}

/// How many times a PKI claim is applied again after losing the PKI
/// pointer to another replica's claim.
const PKI_ATTEMPTS: u32 = 12;

/// Bytes kept free on the data disk unless configured: 256 MiB.
pub const DEFAULT_DISK_RESERVE: u64 = 256 << 20;

/// The largest put admitted while the disk is within its reserve: what a
/// delete, a rename or a small edit writes.
pub const SMALL_PUT: u64 = 1 << 20;

/// How long an upload transaction's bytes count against its owner's quota
/// after its last put, unless configured.
pub const DEFAULT_UPLOAD_LEASE: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// A home server over its stores.
pub struct Server {
    config: Config,
    blocks: Arc<dyn BlockStore>,
    pointers: Arc<dyn PointerStore>,
    ownership: Arc<WriterOwnership<dyn BlockStore>>,
    accounts: Arc<dyn AccountStore>,
    key: SigningKeyPair,
    id: PublicKeyHash,
    champ: Champ<dyn BlockStore>,
    pki: Pki<dyn BlockStore>,
    pki_lock: tokio::sync::Mutex<()>,
    /// Signed times accepted while the database could not record them.
    unrecorded_auth: Mutex<HashMap<String, u64>>,
    /// Room on the data disk kept for deletes.
    ballast: disk::Ballast,
    salt_secret: [u8; 32],
    guard: Arc<uploads::Guarded>,
    gc_lock: tokio::sync::Mutex<()>,
    gc_last: Mutex<Option<GcReport>>,
    gc_runs: std::sync::atomic::AtomicU64,
    /// The last scrub's report and when it finished (Unix seconds).
    scrub_last: Mutex<Option<(ScrubReport, u64)>>,
    metrics: metrics::Metrics,
    client_limits: metrics::RouteLimits,
    peer_limits: metrics::RouteLimits<PeerId>,
    admin_token: String,
    node: Option<peergos_p2p::Node>,
    peer_id: PeerId,
    pki_peer: PeerId,
    pki_key: PublicKeyHash,
    mirror: Option<peers::Mirror>,
    owners: std::sync::RwLock<HashMap<PublicKeyHash, PeerId>>,
    cache: FileStore,
}

/// Opens again in the block store the upload transactions that were open
/// when the server last stopped (their records are in the account store),
/// so their blocks stay protected and their uploads can finish.
async fn resume_transactions(accounts: &dyn AccountStore, blocks: &dyn BlockStore) -> Result<()> {
    let now = now_ms();
    let since = now.saturating_sub(TRANSACTION_TIMEOUT.as_millis() as u64);
    let open = accounts.open_transactions(since).await?;
    for t in &open {
        let age = std::time::Duration::from_millis(now.saturating_sub(t.opened_ms));
        blocks
            .resume_transaction(&t.owner, t.id, age, t.blocks.clone())
            .await?;
    }
    if !open.is_empty() {
        tracing::info!(
            transactions = open.len(),
            "open upload transactions resumed"
        );
    }
    Ok(())
}

/// The Postgres account store. Accounts that earlier servers kept in
/// `accounts.sqlite` beside Postgres pointers are moved in first (the
/// file is renamed `accounts.sqlite.imported`).
async fn open_postgres_accounts(
    database: peergos_pointers::Database,
    dir: &std::path::Path,
) -> Result<PostgresAccounts> {
    let accounts = PostgresAccounts::open(database).await?;
    let legacy = dir.join("accounts.sqlite");
    if legacy.exists() {
        let users = accounts.import_sqlite(&legacy).await?;
        let done = dir.join("accounts.sqlite.imported");
        std::fs::rename(&legacy, &done).map_err(io_err("rename", &legacy))?;
        for suffix in ["-wal", "-shm"] {
            let side = dir.join(format!("accounts.sqlite{suffix}"));
            if side.exists() {
                std::fs::remove_file(&side).map_err(io_err("remove", &side))?;
            }
        }
        tracing::info!(users, from = %done.display(), "accounts moved into Postgres");
    }
    Ok(accounts)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        action,
        path: path.display().to_string(),
        source,
    }
}

/// Requests one client may make to `/v1/signup` at once, then one every
/// [`SIGNUP_EVERY_SECS`].
pub const SIGNUP_BURST: u32 = 5;
/// Seconds per signup once the burst is used.
pub const SIGNUP_EVERY_SECS: u64 = 60;
/// Requests one client may make to the login routes at once, then one
/// every [`LOGIN_EVERY_SECS`].
pub const LOGIN_BURST: u32 = 20;
/// Seconds per login request once the burst is used.
pub const LOGIN_EVERY_SECS: u64 = 3;
/// A server tunnelling requests here speaks for all of its own clients
/// (each of them limited there by address), so its budget on the limited
/// routes is this many times one client's: a burst this many times as
/// large, refilled this many times as fast.
pub const PEER_LIMIT_FACTOR: u32 = 10;

/// The signup and login limits, `factor` times one client's budget: a
/// burst `factor` times as large, refilled `factor` times as fast.
fn route_limits<K: std::hash::Hash + Eq + Copy>(factor: u32) -> metrics::RouteLimits<K> {
    let limit = |burst: u32, every_secs: u64| {
        metrics::RateLimit::new(
            burst * factor,
            std::time::Duration::from_secs(every_secs) / factor,
        )
    };
    metrics::RouteLimits::new(
        limit(SIGNUP_BURST, SIGNUP_EVERY_SECS),
        limit(LOGIN_BURST, LOGIN_EVERY_SECS),
    )
}

/// Writes `bytes` to `path` readable by this user only (mode 0600),
/// through a temporary file and a rename, durably.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(io_err("create", &tmp))?;
    file.write_all(bytes).map_err(io_err("write", &tmp))?;
    file.sync_all().map_err(io_err("sync", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err("rename", path))
}

/// Writes a fresh random admin token to `path` (mode 0600): whoever can
/// read the data directory may ask the running daemon for admin work.
fn write_admin_token(path: &Path) -> Result<String> {
    use rand_core::RngCore;
    let mut bytes = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut bytes);
    let token = data_encoding::HEXLOWER.encode(&bytes);
    write_private(path, token.as_bytes())?;
    Ok(token)
}

/// Reads the server's key from `path`, creating it (mode 0600) on first run.
fn load_key(path: &Path) -> Result<SigningKeyPair> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let seed: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                Error::Internal(format!(
                    "{} is not a 32-byte key; restore it from a backup",
                    path.display()
                ))
            })?;
            Ok(SigningKeyPair::from_seed(Zeroizing::new(seed)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SigningKeyPair::random();
            write_private(path, key.seed().as_ref())?;
            Ok(key)
        }
        Err(e) => Err(io_err("read", path)(e)),
    }
}

/// The answer to a lookup of `username` in the PKI whose signed pointer is
/// `pointer`, over the CHAMP `champ`: the pointer, the CHAMP path to the
/// name, and the name's chain block.
async fn pki_answer<S: BlockStore + ?Sized>(
    pointer: Option<SignedPointer>,
    champ: &Champ<S>,
    username: &str,
) -> Result<PkiAnswer> {
    let Some(root) = pointer.as_ref().and_then(|p| p.update.current) else {
        return Ok(PkiAnswer {
            pointer,
            proof: Vec::new(),
            chain: None,
        });
    };
    let key = name_key(username);
    let proof = champ.proof(&root, &key).await?;
    let chain = match champ.get(&root, &key).await? {
        Some(peergos_champ::Value::Link(cid)) => champ.store().get_trusted(&cid).await?,
        _ => None,
    };
    Ok(PkiAnswer {
        pointer,
        proof: proof.into_iter().map(|b| b.into_data()).collect(),
        chain,
    })
}

impl Server {
    /// Opens the server's stores under `config.data_dir`, creating them on
    /// first run, and makes sure the PKI root exists.
    pub async fn open(config: Config) -> Result<Arc<Self>> {
        let dir = config.data_dir.clone();
        std::fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let files: Arc<dyn BlockStore> = match &config.s3 {
            None => {
                let store = FileStore::open_with(
                    dir.join("blocks"),
                    FileOptions {
                        durable: true,
                        direct_io: config.direct_io,
                        verify_reads: config.verify_reads,
                    },
                )?;
                if config.direct_io && !store.direct_io() {
                    tracing::info!(
                        data = %dir.display(),
                        "the filesystem refuses direct I/O: block files go through the page cache"
                    );
                }
                Arc::new(store)
            }
            Some(s3) => {
                // Checked now, so a wrong endpoint, bucket or key stops
                // the start with the reason.
                let store = peergos_blockstore::S3Store::open(s3)?;
                store.check().await?;
                Arc::new(store)
            }
        };
        // Every write of the server (users' puts, the PKI, ownership) goes
        // through the guard, which garbage collection relies on.
        let guard = Arc::new(uploads::Guarded::new(files));
        let blocks: Arc<dyn BlockStore> = guard.clone();
        let ownership = Arc::new(WriterOwnership::new(Arc::clone(&blocks)));
        let rule: Arc<dyn Ownership> = ownership.clone();
        let (pointers, accounts): (Arc<dyn PointerStore>, Arc<dyn AccountStore>) =
            match &config.postgres {
                None => (
                    Arc::new(SqlitePointerStore::open(
                        dir.join("pointers.sqlite"),
                        rule,
                        config.durability,
                    )?),
                    Arc::new(SqliteAccounts::open(&dir.join("accounts.sqlite"))?),
                ),
                Some(url) => {
                    // One pool for both stores.
                    let database = peergos_pointers::Database::connect(url).await?;
                    (
                        Arc::new(
                            peergos_pointers::PostgresPointerStore::open(database.clone(), rule)
                                .await?,
                        ),
                        Arc::new(open_postgres_accounts(database, &dir).await?),
                    )
                }
            };
        ownership.attach(&pointers);
        guard.attach(Arc::clone(&accounts), config.postgres.is_some());
        resume_transactions(&*accounts, &*blocks).await?;
        let key = load_key(&dir.join("server.key"))?;
        let admin_token = write_admin_token(&dir.join("admin.token"))?;
        let id = PublicKeyHash::of(&key.public());
        let salt_secret = peergos_keys::sha256(
            &[b"peergos/fake-salt/v1".as_slice(), key.seed().as_ref()].concat(),
        );
        let peer_id = peers::peer_of_key(&id)?;
        let node = match &config.p2p {
            Some(p2p) => Some(
                peergos_p2p::Node::start(&key.seed(), p2p)
                    .await
                    .map_err(|e| Error::Peer(format!("starting the p2p node: {e}")))?,
            ),
            None => None,
        };
        let pki_peer = config.pki_node.unwrap_or(peer_id);
        let (pki_key, mirror) = if pki_peer == peer_id {
            (id, None)
        } else {
            if node.is_none() {
                return Err(Error::Peer(
                    "mirroring a PKI node needs the p2p node (configure p2p listen or bootstrap addresses)".into(),
                ));
            }
            (
                peers::key_of_peer(&pki_peer)?,
                Some(peers::Mirror::open(dir.join("pki-mirror"), &*accounts).await?),
            )
        };
        let cache = FileStore::open_with(
            dir.join("cache"),
            FileOptions {
                durable: false,
                direct_io: config.direct_io,
                verify_reads: config.verify_reads,
            },
        )?;
        let ballast = disk::Ballast::new(
            dir.join("ballast"),
            if config.s3.is_some() {
                0
            } else {
                config.disk_reserve / 4
            },
        );
        ballast.ensure(config.disk_reserve);
        let server = Arc::new(Server {
            champ: Champ::new(Arc::clone(&blocks)),
            pki: Pki::new(Arc::clone(&blocks)),
            config,
            blocks,
            pointers,
            ownership,
            accounts,
            key,
            id,
            pki_lock: tokio::sync::Mutex::new(()),
            unrecorded_auth: Mutex::new(HashMap::new()),
            ballast,
            salt_secret,
            guard,
            gc_lock: tokio::sync::Mutex::new(()),
            gc_last: Mutex::new(None),
            gc_runs: std::sync::atomic::AtomicU64::new(0),
            scrub_last: Mutex::new(None),
            metrics: metrics::Metrics::default(),
            client_limits: route_limits(1),
            peer_limits: route_limits(PEER_LIMIT_FACTOR),
            admin_token,
            node,
            peer_id,
            pki_peer,
            pki_key,
            mirror,
            owners: std::sync::RwLock::new(HashMap::new()),
            cache,
        });
        let root = match &server.mirror {
            None => Some(server.pki_root().await?.0),
            Some(mirror) => mirror.pointer().and_then(|p| p.update.current),
        };
        if let Some(root) = root {
            // Which server each user lives on, for routing; built in the
            // background so a large PKI does not delay the start.
            let weak = Arc::downgrade(&server);
            tokio::spawn(async move {
                let Some(server) = weak.upgrade() else { return };
                let indexed = match &server.mirror {
                    None => server.index_all(&server.pki, &root).await,
                    Some(mirror) => server.index_all(&mirror.pki, &root).await,
                };
                if let Err(e) = indexed {
                    tracing::warn!(error = %e, "indexing the PKI failed");
                }
            });
        }
        peers::spawn(&server)?;
        Ok(server)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The request counters behind `/metrics`.
    pub fn metrics(&self) -> &metrics::Metrics {
        &self.metrics
    }

    /// Whether `token` is this run's admin token (compared in constant
    /// time).
    pub fn is_admin(&self, token: &str) -> bool {
        use subtle::ConstantTimeEq;
        token.len() == self.admin_token.len()
            && bool::from(token.as_bytes().ct_eq(self.admin_token.as_bytes()))
    }

    /// Takes one request of `client` on a rate-limited route (`signup` or
    /// `login`); Err says how long to wait. With a shared database the
    /// buckets are there, so replicas behind one load balancer count
    /// together.
    pub async fn rate_limit(
        &self,
        route: &str,
        client: std::net::IpAddr,
    ) -> std::result::Result<(), std::time::Duration> {
        if self.config.postgres.is_some() {
            return self.shared_limit(route, &format!("ip/{client}"), 1).await;
        }
        self.client_limits.check(route, client, Instant::now())
    }

    /// [`rate_limit`](Self::rate_limit) for a request tunnelled from the
    /// server `peer`, counted against that server's larger budget
    /// ([`PEER_LIMIT_FACTOR`]).
    pub async fn rate_limit_peer(
        &self,
        route: &str,
        peer: PeerId,
    ) -> std::result::Result<(), std::time::Duration> {
        if self.config.postgres.is_some() {
            return self
                .shared_limit(route, &format!("peer/{peer}"), PEER_LIMIT_FACTOR)
                .await;
        }
        self.peer_limits.check(route, peer, Instant::now())
    }

    /// A rate limit kept in the account store: the same budgets as the
    /// in-memory ones, `factor` times one client's. A store that cannot
    /// answer lets the request through (and says so in the log).
    async fn shared_limit(
        &self,
        route: &str,
        who: &str,
        factor: u32,
    ) -> std::result::Result<(), std::time::Duration> {
        let (kind, burst, every_secs) = if route == "/v1/signup" {
            ("signup", SIGNUP_BURST, SIGNUP_EVERY_SECS)
        } else {
            ("login", LOGIN_BURST, LOGIN_EVERY_SECS)
        };
        let key = format!("{kind}/{who}");
        let every_ms = every_secs * 1000 / u64::from(factor.max(1));
        match self
            .accounts
            .take_token(&key, burst * factor, every_ms, now_ms())
            .await
        {
            Ok(None) => Ok(()),
            Ok(Some(wait_ms)) => Err(std::time::Duration::from_millis(wait_ms)),
            Err(e) => {
                tracing::warn!(
                    "the shared rate limit could not be read (request let through): {e}"
                );
                Ok(())
            }
        }
    }

    /// Everything `/metrics` reports, as Prometheus text.
    pub async fn render_metrics(&self) -> Result<String> {
        use std::fmt::Write as _;
        let mut out = String::new();
        self.metrics.render(&mut out);
        let usage = self.accounts.usage().await?;
        let used: u64 = usage.iter().map(|(_, used, _)| used).sum();
        let quota: u64 = usage.iter().map(|(_, _, quota)| quota).sum();
        let open = self.accounts.open_uploads(self.lease_start()).await?;
        let gauges = [
            (
                "peergos_users",
                "Accounts on this server.",
                usage.len() as f64,
            ),
            (
                "peergos_used_bytes",
                "Bytes the accounts use, from their trees.",
                used as f64,
            ),
            (
                "peergos_quota_bytes",
                "The accounts' quotas, summed.",
                quota as f64,
            ),
            (
                "peergos_open_transactions",
                "Upload transactions with blocks, not yet closed, put to within the upload lease.",
                open as f64,
            ),
        ];
        write_gauges(&mut out, &gauges);
        if let Some(mirror) = self.mirror_status() {
            let gauges = [
                (
                    "peergos_pki_mirror_sequence",
                    "Sequence number of the PKI root this mirror accepted last.",
                    mirror.sequence as f64,
                ),
                (
                    "peergos_pki_mirror_accepted_total",
                    "New PKI roots accepted since start.",
                    mirror.accepted as f64,
                ),
                (
                    "peergos_pki_mirror_rejected",
                    "1 if the PKI node's latest root was refused as a rewrite of history.",
                    f64::from(u8::from(mirror.rejected.is_some())),
                ),
            ];
            write_gauges(&mut out, &gauges);
        }
        let runs = self.gc_runs.load(std::sync::atomic::Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP peergos_gc_runs_total Garbage collections finished.\n# TYPE peergos_gc_runs_total counter\npeergos_gc_runs_total {runs}"
        );
        if let Some(last) = self.last_gc() {
            let gauges = [
                (
                    "peergos_gc_last_deleted_blocks",
                    "Blocks the last collection deleted.",
                    last.deleted as f64,
                ),
                (
                    "peergos_gc_last_freed_bytes",
                    "Bytes the last collection freed.",
                    last.freed_bytes as f64,
                ),
                (
                    "peergos_gc_last_reachable_blocks",
                    "Blocks reachable at the last collection.",
                    last.reachable as f64,
                ),
                (
                    "peergos_gc_last_stored_blocks",
                    "Blocks stored after the last collection.",
                    (last.stored - last.deleted) as f64,
                ),
                (
                    "peergos_gc_last_duration_seconds",
                    "How long the last collection took.",
                    last.elapsed_ms as f64 / 1000.0,
                ),
            ];
            write_gauges(&mut out, &gauges);
        }
        if let Some((last, finished)) = self.last_scrub() {
            let gauges = [
                (
                    "peergos_scrub_last_checked_blocks",
                    "Blocks the last scrub re-hashed.",
                    last.checked as f64,
                ),
                (
                    "peergos_scrub_last_corrupt_blocks",
                    "Blocks the last scrub found not matching their hash (alert above 0).",
                    last.corrupt.len() as f64,
                ),
                (
                    "peergos_scrub_last_duration_seconds",
                    "How long the last scrub took.",
                    last.elapsed_ms as f64 / 1000.0,
                ),
                (
                    "peergos_scrub_last_finished_seconds",
                    "When the last scrub finished, in Unix seconds.",
                    finished as f64,
                ),
            ];
            write_gauges(&mut out, &gauges);
        }
        Ok(out)
    }

    /// The account store (for admin commands).
    pub fn accounts(&self) -> &dyn AccountStore {
        &*self.accounts
    }

    /// The block store.
    pub fn blocks(&self) -> &Arc<dyn BlockStore> {
        &self.blocks
    }

    /// The pointer store.
    pub fn pointers(&self) -> &Arc<dyn PointerStore> {
        &self.pointers
    }

    /// The server's id.
    pub fn id(&self) -> &PublicKeyHash {
        &self.id
    }

    /// What `GET /v1/info` answers.
    pub fn info(&self) -> Info {
        Info {
            version: env!("CARGO_PKG_VERSION").to_string(),
            server: self.id,
            peer: self.peer_id.to_string(),
            pki: self.pki_key,
            pki_peer: self.pki_peer.to_string(),
            signup: self.config.signup.as_str().to_string(),
        }
    }

    // ---- blocks ----

    /// Puts at or after this time keep an upload's bytes held against its
    /// owner's quota.
    fn lease_start(&self) -> u64 {
        now_ms().saturating_sub(self.config.upload_lease.as_millis() as u64)
    }

    /// Bytes of `owner`'s open uploads whose lease has not lapsed (on every
    /// replica: the record is shared).
    async fn pending_of(&self, owner: &PublicKeyHash) -> Result<u64> {
        self.accounts.pending(owner, self.lease_start()).await
    }

    /// Stores blocks for a user with an account, if the writer is theirs
    /// and the blocks fit in their quota (plus [`QUOTA_SLACK`]).
    pub async fn put(&self, request: PutBlocks) -> Result<Vec<Cid>> {
        let requested: u64 = request.blocks.iter().map(|b| b.data.len() as u64).sum();
        self.admit_put(&request.owner, &request.writer, requested)
            .await?;
        // The guarded store records the blocks (and the bytes held against
        // the quota) in the shared upload record before it stores them.
        Ok(self.blocks.put(request).await?)
    }

    /// The checks a put passes before its blocks are read: the owner has
    /// an account here, the writer is the owner or a key it owns, and
    /// `requested` more bytes fit in the owner's quota. The HTTP layer runs
    /// them on a put's header, so a put for nobody's space never gets
    /// memory for its blocks.
    pub async fn admit_put(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
        requested: u64,
    ) -> Result<()> {
        let (used, quota) = self
            .accounts
            .space(owner)
            .await?
            .ok_or(Error::UnknownOwner(*owner))?;
        if !self.ownership.owns(owner, writer).await? {
            return Err(peergos_pointers::Error::NotOwned {
                owner: *owner,
                writer: *writer,
            }
            .into());
        }
        let in_use = used + self.pending_of(owner).await?;
        if in_use + requested > quota.saturating_add(QUOTA_SLACK) {
            return Err(peergos_blockstore::Error::QuotaExceeded {
                used: in_use,
                quota,
                requested,
            }
            .into());
        }
        self.check_disk(requested)
    }

    /// Refuses a put of `requested` bytes that would eat into the disk
    /// reserve, unless it is small and a quarter of the reserve is left.
    /// Blocks kept in S3 do not use the local disk.
    fn check_disk(&self, requested: u64) -> Result<()> {
        let reserve = self.config.disk_reserve;
        if reserve == 0 || self.config.s3.is_some() {
            return Ok(());
        }
        let small = requested <= SMALL_PUT;
        let enough = |free: u64| {
            if small {
                free >= reserve / 4 + requested
            } else {
                free >= reserve + requested
            }
        };
        let Some(free) = disk::free_bytes(&self.config.data_dir) else {
            return Ok(());
        };
        if enough(free) {
            return Ok(());
        }
        // Something else filled the disk: a delete still gets the room the
        // ballast held (released now, or earlier in this emergency), less
        // a little for the databases.
        if small {
            self.make_room();
            if !self.ballast.is_present() {
                let free = disk::free_bytes(&self.config.data_dir).unwrap_or(0);
                if free >= requested + SMALL_PUT {
                    return Ok(());
                }
            }
        }
        Err(Error::DiskFull { free, reserve })
    }

    /// Before a small write of metadata (an upload record, a pointer):
    /// when the disk is nearly full, releases the ballast so the write
    /// (a delete's, say) can land. True if it released it.
    fn make_room(&self) -> bool {
        let reserve = self.config.disk_reserve;
        if reserve == 0 || self.config.s3.is_some() {
            return false;
        }
        match disk::free_bytes(&self.config.data_dir) {
            Some(free) if free < reserve / 4 => self.ballast.release(),
            _ => false,
        }
    }

    /// A block, after its access check.
    pub async fn get(&self, cid: &Cid, auth: Option<&BlockAuth>) -> Result<Option<Bytes>> {
        Ok(self.blocks.get(cid, auth).await?)
    }

    /// Whether a block is stored.
    pub async fn has(&self, cid: &Cid) -> Result<bool> {
        Ok(self.blocks.has(cid).await?)
    }

    /// The CHAMP blocks from `root` to `key` (CHAMP nodes carry no access
    /// tokens; the client verifies the path).
    pub async fn champ_lookup(&self, root: &Cid, key: [u8; 32]) -> Result<Vec<Bytes>> {
        let blocks = self.champ.proof(root, &Key(key)).await?;
        Ok(blocks.into_iter().map(|b| b.into_data()).collect())
    }

    /// Opens a transaction for a user with an account.
    pub async fn start_transaction(&self, owner: &PublicKeyHash) -> Result<TransactionId> {
        self.make_room();
        self.accounts
            .space(owner)
            .await?
            .ok_or(Error::UnknownOwner(*owner))?;
        // The guarded store records it for every replica.
        Ok(self.blocks.start_transaction(owner).await?)
    }

    /// Closes a transaction (opened on this replica or another); its
    /// blocks stop counting as pending.
    pub async fn close_transaction(&self, owner: &PublicKeyHash, id: &TransactionId) -> Result<()> {
        Ok(self.blocks.close_transaction(owner, id).await?)
    }

    // ---- pointers ----

    /// The current signed update of a pointer.
    pub async fn get_pointer(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
    ) -> Result<Option<SignedPointer>> {
        Ok(self.pointers.get(owner, writer).await?)
    }

    /// Moves a pointer (compare-and-swap) and updates the owner's usage by
    /// the CHAMP diff. A move that grows usage past the quota is refused;
    /// one that shrinks it (a delete, a truncate) is always accepted.
    pub async fn set_pointer(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
        update: SignedPointer,
    ) -> Result<()> {
        let (used, quota) = self
            .accounts
            .space(owner)
            .await?
            .ok_or(Error::UnknownOwner(*owner))?;
        // Check the signature before doing any work for the request.
        update.verify(owner, writer)?;
        let delta =
            space::delta(&self.champ, update.update.previous, update.update.current).await?;
        if delta > 0 && used + delta as u64 > quota {
            return Err(peergos_blockstore::Error::QuotaExceeded {
                used,
                quota,
                requested: delta as u64,
            }
            .into());
        }
        self.pointers.set(owner, writer, update).await?;
        if delta != 0 {
            self.accounts.add_usage(owner, delta).await?;
        }
        Ok(())
    }

    /// Space used and allowed.
    pub async fn space(&self, owner: &PublicKeyHash) -> Result<Space> {
        let (used, quota) = self
            .accounts
            .space(owner)
            .await?
            .ok_or(Error::UnknownOwner(*owner))?;
        Ok(Space {
            used,
            quota,
            pending: self.pending_of(owner).await?,
        })
    }

    // ---- PKI ----

    /// The current PKI root, creating an empty PKI on first run.
    async fn pki_root(&self) -> Result<(Cid, u64)> {
        if let Some(signed) = self.pointers.get(&self.id, &self.id).await? {
            signed.verify(&self.id, &self.id)?;
            if let Some(root) = signed.update.current {
                return Ok((root, signed.update.sequence));
            }
        }
        let _guard = self.pki_lock.lock().await;
        let tx = self.blocks.start_transaction(&self.id).await?;
        let writer = Writer {
            owner: self.id,
            keys: self.key.clone(),
            transaction: tx,
        };
        let root = self.champ.empty(&writer, ChampConfig::default()).await?;
        let update = PointerUpdate {
            previous: None,
            current: Some(root),
            sequence: 1,
        };
        let signed = SignedPointer::sign(&self.key, &self.id, update)?;
        let outcome = self.pointers.set(&self.id, &self.id, signed).await;
        self.blocks.close_transaction(&self.id, &tx).await?;
        match outcome {
            Ok(()) => Ok((root, 1)),
            // Another task created it first.
            Err(peergos_pointers::Error::CasConflict(_)) => {
                drop(_guard);
                Box::pin(self.pki_root()).await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Adds or extends a name's chain in the PKI (first come, first served,
    /// extensions only).
    async fn pki_apply(&self, chain: &KeyChain) -> Result<()> {
        if self.mirror.is_some() {
            return self.pki_claim_remote(chain).await;
        }
        let _guard = self.pki_lock.lock().await;
        // The lock orders this process's claims; replicas sharing the
        // database race on the PKI pointer instead, and the loser applies
        // its claim again on the winner's root.
        let mut attempt = 0;
        loop {
            match self.pki_apply_once(chain).await {
                Err(Error::Pointer(
                    peergos_pointers::Error::CasConflict(_)
                    | peergos_pointers::Error::StaleSequence { .. },
                )) if attempt < PKI_ATTEMPTS => {
                    attempt += 1;
                    let wait = 5 * (1u64 << attempt.min(6))
                        + u64::from(rand_core::RngCore::next_u32(&mut rand_core::OsRng) % 20);
                    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                }
                outcome => {
                    if outcome.is_ok() {
                        self.index_chain(chain);
                    }
                    return outcome;
                }
            }
        }
    }

    async fn pki_apply_once(&self, chain: &KeyChain) -> Result<()> {
        let (root, sequence) = self.pki_root().await?;
        let tx = self.blocks.start_transaction(&self.id).await?;
        let writer = Writer {
            owner: self.id,
            keys: self.key.clone(),
            transaction: tx,
        };
        let outcome = async {
            let (new_root, _) = self
                .pki
                .apply(&writer, &root, chain, now_ms() / 1000)
                .await?;
            let update = PointerUpdate {
                previous: Some(root),
                current: Some(new_root),
                sequence: sequence + 1,
            };
            let signed = SignedPointer::sign(&self.key, &self.id, update)?;
            self.pointers.set(&self.id, &self.id, signed).await?;
            Ok::<(), Error>(())
        }
        .await;
        self.blocks.close_transaction(&self.id, &tx).await?;
        outcome
    }

    /// Claims a name (or extends its chain) at the PKI node, for a user
    /// signing up on this mirror, then follows the new root.
    async fn pki_claim_remote(&self, chain: &KeyChain) -> Result<()> {
        let answer = self
            .forward(
                self.pki_peer,
                &peers::TunnelRequest {
                    method: "POST".into(),
                    path: "/v1/pki/claim".into(),
                    content_type: Some(api::CBOR.into()),
                    body: chain.to_bytes()?,
                },
            )
            .await?;
        if answer.status != 200 {
            let body: api::ErrorBody =
                peergos_ipld::cbor::from_slice(&answer.body).map_err(|_| {
                    Error::Peer(format!(
                        "the PKI node refused the claim with status {} and no message",
                        answer.status
                    ))
                })?;
            if answer.status == 409 {
                return Err(Error::UsernameTaken(chain.username().to_string()));
            }
            return Err(Error::Remote {
                status: answer.status,
                body,
            });
        }
        self.sync_pki().await?;
        Ok(())
    }

    /// Applies a claim that another server sends for a user signing up
    /// there (this server being the PKI node). The chain must name the
    /// sending server as the user's home.
    pub async fn pki_claim(&self, from: &PeerId, chain: &KeyChain) -> Result<()> {
        if self.mirror.is_some() {
            return Err(Error::NotPki(format!(
                "this server is not the PKI node (that is {})",
                self.pki_peer
            )));
        }
        chain.verify()?;
        let named = chain
            .current()
            .servers
            .first()
            .and_then(|s| peers::parse_home(s));
        if named != Some(*from) {
            return Err(Error::NotPki(format!(
                "the claim for '{}' does not name the sending server {from} as its home",
                chain.username()
            )));
        }
        self.pki_apply(chain).await?;
        tracing::info!(username = chain.username(), home = %from, "claimed through another server");
        Ok(())
    }

    /// Renews (or otherwise extends) the name of a user homed here: the
    /// chain must extend the name's current one, so only its identity key
    /// can have signed the new claim, and must still name this server as
    /// the home. Applied here on the PKI node, forwarded to it otherwise.
    pub async fn pki_renew(&self, chain: &KeyChain) -> Result<()> {
        chain.verify()?;
        let username = chain.username().to_string();
        let current = self
            .pki_chain(&username)
            .await?
            .ok_or_else(|| Error::BadRequest(format!("'{username}' is not claimed")))?;
        if !chain.extends(&current) {
            return Err(Error::BadRequest(format!(
                "the chain does not extend the current one of '{username}'"
            )));
        }
        if !chain
            .current()
            .servers
            .first()
            .is_some_and(|s| self.is_me(s))
        {
            return Err(Error::BadRequest(format!(
                "the renewed claim of '{username}' does not name this server ({}) as its home",
                self.peer_id
            )));
        }
        self.pki_apply(chain).await?;
        tracing::info!(username, expiry = chain.current().expiry, "name renewed");
        Ok(())
    }

    /// A name's chain with everything a client needs to check it.
    pub async fn pki_lookup(&self, username: &str) -> Result<PkiAnswer> {
        peergos_pki::check_username(username)?;
        match &self.mirror {
            Some(mirror) => {
                if self.pki_chain(username).await?.is_none() {
                    // Perhaps just claimed: ask the PKI node (at most once
                    // a second).
                    self.home_of_name(username).await?;
                }
                pki_answer(mirror.pointer(), mirror.pki.champ(), username).await
            }
            None => {
                let pointer = self.pointers.get(&self.id, &self.id).await?;
                pki_answer(pointer, &self.champ, username).await
            }
        }
    }

    // ---- accounts ----

    /// Creates an account: checks the policy, the name and the chain, and
    /// claims the name in the PKI.
    pub async fn signup(&self, request: SignupRequest) -> Result<()> {
        let username = request.username.as_str();
        peergos_pki::check_username(username)?;
        request.chain.verify()?;
        let claim = request.chain.current();
        if claim.username != username {
            return Err(Error::BadRequest(format!(
                "the PKI claim is for '{}', not '{username}'",
                claim.username
            )));
        }
        if request.chain.links().len() != 1 {
            return Err(Error::BadRequest(
                "a new account's chain has exactly one claim".into(),
            ));
        }
        if !claim.servers.first().is_some_and(|s| self.is_me(s)) {
            return Err(Error::BadRequest(format!(
                "the PKI claim does not name this server ({}) as the user's home",
                self.peer_id
            )));
        }
        request.login.validate()?;
        if request.data.len() > 64 << 10 {
            return Err(Error::BadRequest(
                "static data is larger than 64 KiB".into(),
            ));
        }
        let token = match self.config.signup {
            SignupPolicy::Open => None,
            SignupPolicy::Token => Some(request.token.as_deref().ok_or(Error::TokenRequired)?),
        };
        self.accounts
            .create(accounts::NewUser {
                username,
                identity: &claim.identity,
                login_key: &request.login_key,
                params: &request.login,
                static_data: &request.data,
                quota: self.config.default_quota,
                token,
            })
            .await?;
        if let Err(e) = self.pki_apply(&request.chain).await {
            self.accounts.remove(username).await?;
            return Err(match e {
                Error::Pki(peergos_pki::Error::NameTaken { .. }) => {
                    Error::UsernameTaken(username.to_string())
                }
                e => e,
            });
        }
        tracing::info!(username, "signed up");
        Ok(())
    }

    /// Login parameters. An unknown name gets parameters with a salt
    /// derived from the name and a server secret, stable across calls, so
    /// the answer does not tell whether the name exists.
    pub async fn login_params(&self, username: &str) -> Result<LoginParams> {
        if let Some(user) = self.accounts.user(username).await? {
            return Ok(user.params);
        }
        let mut input = self.salt_secret.to_vec();
        input.extend_from_slice(username.as_bytes());
        Ok(LoginParams {
            log_n: 17,
            r: 8,
            p: 1,
            salt: peergos_keys::sha256(&input),
        })
    }

    /// Checks a stamp: signed by the user's login key over this action and
    /// payload, within the clock skew, newer than the last accepted one.
    async fn check_stamp(
        &self,
        username: &str,
        action: &str,
        payload: &[u8],
        stamp: &Stamp,
    ) -> Result<User> {
        let user = self.accounts.user(username).await?.ok_or(Error::BadLogin)?;
        user.login_key
            .verify(
                api::LOGIN_AUTH,
                &auth_message(action, username, stamp.time_ms, payload),
                &stamp.signature,
            )
            .map_err(|_| Error::BadLogin)?;
        self.check_fresh(username, stamp).await?;
        Ok(user)
    }

    /// Checks a stamp signed by the user's identity key (domain
    /// [`api::OWNER_AUTH`]), with the same freshness rules as
    /// [`check_stamp`](Self::check_stamp).
    pub(crate) async fn check_owner_stamp(
        &self,
        username: &str,
        action: &str,
        payload: &[u8],
        stamp: &Stamp,
    ) -> Result<User> {
        let user = self
            .accounts
            .user(username)
            .await?
            .ok_or_else(|| Error::UnknownUser(username.to_string()))?;
        user.identity
            .key()?
            .verify(
                api::OWNER_AUTH,
                &auth_message(action, username, stamp.time_ms, payload),
                &stamp.signature,
            )
            .map_err(|_| {
                Error::BadRequest(format!(
                    "the request is not signed by {username}'s identity key"
                ))
            })?;
        self.check_fresh(username, stamp).await?;
        Ok(user)
    }

    async fn check_fresh(&self, username: &str, stamp: &Stamp) -> Result<()> {
        let now = now_ms();
        if stamp.time_ms.abs_diff(now) > MAX_CLOCK_SKEW_MS {
            return Err(Error::Stale(format!(
                "the request's time is {} s from the server's clock; check the client's clock",
                stamp.time_ms.abs_diff(now) / 1000
            )));
        }
        let advanced = match self.accounts.advance_auth(username, stamp.time_ms).await {
            Ok(advanced) => advanced,
            // The database cannot record it (a full disk, say): judge the
            // stamp against the newest recorded one and those accepted
            // since, kept in memory, so logins (and so reads) still work.
            Err(e) => {
                tracing::warn!(username, "recording a signed time failed: {e}");
                let recorded = self
                    .accounts
                    .user(username)
                    .await?
                    .map_or(0, |u| u.last_auth);
                let mut unrecorded = match self.unrecorded_auth.lock() {
                    Ok(map) => map,
                    Err(poisoned) => poisoned.into_inner(),
                };
                let last = unrecorded.entry(username.to_string()).or_insert(0);
                let newer = stamp.time_ms > recorded.max(*last);
                if newer {
                    *last = stamp.time_ms;
                }
                newer
            }
        };
        if !advanced {
            return Err(Error::Stale(
                "the signed time is not newer than the last request's (a replay?)".into(),
            ));
        }
        Ok(())
    }

    /// The encrypted static data, for a fresh signature by the login key.
    pub async fn login(&self, username: &str, request: &LoginRequest) -> Result<Bytes> {
        Ok(self
            .check_stamp(username, "login", &[], &request.stamp)
            .await?
            .static_data)
    }

    /// Replaces the static data.
    pub async fn update_data(&self, username: &str, request: &DataRequest) -> Result<()> {
        if request.data.len() > 64 << 10 {
            return Err(Error::BadRequest(
                "static data is larger than 64 KiB".into(),
            ));
        }
        self.check_stamp(username, "data", &request.data, &request.stamp)
            .await?;
        self.accounts
            .update_login(username, None, &request.data)
            .await
    }

    /// Changes the login key (a password change): signed by the old key.
    pub async fn change_password(&self, username: &str, request: &ChangeRequest) -> Result<()> {
        request.login.validate()?;
        if request.data.len() > 64 << 10 {
            return Err(Error::BadRequest(
                "static data is larger than 64 KiB".into(),
            ));
        }
        let payload = ChangeRequest::payload(&request.login, &request.login_key, &request.data);
        self.check_stamp(username, "change", &payload, &request.stamp)
            .await?;
        self.accounts
            .update_login(
                username,
                Some((&request.login_key, &request.login)),
                &request.data,
            )
            .await?;
        tracing::info!(username, "password changed");
        Ok(())
    }

    /// A new single-use signup token.
    pub async fn new_signup_token(&self) -> Result<String> {
        self.accounts.new_signup_token().await
    }
}

/// Appends gauges in the Prometheus text format.
fn write_gauges(out: &mut String, gauges: &[(&str, &str, f64)]) {
    use std::fmt::Write as _;
    for (name, help, value) in gauges {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
}

/// Entry points for the fuzz targets; not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    use serde::de::DeserializeOwned;
    use serde::Serialize;

    use crate::api::*;

    fn round_trip<T: DeserializeOwned + Serialize>(data: &[u8]) {
        if let Ok(value) = crate::http::decode::<T>(data) {
            match peergos_ipld::cbor::to_vec(&value) {
                Ok(again) => assert_eq!(again, data, "a request body is not canonical"),
                Err(e) => panic!("a decoded request does not re-encode: {e}"),
            }
        }
    }

    /// Decodes untrusted bytes as every body the server reads and every
    /// answer a client reads: whatever decodes re-encodes to the same
    /// bytes, and turning a put into checked blocks never panics.
    pub fn request(data: &[u8]) {
        round_trip::<PutHeader>(data);
        if let Ok(put) = decode_put(&bytes::Bytes::copy_from_slice(data)) {
            assert_eq!(encode_put(&put), data, "a put body does not re-encode");
        }
        round_trip::<GetRequest>(data);
        round_trip::<GetManyRequest>(data);
        round_trip::<ChampLookup>(data);
        round_trip::<TxRequest>(data);
        round_trip::<SignupRequest>(data);
        if let Ok(signup) = crate::http::decode::<SignupRequest>(data) {
            let _ = signup.chain.verify();
            let _ = signup.login.validate();
        }
        round_trip::<LoginRequest>(data);
        round_trip::<DataRequest>(data);
        round_trip::<ChangeRequest>(data);
        round_trip::<Info>(data);
        round_trip::<PkiAnswer>(data);
        round_trip::<Space>(data);
        round_trip::<ErrorBody>(data);
        round_trip::<FollowPost>(data);
        round_trip::<OwnerRequest>(data);
        round_trip::<Vec<PendingFollow>>(data);
        round_trip::<DeleteRequests>(data);
        round_trip::<CreateLink>(data);
        if let Ok(create) = crate::http::decode::<CreateLink>(data) {
            let _ = create.record.validate();
        }
        round_trip::<RevokeLink>(data);
        round_trip::<UpdateLink>(data);
        round_trip::<Vec<LinkStatus>>(data);
        round_trip::<OpenLink>(data);
        // What servers send each other over p2p.
        round_trip::<crate::peers::TunnelRequest>(data);
        round_trip::<crate::peers::TunnelResponse>(data);
        round_trip::<Vec<crate::peers::Want>>(data);
        let frame = bytes::Bytes::copy_from_slice(data);
        if let Ok(haves) = crate::peers::decode_answer(&frame) {
            assert_eq!(
                crate::peers::encode_answer(&haves),
                data,
                "an exchange answer does not re-encode"
            );
        }
        round_trip::<Option<peergos_pointers::SignedPointer>>(data);
        if let Ok(text) = std::str::from_utf8(data) {
            let _ = crate::peers::parse_home(text);
        }
    }
}
