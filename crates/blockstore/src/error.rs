use std::path::PathBuf;

use peergos_ipld::Cid;

use crate::TransactionId;

/// Everything that can go wrong storing or reading blocks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The block is malformed, too large, or not canonical.
    #[error("invalid block: {0}")]
    Block(#[from] peergos_ipld::Error),
    /// A key, signature or token could not be read.
    #[error("invalid key material: {0}")]
    Key(#[from] peergos_keys::Error),
    /// The writer's signature on a block does not verify.
    #[error("writer signature on block {cid} does not verify")]
    BadWriterSignature {
        /// The block.
        cid: Cid,
    },
    /// The block lists access tokens and the request proved none.
    #[error("block {cid} needs a block access token proof")]
    ProofRequired {
        /// The block.
        cid: Cid,
    },
    /// The request's access proof was refused.
    #[error("access to block {cid} denied: {source}")]
    AccessDenied {
        /// The block.
        cid: Cid,
        /// Why the proof was refused.
        #[source]
        source: Box<peergos_keys::Error>,
    },
    /// A stored block no longer matches its CID (disk corruption or
    /// tampering). It is reported, never returned.
    #[error("stored block {cid} is corrupt (content does not match its hash) at {path}")]
    Corrupt {
        /// The block.
        cid: Cid,
        /// Where it is stored.
        path: PathBuf,
    },
    /// The transaction is not open (never opened, closed or timed out).
    #[error("transaction {id} is not open")]
    UnknownTransaction {
        /// The transaction.
        id: TransactionId,
    },
    /// The transaction belongs to a different owner.
    #[error("transaction {id} belongs to another owner")]
    TransactionOwner {
        /// The transaction.
        id: TransactionId,
    },
    /// A file system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The owner's space is full: storing `requested` more bytes would
    /// take the usage past the quota. Deleting data frees space.
    #[error(
        "quota exceeded: {used} of {quota} bytes used, {requested} more requested; delete files to free space"
    )]
    QuotaExceeded {
        /// Bytes in use (committed and pending).
        used: u64,
        /// The owner's limit.
        quota: u64,
        /// The size of the refused request.
        requested: u64,
    },
    /// A remote store refused the request.
    #[error("server refused the request: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The server's explanation.
        message: String,
    },
    /// A remote store could not be reached.
    #[error("cannot reach {address}: {reason}")]
    Unreachable {
        /// The address tried.
        address: String,
        /// What went wrong.
        reason: String,
    },
    /// The small-block database failed.
    #[error("{action} {path}: {source}")]
    Database {
        /// What was being done.
        action: &'static str,
        /// The database file.
        path: PathBuf,
        /// sqlite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The store's files were written by a newer build, whose format this
    /// one cannot read; run the newer build (or restore a backup).
    #[error("{path} has format version {found}; this build reads up to {supported}: run a newer peergos")]
    NewerFormat {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: i64,
        /// The newest version this build reads.
        supported: i64,
    },
    /// A background I/O task stopped without an answer.
    #[error("block store I/O task failed: {0}")]
    Task(String),
    /// A background task panicked or was cancelled.
    #[error("a background task stopped: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// A layer this store stands for (a remote server, another store)
    /// failed; the cause is kept.
    #[error("{context}: {source}")]
    Backend {
        /// What was being done.
        context: String,
        /// What failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}
