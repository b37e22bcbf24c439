//! The file store's small blocks, in one sqlite database (`small.sqlite`).
//!
//! A small block as a file of its own costs two waits for the disk (its
//! data and its directory entry) and an inode; a put of many small blocks
//! (a file's metadata, a directory chunk, CHAMP nodes, a `WriterData`, a
//! batch of small files) paid that for each. Here a put's small blocks are
//! one sqlite transaction: one write-ahead-log append and one fsync for the
//! lot. Large blocks stay files, where the kernel copies them without
//! sqlite's page handling.
//!
//! The database is in WAL mode: readers never wait for the writer, and a
//! commit is durable when `insert` returns (`synchronous = FULL`; a cache
//! uses `NORMAL`, which never corrupts the database but may lose the latest
//! commits in a power cut). Reads take a connection from a small pool, so
//! concurrent reads on the blocking threads do not queue behind each other.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use peergos_ipld::{Block, Cid};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::{Error, Result};

/// The largest block kept in the database; larger ones are files. A small
/// file's blocks (up to 64 KiB of data, padded and sealed) fall below it, a
/// large file's 1 MiB fragments above it.
pub const SMALL_BLOCK_MAX: usize = 128 << 10;

/// The schema version this code writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS blocks (
    cid  BLOB PRIMARY KEY,
    data BLOB NOT NULL
);
";

/// Read connections kept open for reuse; more are opened while reads
/// overlap and closed afterwards.
const KEPT_READERS: usize = 4;

/// How long a statement waits for another process's lock (an audit reading
/// the database while the daemon writes) before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct SmallBlocks {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    durable: bool,
}

fn db_error(action: &'static str, path: &Path) -> impl FnOnce(rusqlite::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Database {
        action,
        path,
        source,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a connection leaves it usable: sqlite rolls
    // back an unfinished transaction when the next one begins.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SmallBlocks {
    /// Opens (creating if needed) the database at `path`.
    pub(crate) fn open(path: PathBuf, durable: bool) -> Result<Self> {
        let conn = Connection::open(&path).map_err(db_error("open", &path))?;
        let setup = |conn: &Connection| -> rusqlite::Result<i64> {
            conn.busy_timeout(BUSY_TIMEOUT)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", if durable { "FULL" } else { "NORMAL" })?;
            let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
            if version <= SCHEMA_VERSION {
                conn.execute_batch(SCHEMA)?;
                conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            }
            Ok(version)
        };
        let version = setup(&conn).map_err(db_error("set up", &path))?;
        if version > SCHEMA_VERSION {
            return Err(Error::NewerFormat {
                path,
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(SmallBlocks {
            path,
            writer: Mutex::new(conn),
            readers: Mutex::new(Vec::new()),
            durable,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Stores `blocks` in one transaction: all of them or none.
    pub(crate) fn insert(&self, blocks: &[&Block]) -> Result<()> {
        if blocks.is_empty() {
            return Ok(());
        }
        let mut conn = lock(&self.writer);
        let store = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            {
                let mut insert =
                    tx.prepare_cached("INSERT OR IGNORE INTO blocks (cid, data) VALUES (?1, ?2)")?;
                for block in blocks {
                    insert.execute(params![block.cid().to_bytes(), &block.data()[..]])?;
                }
            }
            tx.commit()
        };
        store(&mut conn).map_err(db_error("store blocks in", &self.path))
    }

    /// Removes a block; whether it was there. Not waited for on disk: a
    /// delete lost in a power cut leaves garbage the next collection takes,
    /// and the next durable commit carries it anyway.
    pub(crate) fn delete(&self, cid: &Cid) -> Result<bool> {
        let conn = lock(&self.writer);
        let remove = |conn: &Connection| -> rusqlite::Result<usize> {
            if self.durable {
                conn.pragma_update(None, "synchronous", "NORMAL")?;
            }
            let removed = conn
                .prepare_cached("DELETE FROM blocks WHERE cid = ?1")
                .and_then(|mut delete| delete.execute([cid.to_bytes()]));
            if self.durable {
                conn.pragma_update(None, "synchronous", "FULL")?;
            }
            removed
        };
        remove(&conn)
            .map(|n| n > 0)
            .map_err(db_error("delete a block from", &self.path))
    }

    /// The stored bytes of `cid`, unverified.
    pub(crate) fn get(&self, cid: &Cid) -> Result<Option<Vec<u8>>> {
        self.read("read a block from", |conn| {
            conn.prepare_cached("SELECT data FROM blocks WHERE cid = ?1")?
                .query_row([cid.to_bytes()], |row| row.get(0))
                .optional()
        })
    }

    pub(crate) fn size(&self, cid: &Cid) -> Result<Option<u64>> {
        self.read("read a block size from", |conn| {
            conn.prepare_cached("SELECT length(data) FROM blocks WHERE cid = ?1")?
                .query_row([cid.to_bytes()], |row| row.get::<_, i64>(0))
                .optional()
                .map(|size| size.map(|n| n.unsigned_abs()))
        })
    }

    /// Every stored CID. A row whose key is not a CID is not ours and is
    /// left out.
    pub(crate) fn list(&self) -> Result<Vec<Cid>> {
        self.read("list blocks in", |conn| {
            let mut select = conn.prepare("SELECT cid FROM blocks")?;
            let rows = select.query_map([], |row| row.get::<_, Vec<u8>>(0))?;
            let mut cids = Vec::new();
            for key in rows {
                if let Ok(cid) = Cid::from_bytes(&key?) {
                    cids.push(cid);
                }
            }
            Ok(cids)
        })
    }

    /// Runs `query` on a pooled read connection.
    fn read<T>(
        &self,
        action: &'static str,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let pooled = lock(&self.readers).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => open_reader(&self.path)?,
        };
        let out = query(&conn).map_err(db_error(action, &self.path));
        let mut pool = lock(&self.readers);
        if pool.len() < KEPT_READERS {
            pool.push(conn);
        }
        out
    }
}

fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db_error("open", path))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(db_error("open", path))?;
    Ok(conn)
}

/// Every small block in the database at `path` with its bytes, read
/// without writing anything (the daemon may have it open). No database is
/// no blocks.
pub(crate) fn read_all(path: &Path) -> Result<Vec<(Cid, Vec<u8>)>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let conn = open_reader(path)?;
    let read = |conn: &Connection| -> rusqlite::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut select = conn.prepare("SELECT cid, data FROM blocks")?;
        let rows = select.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        rows.collect()
    };
    let rows = read(&conn).map_err(db_error("read blocks from", path))?;
    Ok(rows
        .into_iter()
        .filter_map(|(key, data)| Cid::from_bytes(&key).ok().map(|cid| (cid, data)))
        .collect())
}
