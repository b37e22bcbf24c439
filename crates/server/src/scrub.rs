//! Scrubbing: re-hash every stored block and name the ones whose bytes no
//! longer match their CID.
//!
//! The file store does not re-hash raw blocks on every read (see
//! [`peergos_blockstore::FileOptions::verify_reads`]); a scrub is how an
//! operator finds a disk that returns rotten bytes before a user's client
//! refuses them. It reads one block at a time
//! ([`peergos_blockstore::BlockStore::check`],
//! which hashes each block once on a blocking thread), so serving goes on
//! beside it, and it changes nothing: a corrupt block is reported, the operator
//! restores it from a backup (or the user uploads the file again).

use std::time::Instant;

use futures::StreamExt;
use peergos_ipld::Cid;
use serde::{Deserialize, Serialize};

use crate::{Result, Server};

/// What one scrub found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubReport {
    /// Blocks read and hashed.
    pub checked: u64,
    /// The bytes they held.
    pub bytes: u64,
    /// Blocks whose bytes do not hash to their CID.
    pub corrupt: Vec<Cid>,
    /// How long it took, in milliseconds.
    pub elapsed_ms: u64,
}

impl Server {
    /// Re-hashes every block in the store (not the cache of other servers'
    /// blocks, which can be emptied and fetched again).
    pub async fn scrub(&self) -> Result<ScrubReport> {
        let started = Instant::now();
        let mut report = ScrubReport::default();
        let mut stored = self.stores.blocks.list();
        while let Some(cid) = stored.next().await {
            let cid = cid?;
            match self.stores.blocks.check(&cid).await {
                Ok(Some(len)) => {
                    report.checked += 1;
                    report.bytes += len;
                }
                // Deleted (by a collection) since it was listed.
                Ok(None) => {}
                Err(peergos_blockstore::Error::Corrupt { .. }) => {
                    report.checked += 1;
                    report.corrupt.push(cid);
                }
                Err(e) => return Err(e.into()),
            }
        }
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        for cid in &report.corrupt {
            tracing::error!(%cid, "scrub: block does not match its hash");
        }
        tracing::info!(
            checked = report.checked,
            bytes = report.bytes,
            corrupt = report.corrupt.len(),
            elapsed_ms = report.elapsed_ms,
            "scrub finished"
        );
        let finished = crate::now_ms() / 1000;
        *self
            .upkeep
            .scrub_last
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((report.clone(), finished));
        Ok(report)
    }

    /// The last scrub's report and when it finished (Unix seconds), for
    /// `/metrics`.
    pub fn last_scrub(&self) -> Option<(ScrubReport, u64)> {
        self.upkeep
            .scrub_last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
