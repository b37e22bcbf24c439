//! `cargo xtask`: the project's automation, in Rust so it runs wherever
//! cargo does.
//!
//! ```text
//! cargo xtask ci                      fmt check, layer check, clippy -D warnings, all tests, docs
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
        Some("layers") => layers::check(&root()),
        Some("fuzz") => fuzz(&args[1..]),
        Some("bench") => bench::run(&root(), args.get(1).map(String::as_str)),
        _ => Err(
            "usage: cargo xtask <ci | layers | fuzz <target|all> [--secs N] | bench [name]>".into(),
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
    run(&root, "cargo", &["test", "--workspace", "--locked"], &[])?;
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
