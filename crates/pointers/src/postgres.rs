//! A pointer store in PostgreSQL, for servers whose metadata outgrows one
//! sqlite file or must be shared by several server processes.
//!
//! The compare-and-swap is one SQL statement (an `UPDATE` guarded by the
//! expected value and a smaller sequence, or an `INSERT` for a pointer
//! never set), so Postgres' row locking makes concurrent updates of one
//! pointer serialise exactly as in the sqlite store: one wins, the others
//! see [`Error::CasConflict`].
//!
//! Queries run on a pool of connections ([`Database`]), which the server's
//! account store shares. Schema migrations are numbered and applied on
//! connect, in one transaction under an advisory lock so that two servers
//! starting at once do not race; each store records the versions it
//! applied in its own table (`peergos_migrations` for pointers).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use peergos_ipld::Cid;
use peergos_keys::PublicKeyHash;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use crate::{check_cas, verify, Error, Ownership, PointerStore, Result, SignedPointer, Stored};

/// The pointer store's migrations, in order: version `i + 1` is
/// `MIGRATIONS[i]`, recorded in `peergos_migrations`.
const MIGRATIONS: &[&str] = &["CREATE TABLE pointers (
         owner    BYTEA NOT NULL,
         writer   BYTEA NOT NULL,
         sequence BIGINT NOT NULL,
         current  BYTEA,
         signed   BYTEA NOT NULL,
         PRIMARY KEY (owner, writer)
     )"];

/// The table that records the pointer store's migrations.
const MIGRATIONS_TABLE: &str = "peergos_migrations";

/// An arbitrary, fixed key for the migration advisory lock.
const MIGRATION_LOCK: i64 = 0x7065_6572_676f_7301;

/// Connections the pool opens at most.
const POOL_SIZE: usize = 16;

/// How long opening a connection may take before the database counts as
/// unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A Postgres failure, for every store kept in the database.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// No connection could be opened.
    #[error("cannot reach the Postgres database at {address}: {reason}")]
    Unreachable {
        /// The host (and port) tried.
        address: String,
        /// What went wrong.
        reason: String,
    },
    /// The connection string does not parse.
    #[error("bad Postgres connection string: {0}")]
    BadUrl(String),
    /// The database refused or failed a statement.
    #[error("{0}")]
    Query(String),
}

impl From<DatabaseError> for Error {
    fn from(e: DatabaseError) -> Error {
        match e {
            DatabaseError::Unreachable { address, reason } => Error::Unreachable {
                address: format!("the Postgres database at {address}"),
                reason,
            },
            e => Error::Database(e.to_string()),
        }
    }
}

/// A failed statement, with the server's message and SQLSTATE code.
pub fn query_error(e: tokio_postgres::Error) -> DatabaseError {
    match e.as_db_error() {
        Some(db) => DatabaseError::Query(format!("{} ({})", db.message(), db.code().code())),
        None => DatabaseError::Query(e.to_string()),
    }
}

/// A pool of connections to one Postgres database, shared by the stores
/// kept in it (pointers here, accounts in the server). Cloning shares the
/// pool.
#[derive(Clone)]
pub struct Database {
    pool: Pool,
    address: String,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection string may hold a password: only the host shows.
        f.debug_struct("Database")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Database {
    /// Opens a pool for `url` (`host=... user=... password=... dbname=...`,
    /// or a `postgresql://` URL) and checks that a connection opens.
    pub async fn connect(url: &str) -> std::result::Result<Database, DatabaseError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| DatabaseError::BadUrl(e.to_string()))?;
        let address = shown_address(&config);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| DatabaseError::BadUrl(e.to_string()))?;
        let database = Database { pool, address };
        // Returned to the pool at once: this only proves the server answers.
        drop(database.client().await?);
        Ok(database)
    }

    /// A connection from the pool (opened if none is idle).
    pub async fn client(&self) -> std::result::Result<deadpool_postgres::Object, DatabaseError> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) if e.as_db_error().is_some() => query_error(e),
            e => DatabaseError::Unreachable {
                address: self.address.clone(),
                reason: e.to_string(),
            },
        })
    }

    /// Applies the migrations `table` has not recorded yet (version `i +
    /// 1` is `migrations[i]`), all in one transaction under an advisory
    /// lock, so two servers starting at once take turns.
    pub async fn migrate(
        &self,
        table: &str,
        migrations: &[&str],
    ) -> std::result::Result<(), DatabaseError> {
        let mut script = format!(
            "BEGIN;
             SET LOCAL client_min_messages TO warning;
             SELECT pg_advisory_xact_lock({MIGRATION_LOCK});
             CREATE TABLE IF NOT EXISTS {table} (
                 version    INTEGER PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             );"
        );
        for (i, sql) in migrations.iter().enumerate() {
            let version = i + 1;
            script.push_str(&format!(
                "DO $$ BEGIN
                   IF NOT EXISTS (SELECT 1 FROM {table} WHERE version = {version}) THEN
                     EXECUTE $m${sql}$m$;
                     INSERT INTO {table} (version) VALUES ({version});
                   END IF;
                 END $$;"
            ));
        }
        script.push_str("COMMIT;");
        self.client()
            .await?
            .batch_execute(&script)
            .await
            .map_err(query_error)
    }

    /// Runs one statement (prepared once per connection) that changes
    /// rows; how many it changed.
    pub async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<u64, DatabaseError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(query_error)?;
        client
            .execute(&statement, params)
            .await
            .map_err(query_error)
    }

    /// Runs one query (prepared once per connection); its rows.
    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<Vec<Row>, DatabaseError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(query_error)?;
        client.query(&statement, params).await.map_err(query_error)
    }

    /// The newest migration `table` records (0 before any).
    pub async fn schema_version(&self, table: &str) -> std::result::Result<i64, DatabaseError> {
        let row = self
            .client()
            .await?
            .query_one(
                &format!("SELECT COALESCE(MAX(version), 0)::BIGINT FROM {table}"),
                &[],
            )
            .await
            .map_err(query_error)?;
        Ok(row.get(0))
    }
}

/// The hosts and port of a connection string, for messages (never the
/// password).
fn shown_address(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    if hosts.is_empty() {
        format!("localhost:{port}")
    } else {
        format!("{}:{port}", hosts.join(","))
    }
}

/// Pointers in a PostgreSQL database.
pub struct PostgresPointerStore {
    database: Database,
    ownership: Arc<dyn Ownership>,
}

impl PostgresPointerStore {
    /// Connects to `url` and brings the schema up to date.
    pub async fn connect(url: &str, ownership: Arc<dyn Ownership>) -> Result<Self> {
        Self::open(Database::connect(url).await?, ownership).await
    }

    /// Keeps pointers in `database`, bringing the schema up to date.
    pub async fn open(database: Database, ownership: Arc<dyn Ownership>) -> Result<Self> {
        database.migrate(MIGRATIONS_TABLE, MIGRATIONS).await?;
        Ok(PostgresPointerStore {
            database,
            ownership,
        })
    }

    /// The schema version the database is at.
    pub async fn schema_version(&self) -> Result<i64> {
        Ok(self.database.schema_version(MIGRATIONS_TABLE).await?)
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        Ok(self.database.execute(sql, params).await?)
    }

    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        Ok(self.database.query(sql, params).await?)
    }

    async fn stored(&self, owner: &[u8], writer: &[u8]) -> Result<Option<Stored>> {
        let rows = self
            .query(
                "SELECT sequence, current FROM pointers WHERE owner = $1 AND writer = $2",
                &[&owner, &writer],
            )
            .await?;
        rows.into_iter()
            .next()
            .map(|row| {
                let sequence: i64 = row.get(0);
                let current: Option<Vec<u8>> = row.get(1);
                Ok(Stored {
                    sequence: sequence as u64,
                    current: current
                        .map(|bytes| Cid::from_bytes(&bytes))
                        .transpose()
                        .map_err(corrupt)?,
                })
            })
            .transpose()
    }
}

/// A stored value that does not decode.
fn corrupt(e: impl std::fmt::Display) -> Error {
    Error::Database(format!("a stored pointer is corrupt: {e}"))
}

#[async_trait]
impl PointerStore for PostgresPointerStore {
    async fn get(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
    ) -> Result<Option<SignedPointer>> {
        let (owner, writer) = (owner.cid().to_bytes(), writer.cid().to_bytes());
        let rows = self
            .query(
                "SELECT signed FROM pointers WHERE owner = $1 AND writer = $2",
                &[&owner, &writer],
            )
            .await?;
        rows.into_iter()
            .next()
            .map(|row| {
                let bytes: Vec<u8> = row.get(0);
                SignedPointer::from_bytes(&bytes).map_err(corrupt)
            })
            .transpose()
    }

    async fn set(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
        update: SignedPointer,
    ) -> Result<()> {
        verify(&*self.ownership, owner, writer, &update).await?;
        let signed = update.to_bytes()?;
        let (owner, writer) = (owner.cid().to_bytes(), writer.cid().to_bytes());
        let sequence = update.update.sequence as i64;
        let current = update.update.current.map(|c| c.to_bytes());
        let changed = match update.update.previous {
            // Expecting a value: it must be the stored one.
            Some(previous) => {
                self.execute(
                    "UPDATE pointers SET sequence = $3, current = $4, signed = $5
                     WHERE owner = $1 AND writer = $2 AND current = $6 AND sequence < $3",
                    &[
                        &owner,
                        &writer,
                        &sequence,
                        &current,
                        &signed,
                        &previous.to_bytes(),
                    ],
                )
                .await?
            }
            // Expecting nothing: a new pointer, or one that was cleared.
            None => {
                self.execute(
                    "INSERT INTO pointers (owner, writer, sequence, current, signed)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (owner, writer) DO UPDATE
                       SET sequence = EXCLUDED.sequence, current = EXCLUDED.current,
                           signed = EXCLUDED.signed
                       WHERE pointers.current IS NULL AND pointers.sequence < EXCLUDED.sequence",
                    &[&owner, &writer, &sequence, &current, &signed],
                )
                .await?
            }
        };
        if changed == 1 {
            return Ok(());
        }
        // Refused: say why, from what is stored now.
        let stored = self.stored(&owner, &writer).await?;
        check_cas(stored.as_ref(), &update.update)?;
        // It would pass now: another update landed in between and was
        // undone; report the value found.
        Err(Error::CasConflict(Box::new(crate::CasConflict {
            expected: update.update.previous,
            actual: stored.and_then(|s| s.current),
        })))
    }

    async fn targets(&self) -> Result<Vec<Cid>> {
        let rows = self
            .query(
                "SELECT current FROM pointers WHERE current IS NOT NULL",
                &[],
            )
            .await?;
        rows.into_iter()
            .map(|row| {
                let bytes: Vec<u8> = row.get(0);
                Cid::from_bytes(&bytes).map_err(corrupt)
            })
            .collect()
    }
}
