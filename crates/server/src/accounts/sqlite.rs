//! The account store in one sqlite file (`accounts.sqlite`), the
//! embedded default. Calls hold one connection for their whole work, so
//! each is atomic; sqlite's own transactions make the multi-statement
//! ones all-or-nothing.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use peergos_blockstore::TransactionId;
use peergos_ipld::{cbor, Cid};
use peergos_keys::{LoginParams, PublicKeyHash, PublicSigningKey};
use peergos_social::LinkRecord;
use rusqlite::{params, Connection, OptionalExtension};
use subtle::ConstantTimeEq;

use super::{
    decode_user, link_exists, link_refusal, now_ms, now_secs, pending_follow, too_many_links,
    unsigned, AccountStore, LinkRefusal, NewUser, OpenTransaction, User,
};
use crate::{Error, Result, MAX_LINKS, MAX_PENDING_FOLLOWS};
use peergos_api::{LinkStatus, PendingFollow};

/// The schema version this code writes (`PRAGMA user_version`).
///
/// Version 2 added `follow_requests` and `links`, version 3 `pki_mirror`,
/// version 4 `transactions` and `transaction_blocks`, version 5 the
/// transactions' `closed`, `last_put` and `bytes` and `gc_lease`; opening
/// an older database creates or adds them.
const SCHEMA_VERSION: i64 = 5;

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
CREATE TABLE IF NOT EXISTS pki_mirror (
    id     INTEGER PRIMARY KEY CHECK (id = 0),
    signed BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS transactions (
    id       BLOB PRIMARY KEY,
    owner    BLOB NOT NULL,
    opened   INTEGER NOT NULL,
    closed   INTEGER,
    last_put INTEGER NOT NULL DEFAULT 0,
    bytes    INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS transaction_blocks (
    id  BLOB NOT NULL,
    cid BLOB NOT NULL,
    PRIMARY KEY (id, cid)
);
CREATE INDEX IF NOT EXISTS transaction_blocks_by_cid ON transaction_blocks (cid);
CREATE TABLE IF NOT EXISTS gc_lease (
    id            INTEGER PRIMARY KEY CHECK (id = 0),
    holder        TEXT NOT NULL,
    expires       INTEGER NOT NULL,
    last_finished INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rate_buckets (
    key    TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    at     INTEGER NOT NULL
);
";

/// What version 5 adds to a version 4 database's `transactions`.
const TO_VERSION_5: &str = "
ALTER TABLE transactions ADD COLUMN closed INTEGER;
ALTER TABLE transactions ADD COLUMN last_put INTEGER NOT NULL DEFAULT 0;
ALTER TABLE transactions ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
";

/// The account store in sqlite.
pub struct SqliteAccounts {
    conn: Mutex<Connection>,
    path: String,
}

impl SqliteAccounts {
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
        if version == 4 {
            conn.execute_batch(TO_VERSION_5).map_err(err)?;
        }
        conn.execute_batch(SCHEMA).map_err(err)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(err)?;
        Ok(SqliteAccounts {
            conn: Mutex::new(conn),
            path: shown,
        })
    }

    pub(super) fn with<T>(
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

    /// [`with`](Self::with) for a write whose loss in a power cut or kernel
    /// crash does no harm (the callers say why): it commits without waiting
    /// for the disk, and reaches it with the next durable commit (the
    /// write-ahead log is one file, synced in order) or checkpoint. A crash
    /// of the process loses nothing either way.
    pub(super) fn with_unsynced<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        self.with(|conn| {
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            let out = f(conn);
            let restored = conn.pragma_update(None, "synchronous", "FULL");
            let out = out?;
            restored?;
            Ok(out)
        })
    }
}

#[async_trait]
impl AccountStore for SqliteAccounts {
    async fn create(&self, user: NewUser<'_>) -> Result<()> {
        let params_bytes = cbor::to_vec(user.params)?;
        let identity = user.identity.cid().to_bytes();
        self.with(|conn| {
            let tx = conn.transaction()?;
            if let Some(token) = user.token {
                if tx.execute("DELETE FROM tokens WHERE token = ?1", [token])? == 0 {
                    return Ok(Err(Error::TokenRequired));
                }
            }
            let taken = tx
                .query_row(
                    "SELECT 1 FROM users WHERE username = ?1 OR identity = ?2",
                    params![user.username, identity],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if taken {
                return Ok(Err(Error::UsernameTaken(user.username.to_string())));
            }
            tx.execute(
                "INSERT INTO users (username, identity, login_key, params, static_data, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    user.username,
                    identity,
                    user.login_key.to_bytes().to_vec(),
                    params_bytes,
                    user.static_data,
                    now_secs()
                ],
            )?;
            tx.execute(
                "INSERT OR IGNORE INTO space (owner, used, quota) VALUES (?1, 0, ?2)",
                params![identity, user.quota as i64],
            )?;
            tx.commit()?;
            Ok(Ok(()))
        })?
    }

    async fn remove(&self, username: &str) -> Result<()> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "DELETE FROM space WHERE owner = (SELECT identity FROM users WHERE username = ?1)",
                [username],
            )?;
            tx.execute("DELETE FROM users WHERE username = ?1", [username])?;
            tx.commit()
        })
    }

    async fn user(&self, username: &str) -> Result<Option<User>> {
        let row = self.with(|conn| {
            conn.query_row(
                "SELECT identity, login_key, params, static_data, last_auth FROM users WHERE username = ?1",
                [username],
                |row| {
                    Ok((
                        row.get::<_, Vec<u8>>(0)?,
                        row.get::<_, Vec<u8>>(1)?,
                        row.get::<_, Vec<u8>>(2)?,
                        row.get(3)?,
                        row.get(4)?,
                    ))
                },
            )
            .optional()
        })?;
        row.map(|(identity, login_key, params, static_data, last_auth)| {
            decode_user(&identity, &login_key, &params, static_data, last_auth)
        })
        .transpose()
    }

    async fn advance_auth(&self, username: &str, time_ms: u64) -> Result<bool> {
        self.with(|conn| {
            Ok(conn.execute(
                "UPDATE users SET last_auth = ?2 WHERE username = ?1 AND last_auth < ?2",
                params![username, time_ms as i64],
            )? == 1)
        })
    }

    async fn update_login(
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

    async fn space(&self, owner: &PublicKeyHash) -> Result<Option<(u64, u64)>> {
        self.with(|conn| {
            conn.query_row(
                "SELECT used, quota FROM space WHERE owner = ?1",
                [owner.cid().to_bytes()],
                |row| Ok((unsigned(row.get(0)?), unsigned(row.get(1)?))),
            )
            .optional()
        })
    }

    async fn add_usage(&self, owner: &PublicKeyHash, delta: i64) -> Result<()> {
        self.with(|conn| {
            conn.execute(
                "UPDATE space SET used = MAX(0, used + ?2) WHERE owner = ?1",
                params![owner.cid().to_bytes(), delta],
            )?;
            Ok(())
        })
    }

    async fn set_quota(&self, username: &str, quota: u64) -> Result<bool> {
        self.with(|conn| {
            Ok(conn.execute(
                "UPDATE space SET quota = ?2 WHERE owner = (SELECT identity FROM users WHERE username = ?1)",
                params![username, quota as i64],
            )? == 1)
        })
    }

    async fn usage(&self) -> Result<Vec<(String, u64, u64)>> {
        self.with(|conn| {
            let mut stmt = conn.prepare(
                "SELECT u.username, s.used, s.quota FROM users u JOIN space s ON s.owner = u.identity ORDER BY u.username",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok((row.get(0)?, unsigned(row.get(1)?), unsigned(row.get(2)?)))
            })?;
            rows.collect()
        })
    }

    async fn add_signup_token(&self, token: &str) -> Result<()> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO tokens (token, created) VALUES (?1, ?2)",
                params![token, now_secs()],
            )?;
            Ok(())
        })
    }

    async fn add_follow_request(&self, target: &str, id: &[u8; 32], sealed: &[u8]) -> Result<bool> {
        self.with(|conn| {
            let pending: i64 = conn.query_row(
                "SELECT COUNT(*) FROM follow_requests WHERE target = ?1",
                [target],
                |row| row.get(0),
            )?;
            if unsigned(pending) >= MAX_PENDING_FOLLOWS {
                return Ok(false);
            }
            conn.execute(
                "INSERT OR IGNORE INTO follow_requests (id, target, sealed, received)
                 VALUES (?1, ?2, ?3, ?4)",
                params![id.as_slice(), target, sealed, now_ms()],
            )?;
            Ok(true)
        })
    }

    async fn follow_requests(&self, target: &str) -> Result<Vec<PendingFollow>> {
        let rows = self.with(|conn| {
            let mut stmt = conn.prepare(
                "SELECT id, sealed, received FROM follow_requests WHERE target = ?1
                 ORDER BY received, id",
            )?;
            let rows = stmt.query_map([target], |row| {
                Ok((row.get::<_, Vec<u8>>(0)?, row.get(1)?, row.get(2)?))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter()
            .map(|(id, sealed, received)| pending_follow(&id, sealed, received))
            .collect()
    }

    async fn delete_follow_requests(
        &self,
        target: &str,
        ids: &[serde_bytes::ByteBuf],
    ) -> Result<()> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            for id in ids {
                tx.execute(
                    "DELETE FROM follow_requests WHERE target = ?1 AND id = ?2",
                    params![target, id.as_slice()],
                )?;
            }
            tx.commit()
        })
    }

    async fn create_link(&self, owner: &str, record: &LinkRecord) -> Result<()> {
        self.with(|conn| {
            let live: i64 = conn.query_row(
                "SELECT COUNT(*) FROM links WHERE owner = ?1 AND revoked = 0",
                [owner],
                |row| row.get(0),
            )?;
            if unsigned(live) >= MAX_LINKS {
                return Ok(Err(too_many_links(owner)));
            }
            let inserted = conn.execute(
                "INSERT OR IGNORE INTO links (id, owner, blob, token_hash, expiry, max_uses, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    record.id,
                    owner,
                    record.blob,
                    record.token_hash.as_slice(),
                    record.expiry.map(|e| e as i64),
                    record.max_uses.map(|m| m as i64),
                    now_ms()
                ],
            )?;
            if inserted == 0 {
                return Ok(Err(link_exists(&record.id)));
            }
            Ok(Ok(()))
        })?
    }

    async fn links(&self, owner: &str) -> Result<Vec<LinkStatus>> {
        self.with(|conn| {
            let mut stmt = conn.prepare(
                "SELECT id, uses, expiry, max_uses, revoked FROM links WHERE owner = ?1 ORDER BY created, id",
            )?;
            let rows = stmt.query_map([owner], |row| {
                Ok(LinkStatus {
                    id: row.get(0)?,
                    uses: unsigned(row.get(1)?),
                    expiry: row.get::<_, Option<i64>>(2)?.map(unsigned),
                    max_uses: row.get::<_, Option<i64>>(3)?.map(unsigned),
                    revoked: row.get::<_, i64>(4)? != 0,
                })
            })?;
            rows.collect()
        })
    }

    async fn update_link(&self, owner: &str, id: &str, blob: &[u8]) -> Result<bool> {
        self.with(|conn| {
            Ok(conn.execute(
                "UPDATE links SET blob = ?3 WHERE owner = ?1 AND id = ?2 AND revoked = 0",
                params![owner, id, blob],
            )? == 1)
        })
    }

    async fn revoke_link(&self, owner: &str, id: &str) -> Result<bool> {
        self.with(|conn| {
            Ok(conn.execute(
                "UPDATE links SET revoked = 1 WHERE owner = ?1 AND id = ?2",
                params![owner, id],
            )? == 1)
        })
    }

    async fn use_link(
        &self,
        id: &str,
        token_hash: &[u8; 32],
        now_ms: u64,
    ) -> Result<Option<std::result::Result<Bytes, LinkRefusal>>> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            let row = tx
                .query_row(
                    "SELECT blob, token_hash, expiry, max_uses, uses, revoked FROM links WHERE id = ?1",
                    [id],
                    |row| {
                        Ok((
                            row.get::<_, Vec<u8>>(0)?,
                            row.get::<_, Vec<u8>>(1)?,
                            row.get(2)?,
                            row.get(3)?,
                            row.get(4)?,
                            row.get::<_, i64>(5)?,
                        ))
                    },
                )
                .optional()?;
            let Some((blob, stored_hash, expiry, max_uses, uses, revoked)) = row else {
                return Ok(None);
            };
            let matches = bool::from(stored_hash.as_slice().ct_eq(token_hash.as_slice()));
            if let Some(refusal) = link_refusal(revoked != 0, matches, expiry, max_uses, uses, now_ms) {
                return Ok(Some(Err(refusal)));
            }
            tx.execute("UPDATE links SET uses = uses + 1 WHERE id = ?1", [id])?;
            tx.commit()?;
            Ok(Some(Ok(Bytes::from(blob))))
        })
    }

    async fn mirror_pointer(&self) -> Result<Option<Vec<u8>>> {
        self.with(|conn| {
            conn.query_row("SELECT signed FROM pki_mirror WHERE id = 0", [], |row| {
                row.get(0)
            })
            .optional()
        })
    }

    async fn set_mirror_pointer(&self, signed: &[u8]) -> Result<()> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO pki_mirror (id, signed) VALUES (0, ?1)
                 ON CONFLICT (id) DO UPDATE SET signed = excluded.signed",
                [signed],
            )?;
            Ok(())
        })
    }

    async fn open_transaction(
        &self,
        owner: &PublicKeyHash,
        id: &TransactionId,
        opened_ms: u64,
    ) -> Result<()> {
        self.uploads_open(owner, id, opened_ms)
    }

    async fn transaction(
        &self,
        id: &TransactionId,
        since_ms: u64,
    ) -> Result<Option<OpenTransaction>> {
        self.uploads_get(id, since_ms)
    }

    async fn add_transaction_blocks(
        &self,
        id: &TransactionId,
        blocks: &[Cid],
        bytes: u64,
        now_ms: u64,
    ) -> Result<()> {
        self.uploads_add(id, blocks, bytes, now_ms)
    }

    async fn close_transaction(&self, id: &TransactionId, now_ms: u64) -> Result<()> {
        self.uploads_close(id, now_ms)
    }

    async fn open_transactions(&self, since_ms: u64) -> Result<Vec<OpenTransaction>> {
        self.uploads_open_list(since_ms)
    }

    async fn pending(&self, owner: &PublicKeyHash, since_ms: u64) -> Result<u64> {
        self.uploads_pending(owner, since_ms)
    }

    async fn open_uploads(&self, since_ms: u64) -> Result<u64> {
        self.uploads_count(since_ms)
    }

    async fn protected_blocks(
        &self,
        opened_since: u64,
        closed_since: u64,
    ) -> Result<std::collections::HashSet<Cid>> {
        self.uploads_protected(opened_since, closed_since)
    }

    async fn delete_unless_protected<'a>(
        &'a self,
        cid: &'a Cid,
        opened_since: u64,
        closed_since: u64,
        delete: super::DeleteFn<'a>,
    ) -> Result<Option<u64>> {
        // One process uses a sqlite store: its own record of puts made
        // during a collection (gc::Guarded) closes the race a shared
        // database needs a lock for.
        if self.uploads_is_protected(cid, opened_since, closed_since)? {
            return Ok(None);
        }
        delete().await
    }

    async fn prune_transactions(&self, opened_before: u64, closed_before: u64) -> Result<()> {
        self.uploads_prune(opened_before, closed_before)
    }

    async fn gc_lease(
        &self,
        holder: &str,
        now_ms: u64,
        ttl_ms: u64,
        min_gap_ms: Option<u64>,
    ) -> Result<bool> {
        self.lease_take(holder, now_ms, ttl_ms, min_gap_ms)
    }

    async fn end_gc_lease(&self, holder: &str, now_ms: u64, finished: bool) -> Result<()> {
        self.lease_end(holder, now_ms, finished)
    }

    async fn take_token(
        &self,
        key: &str,
        burst: u32,
        every_ms: u64,
        now_ms: u64,
    ) -> Result<Option<u64>> {
        self.bucket_take(key, burst, every_ms, now_ms)
    }

    async fn prune_buckets(&self, before_ms: u64) -> Result<()> {
        self.with_unsynced(|conn| {
            conn.execute("DELETE FROM rate_buckets WHERE at < ?1", [before_ms as i64])?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synchronous(store: &SqliteAccounts) -> i64 {
        store
            .with(|conn| conn.pragma_query_value(None, "synchronous", |row| row.get(0)))
            .unwrap()
    }

    #[tokio::test]
    async fn unsynced_writes_leave_the_next_commits_durable() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteAccounts::open(&dir.path().join("accounts.sqlite")).unwrap();
        // 2 is FULL: every commit waits for the disk.
        assert_eq!(synchronous(&store), 2);
        let owner = PublicKeyHash::of(&peergos_keys::SigningKeyPair::random().public());
        let id = TransactionId::random();
        store.open_transaction(&owner, &id, 1).await.unwrap();
        assert_eq!(synchronous(&store), 2);
        let open = store.open_transactions(0).await.unwrap();
        assert_eq!(open.len(), 1);
        store.close_transaction(&id, 2).await.unwrap();
        assert_eq!(synchronous(&store), 2);
        assert!(store.open_transactions(0).await.unwrap().is_empty());
        // A failed write restores it too.
        let failed = store.with_unsynced(|conn| conn.execute("INSERT INTO nowhere VALUES (1)", []));
        assert!(failed.is_err());
        assert_eq!(synchronous(&store), 2);
    }
}
