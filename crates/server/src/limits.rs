//! Rate limits on the signup and login routes (in memory, or shared
//! through the account store by replicas), and what `/metrics` reports.

use std::time::Instant;

use peergos_api::endpoint::RateClass;

use crate::{
    now_ms, PeerId, Result, Server, LOGIN_BURST, LOGIN_EVERY_SECS, PEER_LIMIT_FACTOR, SIGNUP_BURST,
    SIGNUP_EVERY_SECS,
};

impl Server {
    /// Takes one request of `client` on a rate-limited route (`signup` or
    /// `login`); Err says how long to wait. With a shared database the
    /// buckets are there, so replicas behind one load balancer count
    /// together.
    pub async fn rate_limit(
        &self,
        class: RateClass,
        client: std::net::IpAddr,
    ) -> std::result::Result<(), std::time::Duration> {
        if self.config.postgres.is_some() {
            return self.shared_limit(class, &format!("ip/{client}"), 1).await;
        }
        self.traffic
            .client_limits
            .check(class, client, Instant::now())
    }

    /// [`rate_limit`](Self::rate_limit) for a request tunnelled from the
    /// server `peer`, counted against that server's larger budget
    /// ([`PEER_LIMIT_FACTOR`]).
    pub async fn rate_limit_peer(
        &self,
        class: RateClass,
        peer: PeerId,
    ) -> std::result::Result<(), std::time::Duration> {
        if self.config.postgres.is_some() {
            return self
                .shared_limit(class, &format!("peer/{peer}"), PEER_LIMIT_FACTOR)
                .await;
        }
        self.traffic.peer_limits.check(class, peer, Instant::now())
    }

    /// A rate limit kept in the account store: the same budgets as the
    /// in-memory ones, `factor` times one client's. A store that cannot
    /// answer lets the request through (and says so in the log).
    async fn shared_limit(
        &self,
        class: RateClass,
        who: &str,
        factor: u32,
    ) -> std::result::Result<(), std::time::Duration> {
        let (kind, burst, every_secs) = if class == RateClass::Signup {
            ("signup", SIGNUP_BURST, SIGNUP_EVERY_SECS)
        } else {
            ("login", LOGIN_BURST, LOGIN_EVERY_SECS)
        };
        let key = format!("{kind}/{who}");
        let every_ms = every_secs * 1000 / u64::from(factor.max(1));
        match self
            .stores
            .accounts
            .take_token(&key, burst * factor, every_ms, now_ms())
            .await
        {
            Ok(None) => Ok(()),
            Ok(Some(wait_ms)) => Err(std::time::Duration::from_millis(wait_ms)),
            Err(e) => {
                tracing::warn!(
                    "the shared rate limit could not be read (request let through): {e}"
                );
                Ok(())
            }
        }
    }

    /// Everything `/metrics` reports, as Prometheus text.
    pub async fn render_metrics(&self) -> Result<String> {
        use std::fmt::Write as _;
        let mut out = String::new();
        self.traffic.metrics.render(&mut out);
        let usage = self.stores.accounts.usage().await?;
        let used: u64 = usage.iter().map(|(_, used, _)| used).sum();
        let quota: u64 = usage.iter().map(|(_, _, quota)| quota).sum();
        let open = self
            .stores
            .accounts
            .open_uploads(self.lease_start())
            .await?;
        let gauges = [
            (
                "peergos_users",
                "Accounts on this server.",
                usage.len() as f64,
            ),
            (
                "peergos_used_bytes",
                "Bytes the accounts use, from their trees.",
                used as f64,
            ),
            (
                "peergos_quota_bytes",
                "The accounts' quotas, summed.",
                quota as f64,
            ),
            (
                "peergos_open_transactions",
                "Upload transactions with blocks, not yet closed, put to within the upload lease.",
                open as f64,
            ),
        ];
        write_gauges(&mut out, &gauges);
        if let Some(mirror) = self.mirror_status() {
            let gauges = [
                (
                    "peergos_pki_mirror_sequence",
                    "Sequence number of the PKI root this mirror accepted last.",
                    mirror.sequence as f64,
                ),
                (
                    "peergos_pki_mirror_accepted_total",
                    "New PKI roots accepted since start.",
                    mirror.accepted as f64,
                ),
                (
                    "peergos_pki_mirror_rejected",
                    "1 if the PKI node's latest root was refused as a rewrite of history.",
                    f64::from(u8::from(mirror.rejected.is_some())),
                ),
            ];
            write_gauges(&mut out, &gauges);
        }
        let runs = self
            .upkeep
            .gc_runs
            .load(std::sync::atomic::Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP peergos_gc_runs_total Garbage collections finished.\n# TYPE peergos_gc_runs_total counter\npeergos_gc_runs_total {runs}"
        );
        if let Some(last) = self.last_gc() {
            let gauges = [
                (
                    "peergos_gc_last_deleted_blocks",
                    "Blocks the last collection deleted.",
                    last.deleted as f64,
                ),
                (
                    "peergos_gc_last_freed_bytes",
                    "Bytes the last collection freed.",
                    last.freed_bytes as f64,
                ),
                (
                    "peergos_gc_last_reachable_blocks",
                    "Blocks reachable at the last collection.",
                    last.reachable as f64,
                ),
                (
                    "peergos_gc_last_stored_blocks",
                    "Blocks stored after the last collection.",
                    (last.stored - last.deleted) as f64,
                ),
                (
                    "peergos_gc_last_duration_seconds",
                    "How long the last collection took.",
                    last.elapsed_ms as f64 / 1000.0,
                ),
            ];
            write_gauges(&mut out, &gauges);
        }
        if let Some((last, finished)) = self.last_scrub() {
            let gauges = [
                (
                    "peergos_scrub_last_checked_blocks",
                    "Blocks the last scrub re-hashed.",
                    last.checked as f64,
                ),
                (
                    "peergos_scrub_last_corrupt_blocks",
                    "Blocks the last scrub found not matching their hash (alert above 0).",
                    last.corrupt.len() as f64,
                ),
                (
                    "peergos_scrub_last_duration_seconds",
                    "How long the last scrub took.",
                    last.elapsed_ms as f64 / 1000.0,
                ),
                (
                    "peergos_scrub_last_finished_seconds",
                    "When the last scrub finished, in Unix seconds.",
                    finished as f64,
                ),
            ];
            write_gauges(&mut out, &gauges);
        }
        Ok(out)
    }
}

/// Appends gauges in the Prometheus text format.
fn write_gauges(out: &mut String, gauges: &[(&str, &str, f64)]) {
    use std::fmt::Write as _;
    for (name, help, value) in gauges {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
}
