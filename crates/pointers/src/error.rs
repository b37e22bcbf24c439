use peergos_ipld::Cid;
use peergos_keys::PublicKeyHash;

/// Everything that can go wrong reading or moving a pointer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another update won: the pointer no longer holds the value the
    /// update was built on. Re-read and retry.
    #[error(
        "pointer moved: update expects {} but the pointer is at {}",
        show(&.0.expected),
        show(&.0.actual)
    )]
    CasConflict(Box<CasConflict>),
    /// The update's sequence is not larger than the stored one.
    #[error("sequence {offered} is not after the stored sequence {stored}")]
    StaleSequence {
        /// The stored sequence.
        stored: u64,
        /// The update's sequence.
        offered: u64,
    },
    /// A pointer older than one the client has already seen (a rollback).
    #[error(
        "rollback: the server offered a writer's state at sequence {offered}, older than \
         sequence {seen} that this device has already seen (a server restored from an old \
         backup, or one replaying old state); nothing was changed"
    )]
    Rollback {
        /// The newest sequence seen before.
        seen: u64,
        /// The sequence offered now.
        offered: u64,
    },
    /// Two different updates signed with the same sequence.
    #[error(
        "equivocation: the server offered a writer's state at sequence {sequence} that differs \
         from the one this device saw at that sequence"
    )]
    Equivocation {
        /// The sequence both claim.
        sequence: u64,
    },
    /// The writer is not the owner nor a key the owner owns.
    #[error("writer {writer} is not owned by {owner}")]
    NotOwned {
        /// The pointer's owner.
        owner: PublicKeyHash,
        /// The writer that tried to move it.
        writer: PublicKeyHash,
    },
    /// A signature or key problem (including a bad signature).
    #[error("pointer update rejected: {0}")]
    Key(#[from] peergos_keys::Error),
    /// A malformed encoding.
    #[error("malformed pointer update: {0}")]
    Encoding(#[from] peergos_ipld::Error),
    /// The sqlite database failed.
    #[error("pointer database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// The sqlite error.
        #[source]
        source: rusqlite::Error,
    },
    /// A row in the database is not a valid pointer (corruption).
    #[error("pointer database {path} holds a corrupt row: {reason}")]
    CorruptRow {
        /// The database file.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// A remote store refused the request.
    #[error("server refused the pointer request: {message}")]
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
    /// A background task stopped without an answer.
    #[error("pointer store task failed: {0}")]
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
    /// The device's record of what it has seen ([`crate::SeenStore`])
    /// could not be read or written.
    #[error("the record of seen versions at {path}: {reason}")]
    Seen {
        /// The record's file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The database refused or failed a query.
    #[error("pointer database: {0}")]
    Database(String),
    /// The operation is not offered by this store (listing the pointers
    /// of a remote server, say).
    #[error("{operation} is not available on this store")]
    Unsupported {
        /// The operation.
        operation: &'static str,
    },
}

/// The two values of a [`Error::CasConflict`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CasConflict {
    /// The `previous` value the update was built on.
    pub expected: Option<Cid>,
    /// The value actually stored.
    pub actual: Option<Cid>,
}

fn show(cid: &Option<Cid>) -> String {
    cid.map_or_else(|| "nothing".to_string(), |c| c.to_string())
}
