//! The account database: users' login data, space usage and quotas,
//! signup tokens, pending follow requests and secret-link records, in one
//! sqlite file (`accounts.sqlite`).

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use peergos_ipld::cbor;
use peergos_keys::{LoginParams, PublicKeyHash, PublicSigningKey};
use rusqlite::{params, Connection, OptionalExtension};

use crate::{Error, Result};

/// The schema version this code writes (`PRAGMA user_version`).
///
/// Version 2 added `follow_requests` and `links`; opening a version-1
/// database creates them.
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    username    TEXT PRIMARY KEY,
    identity    BLOB NOT NULL UNIQUE,
    login_key   BLOB NOT NULL,
    params      BLOB NOT NULL,
    static_data BLOB NOT NULL,
    last_auth   INTEGER NOT NULL DEFAULT 0,
    created     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS space (
    owner BLOB PRIMARY KEY,
    used  INTEGER NOT NULL,
    quota INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    token   TEXT PRIMARY KEY,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS follow_requests (
    id       BLOB PRIMARY KEY,
    target   TEXT NOT NULL,
    sealed   BLOB NOT NULL,
    received INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS follow_requests_by_target ON follow_requests (target);
CREATE TABLE IF NOT EXISTS links (
    id         TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    blob       BLOB NOT NULL,
    token_hash BLOB NOT NULL,
    expiry     INTEGER,
    max_uses   INTEGER,
    uses       INTEGER NOT NULL DEFAULT 0,
    revoked    INTEGER NOT NULL DEFAULT 0,
    created    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS links_by_owner ON links (owner);
";

/// One user's login record.
#[derive(Clone, Debug)]
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
pub(crate) struct NewUser<'a> {
    pub username: &'a str,
    pub identity: &'a PublicKeyHash,
    pub login_key: &'a PublicSigningKey,
    pub params: &'a LoginParams,
    pub static_data: &'a [u8],
    pub quota: u64,
    pub token: Option<&'a str>,
}

/// The account database.
pub struct Accounts {
    conn: Mutex<Connection>,
    path: String,
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Accounts {
    /// Opens (creating and migrating) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let shown = path.display().to_string();
        let err = |source| Error::Sqlite {
            path: shown.clone(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(err)?;
        if version > SCHEMA_VERSION {
            return Err(Error::Internal(format!(
                "{shown} has schema version {version}, newer than this server's {SCHEMA_VERSION}; upgrade peergos"
            )));
        }
        conn.execute_batch(SCHEMA).map_err(err)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(err)?;
        Ok(Accounts {
            conn: Mutex::new(conn),
            path: shown,
        })
    }

    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| Error::Internal("account database lock poisoned".into()))?;
        f(&mut conn).map_err(|source| Error::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    /// Creates a user, consuming `token` if one is given (atomically: the
    /// token is spent only if the user is created).
    pub(crate) fn create(&self, user: NewUser<'_>) -> Result<()> {
        let params_bytes = cbor::to_vec(user.params)?;
        let outcome = self.with(|conn| {
            let tx = conn.transaction()?;
            if let Some(token) = user.token {
                if tx.execute("DELETE FROM tokens WHERE token = ?1", [token])? == 0 {
                    return Ok(Err(Error::TokenRequired));
                }
            }
            let taken: bool = tx
                .query_row(
                    "SELECT 1 FROM users WHERE username = ?1 OR identity = ?2",
                    params![user.username, user.identity.cid().to_bytes()],
                    |_| Ok(true),
                )
                .optional()?
                .unwrap_or(false);
            if taken {
                return Ok(Err(Error::UsernameTaken(user.username.to_string())));
            }
            tx.execute(
                "INSERT INTO users (username, identity, login_key, params, static_data, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    user.username,
                    user.identity.cid().to_bytes(),
                    user.login_key.to_bytes().to_vec(),
                    params_bytes,
                    user.static_data,
                    now_secs()
                ],
            )?;
            tx.execute(
                "INSERT OR IGNORE INTO space (owner, used, quota) VALUES (?1, 0, ?2)",
                params![user.identity.cid().to_bytes(), user.quota as i64],
            )?;
            tx.commit()?;
            Ok(Ok(()))
        })?;
        outcome
    }

    /// Removes a user whose signup could not be completed.
    pub(crate) fn remove(&self, username: &str) -> Result<()> {
        self.with(|conn| {
            conn.execute("DELETE FROM users WHERE username = ?1", [username])?;
            Ok(())
        })
    }

    /// The user's record.
    pub fn user(&self, username: &str) -> Result<Option<User>> {
        let row = self.with(|conn| {
            conn.query_row(
                "SELECT identity, login_key, params, static_data, last_auth FROM users WHERE username = ?1",
                [username],
                |row| {
                    Ok((
                        row.get::<_, Vec<u8>>(0)?,
                        row.get::<_, Vec<u8>>(1)?,
                        row.get::<_, Vec<u8>>(2)?,
                        row.get::<_, Vec<u8>>(3)?,
                        row.get::<_, i64>(4)?,
                    ))
                },
            )
            .optional()
        })?;
        let Some((identity, login_key, params, static_data, last_auth)) = row else {
            return Ok(None);
        };
        Ok(Some(User {
            identity: PublicKeyHash::from_cid(peergos_ipld::Cid::from_bytes(&identity)?)?,
            login_key: PublicSigningKey::from_bytes(&login_key)?,
            params: cbor::from_slice(&params)?,
            static_data: Bytes::from(static_data),
            last_auth: last_auth.max(0) as u64,
        }))
    }

    /// Accepts a signed timestamp: it must be newer than the last one
    /// (checked and stored atomically, so a replay loses).
    pub(crate) fn advance_auth(&self, username: &str, time_ms: u64) -> Result<bool> {
        self.with(|conn| {
            Ok(conn.execute(
                "UPDATE users SET last_auth = ?2 WHERE username = ?1 AND last_auth < ?2",
                params![username, time_ms as i64],
            )? == 1)
        })
    }

    /// Replaces the static data (and, on a password change, the login key
    /// and parameters).
    pub(crate) fn update_login(
        &self,
        username: &str,
        login: Option<(&PublicSigningKey, &LoginParams)>,
        static_data: &[u8],
    ) -> Result<()> {
        let login = match login {
            Some((key, params)) => Some((key.to_bytes().to_vec(), cbor::to_vec(params)?)),
            None => None,
        };
        self.with(|conn| {
            match &login {
                Some((key, params)) => conn.execute(
                    "UPDATE users SET login_key = ?2, params = ?3, static_data = ?4 WHERE username = ?1",
                    params![username, key, params, static_data],
                )?,
                None => conn.execute(
                    "UPDATE users SET static_data = ?2 WHERE username = ?1",
                    params![username, static_data],
                )?,
            };
            Ok(())
        })
    }

    /// Usage and quota of an owner with an account.
    pub fn space(&self, owner: &PublicKeyHash) -> Result<Option<(u64, u64)>> {
        self.with(|conn| {
            conn.query_row(
                "SELECT used, quota FROM space WHERE owner = ?1",
                [owner.cid().to_bytes()],
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?.max(0) as u64,
                        row.get::<_, i64>(1)?.max(0) as u64,
                    ))
                },
            )
            .optional()
        })
    }

    /// Adds `delta` (possibly negative) to an owner's usage.
    pub(crate) fn add_usage(&self, owner: &PublicKeyHash, delta: i64) -> Result<()> {
        self.with(|conn| {
            conn.execute(
                "UPDATE space SET used = MAX(0, used + ?2) WHERE owner = ?1",
                params![owner.cid().to_bytes(), delta],
            )?;
            Ok(())
        })
    }

    /// Sets the quota of a user; false if there is no such user.
    pub fn set_quota(&self, username: &str, quota: u64) -> Result<bool> {
        self.with(|conn| {
            Ok(conn.execute(
                "UPDATE space SET quota = ?2 WHERE owner = (SELECT identity FROM users WHERE username = ?1)",
                params![username, quota as i64],
            )? == 1)
        })
    }

    /// Every user with usage and quota, by name.
    pub fn usage(&self) -> Result<Vec<(String, u64, u64)>> {
        self.with(|conn| {
            let mut stmt = conn.prepare(
                "SELECT u.username, s.used, s.quota FROM users u JOIN space s ON s.owner = u.identity ORDER BY u.username",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?.max(0) as u64,
                    row.get::<_, i64>(2)?.max(0) as u64,
                ))
            })?;
            rows.collect()
        })
    }

    /// Creates and stores a new single-use signup token (128 random
    /// bits, hex).
    pub fn new_signup_token(&self) -> Result<String> {
        use rand_core::RngCore;
        let mut bytes = [0u8; 16];
        rand_core::OsRng.fill_bytes(&mut bytes);
        let token = data_encoding::HEXLOWER.encode(&bytes);
        self.with(|conn| {
            conn.execute(
                "INSERT INTO tokens (token, created) VALUES (?1, ?2)",
                params![token, now_secs()],
            )?;
            Ok(())
        })?;
        Ok(token)
    }
}
