//! [`Server`]: a home server over its stores, opened from a [`Config`].
//! Its operations are in the modules beside this one, by concern.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use peergos_blockstore::{
    BlockStore, FileOptions, FileStore, LocalBlockStore, TRANSACTION_TIMEOUT,
};
use peergos_champ::Champ;
use peergos_cryptree::WriterOwnership;
use peergos_keys::{PublicKeyHash, SigningKeyPair};
use peergos_pki::{name_key, Pki};
use peergos_pointers::{Ownership, PointerStore, SignedPointer, SqlitePointerStore};
use zeroize::Zeroizing;

use peergos_api::{Info, PkiAnswer};

use crate::*;

/// A home server over its stores. Its state is grouped by concern; each
/// group is used by the modules of that concern.
pub struct Server {
    pub(crate) config: Config,
    pub(crate) stores: Stores,
    pub(crate) identity: Identity,
    pub(crate) pki: PkiState,
    pub(crate) upkeep: Upkeep,
    pub(crate) traffic: Traffic,
    pub(crate) net: Net,
}

/// Where users' data lives.
pub(crate) struct Stores {
    pub(crate) blocks: Arc<dyn LocalBlockStore>,
    pub(crate) pointers: Arc<dyn PointerStore>,
    pub(crate) ownership: Arc<WriterOwnership<dyn BlockStore>>,
    pub(crate) accounts: Arc<dyn AccountStore>,
    pub(crate) champ: Champ<dyn BlockStore>,
    /// Every write goes through it: upload records, GC protection.
    pub(crate) guard: Arc<uploads::Guarded>,
}

/// The server's own secrets and name.
pub(crate) struct Identity {
    pub(crate) key: SigningKeyPair,
    pub(crate) id: PublicKeyHash,
    pub(crate) salt_secret: [u8; 32],
    pub(crate) admin_token: String,
}

/// The PKI this server serves: its own tree (as the PKI node) or its
/// mirror of the PKI node's, and where users live.
pub(crate) struct PkiState {
    pub(crate) tree: Pki<dyn BlockStore>,
    pub(crate) lock: tokio::sync::Mutex<()>,
    pub(crate) key: PublicKeyHash,
    pub(crate) peer: PeerId,
    pub(crate) mirror: Option<peers::Mirror>,
    /// Identity key to home server, from every chain.
    pub(crate) homes: std::sync::RwLock<HashMap<PublicKeyHash, PeerId>>,
}

/// Housekeeping: garbage collection, scrubs, the disk reserve.
pub(crate) struct Upkeep {
    /// Room on the data disk kept for deletes.
    pub(crate) ballast: disk::Ballast,
    pub(crate) gc_lock: tokio::sync::Mutex<()>,
    pub(crate) gc_last: Mutex<Option<GcReport>>,
    pub(crate) gc_runs: std::sync::atomic::AtomicU64,
    /// The last scrub's report and when it finished (Unix seconds).
    pub(crate) scrub_last: Mutex<Option<(ScrubReport, u64)>>,
}

/// What requests cost: metrics, rate limits, stamps accepted while the
/// database could not record them.
pub(crate) struct Traffic {
    pub(crate) metrics: metrics::Metrics,
    pub(crate) client_limits: metrics::RouteLimits,
    pub(crate) peer_limits: metrics::RouteLimits<PeerId>,
    /// Signed times accepted while the database could not record them.
    pub(crate) unrecorded_auth: Mutex<HashMap<String, u64>>,
}

/// The server among servers.
pub(crate) struct Net {
    pub(crate) node: Option<peergos_p2p::Node>,
    pub(crate) peer_id: PeerId,
    /// Blocks fetched from other servers for clients here.
    pub(crate) cache: FileStore,
}

/// Opens again in the block store the upload transactions that were open
/// when the server last stopped (their records are in the account store),
/// so their blocks stay protected and their uploads can finish.
async fn resume_transactions(
    accounts: &dyn AccountStore,
    blocks: &dyn LocalBlockStore,
) -> Result<()> {
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

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        action,
        path: path.display().to_string(),
        source,
    }
}

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
pub(crate) async fn pki_answer<S: BlockStore + ?Sized>(
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
        let files: Arc<dyn LocalBlockStore> = match &config.s3 {
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
        let blocks: Arc<dyn LocalBlockStore> = guard.clone();
        // What the structures over the store (CHAMP, PKI, ownership) see.
        let readable: Arc<dyn BlockStore> = guard.clone();
        let ownership = Arc::new(WriterOwnership::new(Arc::clone(&readable)));
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
            Some(p2p) => Some(peergos_p2p::Node::start(&key.seed(), p2p).await.map_err(
                |source| Error::P2p {
                    context: "starting the p2p node",
                    source,
                },
            )?),
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
            config,
            stores: Stores {
                champ: Champ::new(Arc::clone(&readable)),
                blocks: Arc::clone(&blocks),
                pointers,
                ownership,
                accounts,
                guard,
            },
            pki: PkiState {
                tree: Pki::new(readable),
                lock: tokio::sync::Mutex::new(()),
                key: pki_key,
                peer: pki_peer,
                mirror,
                homes: std::sync::RwLock::new(HashMap::new()),
            },
            identity: Identity {
                key,
                id,
                salt_secret,
                admin_token,
            },
            upkeep: Upkeep {
                ballast,
                gc_lock: tokio::sync::Mutex::new(()),
                gc_last: Mutex::new(None),
                gc_runs: std::sync::atomic::AtomicU64::new(0),
                scrub_last: Mutex::new(None),
            },
            traffic: Traffic {
                metrics: metrics::Metrics::default(),
                client_limits: route_limits(1),
                peer_limits: route_limits(PEER_LIMIT_FACTOR),
                unrecorded_auth: Mutex::new(HashMap::new()),
            },
            net: Net {
                node,
                peer_id,
                cache,
            },
        });
        let root = match &server.pki.mirror {
            None => Some(server.pki_root().await?.0),
            Some(mirror) => mirror.pointer().and_then(|p| p.update.current),
        };
        if let Some(root) = root {
            // Which server each user lives on, for routing; built in the
            // background so a large PKI does not delay the start.
            let weak = Arc::downgrade(&server);
            tokio::spawn(async move {
                let Some(server) = weak.upgrade() else { return };
                let indexed = match &server.pki.mirror {
                    None => server.index_all(&server.pki.tree, &root).await,
                    Some(mirror) => server.index_all(&mirror.pki, &root).await,
                };
                if let Err(e) = indexed {
                    tracing::warn!(error = %e, "indexing the PKI failed");
                }
            });
        }
        peers::spawn(&server)?;
        http::tunnel::spawn(&server)?;
        Ok(server)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The request counters behind `/metrics`.
    pub fn metrics(&self) -> &metrics::Metrics {
        &self.traffic.metrics
    }

    /// Whether `token` is this run's admin token (compared in constant
    /// time).
    pub fn is_admin(&self, token: &str) -> bool {
        use subtle::ConstantTimeEq;
        token.len() == self.identity.admin_token.len()
            && bool::from(token.as_bytes().ct_eq(self.identity.admin_token.as_bytes()))
    }

    /// The account store (for admin commands).
    pub fn accounts(&self) -> &dyn AccountStore {
        &*self.stores.accounts
    }

    /// The block store.
    pub fn blocks(&self) -> &Arc<dyn LocalBlockStore> {
        &self.stores.blocks
    }

    /// The pointer store.
    pub fn pointers(&self) -> &Arc<dyn PointerStore> {
        &self.stores.pointers
    }

    /// The server's id.
    pub fn id(&self) -> &PublicKeyHash {
        &self.identity.id
    }

    /// What `GET /v1/info` answers.
    pub fn info(&self) -> Info {
        Info {
            version: env!("CARGO_PKG_VERSION").to_string(),
            server: self.identity.id,
            peer: self.net.peer_id.to_string(),
            pki: self.pki.key,
            pki_peer: self.pki.peer.to_string(),
            signup: self.config.signup.as_str().to_string(),
        }
    }

    /// A new single-use signup token.
    pub async fn new_signup_token(&self) -> Result<String> {
        self.stores.accounts.new_signup_token().await
    }
}
