//! Upload transactions and the garbage-collection lease in sqlite: the same
//! rules as in Postgres, for the one process that uses the file.

use std::collections::HashSet;

use peergos_blockstore::TransactionId;
use peergos_ipld::Cid;
use peergos_keys::PublicKeyHash;
use rusqlite::{params, OptionalExtension};

use super::sqlite::SqliteAccounts;
use super::{unsigned, OpenTransaction};
use crate::Result;

impl SqliteAccounts {
    pub(super) fn uploads_open(
        &self,
        owner: &PublicKeyHash,
        id: &TransactionId,
        opened_ms: u64,
    ) -> Result<()> {
        // Unsynced: the record matters once the transaction holds blocks,
        // and adding them is a durable commit that takes this row with it.
        self.with_unsynced(|conn| {
            conn.execute(
                "INSERT OR IGNORE INTO transactions (id, owner, opened, last_put)
                 VALUES (?1, ?2, ?3, ?3)",
                params![
                    id.to_bytes().as_slice(),
                    owner.cid().to_bytes(),
                    opened_ms as i64
                ],
            )?;
            Ok(())
        })
    }

    pub(super) fn uploads_get(
        &self,
        id: &TransactionId,
        since_ms: u64,
    ) -> Result<Option<OpenTransaction>> {
        let row: Option<(Vec<u8>, i64)> = self.with(|conn| {
            conn.query_row(
                "SELECT owner, opened FROM transactions
                 WHERE id = ?1 AND closed IS NULL AND opened >= ?2",
                params![id.to_bytes().as_slice(), since_ms as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })?;
        let Some((owner, opened)) = row else {
            return Ok(None);
        };
        Ok(Some(OpenTransaction {
            id: *id,
            owner: PublicKeyHash::from_cid(Cid::from_bytes(&owner)?)?,
            opened_ms: unsigned(opened),
            blocks: Vec::new(),
        }))
    }

    pub(super) fn uploads_add(
        &self,
        id: &TransactionId,
        blocks: &[Cid],
        bytes: u64,
        now_ms: u64,
    ) -> Result<()> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT OR IGNORE INTO transaction_blocks (id, cid) VALUES (?1, ?2)",
                )?;
                for cid in blocks {
                    insert.execute(params![id.to_bytes().as_slice(), cid.to_bytes()])?;
                }
            }
            tx.execute(
                "UPDATE transactions SET bytes = bytes + ?2, last_put = MAX(last_put, ?3)
                 WHERE id = ?1",
                params![id.to_bytes().as_slice(), bytes as i64, now_ms as i64],
            )?;
            tx.commit()
        })
    }

    pub(super) fn uploads_close(&self, id: &TransactionId, now_ms: u64) -> Result<()> {
        // Unsynced: a close lost in a power cut leaves the transaction's
        // blocks protected from GC until it times out, nothing worse.
        self.with_unsynced(|conn| {
            conn.execute(
                "UPDATE transactions SET closed = ?2 WHERE id = ?1 AND closed IS NULL",
                params![id.to_bytes().as_slice(), now_ms as i64],
            )?;
            Ok(())
        })
    }

    pub(super) fn uploads_open_list(&self, since_ms: u64) -> Result<Vec<OpenTransaction>> {
        let since = since_ms as i64;
        let (rows, blocks) = self.with(|conn| {
            let rows = conn
                .prepare(
                    "SELECT id, owner, opened FROM transactions
                     WHERE closed IS NULL AND opened >= ?1 ORDER BY opened, id",
                )?
                .query_map([since], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let blocks = conn
                .prepare(
                    "SELECT b.id, b.cid FROM transaction_blocks b
                     JOIN transactions t ON t.id = b.id
                     WHERE t.closed IS NULL AND t.opened >= ?1 ORDER BY b.id, b.cid",
                )?
                .query_map([since], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((rows, blocks))
        })?;
        super::decode_transactions(rows, blocks)
    }

    pub(super) fn uploads_pending(&self, owner: &PublicKeyHash, since_ms: u64) -> Result<u64> {
        let sum: i64 = self.with(|conn| {
            conn.query_row(
                "SELECT COALESCE(SUM(bytes), 0) FROM transactions
                 WHERE owner = ?1 AND closed IS NULL AND last_put >= ?2",
                params![owner.cid().to_bytes(), since_ms as i64],
                |r| r.get(0),
            )
        })?;
        Ok(unsigned(sum))
    }

    pub(super) fn uploads_count(&self, since_ms: u64) -> Result<u64> {
        let count: i64 = self.with(|conn| {
            conn.query_row(
                "SELECT COUNT(*) FROM transactions WHERE closed IS NULL AND last_put >= ?1",
                [since_ms as i64],
                |r| r.get(0),
            )
        })?;
        Ok(unsigned(count))
    }

    pub(super) fn uploads_protected(
        &self,
        opened_since: u64,
        closed_since: u64,
    ) -> Result<HashSet<Cid>> {
        let rows: Vec<Vec<u8>> = self.with(|conn| {
            conn.prepare(
                "SELECT DISTINCT b.cid FROM transaction_blocks b
                 JOIN transactions t ON t.id = b.id
                 WHERE (t.closed IS NULL AND t.opened >= ?1) OR t.closed >= ?2",
            )?
            .query_map(params![opened_since as i64, closed_since as i64], |r| {
                r.get(0)
            })?
            .collect()
        })?;
        rows.iter()
            .map(|bytes| Ok(Cid::from_bytes(bytes)?))
            .collect()
    }

    pub(super) fn uploads_is_protected(
        &self,
        cid: &Cid,
        opened_since: u64,
        closed_since: u64,
    ) -> Result<bool> {
        self.with(|conn| {
            conn.query_row(
                "SELECT EXISTS (
                     SELECT 1 FROM transaction_blocks b JOIN transactions t ON t.id = b.id
                     WHERE b.cid = ?1
                       AND ((t.closed IS NULL AND t.opened >= ?2) OR t.closed >= ?3))",
                params![cid.to_bytes(), opened_since as i64, closed_since as i64],
                |r| r.get(0),
            )
        })
    }

    pub(super) fn uploads_prune(&self, opened_before: u64, closed_before: u64) -> Result<()> {
        self.with_unsynced(|conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "DELETE FROM transaction_blocks WHERE id IN
                   (SELECT id FROM transactions WHERE opened < ?1 OR closed < ?2)",
                params![opened_before as i64, closed_before as i64],
            )?;
            tx.execute(
                "DELETE FROM transactions WHERE opened < ?1 OR closed < ?2",
                params![opened_before as i64, closed_before as i64],
            )?;
            tx.execute(
                "DELETE FROM transaction_blocks
                 WHERE id NOT IN (SELECT id FROM transactions)",
                [],
            )?;
            tx.commit()
        })
    }

    pub(super) fn lease_take(
        &self,
        holder: &str,
        now_ms: u64,
        ttl_ms: u64,
        min_gap_ms: Option<u64>,
    ) -> Result<bool> {
        let now = now_ms as i64;
        let expires = now_ms.saturating_add(ttl_ms) as i64;
        let finished_before = min_gap_ms.map_or(i64::MAX, |gap| now.saturating_sub(gap as i64));
        let changed = self.with_unsynced(|conn| {
            conn.execute(
                "INSERT INTO gc_lease (id, holder, expires, last_finished) VALUES (0, ?1, ?2, 0)
                 ON CONFLICT (id) DO UPDATE SET holder = ?1, expires = ?2
                 WHERE (gc_lease.holder = ?1 OR gc_lease.expires < ?3)
                   AND gc_lease.last_finished < ?4",
                params![holder, expires, now, finished_before],
            )
        })?;
        Ok(changed == 1)
    }

    pub(super) fn lease_end(&self, holder: &str, now_ms: u64, finished: bool) -> Result<()> {
        self.with_unsynced(|conn| {
            if finished {
                conn.execute(
                    "UPDATE gc_lease SET expires = 0, last_finished = ?2 WHERE holder = ?1",
                    params![holder, now_ms as i64],
                )?;
            } else {
                conn.execute(
                    "UPDATE gc_lease SET expires = 0 WHERE holder = ?1",
                    params![holder],
                )?;
            }
            Ok(())
        })
    }

    /// One request from a token bucket (unsynced: a lost update after a
    /// power cut only refills a bucket early).
    pub(super) fn bucket_take(
        &self,
        key: &str,
        burst: u32,
        every_ms: u64,
        now_ms: u64,
    ) -> Result<Option<u64>> {
        self.with_unsynced(|conn| {
            let tx = conn.transaction()?;
            let stored: Option<(f64, i64)> = tx
                .query_row(
                    "SELECT tokens, at FROM rate_buckets WHERE key = ?1",
                    [key],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let (tokens, outcome) = super::bucket_step(stored, burst, every_ms, now_ms);
            tx.execute(
                "INSERT INTO rate_buckets (key, tokens, at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET tokens = ?2, at = MAX(at, ?3)",
                params![key, tokens, now_ms as i64],
            )?;
            tx.commit()?;
            Ok(outcome.err())
        })
    }
}
