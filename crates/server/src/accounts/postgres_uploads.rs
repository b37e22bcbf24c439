//! Upload transactions and the garbage-collection lease in Postgres, shared
//! by every replica of the server.
//!
//! A block's record and its deletion are serialised by a
//! transaction-scoped advisory lock on the block (class [`BLOCK_LOCK`],
//! the second key from its hash): recording takes it shared, deleting it
//! exclusive while it checks the records and deletes. So a block is
//! either recorded before the check (and kept) or after the delete (and
//! stored again by the put that recorded it).

use std::collections::HashSet;

use peergos_blockstore::TransactionId;
use peergos_ipld::Cid;
use peergos_keys::PublicKeyHash;

use super::postgres::{pg, PostgresAccounts};
use super::{unsigned, DeleteFn, OpenTransaction};
use crate::Result;

/// The advisory-lock class of blocks.
const BLOCK_LOCK: i32 = 0x7062_6c6b;

/// The second advisory-lock key of a block: the first four bytes of its
/// hash.
fn block_key(cid: &Cid) -> i32 {
    let digest = cid.digest();
    let mut key = [0u8; 4];
    for (k, d) in key.iter_mut().zip(digest) {
        *k = *d;
    }
    i32::from_be_bytes(key)
}

/// The protection rule for one block, as SQL over `$1` (the CID), `$2`
/// (opened since) and `$3` (closed since).
const PROTECTED_ONE: &str = "SELECT EXISTS (
     SELECT 1 FROM transaction_blocks b JOIN transactions t ON t.id = b.id
     WHERE b.cid = $1
       AND ((t.closed IS NULL AND t.opened >= $2) OR t.closed >= $3))";

impl PostgresAccounts {
    pub(super) async fn uploads_open(
        &self,
        owner: &PublicKeyHash,
        id: &TransactionId,
        opened_ms: u64,
    ) -> Result<()> {
        let opened = opened_ms as i64;
        self.execute(
            "INSERT INTO transactions (id, owner, opened, last_put) VALUES ($1, $2, $3, $3)
             ON CONFLICT DO NOTHING",
            &[&id.to_bytes().as_slice(), &owner.cid().to_bytes(), &opened],
        )
        .await?;
        Ok(())
    }

    pub(super) async fn uploads_get(
        &self,
        id: &TransactionId,
        since_ms: u64,
    ) -> Result<Option<OpenTransaction>> {
        let row = self
            .query_opt(
                "SELECT owner, opened FROM transactions
                 WHERE id = $1 AND closed IS NULL AND opened >= $2",
                &[&id.to_bytes().as_slice(), &(since_ms as i64)],
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let owner: Vec<u8> = row.get(0);
        Ok(Some(OpenTransaction {
            id: *id,
            owner: PublicKeyHash::from_cid(Cid::from_bytes(&owner)?)?,
            opened_ms: unsigned(row.get(1)),
            blocks: Vec::new(),
        }))
    }

    pub(super) async fn uploads_add(
        &self,
        id: &TransactionId,
        blocks: &[Cid],
        bytes: u64,
        now_ms: u64,
    ) -> Result<()> {
        let cids: Vec<Vec<u8>> = blocks.iter().map(|c| c.to_bytes()).collect();
        let mut keys: Vec<i32> = blocks.iter().map(block_key).collect();
        keys.sort_unstable();
        keys.dedup();
        let id = id.to_bytes();
        let mut client = self.database.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock_shared($1, k) FROM unnest($2::INT4[]) AS k",
            &[&BLOCK_LOCK, &keys],
        )
        .await
        .map_err(pg)?;
        tx.execute(
            "INSERT INTO transaction_blocks (id, cid) SELECT $1, unnest($2::BYTEA[])
             ON CONFLICT DO NOTHING",
            &[&id.as_slice(), &cids],
        )
        .await
        .map_err(pg)?;
        tx.execute(
            "UPDATE transactions SET bytes = bytes + $2, last_put = GREATEST(last_put, $3)
             WHERE id = $1",
            &[&id.as_slice(), &(bytes as i64), &(now_ms as i64)],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)
    }

    pub(super) async fn uploads_close(&self, id: &TransactionId, now_ms: u64) -> Result<()> {
        self.execute(
            "UPDATE transactions SET closed = $2 WHERE id = $1 AND closed IS NULL",
            &[&id.to_bytes().as_slice(), &(now_ms as i64)],
        )
        .await?;
        Ok(())
    }

    pub(super) async fn uploads_open_list(&self, since_ms: u64) -> Result<Vec<OpenTransaction>> {
        let since = since_ms as i64;
        let rows = self
            .query(
                "SELECT id, owner, opened FROM transactions
                 WHERE closed IS NULL AND opened >= $1 ORDER BY opened, id",
                &[&since],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        let blocks = self
            .query(
                "SELECT b.id, b.cid FROM transaction_blocks b JOIN transactions t ON t.id = b.id
                 WHERE t.closed IS NULL AND t.opened >= $1 ORDER BY b.id, b.cid",
                &[&since],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        super::decode_transactions(rows, blocks)
    }

    pub(super) async fn uploads_pending(
        &self,
        owner: &PublicKeyHash,
        since_ms: u64,
    ) -> Result<u64> {
        let row = self
            .query_opt(
                "SELECT COALESCE(SUM(bytes), 0)::BIGINT FROM transactions
                 WHERE owner = $1 AND closed IS NULL AND last_put >= $2",
                &[&owner.cid().to_bytes(), &(since_ms as i64)],
            )
            .await?;
        Ok(row.map_or(0, |r| unsigned(r.get(0))))
    }

    pub(super) async fn uploads_count(&self, since_ms: u64) -> Result<u64> {
        let row = self
            .query_opt(
                "SELECT COUNT(*) FROM transactions WHERE closed IS NULL AND last_put >= $1",
                &[&(since_ms as i64)],
            )
            .await?;
        Ok(row.map_or(0, |r| unsigned(r.get(0))))
    }

    pub(super) async fn uploads_protected(
        &self,
        opened_since: u64,
        closed_since: u64,
    ) -> Result<HashSet<Cid>> {
        let rows = self
            .query(
                "SELECT DISTINCT b.cid FROM transaction_blocks b JOIN transactions t ON t.id = b.id
                 WHERE (t.closed IS NULL AND t.opened >= $1) OR t.closed >= $2",
                &[&(opened_since as i64), &(closed_since as i64)],
            )
            .await?;
        rows.iter()
            .map(|r| Ok(Cid::from_bytes(&r.get::<_, Vec<u8>>(0))?))
            .collect()
    }

    pub(super) async fn uploads_delete_unless_protected<'a>(
        &'a self,
        cid: &'a Cid,
        opened_since: u64,
        closed_since: u64,
        delete: DeleteFn<'a>,
    ) -> Result<Option<u64>> {
        let mut client = self.database.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, $2)",
            &[&BLOCK_LOCK, &block_key(cid)],
        )
        .await
        .map_err(pg)?;
        let protected: bool = tx
            .query_one(
                PROTECTED_ONE,
                &[
                    &cid.to_bytes(),
                    &(opened_since as i64),
                    &(closed_since as i64),
                ],
            )
            .await
            .map_err(pg)?
            .get(0);
        if protected {
            tx.commit().await.map_err(pg)?;
            return Ok(None);
        }
        // Deleted while the lock is held: a put of this block records it
        // after this commit, and then stores it again.
        let freed = delete().await?;
        tx.commit().await.map_err(pg)?;
        Ok(freed)
    }

    pub(super) async fn uploads_prune(&self, opened_before: u64, closed_before: u64) -> Result<()> {
        let mut client = self.database.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let gone = "(SELECT id FROM transactions WHERE opened < $1 OR closed < $2)";
        tx.execute(
            &format!("DELETE FROM transaction_blocks WHERE id IN {gone}"),
            &[&(opened_before as i64), &(closed_before as i64)],
        )
        .await
        .map_err(pg)?;
        tx.execute(
            "DELETE FROM transactions WHERE opened < $1 OR closed < $2",
            &[&(opened_before as i64), &(closed_before as i64)],
        )
        .await
        .map_err(pg)?;
        tx.execute(
            "DELETE FROM transaction_blocks b
             WHERE NOT EXISTS (SELECT 1 FROM transactions t WHERE t.id = b.id)",
            &[],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)
    }

    pub(super) async fn lease_take(
        &self,
        holder: &str,
        now_ms: u64,
        ttl_ms: u64,
        min_gap_ms: Option<u64>,
    ) -> Result<bool> {
        let now = now_ms as i64;
        let expires = now_ms.saturating_add(ttl_ms) as i64;
        let finished_before = min_gap_ms.map_or(i64::MAX, |gap| now.saturating_sub(gap as i64));
        // Taken if nobody holds it (or the holder is us, or its lease ran
        // out), and for a scheduled run, if no collection finished since
        // `finished_before`.
        let changed = self
            .execute(
                "INSERT INTO gc_lease (id, holder, expires, last_finished) VALUES (0, $1, $2, 0)
                 ON CONFLICT (id) DO UPDATE SET holder = $1, expires = $2
                 WHERE (gc_lease.holder = $1 OR gc_lease.expires < $3)
                   AND gc_lease.last_finished < $4",
                &[&holder, &expires, &now, &finished_before],
            )
            .await?;
        Ok(changed == 1)
    }

    pub(super) async fn lease_end(&self, holder: &str, now_ms: u64, finished: bool) -> Result<()> {
        if finished {
            self.execute(
                "UPDATE gc_lease SET expires = 0, last_finished = $2 WHERE holder = $1",
                &[&holder, &(now_ms as i64)],
            )
            .await?;
        } else {
            self.execute(
                "UPDATE gc_lease SET expires = 0 WHERE holder = $1",
                &[&holder],
            )
            .await?;
        }
        Ok(())
    }

    /// One request from a token bucket, in a transaction holding the
    /// bucket's row, so replicas racing on it count every request.
    pub(super) async fn bucket_take(
        &self,
        key: &str,
        burst: u32,
        every_ms: u64,
        now_ms: u64,
    ) -> Result<Option<u64>> {
        let mut client = self.database.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        // Makes the row exist (full) so it can be locked.
        tx.execute(
            "INSERT INTO rate_buckets (key, tokens, at) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO NOTHING",
            &[&key, &f64::from(burst.max(1)), &(now_ms as i64)],
        )
        .await
        .map_err(pg)?;
        let row = tx
            .query_one(
                "SELECT tokens, at FROM rate_buckets WHERE key = $1 FOR UPDATE",
                &[&key],
            )
            .await
            .map_err(pg)?;
        let (tokens, outcome) =
            super::bucket_step(Some((row.get(0), row.get(1))), burst, every_ms, now_ms);
        tx.execute(
            "UPDATE rate_buckets SET tokens = $2, at = GREATEST(at, $3) WHERE key = $1",
            &[&key, &tokens, &(now_ms as i64)],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok(outcome.err())
    }
}
