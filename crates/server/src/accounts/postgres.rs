//! The account store in Postgres, beside the pointers and on the same
//! pool of connections.
//!
//! Several server processes may share the database, so atomicity comes
//! from Postgres, not from one process holding a lock: single statements
//! guarded by their `WHERE` (replays, usage), unique keys (names,
//! identities, link ids), row locks (`SELECT ... FOR UPDATE` on a link
//! being opened) and, where a limit counts rows, a transaction-scoped
//! advisory lock on the user the rows belong to.

use async_trait::async_trait;
use bytes::Bytes;
use peergos_blockstore::TransactionId;
use peergos_ipld::{cbor, Cid};
use peergos_keys::{LoginParams, PublicKeyHash, PublicSigningKey};
use peergos_pointers::{query_error, Database};
use peergos_social::LinkRecord;
use subtle::ConstantTimeEq;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::{
    decode_user, link_exists, link_refusal, now_ms, now_secs, pending_follow, too_many_links,
    unsigned, AccountStore, LinkRefusal, NewUser, OpenTransaction, User,
};
use crate::{Error, Result, MAX_LINKS, MAX_PENDING_FOLLOWS};
use peergos_api::{LinkStatus, PendingFollow};

/// The account store's migrations, one statement each, in order: version
/// `i + 1` is `MIGRATIONS[i]`, recorded in [`MIGRATIONS_TABLE`].
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE users (
         username    TEXT PRIMARY KEY,
         identity    BYTEA NOT NULL UNIQUE,
         login_key   BYTEA NOT NULL,
         params      BYTEA NOT NULL,
         static_data BYTEA NOT NULL,
         last_auth   BIGINT NOT NULL DEFAULT 0,
         created     BIGINT NOT NULL
     )",
    "CREATE TABLE space (
         owner BYTEA PRIMARY KEY,
         used  BIGINT NOT NULL,
         quota BIGINT NOT NULL
     )",
    "CREATE TABLE tokens (
         token   TEXT PRIMARY KEY,
         created BIGINT NOT NULL
     )",
    "CREATE TABLE follow_requests (
         id       BYTEA PRIMARY KEY,
         target   TEXT NOT NULL,
         sealed   BYTEA NOT NULL,
         received BIGINT NOT NULL
     )",
    "CREATE INDEX follow_requests_by_target ON follow_requests (target)",
    "CREATE TABLE links (
         id         TEXT PRIMARY KEY,
         owner      TEXT NOT NULL,
         blob       BYTEA NOT NULL,
         token_hash BYTEA NOT NULL,
         expiry     BIGINT,
         max_uses   BIGINT,
         uses       BIGINT NOT NULL DEFAULT 0,
         revoked    BOOLEAN NOT NULL DEFAULT FALSE,
         created    BIGINT NOT NULL
     )",
    "CREATE INDEX links_by_owner ON links (owner)",
    "CREATE TABLE pki_mirror (
         id     INTEGER PRIMARY KEY CHECK (id = 0),
         signed BYTEA NOT NULL
     )",
    "CREATE TABLE transactions (
         id     BYTEA PRIMARY KEY,
         owner  BYTEA NOT NULL,
         opened BIGINT NOT NULL
     )",
    "CREATE TABLE transaction_blocks (
         id  BYTEA NOT NULL,
         cid BYTEA NOT NULL,
         PRIMARY KEY (id, cid)
     )",
    "ALTER TABLE transactions ADD COLUMN closed BIGINT",
    "ALTER TABLE transactions ADD COLUMN last_put BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE transactions ADD COLUMN bytes BIGINT NOT NULL DEFAULT 0",
    "CREATE INDEX transaction_blocks_by_cid ON transaction_blocks (cid)",
    "CREATE TABLE gc_lease (
         id            INTEGER PRIMARY KEY CHECK (id = 0),
         holder        TEXT NOT NULL,
         expires       BIGINT NOT NULL,
         last_finished BIGINT NOT NULL
     )",
    "CREATE TABLE rate_buckets (
         key    TEXT PRIMARY KEY,
         tokens DOUBLE PRECISION NOT NULL,
         at     BIGINT NOT NULL
     )",
];

/// The table that records the account store's migrations.
pub const MIGRATIONS_TABLE: &str = "peergos_account_migrations";

/// Advisory-lock classes (the first key of the two-key form) for the row
/// limits; the second key is a hash of the user's name.
const FOLLOW_LOCK: i32 = 0x7066_6f6c;
const LINK_LOCK: i32 = 0x706c_6e6b;

/// The account store in Postgres.
pub struct PostgresAccounts {
    pub(super) database: Database,
}

pub(super) fn pg(e: tokio_postgres::Error) -> Error {
    Error::Database(query_error(e))
}

impl PostgresAccounts {
    /// Connects to `url` (a pool of its own) and brings the schema up to
    /// date.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::open(Database::connect(url).await?).await
    }

    /// Keeps accounts in `database`, bringing the schema up to date.
    pub async fn open(database: Database) -> Result<Self> {
        database.migrate(MIGRATIONS_TABLE, MIGRATIONS).await?;
        Ok(PostgresAccounts { database })
    }

    /// The schema version the database is at.
    pub async fn schema_version(&self) -> Result<i64> {
        Ok(self.database.schema_version(MIGRATIONS_TABLE).await?)
    }

    /// Copies every row of an `accounts.sqlite` into this store, in one
    /// transaction, for a server whose accounts move to Postgres (earlier
    /// servers kept them in sqlite even with Postgres pointers).
    /// Refused if this store already has users. The number of users
    /// copied.
    pub async fn import_sqlite(&self, path: &std::path::Path) -> Result<u64> {
        // Opening it brings it to the current sqlite schema, so every
        // table read exists.
        drop(super::SqliteAccounts::open(path)?);
        let rows = read_sqlite(path).map_err(|source| Error::Sqlite {
            path: path.display().to_string(),
            source,
        })?;
        let mut client = self.database.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let existing: i64 = tx
            .query_one("SELECT COUNT(*) FROM users", &[])
            .await
            .map_err(pg)?
            .get(0);
        if existing > 0 {
            return Err(Error::Internal(format!(
                "cannot import {}: the Postgres account store already has {existing} users",
                path.display()
            )));
        }
        for u in &rows.users {
            tx.execute(
                "INSERT INTO users (username, identity, login_key, params, static_data, last_auth, created)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[&u.0, &u.1, &u.2, &u.3, &u.4, &u.5, &u.6],
            )
            .await
            .map_err(pg)?;
        }
        for (owner, used, quota) in &rows.space {
            tx.execute(
                "INSERT INTO space (owner, used, quota) VALUES ($1, $2, $3)",
                &[owner, used, quota],
            )
            .await
            .map_err(pg)?;
        }
        for (token, created) in &rows.tokens {
            tx.execute(
                "INSERT INTO tokens (token, created) VALUES ($1, $2)",
                &[token, created],
            )
            .await
            .map_err(pg)?;
        }
        for (id, target, sealed, received) in &rows.follows {
            tx.execute(
                "INSERT INTO follow_requests (id, target, sealed, received) VALUES ($1, $2, $3, $4)",
                &[id, target, sealed, received],
            )
            .await
            .map_err(pg)?;
        }
        for l in &rows.links {
            tx.execute(
                "INSERT INTO links (id, owner, blob, token_hash, expiry, max_uses, uses, revoked, created)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[&l.0, &l.1, &l.2, &l.3, &l.4, &l.5, &l.6, &l.7, &l.8],
            )
            .await
            .map_err(pg)?;
        }
        if let Some(signed) = &rows.mirror {
            tx.execute(
                "INSERT INTO pki_mirror (id, signed) VALUES (0, $1)",
                &[signed],
            )
            .await
            .map_err(pg)?;
        }
        tx.commit().await.map_err(pg)?;
        Ok(rows.users.len() as u64)
    }

    pub(super) async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        Ok(self.database.execute(sql, params).await?)
    }

    pub(super) async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        Ok(self.database.query(sql, params).await?)
    }

    pub(super) async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    /// Counts `owner`'s rows in a limited table and, if under `max`, runs
    /// `insert`, all under the advisory lock for (`class`, `owner`), so
    /// concurrent inserts cannot pass the limit together. None when the
    /// limit is reached; else the rows `insert` changed.
    async fn insert_limited(
        &self,
        class: i32,
        owner: &str,
        count: &str,
        max: u64,
        insert: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<u64>> {
        let mut client = self.database.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&class, &owner],
        )
        .await
        .map_err(pg)?;
        let statement = tx.prepare_cached(count).await.map_err(pg)?;
        let rows: i64 = tx
            .query_one(&statement, &[&owner])
            .await
            .map_err(pg)?
            .get(0);
        if unsigned(rows) >= max {
            return Ok(None);
        }
        let statement = tx.prepare_cached(insert).await.map_err(pg)?;
        let changed = tx.execute(&statement, params).await.map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok(Some(changed))
    }
}

#[async_trait]
impl AccountStore for PostgresAccounts {
    async fn create(&self, user: NewUser<'_>) -> Result<()> {
        let params = cbor::to_vec(user.params)?;
        let identity = user.identity.cid().to_bytes();
        let login_key = user.login_key.to_bytes().to_vec();
        let quota = user.quota as i64;
        let mut client = self.database.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        if let Some(token) = user.token {
            if tx
                .execute("DELETE FROM tokens WHERE token = $1", &[&token])
                .await
                .map_err(pg)?
                == 0
            {
                return Err(Error::TokenRequired);
            }
        }
        // A name or identity in use is a conflict, not an error.
        let inserted = tx
            .execute(
                "INSERT INTO users (username, identity, login_key, params, static_data, created)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                &[
                    &user.username,
                    &identity,
                    &login_key,
                    &params,
                    &user.static_data,
                    &now_secs(),
                ],
            )
            .await
            .map_err(pg)?;
        if inserted == 0 {
            // The transaction rolls back on drop: the token is not spent.
            return Err(Error::UsernameTaken(user.username.to_string()));
        }
        tx.execute(
            "INSERT INTO space (owner, used, quota) VALUES ($1, 0, $2) ON CONFLICT DO NOTHING",
            &[&identity, &quota],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)
    }

    async fn remove(&self, username: &str) -> Result<()> {
        // One statement: the user and their space row go together.
        self.execute(
            "WITH gone AS (DELETE FROM users WHERE username = $1 RETURNING identity)
             DELETE FROM space WHERE owner IN (SELECT identity FROM gone)",
            &[&username],
        )
        .await?;
        Ok(())
    }

    async fn user(&self, username: &str) -> Result<Option<User>> {
        let row = self
            .query_opt(
                "SELECT identity, login_key, params, static_data, last_auth FROM users
                 WHERE username = $1",
                &[&username],
            )
            .await?;
        row.map(|row| {
            decode_user(
                row.get::<_, &[u8]>(0),
                row.get::<_, &[u8]>(1),
                row.get::<_, &[u8]>(2),
                row.get(3),
                row.get(4),
            )
        })
        .transpose()
    }

    async fn advance_auth(&self, username: &str, time_ms: u64) -> Result<bool> {
        let time_ms = time_ms as i64;
        Ok(self
            .execute(
                "UPDATE users SET last_auth = $2 WHERE username = $1 AND last_auth < $2",
                &[&username, &time_ms],
            )
            .await?
            == 1)
    }

    async fn update_login(
        &self,
        username: &str,
        login: Option<(&PublicSigningKey, &LoginParams)>,
        static_data: &[u8],
    ) -> Result<()> {
        match login {
            Some((key, params)) => {
                let (key, params) = (key.to_bytes().to_vec(), cbor::to_vec(params)?);
                self.execute(
                    "UPDATE users SET login_key = $2, params = $3, static_data = $4
                     WHERE username = $1",
                    &[&username, &key, &params, &static_data],
                )
                .await?
            }
            None => {
                self.execute(
                    "UPDATE users SET static_data = $2 WHERE username = $1",
                    &[&username, &static_data],
                )
                .await?
            }
        };
        Ok(())
    }

    async fn space(&self, owner: &PublicKeyHash) -> Result<Option<(u64, u64)>> {
        let row = self
            .query_opt(
                "SELECT used, quota FROM space WHERE owner = $1",
                &[&owner.cid().to_bytes()],
            )
            .await?;
        Ok(row.map(|row| (unsigned(row.get(0)), unsigned(row.get(1)))))
    }

    async fn add_usage(&self, owner: &PublicKeyHash, delta: i64) -> Result<()> {
        self.execute(
            "UPDATE space SET used = GREATEST(0, used + $2) WHERE owner = $1",
            &[&owner.cid().to_bytes(), &delta],
        )
        .await?;
        Ok(())
    }

    async fn set_quota(&self, username: &str, quota: u64) -> Result<bool> {
        let quota = quota as i64;
        Ok(self
            .execute(
                "UPDATE space SET quota = $2
                 WHERE owner = (SELECT identity FROM users WHERE username = $1)",
                &[&username, &quota],
            )
            .await?
            == 1)
    }

    async fn usage(&self) -> Result<Vec<(String, u64, u64)>> {
        let rows = self
            .query(
                "SELECT u.username, s.used, s.quota FROM users u JOIN space s ON s.owner = u.identity
                 ORDER BY u.username",
                &[],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| (row.get(0), unsigned(row.get(1)), unsigned(row.get(2))))
            .collect())
    }

    async fn add_signup_token(&self, token: &str) -> Result<()> {
        self.execute(
            "INSERT INTO tokens (token, created) VALUES ($1, $2)",
            &[&token, &now_secs()],
        )
        .await?;
        Ok(())
    }

    async fn add_follow_request(&self, target: &str, id: &[u8; 32], sealed: &[u8]) -> Result<bool> {
        let inserted = self
            .insert_limited(
                FOLLOW_LOCK,
                target,
                "SELECT COUNT(*) FROM follow_requests WHERE target = $1",
                MAX_PENDING_FOLLOWS,
                "INSERT INTO follow_requests (id, target, sealed, received)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&id.as_slice(), &target, &sealed, &now_ms()],
            )
            .await?;
        Ok(inserted.is_some())
    }

    async fn follow_requests(&self, target: &str) -> Result<Vec<PendingFollow>> {
        let rows = self
            .query(
                "SELECT id, sealed, received FROM follow_requests WHERE target = $1
                 ORDER BY received, id",
                &[&target],
            )
            .await?;
        rows.into_iter()
            .map(|row| pending_follow(row.get::<_, &[u8]>(0), row.get(1), row.get(2)))
            .collect()
    }

    async fn delete_follow_requests(
        &self,
        target: &str,
        ids: &[serde_bytes::ByteBuf],
    ) -> Result<()> {
        let ids: Vec<&[u8]> = ids.iter().map(|id| id.as_slice()).collect();
        self.execute(
            "DELETE FROM follow_requests WHERE target = $1 AND id = ANY($2)",
            &[&target, &ids],
        )
        .await?;
        Ok(())
    }

    async fn create_link(&self, owner: &str, record: &LinkRecord) -> Result<()> {
        let expiry = record.expiry.map(|e| e as i64);
        let max_uses = record.max_uses.map(|m| m as i64);
        let inserted = self
            .insert_limited(
                LINK_LOCK,
                owner,
                "SELECT COUNT(*) FROM links WHERE owner = $1 AND NOT revoked",
                MAX_LINKS,
                "INSERT INTO links (id, owner, blob, token_hash, expiry, max_uses, created)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                &[
                    &record.id,
                    &owner,
                    &record.blob.as_slice(),
                    &record.token_hash.as_slice(),
                    &expiry,
                    &max_uses,
                    &now_ms(),
                ],
            )
            .await?;
        match inserted {
            None => Err(too_many_links(owner)),
            Some(0) => Err(link_exists(&record.id)),
            Some(_) => Ok(()),
        }
    }

    async fn links(&self, owner: &str) -> Result<Vec<LinkStatus>> {
        let rows = self
            .query(
                "SELECT id, uses, expiry, max_uses, revoked FROM links WHERE owner = $1
                 ORDER BY created, id",
                &[&owner],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| LinkStatus {
                id: row.get(0),
                uses: unsigned(row.get(1)),
                expiry: row.get::<_, Option<i64>>(2).map(unsigned),
                max_uses: row.get::<_, Option<i64>>(3).map(unsigned),
                revoked: row.get(4),
            })
            .collect())
    }

    async fn update_link(&self, owner: &str, id: &str, blob: &[u8]) -> Result<bool> {
        Ok(self
            .execute(
                "UPDATE links SET blob = $3 WHERE owner = $1 AND id = $2 AND NOT revoked",
                &[&owner, &id, &blob],
            )
            .await?
            == 1)
    }

    async fn revoke_link(&self, owner: &str, id: &str) -> Result<bool> {
        Ok(self
            .execute(
                "UPDATE links SET revoked = TRUE WHERE owner = $1 AND id = $2",
                &[&owner, &id],
            )
            .await?
            == 1)
    }

    async fn use_link(
        &self,
        id: &str,
        token_hash: &[u8; 32],
        now_ms: u64,
    ) -> Result<Option<std::result::Result<Bytes, LinkRefusal>>> {
        let mut client = self.database.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        // The row lock makes concurrent opens count one by one.
        let row = tx
            .query_opt(
                "SELECT blob, token_hash, expiry, max_uses, uses, revoked FROM links
                 WHERE id = $1 FOR UPDATE",
                &[&id],
            )
            .await
            .map_err(pg)?;
        let Some(row) = row else { return Ok(None) };
        let matches = bool::from(row.get::<_, &[u8]>(1).ct_eq(token_hash.as_slice()));
        if let Some(refusal) = link_refusal(
            row.get(5),
            matches,
            row.get(2),
            row.get(3),
            row.get(4),
            now_ms,
        ) {
            return Ok(Some(Err(refusal)));
        }
        tx.execute("UPDATE links SET uses = uses + 1 WHERE id = $1", &[&id])
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok(Some(Ok(Bytes::from(row.get::<_, Vec<u8>>(0)))))
    }

    async fn mirror_pointer(&self) -> Result<Option<Vec<u8>>> {
        let row = self
            .query_opt("SELECT signed FROM pki_mirror WHERE id = 0", &[])
            .await?;
        Ok(row.map(|row| row.get(0)))
    }

    async fn set_mirror_pointer(&self, signed: &[u8]) -> Result<()> {
        self.execute(
            "INSERT INTO pki_mirror (id, signed) VALUES (0, $1)
             ON CONFLICT (id) DO UPDATE SET signed = EXCLUDED.signed",
            &[&signed],
        )
        .await?;
        Ok(())
    }

    async fn open_transaction(
        &self,
        owner: &PublicKeyHash,
        id: &TransactionId,
        opened_ms: u64,
    ) -> Result<()> {
        self.uploads_open(owner, id, opened_ms).await
    }

    async fn transaction(
        &self,
        id: &TransactionId,
        since_ms: u64,
    ) -> Result<Option<OpenTransaction>> {
        self.uploads_get(id, since_ms).await
    }

    async fn add_transaction_blocks(
        &self,
        id: &TransactionId,
        blocks: &[Cid],
        bytes: u64,
        now_ms: u64,
    ) -> Result<()> {
        self.uploads_add(id, blocks, bytes, now_ms).await
    }

    async fn close_transaction(&self, id: &TransactionId, now_ms: u64) -> Result<()> {
        self.uploads_close(id, now_ms).await
    }

    async fn open_transactions(&self, since_ms: u64) -> Result<Vec<OpenTransaction>> {
        self.uploads_open_list(since_ms).await
    }

    async fn pending(&self, owner: &PublicKeyHash, since_ms: u64) -> Result<u64> {
        self.uploads_pending(owner, since_ms).await
    }

    async fn open_uploads(&self, since_ms: u64) -> Result<u64> {
        self.uploads_count(since_ms).await
    }

    async fn protected_blocks(
        &self,
        opened_since: u64,
        closed_since: u64,
    ) -> Result<std::collections::HashSet<Cid>> {
        self.uploads_protected(opened_since, closed_since).await
    }

    async fn delete_unless_protected<'a>(
        &'a self,
        cid: &'a Cid,
        opened_since: u64,
        closed_since: u64,
        delete: super::DeleteFn<'a>,
    ) -> Result<Option<u64>> {
        self.uploads_delete_unless_protected(cid, opened_since, closed_since, delete)
            .await
    }

    async fn prune_transactions(&self, opened_before: u64, closed_before: u64) -> Result<()> {
        self.uploads_prune(opened_before, closed_before).await
    }

    async fn gc_lease(
        &self,
        holder: &str,
        now_ms: u64,
        ttl_ms: u64,
        min_gap_ms: Option<u64>,
    ) -> Result<bool> {
        self.lease_take(holder, now_ms, ttl_ms, min_gap_ms).await
    }

    async fn end_gc_lease(&self, holder: &str, now_ms: u64, finished: bool) -> Result<()> {
        self.lease_end(holder, now_ms, finished).await
    }

    async fn take_token(
        &self,
        key: &str,
        burst: u32,
        every_ms: u64,
        now_ms: u64,
    ) -> Result<Option<u64>> {
        self.bucket_take(key, burst, every_ms, now_ms).await
    }

    async fn prune_buckets(&self, before_ms: u64) -> Result<()> {
        self.execute(
            "DELETE FROM rate_buckets WHERE at < $1",
            &[&(before_ms as i64)],
        )
        .await?;
        Ok(())
    }
}

/// Every row of an `accounts.sqlite`, column for column (in each table's
/// column order).
#[derive(Default)]
#[allow(clippy::type_complexity)]
struct SqliteRows {
    users: Vec<(String, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>, i64, i64)>,
    space: Vec<(Vec<u8>, i64, i64)>,
    tokens: Vec<(String, i64)>,
    follows: Vec<(Vec<u8>, String, Vec<u8>, i64)>,
    links: Vec<(
        String,
        String,
        Vec<u8>,
        Vec<u8>,
        Option<i64>,
        Option<i64>,
        i64,
        bool,
        i64,
    )>,
    mirror: Option<Vec<u8>>,
}

fn read_sqlite(path: &std::path::Path) -> rusqlite::Result<SqliteRows> {
    use rusqlite::OptionalExtension;
    let conn = rusqlite::Connection::open(path)?;
    let mut rows = SqliteRows::default();
    let mut stmt = conn.prepare(
        "SELECT username, identity, login_key, params, static_data, last_auth, created FROM users",
    )?;
    rows.users = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare("SELECT owner, used, quota FROM space")?;
    rows.space = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare("SELECT token, created FROM tokens")?;
    rows.tokens = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare("SELECT id, target, sealed, received FROM follow_requests")?;
    rows.follows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare(
        "SELECT id, owner, blob, token_hash, expiry, max_uses, uses, revoked, created FROM links",
    )?;
    rows.links = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get::<_, i64>(7)? != 0,
                r.get(8)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    rows.mirror = conn
        .query_row("SELECT signed FROM pki_mirror WHERE id = 0", [], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(rows)
}
