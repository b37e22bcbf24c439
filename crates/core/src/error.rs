use peergos_server::api::ErrorBody;

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
    /// The server answered something that does not check out: a bad
    /// encoding, a forged PKI entry, static data that does not decrypt.
    #[error("the server's answer is invalid: {0}")]
    Invalid(String),
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
    /// A background task failed.
    #[error("internal error: {0}")]
    Task(String),
}

impl Error {
    /// The server's error code, when the server refused.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Refused { body, .. } => Some(&body.code),
            _ => None,
        }
    }

    pub(crate) fn refused(status: u16, body: ErrorBody) -> Self {
        if body.code == "bad_login" {
            return Error::BadLogin;
        }
        Error::Refused { status, body }
    }
}

impl From<peergos_server::Error> for Error {
    fn from(e: peergos_server::Error) -> Self {
        Error::refused(e.status(), e.body())
    }
}

impl From<Error> for peergos_blockstore::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Unreachable { address, reason } => {
                peergos_blockstore::Error::Unreachable { address, reason }
            }
            Error::Refused { status, body } => match (body.code.as_str(), body.quota) {
                ("quota_exceeded", Some([used, quota, requested])) => {
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
            other => peergos_blockstore::Error::Task(other.to_string()),
        }
    }
}
