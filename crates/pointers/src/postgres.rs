//! A pointer store in PostgreSQL, for servers whose metadata outgrows one
//! sqlite file or must be shared by several server processes.
//!
//! The compare-and-swap is one SQL statement (an `UPDATE` guarded by the
//! expected value and a smaller sequence, or an `INSERT` for a pointer
//! never set), so Postgres' row locking makes concurrent updates of one
//! pointer serialise exactly as in the sqlite store: one wins, the others
//! see [`Error::CasConflict`].
//!
//! Schema migrations are numbered and applied on connect, each in its own
//! transaction, under an advisory lock so that two servers starting at
//! once do not race; `peergos_migrations` records the versions applied.

use std::sync::Arc;

use async_trait::async_trait;
use peergos_ipld::Cid;
use peergos_keys::PublicKeyHash;
use tokio_postgres::{Client, NoTls};

use crate::{check_cas, verify, Error, Ownership, PointerStore, Result, SignedPointer, Stored};

/// The migrations, in order: version `i + 1` is `MIGRATIONS[i]`.
const MIGRATIONS: &[&str] = &["CREATE TABLE pointers (
         owner    BYTEA NOT NULL,
         writer   BYTEA NOT NULL,
         sequence BIGINT NOT NULL,
         current  BYTEA,
         signed   BYTEA NOT NULL,
         PRIMARY KEY (owner, writer)
     )"];

/// An arbitrary, fixed key for the migration advisory lock.
const MIGRATION_LOCK: i64 = 0x7065_6572_676f_7301;

/// Pointers in a PostgreSQL database.
pub struct PostgresPointerStore {
    client: Client,
    ownership: Arc<dyn Ownership>,
    connection: tokio::task::JoinHandle<()>,
}

impl Drop for PostgresPointerStore {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

fn pg(e: tokio_postgres::Error) -> Error {
    match e.as_db_error() {
        Some(db) => Error::Database(format!("{} ({})", db.message(), db.code().code())),
        None => Error::Database(e.to_string()),
    }
}

impl PostgresPointerStore {
    /// Connects to `url` (`host=... user=... password=... dbname=...`, or
    /// a `postgresql://` URL) and brings the schema up to date.
    pub async fn connect(url: &str, ownership: Arc<dyn Ownership>) -> Result<Self> {
        let (client, connection) =
            tokio_postgres::connect(url, NoTls)
                .await
                .map_err(|e| Error::Unreachable {
                    address: "the Postgres database".into(),
                    reason: e.to_string(),
                })?;
        let connection = tokio::spawn(async move {
            if let Err(e) = connection.await {
                report_lost_connection(&e);
            }
        });
        let store = PostgresPointerStore {
            client,
            ownership,
            connection,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The schema version the database is at.
    pub async fn schema_version(&self) -> Result<i64> {
        let row = self
            .client
            .query_one(
                "SELECT COALESCE(MAX(version), 0)::BIGINT FROM peergos_migrations",
                &[],
            )
            .await
            .map_err(pg)?;
        Ok(row.get(0))
    }

    async fn migrate(&self) -> Result<()> {
        // One transaction under the lock: creating the bookkeeping table
        // and every step, so two servers starting at once take turns.
        let mut script = format!(
            "BEGIN;
             SELECT pg_advisory_xact_lock({MIGRATION_LOCK});
             CREATE TABLE IF NOT EXISTS peergos_migrations (
                 version    INTEGER PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             );"
        );
        for (i, sql) in MIGRATIONS.iter().enumerate() {
            let version = i + 1;
            script.push_str(&format!(
                "DO $$ BEGIN
                   IF NOT EXISTS (SELECT 1 FROM peergos_migrations WHERE version = {version}) THEN
                     EXECUTE $m${sql}$m$;
                     INSERT INTO peergos_migrations (version) VALUES ({version});
                   END IF;
                 END $$;"
            ));
        }
        script.push_str("COMMIT;");
        self.client.batch_execute(&script).await.map_err(pg)?;
        Ok(())
    }

    async fn stored(&self, owner: &[u8], writer: &[u8]) -> Result<Option<Stored>> {
        let row = self
            .client
            .query_opt(
                "SELECT sequence, current FROM pointers WHERE owner = $1 AND writer = $2",
                &[&owner, &writer],
            )
            .await
            .map_err(pg)?;
        row.map(|row| {
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

/// The connection task has nowhere to report to but stderr (this crate
/// logs nothing); queries on a dead connection fail with their own error.
fn report_lost_connection(e: &tokio_postgres::Error) {
    eprintln!("peergos-pointers: the Postgres connection ended: {e}");
}

#[async_trait]
impl PointerStore for PostgresPointerStore {
    async fn get(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
    ) -> Result<Option<SignedPointer>> {
        let (owner, writer) = (owner.cid().to_bytes(), writer.cid().to_bytes());
        let row = self
            .client
            .query_opt(
                "SELECT signed FROM pointers WHERE owner = $1 AND writer = $2",
                &[&owner, &writer],
            )
            .await
            .map_err(pg)?;
        row.map(|row| {
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
            Some(previous) => self
                .client
                .execute(
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
                .await
                .map_err(pg)?,
            // Expecting nothing: a new pointer, or one that was cleared.
            None => self
                .client
                .execute(
                    "INSERT INTO pointers (owner, writer, sequence, current, signed)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (owner, writer) DO UPDATE
                       SET sequence = EXCLUDED.sequence, current = EXCLUDED.current,
                           signed = EXCLUDED.signed
                       WHERE pointers.current IS NULL AND pointers.sequence < EXCLUDED.sequence",
                    &[&owner, &writer, &sequence, &current, &signed],
                )
                .await
                .map_err(pg)?,
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
            .client
            .query(
                "SELECT current FROM pointers WHERE current IS NOT NULL",
                &[],
            )
            .await
            .map_err(pg)?;
        rows.into_iter()
            .map(|row| {
                let bytes: Vec<u8> = row.get(0);
                Cid::from_bytes(&bytes).map_err(corrupt)
            })
            .collect()
    }
}
