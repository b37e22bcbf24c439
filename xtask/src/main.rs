//! `cargo xtask`: the project's automation, in Rust so it runs wherever
//! cargo does.
//!
//! ```text
//! cargo xtask ci                      fmt check, layer check, clippy -D warnings, all tests, docs
//! cargo xtask integration             multi-daemon scenarios (three daemons on 127.0.0.1)
//! cargo xtask layers                  fail if a crate depends on a crate above it
//! cargo xtask fuzz <target|all> [--secs N]   run fuzz targets (installs cargo-fuzz if missing)
//! cargo xtask bench [bench]           run criterion benches, rewrite docs/BENCHMARKS.md
//! ```

mod bench;
mod layers;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("integration") => integration(&root(), &[]),
        Some("layers") => layers::check(&root()),
        Some("fuzz") => fuzz(&args[1..]),
        Some("bench") => bench::run(&root(), args.get(1).map(String::as_str)),
        _ => Err(
            "usage: cargo xtask <ci | integration | layers | fuzz <target|all> [--secs N] | bench [name]>".into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of this crate).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Runs a command in `dir`, failing with its description if it fails.
fn run(dir: &Path, program: &str, args: &[&str], env: &[(&str, &str)]) -> Result {
    let shown = format!("{program} {}", args.join(" "));
    eprintln!("\n==> {shown}");
    let status = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .status()
        .map_err(|e| format!("could not start `{shown}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{shown}` failed ({status})"))
    }
}

fn ci() -> Result {
    let root = root();
    let started = std::time::Instant::now();
    // CI builds everything once from a fresh clone, so incremental caches
    // are never reused there; they only take disk (a few GiB per build).
    // Cargo reads this for every command below; a developer's own
    // `cargo test` keeps its incremental setting.
    if std::env::var_os("CARGO_INCREMENTAL").is_none() {
        std::env::set_var("CARGO_INCREMENTAL", "0");
    }
    run(&root, "cargo", &["fmt", "--all", "--", "--check"], &[])?;
    layers::check(&root)?;
    run(
        &root,
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    let mut require: Vec<(&str, &str)> = Vec::new();
    if test_programs() {
        require.push(("PEERGOS_REQUIRE_FUSE", "1"));
    }
    if s3_server() {
        require.push(("PEERGOS_REQUIRE_S3", "1"));
    }
    if postgres_server() {
        require.push(("PEERGOS_REQUIRE_POSTGRES", "1"));
    }
    run(
        &root,
        "cargo",
        &["test", "--workspace", "--locked"],
        &require,
    )?;
    integration(&root, &require)?;
    run(
        &root,
        "cargo",
        &["doc", "--workspace", "--no-deps", "--locked"],
        &[(
            "RUSTDOCFLAGS",
            "-D warnings -D rustdoc::broken_intra_doc_links",
        )],
    )?;
    eprintln!(
        "\nxtask ci: all checks passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The multi-daemon scenarios: three `peergos-daemon` processes on
/// 127.0.0.1 (A the PKI node, B and C joined through it), and home
/// servers behind NAT routers reaching each other through a relay and by
/// hole punching, driven by `bins/daemon/tests/it/network.rs`; and three
/// replicas of one service on the Postgres and S3 test services
/// (`bins/daemon/tests/it/replicas.rs`), required like the other tests of
/// those services.
fn integration(root: &Path, services: &[(&str, &str)]) -> Result {
    let mut require: Vec<(&str, &str)> = services.to_vec();
    if network_namespaces() {
        require.push(("PEERGOS_REQUIRE_NETNS", "1"));
    }
    run(
        root,
        "cargo",
        &[
            "test",
            "-p",
            "peergos-daemon",
            "--test",
            "it",
            "--locked",
            "--",
            "--ignored",
            "--nocapture",
            "network::",
            "replicas::",
        ],
        &require,
    )
}

/// Installs Debian packages with apt-get (the caller checks for root);
/// says when that fails, and the caller checks for what it needs.
fn apt_install(packages: &[&str]) {
    eprintln!("installing {}", packages.join(" "));
    let updated = Command::new("apt-get").args(["update", "-qq"]).status();
    let installed = Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    if !updated.is_ok_and(|s| s.success()) || !installed.is_ok_and(|s| s.success()) {
        eprintln!("installing {} failed", packages.join(" "));
    }
}

/// Whether the NAT scenarios can build their networks here: root, `ip`,
/// `nft` (Debian's nftables, installed when missing), and namespaces with
/// the links the lab uses. When they can, the scenarios must run and pass.
fn network_namespaces() -> bool {
    eprintln!("\n==> network namespaces for the NAT scenarios");
    if !is_root() {
        eprintln!("NAT scenarios: SKIPPED (not root)");
        return false;
    }
    let missing: Vec<&str> = [("ip", "iproute2"), ("nft", "nftables")]
        .into_iter()
        .filter(|(program, _)| !has_program(program))
        .map(|(_, package)| package)
        .collect();
    if !missing.is_empty() && has_program("apt-get") {
        apt_install(&missing);
    }
    if !has_program("ip") || !has_program("nft") {
        eprintln!("NAT scenarios: SKIPPED (no `ip` or `nft`, and iproute2 or nftables could not be installed)");
        return false;
    }
    let probe = format!("peergos-probe-{}", std::process::id());
    let quiet = |args: &[&str]| {
        Command::new("ip")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    // What the lab builds (peergos_testkit::netns): a namespace, a bridge
    // and a veth pair in it, and a NAT table (the kernel may lack
    // nf_tables, bridges or veth).
    let made = quiet(&["netns", "add", &probe]);
    let usable = made
        && quiet(&["-n", &probe, "link", "add", "br0", "type", "bridge"])
        && quiet(&[
            "-n", &probe, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
        ])
        && quiet(&["netns", "exec", &probe, "nft", "add", "table", "ip", "nat"]);
    if made {
        quiet(&["netns", "del", &probe]);
    }
    if usable {
        eprintln!("NAT scenarios: will run (and must pass)");
        true
    } else {
        eprintln!("NAT scenarios: SKIPPED (this machine does not let us make network namespaces with a bridge, veth pairs and nftables)");
        false
    }
}

/// Debian packages the tests drive: FUSE (mounting), and the programs the
/// mount tests run on a mount.
const TEST_PACKAGES: &[(&str, &str)] = &[
    ("fusermount3", "fuse3"),
    ("rsync", "rsync"),
    ("sqlite3", "sqlite3"),
    ("git", "git"),
    ("python3", "python3"),
];

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

fn has_program(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs what the mount tests need if it is missing (as root, with
/// apt-get), and says whether they can run here. When they can, the tests
/// are told to fail rather than skip if FUSE is unusable.
fn test_programs() -> bool {
    eprintln!("\n==> programs the tests need");
    let missing: Vec<&str> = TEST_PACKAGES
        .iter()
        .filter(|(program, _)| !has_program(program))
        .map(|(_, package)| *package)
        .collect();
    if !missing.is_empty() {
        let root = is_root();
        if root && has_program("apt-get") {
            apt_install(&missing);
        } else {
            eprintln!(
                "missing {} and cannot install them (not root, or no apt-get)",
                missing.join(" ")
            );
        }
    }
    let still: Vec<&str> = TEST_PACKAGES
        .iter()
        .filter(|(program, _)| !has_program(program))
        .map(|(program, _)| *program)
        .collect();
    let device = Path::new("/dev/fuse").exists();
    if device && still.is_empty() {
        eprintln!("FUSE mount tests: will run (and must pass)");
        true
    } else {
        let why = if device {
            format!("missing {}", still.join(", "))
        } else {
            "/dev/fuse does not exist".to_string()
        };
        eprintln!("FUSE mount tests: SKIPPED ({why}); every other test runs");
        false
    }
}

/// Makes sure `moto_server` (an S3-compatible server, from PyPI) is there
/// for the S3 tests, installing it with pip if needed; says whether those
/// tests can run (and so must pass).
fn s3_server() -> bool {
    eprintln!("\n==> an S3 server for the S3 tests");
    let moto = || {
        has_program("moto_server")
            || Command::new("python3")
                .args(["-c", "import moto.server"])
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    };
    if !moto() && has_program("python3") {
        eprintln!("installing moto[server] with pip");
        let installed = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "moto[server]"])
            .status();
        if !installed.is_ok_and(|s| s.success()) {
            eprintln!("pip install moto[server] failed");
        }
    }
    if moto() {
        eprintln!("S3 tests: will run against moto_server (and must pass)");
        true
    } else {
        eprintln!("S3 tests: SKIPPED (moto_server missing and could not be installed)");
        false
    }
}

/// Makes sure a PostgreSQL server is installed for the Postgres tests (as
/// root, with apt-get); the tests start its cluster themselves. Says
/// whether they can run (and so must pass). `PEERGOS_TEST_POSTGRES` (a
/// connection string) names a server to use instead.
fn postgres_server() -> bool {
    eprintln!("\n==> a Postgres server for the Postgres tests");
    if std::env::var_os("PEERGOS_TEST_POSTGRES").is_some() {
        eprintln!("Postgres tests: will run against PEERGOS_TEST_POSTGRES");
        return true;
    }
    let installed = || {
        Command::new("sh")
            .args(["-c", "ls /usr/lib/postgresql/*/bin/postgres"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let root = is_root();
    if !installed() && root && has_program("apt-get") {
        apt_install(&["postgresql"]);
    }
    if installed() && root && has_program("pg_ctlcluster") && has_program("runuser") {
        eprintln!("Postgres tests: will run on the local cluster (and must pass)");
        true
    } else {
        eprintln!("Postgres tests: SKIPPED (no postgresql server, or not root; set PEERGOS_TEST_POSTGRES)");
        false
    }
}

/// The fuzz targets, read from `fuzz/fuzz_targets/`.
fn fuzz_targets(root: &Path) -> Result<Vec<String>> {
    let dir = root.join("fuzz/fuzz_targets");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            (path.extension()? == "rs").then(|| path.file_stem()?.to_str().map(String::from))?
        })
        .collect();
    names.sort();
    Ok(names)
}

fn fuzz(args: &[String]) -> Result {
    let root = root();
    let mut target = None;
    let mut secs = 60u64;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--secs" => {
                secs = rest
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or("--secs takes a whole number of seconds")?
            }
            name => target = Some(name.to_string()),
        }
    }
    let all = fuzz_targets(&root)?;
    let chosen = match target.as_deref() {
        None => return Err(format!("name a target or `all`: {}", all.join(", "))),
        Some("all") => all,
        Some(name) if all.iter().any(|t| t == name) => vec![name.to_string()],
        Some(name) => {
            return Err(format!(
                "no fuzz target {name}; targets: {}",
                all.join(", ")
            ))
        }
    };
    let installed = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !installed {
        run(&root, "cargo", &["install", "cargo-fuzz", "--locked"], &[])?;
    }
    let fuzz_dir = root.join("fuzz");
    let max_time = format!("-max_total_time={secs}");
    for name in &chosen {
        // libFuzzer's sanitizer flags need nightly features; RUSTC_BOOTSTRAP
        // lets the stable toolchain accept them.
        run(
            &fuzz_dir,
            "cargo",
            &["fuzz", "run", name, "--", &max_time],
            &[("RUSTC_BOOTSTRAP", "1")],
        )?;
    }
    eprintln!(
        "\nxtask fuzz: {} target(s) ran {secs} s each without a crash; new inputs are in fuzz/corpus/",
        chosen.len()
    );
    Ok(())
}
