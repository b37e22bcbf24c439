//! The device's record of the newest versions it has seen, kept across
//! processes.
//!
//! A [`PointerCache`](crate::PointerCache) in memory stops a server from
//! rolling back a session that is still running; a fresh process knows
//! nothing. [`SeenStore`] keeps, per scope (one server), the newest signed
//! pointer seen for every `(owner, writer)` and the newest version of any
//! other counter a client tracks (its encrypted login data), in one sqlite
//! file that every client process of the device shares. A record only
//! moves forward: an upsert whose sequence is not larger leaves it as it
//! is, so two processes racing each other never regress it.
//!
//! Crash safety: WAL with `synchronous = NORMAL`. A `kill -9` loses
//! nothing committed; a power loss may lose the last few records (the
//! record then lags behind the server, which weakens detection for a
//! moment and never raises a false alarm).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use peergos_keys::PublicKeyHash;
use rusqlite::{params, Connection, OptionalExtension};

use crate::{Error, Result, SignedPointer};

/// The newest versions a device has seen, in a sqlite file.
pub struct SeenStore {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for SeenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeenStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A record's key: a pointer, or a named counter.
fn pointer_key(owner: &PublicKeyHash, writer: &PublicKeyHash) -> Vec<u8> {
    format!("p/{owner}/{writer}").into_bytes()
}

fn counter_key(name: &str) -> Vec<u8> {
    format!("c/{name}").into_bytes()
}

impl SeenStore {
    /// Opens (creating it and its folder if needed) the record at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::Seen {
                path: path.display().to_string(),
                reason: format!("creating {}: {e}", dir.display()),
            })?;
        }
        let conn = Connection::open(&path).map_err(|e| sqlite(&path, e))?;
        Self::setup(conn, path)
    }

    /// A record that lives only as long as this value (tests, and clients
    /// told not to keep state).
    pub fn in_memory() -> Result<Self> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|e| sqlite(&path, e))?;
        Self::setup(conn, path)
    }

    fn setup(conn: Connection, path: PathBuf) -> Result<Self> {
        let prepare = || -> rusqlite::Result<()> {
            conn.busy_timeout(Duration::from_secs(30))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS seen (
                     scope TEXT NOT NULL,
                     key BLOB NOT NULL,
                     sequence INTEGER NOT NULL,
                     value BLOB NOT NULL,
                     PRIMARY KEY (scope, key)
                 ) WITHOUT ROWID;",
            )
        };
        prepare().map_err(|e| sqlite(&path, e))?;
        Ok(SeenStore {
            conn: Mutex::new(conn),
            path,
        })
    }

    /// Where the record lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self, scope: &str, key: &[u8]) -> Result<Option<(u64, Vec<u8>)>> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let row = conn
            .query_row(
                "SELECT sequence, value FROM seen WHERE scope = ?1 AND key = ?2",
                params![scope, key],
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?)),
            )
            .optional()
            .map_err(|e| sqlite(&self.path, e))?;
        Ok(row.map(|(sequence, value)| (sequence as u64, value)))
    }

    /// Records `value` at `sequence` unless the record already holds that
    /// sequence or a newer one.
    fn advance(&self, scope: &str, key: &[u8], sequence: u64, value: &[u8]) -> Result<()> {
        let sequence = i64::try_from(sequence).map_err(|_| Error::Seen {
            path: self.path.display().to_string(),
            reason: format!("sequence {sequence} is too large to record"),
        })?;
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        conn.execute(
            "INSERT INTO seen (scope, key, sequence, value) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (scope, key) DO UPDATE
                 SET sequence = excluded.sequence, value = excluded.value
                 WHERE excluded.sequence > seen.sequence",
            params![scope, key, sequence, value],
        )
        .map_err(|e| sqlite(&self.path, e))?;
        Ok(())
    }

    /// The newest signed pointer recorded for `(owner, writer)` in
    /// `scope`. A record that no longer verifies (a damaged file) reads as
    /// none.
    pub fn pointer(
        &self,
        scope: &str,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
    ) -> Result<Option<SignedPointer>> {
        let Some((_, bytes)) = self.read(scope, &pointer_key(owner, writer))? else {
            return Ok(None);
        };
        Ok(SignedPointer::from_bytes(&bytes)
            .ok()
            .filter(|p| p.verify(owner, writer).is_ok()))
    }

    /// Records `update` (already verified) for `(owner, writer)` in
    /// `scope` if it is newer than the record.
    pub fn record_pointer(
        &self,
        scope: &str,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
        update: &SignedPointer,
    ) -> Result<()> {
        let bytes = update.to_bytes()?;
        self.advance(
            scope,
            &pointer_key(owner, writer),
            update.update.sequence,
            &bytes,
        )
    }

    /// The newest version recorded of the counter `name` in `scope`, with
    /// the value recorded beside it.
    pub fn counter(&self, scope: &str, name: &str) -> Result<Option<(u64, Vec<u8>)>> {
        self.read(scope, &counter_key(name))
    }

    /// Records version `sequence` of the counter `name` (with `value`) if
    /// it is newer than the record.
    pub fn record_counter(
        &self,
        scope: &str,
        name: &str,
        sequence: u64,
        value: &[u8],
    ) -> Result<()> {
        self.advance(scope, &counter_key(name), sequence, value)
    }

    /// Forgets everything recorded for `scope` (all scopes for `None`), as
    /// a user does on purpose after a server was legitimately restored
    /// from a backup. Returns how many records went.
    pub fn forget(&self, scope: Option<&str>) -> Result<usize> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let removed = match scope {
            Some(scope) => conn.execute("DELETE FROM seen WHERE scope = ?1", params![scope]),
            None => conn.execute("DELETE FROM seen", []),
        };
        removed.map_err(|e| sqlite(&self.path, e))
    }
}

fn sqlite(path: &Path, source: rusqlite::Error) -> Error {
    Error::Sqlite {
        path: path.display().to_string(),
        source,
    }
}
