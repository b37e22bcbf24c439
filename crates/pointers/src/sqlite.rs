//! The sqlite pointer store: WAL mode, one `BEGIN IMMEDIATE` transaction per
//! compare-and-swap, a busy timeout so several processes can share a file.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use peergos_ipld::Cid;
use peergos_keys::PublicKeyHash;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::{check_cas, verify, Error, Ownership, PointerStore, Result, SignedPointer, Stored};

/// How hard each commit is pushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous = FULL`: a committed update survives power loss. The
    /// default.
    #[default]
    Full,
    /// `synchronous = NORMAL`: a committed update survives a crash of the
    /// process, but the last few may be lost on power loss or kernel crash.
    Normal,
}

/// Pointers in a sqlite database file.
pub struct SqlitePointerStore {
    conn: Arc<Mutex<Connection>>,
    path: Arc<str>,
    ownership: Arc<dyn Ownership>,
}

impl SqlitePointerStore {
    /// Opens (creating and migrating if needed) the database at `path`.
    pub fn open(
        path: impl AsRef<Path>,
        ownership: Arc<dyn Ownership>,
        durability: Durability,
    ) -> Result<Self> {
        let shown: Arc<str> = path.as_ref().display().to_string().into();
        let err = |source| Error::Sqlite {
            path: shown.to_string(),
            source,
        };
        let conn = Connection::open(path.as_ref()).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        let sync = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync).map_err(err)?;
        migrate(&conn).map_err(err)?;
        Ok(SqlitePointerStore {
            conn: Arc::new(Mutex::new(conn)),
            path: shown,
            ownership,
        })
    }

    async fn with_conn<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &str) -> Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let path = Arc::clone(&self.path);
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            work(&mut conn, &path)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?
    }
}

fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    // Each schema version migrates from the one before, in order; the file
    // records the version it has reached in `user_version`.
    if version < 1 {
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             CREATE TABLE IF NOT EXISTS pointers (
                 owner    BLOB NOT NULL,
                 writer   BLOB NOT NULL,
                 sequence INTEGER NOT NULL,
                 current  BLOB,
                 signed   BLOB NOT NULL,
                 PRIMARY KEY (owner, writer)
             ) WITHOUT ROWID;
             PRAGMA user_version = 1;
             COMMIT;",
        )?;
    }
    Ok(())
}

fn sqlite_err(path: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |source| Error::Sqlite {
        path: path.to_string(),
        source,
    }
}

fn corrupt(path: &str, reason: impl ToString) -> Error {
    Error::CorruptRow {
        path: path.to_string(),
        reason: reason.to_string(),
    }
}

#[async_trait]
impl PointerStore for SqlitePointerStore {
    async fn get(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
    ) -> Result<Option<SignedPointer>> {
        let (owner, writer) = (owner.cid().to_bytes(), writer.cid().to_bytes());
        self.with_conn(move |conn, path| {
            let signed: Option<Vec<u8>> = conn
                .query_row(
                    "SELECT signed FROM pointers WHERE owner = ?1 AND writer = ?2",
                    params![owner, writer],
                    |row| row.get(0),
                )
                .optional()
                .map_err(sqlite_err(path))?;
            signed
                .map(|bytes| SignedPointer::from_bytes(&bytes).map_err(|e| corrupt(path, e)))
                .transpose()
        })
        .await
    }

    async fn set(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
        update: SignedPointer,
    ) -> Result<()> {
        verify(&*self.ownership, owner, writer, &update).await?;
        let (owner, writer) = (owner.cid().to_bytes(), writer.cid().to_bytes());
        let signed = update.to_bytes()?;
        self.with_conn(move |conn, path| {
            let err = sqlite_err(path);
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&err)?;
            let row: Option<(i64, Option<Vec<u8>>)> = tx
                .query_row(
                    "SELECT sequence, current FROM pointers WHERE owner = ?1 AND writer = ?2",
                    params![owner, writer],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(&err)?;
            let stored = row
                .map(|(sequence, current)| {
                    let current = current
                        .map(|c| Cid::from_bytes(&c))
                        .transpose()
                        .map_err(|e| corrupt(path, e))?;
                    // Sequences are stored as the bit pattern of a u64.
                    Ok::<_, Error>(Stored {
                        sequence: sequence as u64,
                        current,
                    })
                })
                .transpose()?;
            check_cas(stored.as_ref(), &update.update)?;
            tx.execute(
                "INSERT OR REPLACE INTO pointers (owner, writer, sequence, current, signed)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    owner,
                    writer,
                    update.update.sequence as i64,
                    update.update.current.map(|c| c.to_bytes()),
                    signed
                ],
            )
            .map_err(&err)?;
            tx.commit().map_err(&err)?;
            Ok(())
        })
        .await
    }
}
