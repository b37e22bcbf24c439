use peergos_ipld::Cid;

use peergos_api::{ErrorBody, ErrorCode};

/// Everything the server can refuse or fail at. Each maps to an HTTP
/// status and a stable code ([`Error::code`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The disk the server stores blocks on is (nearly) full: uploads are
    /// refused while deletes and garbage collection keep working.
    #[error(
        "the server's disk is full ({} MiB free; {} MiB are kept for deletes): delete files to \
         make room, or ask the server's operator",
        .free >> 20,
        .reserve >> 20
    )]
    DiskFull {
        /// Bytes free on the disk.
        free: u64,
        /// Bytes the server keeps free for deletes and metadata.
        reserve: u64,
    },
    /// The request body is not what the route takes.
    #[error("malformed request: {0}")]
    BadRequest(String),
    /// A request body or path parameter that does not decode.
    #[error("malformed request: {what}: {source}")]
    Malformed {
        /// What did not decode.
        what: String,
        /// Why.
        #[source]
        source: peergos_ipld::Error,
    },
    /// A key hash in a request that does not parse.
    #[error("malformed request: '{text}' is not a public key hash: {source}")]
    BadKey {
        /// The text given.
        text: String,
        /// Why.
        #[source]
        source: peergos_keys::Error,
    },
    /// The peer-to-peer node failed at something only this server does
    /// (starting, serving a protocol, converting its key).
    #[error("{context}: {source}")]
    P2p {
        /// What was being done.
        context: &'static str,
        /// The node's error.
        #[source]
        source: peergos_p2p::Error,
    },
    /// A background task panicked or was cancelled.
    #[error("a background task stopped: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// The username is taken, or claimed in the PKI by another key.
    #[error("username '{0}' is already taken")]
    UsernameTaken(String),
    /// Signup needs a valid, unused token.
    #[error("signup on this server needs a valid signup token (ask the administrator for a link)")]
    TokenRequired,
    /// Wrong username or password (deliberately does not say which).
    #[error("wrong username or password")]
    BadLogin,
    /// A signed timestamp is too old, too new, or was used before.
    #[error("stale request: {0}")]
    Stale(String),
    /// The owner has no account here.
    #[error("{0} has no account on this server")]
    UnknownOwner(peergos_keys::PublicKeyHash),
    /// A block store refusal or failure.
    #[error(transparent)]
    Block(#[from] peergos_blockstore::Error),
    /// A pointer store refusal or failure.
    #[error(transparent)]
    Pointer(#[from] peergos_pointers::Error),
    /// A PKI refusal.
    #[error(transparent)]
    Pki(#[from] peergos_pki::Error),
    /// A filesystem structure (writer data, node block) is malformed.
    #[error(transparent)]
    Cryptree(#[from] peergos_cryptree::Error),
    /// A CHAMP failure.
    #[error(transparent)]
    Champ(#[from] peergos_champ::Error),
    /// A malformed structure.
    #[error(transparent)]
    Encoding(#[from] peergos_ipld::Error),
    /// A key problem.
    #[error(transparent)]
    Key(#[from] peergos_keys::Error),
    /// The account database failed.
    #[error("account database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// The sqlite error.
        #[source]
        source: rusqlite::Error,
    },
    /// The Postgres database (accounts, or the pool shared with pointers)
    /// failed.
    #[error("metadata database: {0}")]
    Database(#[from] peergos_pointers::DatabaseError),
    /// The data directory could not be used.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No such user on this server.
    #[error("there is no user '{0}' on this server")]
    UnknownUser(String),
    /// A social structure (follow request, link record) is malformed.
    #[error(transparent)]
    Social(#[from] peergos_social::Error),
    /// A per-user limit is reached.
    #[error("{0}")]
    TooMany(String),
    /// No secret link with this id.
    #[error("no secret link {0} on this server")]
    LinkNotFound(String),
    /// The link's owner revoked it.
    #[error("this secret link was revoked by its owner")]
    LinkRevoked,
    /// The link's expiry has passed.
    #[error("this secret link expired")]
    LinkExpired,
    /// The link was opened as many times as it allows.
    #[error("this secret link was already opened the {max} time(s) it allows")]
    LinkUsedUp {
        /// The use limit.
        max: u64,
    },
    /// The token does not match: a wrong password, or a damaged link.
    #[error("wrong password for this secret link (or the link is damaged)")]
    LinkDenied,
    /// A background task failed.
    #[error("internal error: {0}")]
    Internal(String),
    /// An admin route without the admin token.
    #[error("this needs the admin token from the data directory (admin.token)")]
    AdminOnly,
    /// The operation is already running (one garbage collection at a time).
    #[error("{0}")]
    Busy(String),
    /// Another server (a user's home, the PKI node) could not be reached
    /// over the peer-to-peer network, or answered nonsense.
    #[error("{0}")]
    Peer(String),
    /// Another server refused a request made on a client's behalf; its
    /// answer is passed on as it came.
    #[error("{}", .body.message)]
    Remote {
        /// The other server's status.
        status: u16,
        /// Its answer.
        body: peergos_api::ErrorBody,
    },
    /// This server is not the PKI node, or the request did not come from
    /// the server it claims a name for.
    #[error("{0}")]
    NotPki(String),
}

impl Error {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        use peergos_blockstore::Error as B;
        use peergos_pointers::Error as P;
        match self {
            Error::BadRequest(_)
            | Error::Malformed { .. }
            | Error::BadKey { .. }
            | Error::Encoding(_)
            | Error::Key(_)
            | Error::Cryptree(_)
            | Error::Social(_) => 400,
            Error::UsernameTaken(_) | Error::Busy(_) => 409,
            Error::UnknownUser(_) | Error::LinkNotFound(_) => 404,
            Error::TooMany(_) => 429,
            Error::LinkRevoked | Error::LinkExpired | Error::LinkUsedUp { .. } => 410,
            Error::LinkDenied | Error::AdminOnly => 403,
            Error::TokenRequired | Error::BadLogin | Error::Stale(_) => 403,
            Error::UnknownOwner(_) => 404,
            Error::Pki(
                peergos_pki::Error::NameTaken { .. } | peergos_pki::Error::NotAppendOnly { .. },
            ) => 409,
            Error::Pki(_) => 400,
            Error::Block(e) => match e {
                B::QuotaExceeded { .. } => 413,
                B::ProofRequired { .. } | B::AccessDenied { .. } => 403,
                B::BadWriterSignature { .. } | B::Block(_) | B::Key(_) => 400,
                B::UnknownTransaction { .. } | B::TransactionOwner { .. } => 409,
                _ => 500,
            },
            Error::Pointer(e) => match e {
                P::CasConflict(_) | P::StaleSequence { .. } => 409,
                P::NotOwned { .. } => 403,
                P::Key(_) | P::Encoding(_) => 400,
                _ => 500,
            },
            Error::Champ(_)
            | Error::Sqlite { .. }
            | Error::Database(_)
            | Error::Io { .. }
            | Error::Internal(_)
            | Error::P2p { .. }
            | Error::Join(_) => 500,
            Error::Peer(_) => 502,
            Error::DiskFull { .. } => 507,
            Error::Remote { status, .. } => *status,
            Error::NotPki(_) => 403,
        }
    }

    /// A stable code clients map back to typed errors.
    pub fn code(&self) -> ErrorCode {
        use peergos_blockstore::Error as B;
        use peergos_pointers::Error as P;
        match self {
            Error::BadRequest(_)
            | Error::Malformed { .. }
            | Error::BadKey { .. }
            | Error::Encoding(_)
            | Error::Key(_)
            | Error::Cryptree(_)
            | Error::Social(_) => ErrorCode::BadRequest,
            Error::UsernameTaken(_) => ErrorCode::UsernameTaken,
            Error::Busy(_) => ErrorCode::Busy,
            Error::AdminOnly => ErrorCode::AdminOnly,
            Error::UnknownUser(_) => ErrorCode::UnknownUser,
            Error::TooMany(_) => ErrorCode::TooMany,
            Error::LinkNotFound(_) => ErrorCode::LinkNotFound,
            Error::LinkRevoked => ErrorCode::LinkRevoked,
            Error::LinkExpired => ErrorCode::LinkExpired,
            Error::LinkUsedUp { .. } => ErrorCode::LinkUsedUp,
            Error::LinkDenied => ErrorCode::LinkDenied,
            Error::TokenRequired => ErrorCode::TokenRequired,
            Error::BadLogin => ErrorCode::BadLogin,
            Error::Stale(_) => ErrorCode::Stale,
            Error::UnknownOwner(_) => ErrorCode::UnknownOwner,
            Error::Pki(_) => ErrorCode::PkiRefused,
            Error::Block(B::QuotaExceeded { .. }) => ErrorCode::QuotaExceeded,
            Error::Block(B::ProofRequired { .. } | B::AccessDenied { .. }) => {
                ErrorCode::AccessDenied
            }
            Error::Block(B::UnknownTransaction { .. } | B::TransactionOwner { .. }) => {
                ErrorCode::UnknownTransaction
            }
            Error::Block(_) => ErrorCode::BlockRefused,
            Error::Pointer(P::CasConflict(_)) => ErrorCode::CasConflict,
            Error::Pointer(P::StaleSequence { .. }) => ErrorCode::StaleSequence,
            Error::Pointer(P::NotOwned { .. }) => ErrorCode::NotOwned,
            Error::Pointer(_) => ErrorCode::PointerRefused,
            Error::Champ(_)
            | Error::Sqlite { .. }
            | Error::Database(_)
            | Error::Io { .. }
            | Error::Internal(_)
            | Error::P2p { .. }
            | Error::Join(_) => ErrorCode::Internal,
            Error::Peer(_) => ErrorCode::PeerUnreachable,
            Error::DiskFull { .. } => ErrorCode::DiskFull,
            Error::Remote { body, .. } => body.code,
            Error::NotPki(_) => ErrorCode::NotPki,
        }
    }

    /// The answer body.
    pub fn body(&self) -> ErrorBody {
        if let Error::Remote { body, .. } = self {
            return body.clone();
        }
        let actual: Option<Cid> = match self {
            Error::Pointer(peergos_pointers::Error::CasConflict(c)) => c.actual,
            _ => None,
        };
        let quota = match self {
            Error::Block(peergos_blockstore::Error::QuotaExceeded {
                used,
                quota,
                requested,
            }) => Some([*used, *quota, *requested]),
            _ => None,
        };
        ErrorBody {
            code: self.code(),
            message: self.to_string(),
            actual,
            quota,
        }
    }
}
