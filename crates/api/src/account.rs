//! The requests of the account routes: signup, login, the login data and
//! password changes, each authorised by a [`Stamp`].

use bytes::Bytes;
use peergos_ipld::cbor;
use peergos_keys::{Domain, LoginParams, PublicSigningKey, Signature};
use peergos_pki::KeyChain;
use serde::{Deserialize, Serialize};

/// How far a signed timestamp may be from the server's clock.
pub const MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;

/// Domain of the signatures that authorise login-data requests.
pub const LOGIN_AUTH: Domain = Domain::new("peergos/login-auth/v1");

/// `POST /v1/signup`.
///
/// CBOR: `{"u": text, "chain": KeyChain, "login": LoginParams, "lk":
/// bytes(33), "data": bytes, "token": text | null}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SignupRequest {
    /// The username.
    #[serde(rename = "u")]
    pub username: String,
    /// The first PKI claim, signed by the new identity key.
    pub chain: KeyChain,
    /// The scrypt parameters the login keys came from.
    pub login: LoginParams,
    /// The public login key.
    #[serde(rename = "lk")]
    pub login_key: PublicSigningKey,
    /// The encrypted static data.
    pub data: Bytes,
    /// A signup token, when the server needs one.
    pub token: Option<String>,
}

/// A signature by the login key over a fresh timestamp, the action, the
/// username and a digest of the request's payload ([`auth_message`]).
///
/// CBOR: `{"t": u64 ms, "s": bytes(64)}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stamp {
    /// Milliseconds since the Unix epoch; must be newer than the last one
    /// the server accepted for this user.
    #[serde(rename = "t")]
    pub time_ms: u64,
    /// The signature.
    #[serde(rename = "s")]
    pub signature: Signature,
}

/// The bytes a [`Stamp`] signs: CBOR `{"a": action, "p": sha256(payload),
/// "t": time, "u": username}`.
pub fn auth_message(action: &str, username: &str, time_ms: u64, payload: &[u8]) -> Vec<u8> {
    #[derive(Serialize)]
    struct Message<'a> {
        a: &'a str,
        #[serde(with = "serde_bytes")]
        p: [u8; 32],
        t: u64,
        u: &'a str,
    }
    // Encoding four plain fields cannot fail.
    cbor::to_vec(&Message {
        a: action,
        p: peergos_keys::sha256(payload),
        t: time_ms,
        u: username,
    })
    .unwrap_or_default()
}

/// `POST /v1/login/{name}`: answers the encrypted static data.
///
/// CBOR: `{"stamp": Stamp}` (action `"login"`, empty payload).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoginRequest {
    /// The login key's signature.
    pub stamp: Stamp,
}

/// `POST /v1/login/{name}/data`: replaces the static data (action
/// `"data"`, payload the new data).
///
/// CBOR: `{"stamp": Stamp, "data": bytes}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DataRequest {
    /// The login key's signature.
    pub stamp: Stamp,
    /// The new encrypted static data.
    pub data: Bytes,
}

/// `POST /v1/login/{name}/change`: a password change, signed by the old
/// login key (action `"change"`, payload CBOR of `{login, lk, data}`).
///
/// CBOR: `{"stamp": Stamp, "login": LoginParams, "lk": bytes(33), "data": bytes}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChangeRequest {
    /// The old login key's signature.
    pub stamp: Stamp,
    /// New parameters.
    pub login: LoginParams,
    /// New public login key.
    #[serde(rename = "lk")]
    pub login_key: PublicSigningKey,
    /// Static data under the new root key.
    pub data: Bytes,
}

impl ChangeRequest {
    /// The payload the stamp covers.
    pub fn payload(login: &LoginParams, login_key: &PublicSigningKey, data: &[u8]) -> Vec<u8> {
        #[derive(Serialize)]
        struct Payload<'a> {
            data: &'a serde_bytes::Bytes,
            lk: &'a PublicSigningKey,
            login: &'a LoginParams,
        }
        cbor::to_vec(&Payload {
            data: serde_bytes::Bytes::new(data),
            lk: login_key,
            login,
        })
        .unwrap_or_default()
    }
}
