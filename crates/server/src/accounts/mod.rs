//! The account store: users' login data, space usage and quotas, signup
//! tokens, pending follow requests, secret-link records, the PKI mirror's
//! accepted root and the records of open upload transactions. [`AccountStore`] is the interface; it is kept
//! in sqlite ([`SqliteAccounts`], `accounts.sqlite`, the default) or in
//! Postgres ([`PostgresAccounts`], beside the pointers).
//!
//! Everything the server checks atomically is one call here: spending a
//! signup token with creating the user, counting a follow request
//! against the limit with storing it, and checking a link's limits with
//! counting a use. Both stores pass the same suite
//! (`crates/server/tests/accounts.rs`).

mod postgres;
mod postgres_uploads;
mod sqlite;
mod sqlite_uploads;

use std::collections::HashSet;

use async_trait::async_trait;
use bytes::Bytes;
use peergos_blockstore::TransactionId;
use peergos_ipld::Cid;
use peergos_keys::{LoginParams, PublicKeyHash, PublicSigningKey};
use peergos_social::LinkRecord;

use crate::{Error, Result, MAX_LINKS};
use peergos_api::{LinkStatus, PendingFollow};
use peergos_ipld::cbor;

pub use self::postgres::PostgresAccounts;
pub use self::sqlite::SqliteAccounts;

/// One user's login record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The identity key.
    pub identity: PublicKeyHash,
    /// The login key that signs login requests.
    pub login_key: PublicSigningKey,
    /// scrypt parameters.
    pub params: LoginParams,
    /// The encrypted static data.
    pub static_data: Bytes,
    /// The newest accepted signed timestamp.
    pub last_auth: u64,
}

/// A new user's record.
#[derive(Clone, Copy, Debug)]
pub struct NewUser<'a> {
    /// The name claimed.
    pub username: &'a str,
    /// The identity key.
    pub identity: &'a PublicKeyHash,
    /// The login key.
    pub login_key: &'a PublicSigningKey,
    /// scrypt parameters.
    pub params: &'a LoginParams,
    /// The encrypted static data.
    pub static_data: &'a [u8],
    /// The quota the user starts with, in bytes.
    pub quota: u64,
    /// The signup token to spend (None: signup is open).
    pub token: Option<&'a str>,
}

/// Why a secret link cannot be opened, as the store saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkRefusal {
    /// The owner revoked it.
    Revoked,
    /// Its expiry has passed.
    Expired,
    /// It has been opened as many times as allowed (the limit).
    UsedUp(u64),
    /// The access token is wrong.
    Denied,
}

/// An upload transaction's record, as kept across restarts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenTransaction {
    /// The transaction.
    pub id: TransactionId,
    /// Whose it is.
    pub owner: PublicKeyHash,
    /// When it was opened, in milliseconds since the Unix epoch.
    pub opened_ms: u64,
    /// The blocks written in it so far.
    pub blocks: Vec<Cid>,
}

/// Where a server keeps its accounts.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Creates a user with zero usage, spending `user.token` if one is
    /// given; both happen or neither does. Refused with
    /// [`Error::TokenRequired`](crate::Error::TokenRequired) for an
    /// unknown token and [`Error::UsernameTaken`](crate::Error::UsernameTaken)
    /// when the name or the identity has an account.
    async fn create(&self, user: NewUser<'_>) -> Result<()>;

    /// Removes a user whose signup could not be completed, with their
    /// space row.
    async fn remove(&self, username: &str) -> Result<()>;

    /// The user's record.
    async fn user(&self, username: &str) -> Result<Option<User>>;

    /// Accepts a signed timestamp if it is newer than the last one
    /// (checked and stored atomically, so a replay loses); whether it was.
    async fn advance_auth(&self, username: &str, time_ms: u64) -> Result<bool>;

    /// Replaces the static data (and, on a password change, the login key
    /// and parameters).
    async fn update_login(
        &self,
        username: &str,
        login: Option<(&PublicSigningKey, &LoginParams)>,
        static_data: &[u8],
    ) -> Result<()>;

    /// Usage and quota of an owner with an account.
    async fn space(&self, owner: &PublicKeyHash) -> Result<Option<(u64, u64)>>;

    /// Adds `delta` (possibly negative) to an owner's usage, which never
    /// goes below zero.
    async fn add_usage(&self, owner: &PublicKeyHash, delta: i64) -> Result<()>;

    /// Sets the quota of a user; false if there is no such user.
    async fn set_quota(&self, username: &str, quota: u64) -> Result<bool>;

    /// Every user with usage and quota, by name.
    async fn usage(&self) -> Result<Vec<(String, u64, u64)>>;

    /// Stores a single-use signup token.
    async fn add_signup_token(&self, token: &str) -> Result<()>;

    /// Creates and stores a new single-use signup token (128 random bits,
    /// hex).
    async fn new_signup_token(&self) -> Result<String> {
        use rand_core::RngCore;
        let mut bytes = [0u8; 16];
        rand_core::OsRng.fill_bytes(&mut bytes);
        let token = data_encoding::HEXLOWER.encode(&bytes);
        self.add_signup_token(&token).await?;
        Ok(token)
    }

    /// Stores a sealed follow request for `target` unless `target` has
    /// [`MAX_PENDING_FOLLOWS`](crate::MAX_PENDING_FOLLOWS) waiting (false
    /// then). The same request twice is stored once.
    async fn add_follow_request(&self, target: &str, id: &[u8; 32], sealed: &[u8]) -> Result<bool>;

    /// The follow requests waiting for `target`, oldest first.
    async fn follow_requests(&self, target: &str) -> Result<Vec<PendingFollow>>;

    /// Deletes answered follow requests (unknown ids are ignored).
    async fn delete_follow_requests(
        &self,
        target: &str,
        ids: &[serde_bytes::ByteBuf],
    ) -> Result<()>;

    /// Stores a new secret-link record. Refused with
    /// [`Error::TooMany`](crate::Error::TooMany) past
    /// [`MAX_LINKS`](crate::MAX_LINKS) live links and with
    /// [`Error::BadRequest`](crate::Error::BadRequest) for an id in use.
    async fn create_link(&self, owner: &str, record: &LinkRecord) -> Result<()>;

    /// The owner's links with their use counts, oldest first.
    async fn links(&self, owner: &str) -> Result<Vec<LinkStatus>>;

    /// Points a live link at a new encrypted capability; false if the
    /// owner has no such live link.
    async fn update_link(&self, owner: &str, id: &str, blob: &[u8]) -> Result<bool>;

    /// Revokes a link; false if the owner has no such link.
    async fn revoke_link(&self, owner: &str, id: &str) -> Result<bool>;

    /// Checks a link's token, revocation, expiry (against `now_ms`) and
    /// use limit, and counts one use, atomically. None for an unknown id.
    async fn use_link(
        &self,
        id: &str,
        token_hash: &[u8; 32],
        now_ms: u64,
    ) -> Result<Option<std::result::Result<Bytes, LinkRefusal>>>;

    /// The PKI node's signed pointer this server's mirror accepted last
    /// (its encoding), if any.
    async fn mirror_pointer(&self) -> Result<Option<Vec<u8>>>;

    /// Records the PKI pointer the mirror accepted.
    async fn set_mirror_pointer(&self, signed: &[u8]) -> Result<()>;

    /// Records an upload transaction of `owner`, opened at `opened_ms`.
    /// Block stores keep open transactions in memory; this record is what
    /// every replica of the server (and the server after a restart) knows
    /// of them: a put or close may reach any replica, and garbage
    /// collection on any replica spares their blocks.
    async fn open_transaction(
        &self,
        owner: &PublicKeyHash,
        id: &TransactionId,
        opened_ms: u64,
    ) -> Result<()>;

    /// The transaction `id` if it is open (not closed, opened at or after
    /// `since_ms`), without its blocks.
    async fn transaction(
        &self,
        id: &TransactionId,
        since_ms: u64,
    ) -> Result<Option<OpenTransaction>>;

    /// Records blocks about to be stored in an open transaction (each
    /// once), `bytes` more held against the owner's quota, and `now_ms` as
    /// its last put. Called before the blocks are stored, and atomic with
    /// respect to [`delete_unless_protected`](Self::delete_unless_protected):
    /// a block recorded here is never deleted by a collection that has
    /// not finished deleting it already.
    async fn add_transaction_blocks(
        &self,
        id: &TransactionId,
        blocks: &[Cid],
        bytes: u64,
        now_ms: u64,
    ) -> Result<()>;

    /// Marks a transaction closed at `now_ms`; its record stays until a
    /// collection that started after the close prunes it.
    async fn close_transaction(&self, id: &TransactionId, now_ms: u64) -> Result<()>;

    /// Every open transaction opened at or after `since_ms`, oldest first,
    /// with its blocks.
    async fn open_transactions(&self, since_ms: u64) -> Result<Vec<OpenTransaction>>;

    /// Bytes `owner`'s open transactions hold against the quota: those put
    /// to at or after `since_ms` (the upload lease).
    async fn pending(&self, owner: &PublicKeyHash, since_ms: u64) -> Result<u64>;

    /// How many open transactions were put to at or after `since_ms`.
    async fn open_uploads(&self, since_ms: u64) -> Result<u64>;

    /// Every block an upload may still need: those of transactions open
    /// and opened at or after `opened_since`, and of transactions closed
    /// at or after `closed_since` (their commit may be newer than the
    /// pointers a collection read).
    async fn protected_blocks(&self, opened_since: u64, closed_since: u64) -> Result<HashSet<Cid>>;

    /// Runs `delete` for `cid` unless [`protected_blocks`](Self::protected_blocks)
    /// would list it now, with no record of it added meanwhile (in
    /// Postgres, under an advisory lock that the records' writers share).
    /// Returns what `delete` returned, or None when the block is protected.
    async fn delete_unless_protected<'a>(
        &'a self,
        cid: &'a Cid,
        opened_since: u64,
        closed_since: u64,
        delete: DeleteFn<'a>,
    ) -> Result<Option<u64>>;

    /// Forgets transactions opened before `opened_before` (timed out) and
    /// those closed before `closed_before`, with their blocks.
    async fn prune_transactions(&self, opened_before: u64, closed_before: u64) -> Result<()>;

    /// Takes (or renews, for the same `holder`) the garbage-collection
    /// lease until `now_ms + ttl_ms`. With `min_gap_ms`, refuses too when a
    /// collection finished less than that ago (a schedule on several
    /// replicas runs one collection per period). True if held.
    async fn gc_lease(
        &self,
        holder: &str,
        now_ms: u64,
        ttl_ms: u64,
        min_gap_ms: Option<u64>,
    ) -> Result<bool>;

    /// Gives the lease back; `finished` records a completed collection at
    /// `now_ms`.
    async fn end_gc_lease(&self, holder: &str, now_ms: u64, finished: bool) -> Result<()>;

    /// Takes one request from the token bucket `key` (`burst` at most,
    /// refilled at one per `every_ms`) at `now_ms`, atomically for every
    /// replica sharing the store: None if allowed, else how many
    /// milliseconds until the next request is.
    async fn take_token(
        &self,
        key: &str,
        burst: u32,
        every_ms: u64,
        now_ms: u64,
    ) -> Result<Option<u64>>;

    /// Forgets buckets untouched since `before_ms` (they are full again).
    async fn prune_buckets(&self, before_ms: u64) -> Result<()>;
}

/// One token bucket step: the bucket's tokens and time (None: new) at
/// `now_ms` after a request; whether it is allowed, else the wait.
pub(crate) fn bucket_step(
    stored: Option<(f64, i64)>,
    burst: u32,
    every_ms: u64,
    now_ms: u64,
) -> (f64, std::result::Result<(), u64>) {
    let burst = f64::from(burst.max(1));
    let every = every_ms.max(1) as f64;
    let tokens = match stored {
        None => burst,
        Some((tokens, at)) => {
            let elapsed = (now_ms as i64).saturating_sub(at).max(0) as f64;
            (tokens + elapsed / every).min(burst)
        }
    };
    if tokens >= 1.0 {
        (tokens - 1.0, Ok(()))
    } else {
        (tokens, Err(((1.0 - tokens) * every).ceil() as u64))
    }
}

/// What [`AccountStore::delete_unless_protected`] runs to delete a block:
/// the bytes freed, or None if it kept the block after all.
pub type DeleteFn<'a> =
    Box<dyn FnOnce() -> futures::future::BoxFuture<'a, Result<Option<u64>>> + Send + 'a>;

/// Whether a link with these limits refuses a use now; the refusal.
pub(crate) fn link_refusal(
    revoked: bool,
    token_matches: bool,
    expiry: Option<i64>,
    max_uses: Option<i64>,
    uses: i64,
    now_ms: u64,
) -> Option<LinkRefusal> {
    if revoked {
        Some(LinkRefusal::Revoked)
    } else if !token_matches {
        Some(LinkRefusal::Denied)
    } else if expiry.is_some_and(|e| e <= now_ms as i64) {
        Some(LinkRefusal::Expired)
    } else {
        max_uses
            .filter(|&max| uses >= max)
            .map(|max| LinkRefusal::UsedUp(max.max(0) as u64))
    }
}

/// The transactions in `rows` of (id, owner, opened) and `blocks` of (id,
/// cid), as stored.
pub(crate) fn decode_transactions(
    rows: Vec<(Vec<u8>, Vec<u8>, i64)>,
    blocks: Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<Vec<OpenTransaction>> {
    let id = |bytes: &[u8]| -> Result<TransactionId> {
        let bytes: [u8; 16] = bytes
            .try_into()
            .map_err(|_| Error::Internal("a stored transaction id is not 16 bytes".into()))?;
        Ok(TransactionId::from_bytes(bytes))
    };
    let mut open = rows
        .into_iter()
        .map(|(tx, owner, opened)| {
            Ok(OpenTransaction {
                id: id(&tx)?,
                owner: PublicKeyHash::from_cid(Cid::from_bytes(&owner)?)?,
                opened_ms: unsigned(opened),
                blocks: Vec::new(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let index: std::collections::HashMap<TransactionId, usize> =
        open.iter().enumerate().map(|(i, t)| (t.id, i)).collect();
    for (tx, cid) in blocks {
        // Blocks of a transaction not listed (closed meanwhile) are skipped.
        if let Some(&i) = index.get(&id(&tx)?) {
            open[i].blocks.push(Cid::from_bytes(&cid)?);
        }
    }
    Ok(open)
}

/// A stored count or size as the unsigned value it stands for.
pub(crate) fn unsigned(value: i64) -> u64 {
    value.max(0) as u64
}

/// The current time in seconds (users' and tokens' creation times).
pub(crate) fn now_secs() -> i64 {
    now_ms() / 1000
}

/// The current time in milliseconds, as the stores record it.
pub(crate) fn now_ms() -> i64 {
    crate::now_ms() as i64
}

/// A user record from its stored columns.
pub(crate) fn decode_user(
    identity: &[u8],
    login_key: &[u8],
    params: &[u8],
    static_data: Vec<u8>,
    last_auth: i64,
) -> Result<User> {
    Ok(User {
        identity: PublicKeyHash::from_cid(peergos_ipld::Cid::from_bytes(identity)?)?,
        login_key: PublicSigningKey::from_bytes(login_key)?,
        params: cbor::from_slice(params)?,
        static_data: Bytes::from(static_data),
        last_auth: unsigned(last_auth),
    })
}

/// A follow request from its stored columns.
pub(crate) fn pending_follow(id: &[u8], sealed: Vec<u8>, received: i64) -> Result<PendingFollow> {
    Ok(PendingFollow {
        id: id
            .try_into()
            .map_err(|_| Error::Internal("a stored follow request id is not 32 bytes".into()))?,
        sealed: Bytes::from(sealed),
        received: unsigned(received),
    })
}

pub(crate) fn too_many_links(owner: &str) -> Error {
    Error::TooMany(format!(
        "{owner} already has {MAX_LINKS} secret links; revoke some first"
    ))
}

pub(crate) fn link_exists(id: &str) -> Error {
    Error::BadRequest(format!("a secret link with id {id} already exists"))
}
