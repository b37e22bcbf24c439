use peergos_api::{ErrorBody, ErrorCode};

/// Everything a client operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server could not be reached (refused, timed out, no route).
    #[error("cannot reach the server at {address}: {reason}")]
    Unreachable {
        /// The address tried.
        address: String,
        /// What went wrong.
        reason: String,
    },
    /// The server refused the request.
    #[error("{}", .body.message)]
    Refused {
        /// HTTP status.
        status: u16,
        /// The server's answer.
        body: ErrorBody,
    },
    /// Wrong username or password (the server does not say which, and
    /// neither do we).
    #[error("wrong username or password")]
    BadLogin,
    /// The server's scrypt parameters would take more memory than this
    /// client allows ([`crate::Device::with_max_kdf_memory`]).
    #[error(
        "the server asks for a login that takes {} MiB of memory, more than the {} MiB this \
         client allows (a misconfigured or hostile server; raise the limit on purpose with \
         --max-kdf-memory if you chose such parameters yourself)",
        .memory >> 20,
        .limit >> 20
    )]
    KdfTooCostly {
        /// What the parameters need, in bytes.
        memory: u64,
        /// What is allowed, in bytes.
        limit: u64,
    },
    /// The login data the server answered with is older than a version
    /// this device has already seen.
    #[error(
        "rollback: the server answered with version {offered} of your login data, older than \
         version {seen} that this device has already seen (a server restored from an old \
         backup, or one replaying old answers); nothing was changed"
    )]
    LoginRolledBack {
        /// The newest version seen on this device.
        seen: u64,
        /// The version the server answered with.
        offered: u64,
    },
    /// The login data has no home directory, but the identity already has
    /// a filesystem: the server answered with data from before signup
    /// finished (a replay). A client never makes a second home.
    #[error(
        "the server answered with login data from before your account's home existed (a \
         replayed or rolled-back answer); refusing to create a new home, nothing was changed"
    )]
    LoginReplayed,
    /// The login data has no home directory and the identity has no
    /// filesystem yet: signup stopped half-way.
    #[error(
        "the signup of '{0}' did not finish: run signup again with the same name and password \
         to finish it"
    )]
    UnfinishedSignup(String),
    /// The server accepted the login but its answer does not decrypt with
    /// the keys the password gives: the answer was corrupted or forged.
    #[error(
        "the server accepted the login but its answer does not decrypt with your password's \
         keys: the login data is corrupted or forged"
    )]
    CorruptLoginData,
    /// The server refused the login, and the scrypt parameters it served
    /// are not the ones the account's signed state records.
    #[error(
        "the server refused the login with parameters that differ from those your account's \
         signed state records: its answer was corrupted or forged (or a password change did \
         not finish)"
    )]
    ForgedLoginParams,
    /// The server answered something that does not check out: a bad
    /// encoding, a forged PKI entry, static data that does not decrypt.
    #[error("the server's answer is invalid: {0}")]
    Invalid(String),
    /// An operation that cannot be done as asked (following yourself,
    /// sharing your whole home).
    #[error("{0}")]
    Usage(String),
    /// A path outside the user's home.
    #[error("'{path}' is not inside /{home}")]
    OutsideHome {
        /// The path.
        path: String,
        /// The user's home directory name.
        home: String,
    },
    /// A filesystem error (not found, exists, read-only, ...), including
    /// tampering detected while reading.
    #[error(transparent)]
    Fs(#[from] peergos_cryptree::Error),
    /// A PKI check failed.
    #[error(transparent)]
    Pki(#[from] peergos_pki::Error),
    /// A key or signature problem.
    #[error(transparent)]
    Key(#[from] peergos_keys::Error),
    /// A malformed structure.
    #[error(transparent)]
    Encoding(#[from] peergos_ipld::Error),
    /// A CHAMP proof failed.
    #[error(transparent)]
    Champ(#[from] peergos_champ::Error),
    /// A pointer failed its checks (signature, rollback).
    #[error(transparent)]
    Pointer(#[from] peergos_pointers::Error),
    /// No user of that name in the PKI.
    #[error("there is no user '{0}'")]
    UnknownUser(String),
    /// No follow request from that user is waiting.
    #[error("no follow request from '{0}' is waiting (see `requests`)")]
    NoRequest(String),
    /// This user does not follow that user.
    #[error("you do not follow '{0}' (send a follow request and wait for them to accept it)")]
    NotFollowing(String),
    /// That user does not follow this user.
    #[error("'{0}' does not follow you: they must send a follow request, and you accept it")]
    NotFollower(String),
    /// Nothing is shared at that path.
    #[error("nothing is shared at {0}")]
    NotShared(String),
    /// This user made no link with that id.
    #[error("you have no secret link {0} (see `link list`)")]
    UnknownLink(String),
    /// A follow request, share list or secret link failed its checks.
    #[error(transparent)]
    Social(#[from] peergos_social::Error),
    /// Something this account or server stores was written by a newer
    /// version of Peergos: upgrade.
    #[error(transparent)]
    Newer(peergos_ipld::Error),
    /// The server's answer was malformed, or a request could not be made.
    #[error(transparent)]
    Api(peergos_api::Error),
    /// A background task failed.
    #[error("internal error: {0}")]
    Task(String),
    /// A background task panicked or was cancelled.
    #[error("a background task stopped: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// Moving files between the local disk and the filesystem failed.
    #[error(transparent)]
    Transfer(#[from] crate::transfer::TransferError),
}

impl Error {
    /// The server's error code, when the server refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Refused { body, .. } => Some(body.code),
            _ => None,
        }
    }

    pub(crate) fn refused(status: u16, body: ErrorBody) -> Self {
        if body.code == ErrorCode::BadLogin {
            return Error::BadLogin;
        }
        Error::Refused { status, body }
    }
}

impl From<peergos_api::Error> for Error {
    fn from(e: peergos_api::Error) -> Self {
        match e {
            peergos_api::Error::Unreachable { address, reason } => {
                Error::Unreachable { address, reason }
            }
            peergos_api::Error::Refused { status, body } => Error::refused(status, body),
            other => Error::Api(other),
        }
    }
}

impl From<Error> for peergos_blockstore::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Unreachable { address, reason } => {
                peergos_blockstore::Error::Unreachable { address, reason }
            }
            Error::Refused { status, body } => match (body.code, body.quota) {
                (ErrorCode::QuotaExceeded, Some([used, quota, requested])) => {
                    peergos_blockstore::Error::QuotaExceeded {
                        used,
                        quota,
                        requested,
                    }
                }
                _ => peergos_blockstore::Error::Refused {
                    status,
                    message: body.message,
                },
            },
            other => peergos_blockstore::Error::Backend {
                context: "the server".into(),
                source: Box::new(other),
            },
        }
    }
}
