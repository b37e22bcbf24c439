//! How a server is set up: [`Config`], who may sign up, and the
//! defaults and bounds it runs with.

use std::path::PathBuf;

use peergos_p2p::PeerId;
use peergos_pointers::Durability;

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
    /// The name used in configuration and [`peergos_api::Info::signup`].
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
    /// leave less is refused ([`crate::Error::DiskFull`]), except small ones
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
pub(crate) const PKI_ATTEMPTS: u32 = 12;

/// Bytes kept free on the data disk unless configured: 256 MiB.
pub const DEFAULT_DISK_RESERVE: u64 = 256 << 20;

/// The largest put admitted while the disk is within its reserve: what a
/// delete, a rename or a small edit writes.
pub const SMALL_PUT: u64 = 1 << 20;

/// How long an upload transaction's bytes count against its owner's quota
/// after its last put, unless configured.
pub const DEFAULT_UPLOAD_LEASE: std::time::Duration = std::time::Duration::from_secs(10 * 60);

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
