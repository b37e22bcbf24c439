//! The sqlite pointer store: WAL mode, `BEGIN IMMEDIATE` transactions, a busy
//! timeout so several processes can share a file, and group commit.
//!
//! Group commit: one writer thread owns the write connection. Each `set`
//! queues its (already verified) update and waits. The thread takes every
//! update queued at that moment (up to [`MAX_BATCH`]), applies them in
//! order inside one transaction, each with its own CAS check against the
//! state the earlier ones left, commits once (one fsync), and only then
//! answers each caller. A lone writer pays one fsync per update, as
//! before; many concurrent writers share them. Reads use a second
//! connection, which WAL lets run beside the writer.

use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
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

/// The most updates applied in one transaction.
pub const MAX_BATCH: usize = 256;

/// A verified update waiting for the writer thread.
struct Queued {
    owner: Vec<u8>,
    writer: Vec<u8>,
    update: SignedPointer,
    signed: Vec<u8>,
    reply: tokio::sync::oneshot::Sender<Result<()>>,
}

/// Pointers in a sqlite database file.
pub struct SqlitePointerStore {
    /// The read connection.
    conn: Arc<Mutex<Connection>>,
    /// The queue to the writer thread, which owns the write connection.
    queue: Mutex<mpsc::Sender<Queued>>,
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
        let connect = || -> rusqlite::Result<Connection> {
            let conn = Connection::open(path.as_ref())?;
            conn.busy_timeout(Duration::from_secs(30))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            let sync = match durability {
                Durability::Full => "FULL",
                Durability::Normal => "NORMAL",
            };
            conn.pragma_update(None, "synchronous", sync)?;
            Ok(conn)
        };
        let writer = connect().map_err(err)?;
        migrate(&writer).map_err(err)?;
        let reader = connect().map_err(err)?;
        let (queue, jobs) = mpsc::channel();
        let thread_path = Arc::clone(&shown);
        std::thread::Builder::new()
            .name("peergos-pointers-writer".into())
            .spawn(move || write_loop(writer, jobs, &thread_path))
            .map_err(|e| Error::Task(format!("cannot start the pointer writer thread: {e}")))?;
        Ok(SqlitePointerStore {
            conn: Arc::new(Mutex::new(reader)),
            queue: Mutex::new(queue),
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
        .await?
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
        let signed = update.to_bytes()?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Queued {
            owner: owner.cid().to_bytes(),
            writer: writer.cid().to_bytes(),
            update,
            signed,
            reply,
        };
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(job)
            .map_err(|_| Error::Task("the pointer writer thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| Error::Task("the pointer writer thread dropped an update".into()))?
    }

    async fn targets(&self) -> Result<Vec<Cid>> {
        self.with_conn(move |conn, path| {
            let mut statement = conn
                .prepare("SELECT current FROM pointers WHERE current IS NOT NULL")
                .map_err(sqlite_err(path))?;
            let rows = statement
                .query_map([], |row| row.get::<_, Vec<u8>>(0))
                .map_err(sqlite_err(path))?;
            let mut out = Vec::new();
            for row in rows {
                let bytes = row.map_err(sqlite_err(path))?;
                out.push(Cid::from_bytes(&bytes).map_err(|e| corrupt(path, e))?);
            }
            Ok(out)
        })
        .await
    }
}

/// The writer thread: takes every queued update, applies them in one
/// transaction, commits once, answers each. Ends when the store is dropped.
fn write_loop(mut conn: Connection, jobs: mpsc::Receiver<Queued>, path: &str) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        match apply(&mut conn, &batch, path) {
            Ok(verdicts) => {
                for (job, verdict) in batch.into_iter().zip(verdicts) {
                    let _ = job.reply.send(verdict);
                }
            }
            Err(e) if batch.len() == 1 => {
                if let Some(job) = batch.into_iter().next() {
                    let _ = job.reply.send(Err(e));
                }
            }
            Err(_) => {
                // The shared transaction failed and wrote nothing. Apply each
                // update alone, so each caller gets its own verdict and its
                // own typed error, and one failure cannot sink the others.
                for job in batch {
                    let verdict =
                        apply(&mut conn, std::slice::from_ref(&job), path).and_then(|verdicts| {
                            verdicts.into_iter().next().unwrap_or_else(|| {
                                Err(Error::Task("a one-update batch gave no verdict".into()))
                            })
                        });
                    let _ = job.reply.send(verdict);
                }
            }
        }
    }
}

/// Applies a batch in one transaction. Returns each update's own verdict
/// (accepted, or refused by the CAS rule or a corrupt row), or an error if
/// the transaction as a whole failed and nothing was written.
fn apply(conn: &mut Connection, batch: &[Queued], path: &str) -> Result<Vec<Result<()>>> {
    let err = sqlite_err(path);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&err)?;
    let mut verdicts = Vec::with_capacity(batch.len());
    for job in batch {
        let row: Option<(i64, Option<Vec<u8>>)> = tx
            .query_row(
                "SELECT sequence, current FROM pointers WHERE owner = ?1 AND writer = ?2",
                params![job.owner, job.writer],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(&err)?;
        // A corrupt row refuses its own update only.
        let stored = match row
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
            .transpose()
        {
            Ok(stored) => stored,
            Err(e) => {
                verdicts.push(Err(e));
                continue;
            }
        };
        let verdict = check_cas(stored.as_ref(), &job.update.update);
        if verdict.is_ok() {
            tx.execute(
                "INSERT OR REPLACE INTO pointers (owner, writer, sequence, current, signed)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    job.owner,
                    job.writer,
                    job.update.update.sequence as i64,
                    job.update.update.current.map(|c| c.to_bytes()),
                    job.signed
                ],
            )
            .map_err(&err)?;
        }
        verdicts.push(verdict);
    }
    tx.commit().map_err(&err)?;
    Ok(verdicts)
}
