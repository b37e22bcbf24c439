//! Counters for `/metrics`, in the Prometheus text format (version 0.0.4),
//! and per-client rate limits for the expensive routes.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use peergos_api::endpoint::RateClass;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 9] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];

#[derive(Default)]
struct RouteStats {
    /// Requests by status code.
    statuses: HashMap<u16, u64>,
    /// Requests at or under each bucket's bound.
    buckets: [u64; BUCKETS.len()],
    count: u64,
    seconds: f64,
    bytes_in: u64,
    bytes_out: u64,
}

/// What the server has served since it started.
#[derive(Default)]
pub struct Metrics {
    routes: Mutex<HashMap<String, RouteStats>>,
    limited: Mutex<HashMap<String, u64>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Escapes a label value.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Counts one answered request of `route` (the route's pattern, such
    /// as `/v1/pointers/{owner}/{writer}`, never a concrete path).
    pub fn record(&self, route: &str, status: u16, took: Duration, bytes_in: u64, bytes_out: u64) {
        let mut routes = lock(&self.routes);
        let stats = routes.entry(route.to_string()).or_default();
        *stats.statuses.entry(status).or_default() += 1;
        let seconds = took.as_secs_f64();
        for (bound, count) in BUCKETS.iter().zip(stats.buckets.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        stats.count += 1;
        stats.seconds += seconds;
        stats.bytes_in += bytes_in;
        stats.bytes_out += bytes_out;
    }

    /// Counts one request of `route` refused by a rate limit.
    pub fn record_limited(&self, route: &str) {
        *lock(&self.limited).entry(route.to_string()).or_default() += 1;
    }

    /// The request counters as Prometheus text.
    pub fn render(&self, out: &mut String) {
        let routes = lock(&self.routes);
        let mut names: Vec<&String> = routes.keys().collect();
        names.sort();
        let _ = writeln!(
            out,
            "# HELP peergos_http_requests_total HTTP requests answered, by route and status."
        );
        let _ = writeln!(out, "# TYPE peergos_http_requests_total counter");
        for name in &names {
            let mut statuses: Vec<(&u16, &u64)> = routes[*name].statuses.iter().collect();
            statuses.sort();
            for (status, count) in statuses {
                let _ = writeln!(
                    out,
                    "peergos_http_requests_total{{route=\"{}\",status=\"{status}\"}} {count}",
                    label(name)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP peergos_http_request_duration_seconds Time to answer, by route."
        );
        let _ = writeln!(
            out,
            "# TYPE peergos_http_request_duration_seconds histogram"
        );
        for name in &names {
            let stats = &routes[*name];
            let route = label(name);
            for (bound, count) in BUCKETS.iter().zip(stats.buckets.iter()) {
                let _ = writeln!(
                    out,
                    "peergos_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "peergos_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                stats.count
            );
            let _ = writeln!(
                out,
                "peergos_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                stats.seconds
            );
            let _ = writeln!(
                out,
                "peergos_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                stats.count
            );
        }
        for (metric, help, pick) in [
            (
                "peergos_http_received_bytes_total",
                "Request body bytes received, by route.",
                (|s: &RouteStats| s.bytes_in) as fn(&RouteStats) -> u64,
            ),
            (
                "peergos_http_sent_bytes_total",
                "Response body bytes sent, by route.",
                |s: &RouteStats| s.bytes_out,
            ),
        ] {
            let _ = writeln!(out, "# HELP {metric} {help}");
            let _ = writeln!(out, "# TYPE {metric} counter");
            for name in &names {
                let _ = writeln!(
                    out,
                    "{metric}{{route=\"{}\"}} {}",
                    label(name),
                    pick(&routes[*name])
                );
            }
        }
        let limited = lock(&self.limited);
        let mut limited: Vec<(&String, &u64)> = limited.iter().collect();
        limited.sort();
        let _ = writeln!(
            out,
            "# HELP peergos_rate_limited_total Requests refused by a rate limit, by route."
        );
        let _ = writeln!(out, "# TYPE peergos_rate_limited_total counter");
        for (route, count) in limited {
            let _ = writeln!(
                out,
                "peergos_rate_limited_total{{route=\"{}\"}} {count}",
                label(route)
            );
        }
    }
}

/// A token bucket per client: `burst` requests at once, then one every
/// `every`. A client is an address (`IpAddr`, the default) or, for
/// requests tunnelled from another server, that server's peer id.
pub struct RateLimit<K = IpAddr> {
    burst: f64,
    every: Duration,
    clients: Mutex<HashMap<K, (f64, Instant)>>,
}

/// Clients remembered at most; the fullest buckets are forgotten first.
const MAX_CLIENTS: usize = 100_000;

impl<K: std::hash::Hash + Eq + Copy> RateLimit<K> {
    /// A limit of `burst` requests, refilled at one per `every`.
    pub fn new(burst: u32, every: Duration) -> Self {
        RateLimit {
            burst: f64::from(burst.max(1)),
            every: every.max(Duration::from_millis(1)),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `client`'s bucket; Err(wait) says how long
    /// until the next one is allowed.
    pub fn check(&self, client: K, now: Instant) -> Result<(), Duration> {
        let mut clients = lock(&self.clients);
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&client) {
            // Buckets that refilled completely say nothing; drop them.
            let (burst, every) = (self.burst, self.every);
            clients.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() / every.as_secs_f64() < burst
            });
        }
        let (tokens, at) = clients.entry(client).or_insert((self.burst, now));
        let refill = now.duration_since(*at).as_secs_f64() / self.every.as_secs_f64();
        *tokens = (*tokens + refill).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(self.every.mul_f64(1.0 - *tokens))
        }
    }
}

/// The limits of the limited routes for one kind of client: signup, and
/// the login routes.
pub struct RouteLimits<K = IpAddr> {
    signup: RateLimit<K>,
    login: RateLimit<K>,
}

impl<K: std::hash::Hash + Eq + Copy> RouteLimits<K> {
    /// Signup at `signup`, the login routes at `login`.
    pub fn new(signup: RateLimit<K>, login: RateLimit<K>) -> Self {
        RouteLimits { signup, login }
    }

    /// Takes one request of rate class `class` from `client`'s bucket
    /// for it.
    pub fn check(&self, class: RateClass, client: K, now: Instant) -> Result<(), Duration> {
        let limit = if class == RateClass::Signup {
            &self.signup
        } else {
            &self.login
        };
        limit.check(client, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_per_interval_per_client() {
        let limit = RateLimit::new(3, Duration::from_secs(10));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limit.check(a, t0).is_ok());
        }
        let wait = limit.check(a, t0).unwrap_err();
        assert!(wait <= Duration::from_secs(10) && wait > Duration::from_secs(9));
        assert!(
            limit.check(b, t0).is_ok(),
            "another client has its own bucket"
        );
        assert!(limit.check(a, t0 + Duration::from_secs(5)).is_err());
        assert!(limit.check(a, t0 + Duration::from_secs(11)).is_ok());
        assert!(limit.check(a, t0 + Duration::from_secs(11)).is_err());
        // A long pause refills only up to the burst.
        let later = t0 + Duration::from_secs(1000);
        for _ in 0..3 {
            assert!(limit.check(a, later).is_ok());
        }
        assert!(limit.check(a, later).is_err());
    }

    #[test]
    fn metrics_render_as_prometheus_text() {
        let m = Metrics::default();
        m.record("/v1/blocks/put", 200, Duration::from_millis(3), 100, 20);
        m.record("/v1/blocks/put", 413, Duration::from_millis(700), 5, 50);
        m.record_limited("/v1/signup");
        let mut out = String::new();
        m.render(&mut out);
        for line in [
            "peergos_http_requests_total{route=\"/v1/blocks/put\",status=\"200\"} 1",
            "peergos_http_requests_total{route=\"/v1/blocks/put\",status=\"413\"} 1",
            "peergos_http_request_duration_seconds_bucket{route=\"/v1/blocks/put\",le=\"0.005\"} 1",
            "peergos_http_request_duration_seconds_bucket{route=\"/v1/blocks/put\",le=\"1\"} 2",
            "peergos_http_request_duration_seconds_count{route=\"/v1/blocks/put\"} 2",
            "peergos_http_received_bytes_total{route=\"/v1/blocks/put\"} 105",
            "peergos_http_sent_bytes_total{route=\"/v1/blocks/put\"} 70",
            "peergos_rate_limited_total{route=\"/v1/signup\"} 1",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line} in\n{out}");
        }
        assert_eq!(label("a\"b\\c"), "a\\\"b\\\\c");
    }
}
