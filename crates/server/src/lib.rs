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
mod blocks;
mod disk;
mod error;
mod gc;
pub mod guard;
pub mod http;
mod limits;
pub mod listen;
mod login;
pub mod metrics;
mod network;
pub mod peers;
mod pki_node;
mod scrub;
mod social;
mod space;
mod uploads;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use peergos_blockstore::{BlockStore, FileOptions, FileStore, TRANSACTION_TIMEOUT};
use peergos_champ::Champ;
use peergos_cryptree::WriterOwnership;
use peergos_keys::{PublicKeyHash, SigningKeyPair};
use peergos_pki::{name_key, Pki};
use peergos_pointers::{Durability, Ownership, PointerStore, SignedPointer, SqlitePointerStore};
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

use peergos_api::{Info, PkiAnswer};

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

    /// A new single-use signup token.
    pub async fn new_signup_token(&self) -> Result<String> {
        self.accounts.new_signup_token().await
    }
}

/// Entry points for the fuzz targets; not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    use serde::de::DeserializeOwned;
    use serde::Serialize;

    use peergos_api::*;

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
