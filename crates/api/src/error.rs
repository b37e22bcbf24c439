//! How refusals travel: every error answer's [`ErrorBody`] with its
//! [`ErrorCode`], and the [`Error`] a [`crate::NetworkAccess`] call fails
//! with.

use peergos_ipld::Cid;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident = $text:literal,)*) => {
        /// A stable, machine-readable reason for a refusal. On the wire it
        /// is the snake-case text beside each variant; a code this build
        /// does not know decodes as [`ErrorCode::Unrecognised`] (the
        /// message still says what was wrong), so servers may add codes.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
            /// A code newer than this build, or an answer that was not an
            /// error body at all (a proxy's HTML page, say).
            Unrecognised,
        }

        impl ErrorCode {
            /// Every code this build knows, for tests and docs.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code's wire text.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $text,)*
                    ErrorCode::Unrecognised => "unrecognised",
                }
            }

            /// The code a wire text names ([`ErrorCode::Unrecognised`] for
            /// one this build does not know).
            pub fn parse(text: &str) -> ErrorCode {
                match text {
                    $($text => ErrorCode::$variant,)*
                    _ => ErrorCode::Unrecognised,
                }
            }
        }
    };
}

codes! {
    /// The request is malformed (body, path parameter, signature form).
    BadRequest = "bad_request",
    /// No such route, block or value here.
    NotFound = "not_found",
    /// The body is over the size limit, or was cut off.
    TooLarge = "too_large",
    /// The server is at its memory or connection bound; try again.
    Busy = "busy",
    /// The body did not arrive in time.
    BodyTimeout = "body_timeout",
    /// The name is taken (signup).
    UsernameTaken = "username_taken",
    /// Signup on this server needs a valid token.
    TokenRequired = "token_required",
    /// Wrong username or password.
    BadLogin = "bad_login",
    /// A signed timestamp is too old, too new, or was used before.
    Stale = "stale",
    /// The owner has no account on this server.
    UnknownOwner = "unknown_owner",
    /// No user of that name on this server.
    UnknownUser = "unknown_user",
    /// A rate limit or per-user bound was reached.
    TooMany = "too_many",
    /// The PKI refused a claim.
    PkiRefused = "pki_refused",
    /// This server is not the PKI node, or a claim came from the wrong server.
    NotPki = "not_pki",
    /// The owner's quota would be exceeded (the body carries the figures).
    QuotaExceeded = "quota_exceeded",
    /// The block's access proof is missing or wrong.
    AccessDenied = "access_denied",
    /// The upload transaction is not open (expired, closed, another owner's).
    UnknownTransaction = "unknown_transaction",
    /// The block store refused a block.
    BlockRefused = "block_refused",
    /// A pointer moved since it was read (the body carries the stored value).
    CasConflict = "cas_conflict",
    /// A pointer update's sequence is not newer than the stored one.
    StaleSequence = "stale_sequence",
    /// The writer is not owned by the owner named.
    NotOwned = "not_owned",
    /// The pointer store refused an update.
    PointerRefused = "pointer_refused",
    /// No secret link with that id.
    LinkNotFound = "link_not_found",
    /// The link's owner revoked it.
    LinkRevoked = "link_revoked",
    /// The link expired.
    LinkExpired = "link_expired",
    /// The link was opened as many times as it allows.
    LinkUsedUp = "link_used_up",
    /// Wrong link password, or a damaged link.
    LinkDenied = "link_denied",
    /// An admin route without the admin token.
    AdminOnly = "admin_only",
    /// Another server could not be reached or answered nonsense.
    PeerUnreachable = "peer_unreachable",
    /// The server's disk is full: uploads are refused, reads and deletes work.
    DiskFull = "disk_full",
    /// The server failed (its log says how).
    Internal = "internal",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Ok(ErrorCode::parse(&text))
    }
}

/// The body of every error answer.
///
/// CBOR: `{"code": text, "message": text, "actual": link | null, "quota":
/// [u64; 3] | null}`; `actual` is the stored value on a pointer conflict,
/// `quota` is `[used, quota, requested]` on `quota_exceeded`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable machine-readable code.
    pub code: ErrorCode,
    /// What was wrong, for people.
    pub message: String,
    /// The pointer's stored value, on `cas_conflict`.
    pub actual: Option<Cid>,
    /// Quota figures, on `quota_exceeded`: `[used, quota, requested]`.
    pub quota: Option<[u64; 3]>,
}

impl ErrorBody {
    /// Reads an error answer's body. Unlike stored structures, an error
    /// body is read leniently (its CBOR must still be canonical): a newer
    /// server may add fields or codes, and the message must still reach
    /// the user.
    pub fn from_answer(bytes: &[u8]) -> Option<ErrorBody> {
        let value = peergos_ipld::cbor::decode_value_with(
            bytes,
            peergos_ipld::cbor::Limits {
                max_size: 64 << 10,
                max_depth: 8,
            },
        )
        .ok()?;
        peergos_ipld::cbor::from_value(value).ok()
    }

    /// A body with only a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            code,
            message: message.into(),
            actual: None,
            quota: None,
        }
    }
}

/// What a [`crate::NetworkAccess`] call fails with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server could not be reached (refused, timed out, no route, or
    /// it stopped answering).
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
    /// The server's answer is not what the route answers.
    #[error("the server's answer to {route} is malformed: {source}")]
    BadAnswer {
        /// The route asked.
        route: &'static str,
        /// Why it did not decode.
        #[source]
        source: peergos_ipld::Error,
    },
    /// The answer decoded but cannot be right (a count or a length that
    /// does not fit the request).
    #[error("the server's answer to {route} cannot be right: {reason}")]
    WrongAnswer {
        /// The route asked.
        route: &'static str,
        /// What does not fit.
        reason: String,
    },
    /// A username in the request is not a valid name (nothing was sent).
    #[error(transparent)]
    BadName(#[from] peergos_pki::Error),
    /// A request could not be encoded.
    #[error("encoding a request to {route}: {source}")]
    Encode {
        /// The route.
        route: &'static str,
        /// The encoder's error.
        #[source]
        source: peergos_ipld::Error,
    },
}

impl Error {
    /// The server's code, when it refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Refused { body, .. } => Some(body.code),
            _ => None,
        }
    }
}

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use peergos_ipld::cbor;

    #[test]
    fn every_code_round_trips_and_unknown_codes_decode() {
        for &code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), code);
            let body = ErrorBody::new(code, "m");
            let bytes = cbor::to_vec(&body).unwrap();
            assert_eq!(cbor::from_slice::<ErrorBody>(&bytes).unwrap(), body);
        }
        #[derive(Serialize)]
        struct Newer {
            actual: Option<Cid>,
            code: &'static str,
            message: &'static str,
            quota: Option<[u64; 3]>,
            retry: u64,
        }
        let newer = cbor::to_vec(&Newer {
            actual: None,
            code: "a_code_from_the_future",
            message: "m",
            quota: None,
            retry: 3,
        })
        .unwrap();
        let body = ErrorBody::from_answer(&newer).unwrap();
        assert_eq!(body.code, ErrorCode::Unrecognised);
        assert_eq!(body.message, "m");
    }
}
