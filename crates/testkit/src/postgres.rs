//! A real PostgreSQL server for tests. `PEERGOS_TEST_POSTGRES` names one
//! (a connection string for a role that may create databases); otherwise,
//! as root on Debian, the distribution's cluster is started
//! (`pg_ctlcluster`) and a test role made. Each call gives a fresh
//! database.

use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The role the tests use on a cluster they start.
const ROLE: &str = "peergos_test";

fn run(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).to_string())
}

/// As the `postgres` user, runs `sql` on the cluster at `port`.
fn psql(port: &str, sql: &str) -> Option<String> {
    run(
        "runuser",
        &[
            "-u", "postgres", "--", "psql", "-p", port, "-qAt", "-c", sql,
        ],
    )
}

/// Starts the first Debian cluster if it is down; its port.
fn debian_cluster() -> Option<String> {
    let listed = run("pg_lsclusters", &["-h"])?;
    let line = listed.lines().next()?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (version, name, port, status) = (
        fields.first()?,
        fields.get(1)?,
        fields.get(2)?,
        fields.get(3)?,
    );
    if *status != "online" {
        run("pg_ctlcluster", &[version, name, "start"])?;
    }
    let exists = psql(
        port,
        &format!("SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}'"),
    )?;
    if exists.trim() != "1" {
        psql(
            port,
            &format!("CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD '{ROLE}'"),
        )?;
    }
    Some(port.to_string())
}

/// A connection string for the admin role, or None (having said SKIPPED).
fn server() -> Option<String> {
    if let Ok(url) = std::env::var("PEERGOS_TEST_POSTGRES") {
        return Some(url);
    }
    match debian_cluster() {
        Some(port) => Some(format!(
            "host=127.0.0.1 port={port} user={ROLE} password={ROLE} dbname=postgres"
        )),
        None => {
            assert!(
                std::env::var_os("PEERGOS_REQUIRE_POSTGRES").is_none(),
                "a Postgres server is required here but none could be started \
                 (install postgresql, run as root, or set PEERGOS_TEST_POSTGRES)"
            );
            eprintln!(
                "SKIPPED: no Postgres server (install postgresql or set PEERGOS_TEST_POSTGRES)"
            );
            None
        }
    }
}

/// A fresh, empty database: its connection string.
pub async fn database() -> Option<String> {
    static SERVER: OnceLock<Option<String>> = OnceLock::new();
    let admin = SERVER.get_or_init(server).clone()?;
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "peergos_test_{}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis()),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .expect("connecting to the test Postgres server");
    tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("creating a test database");
    Some(format!(
        "{} dbname={name}",
        admin.replace("dbname=postgres", "")
    ))
}
