//! The layer check: a library crate may depend only on crates below it,
//! and never along a forbidden edge (not even for its tests).

use std::path::Path;
use std::process::Command;

use crate::Result;

/// Library crates, lowest first (planned ones included so the order is
/// fixed before they exist).
const LAYERS: &[&str] = &[
    "peergos-ipld",
    "peergos-keys",
    "peergos-p2p",
    "peergos-blockstore",
    "peergos-pointers",
    "peergos-champ",
    "peergos-cryptree",
    "peergos-pki",
    "peergos-social",
    "peergos-api",
    "peergos-core",
    "peergos-vfs",
    "peergos-server",
];

/// Edges that must never exist, of any kind (normal, build or dev), with
/// why: what a client or a library an app embeds compiles must not pull
/// in the server (axum, libp2p, sqlite, Postgres, S3).
const FORBIDDEN: &[(&str, &str, &str)] = &[
    ("peergos-core", "peergos-server", "the client apps embed"),
    (
        "peergos-vfs",
        "peergos-server",
        "the filesystem layer of every front end",
    ),
    (
        "peergos-cryptree",
        "peergos-server",
        "the encrypted filesystem",
    ),
    ("peergos-social", "peergos-server", "the social structures"),
    (
        "peergos-api",
        "peergos-server",
        "the wire API clients share",
    ),
    (
        "peergos-core",
        "peergos-testkit",
        "the client's tests need no server",
    ),
];

/// Crates allowed to depend on any library crate; nothing may depend on
/// them except as a dev-dependency (testkit) or at all (binaries, tools).
const TOP: &[&str] = &[
    "peergos-testkit",
    "peergos-benches",
    "peergos-daemon",
    "peergos-shell",
    "peergos-fuse",
    "xtask",
];

pub fn check(root: &Path) -> Result {
    eprintln!("\n==> layer check");
    let output = Command::new("cargo")
        .args(["metadata", "--format-version", "1", "--no-deps", "--locked"])
        .current_dir(root)
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|e| format!("cargo metadata: {e}"))?;
    let packages = metadata["packages"]
        .as_array()
        .ok_or("cargo metadata has no packages")?;
    let problems = problems(&metadata);
    if problems.is_empty() {
        eprintln!(
            "layers: {} packages, every edge points down",
            packages.len()
        );
        Ok(())
    } else {
        Err(format!("layer check failed:\n  {}", problems.join("\n  ")))
    }
}

/// Every edge in `metadata` (cargo metadata JSON) that breaks the layering.
fn problems(metadata: &serde_json::Value) -> Vec<String> {
    let mut problems = Vec::new();

    for package in metadata["packages"].as_array().into_iter().flatten() {
        let name = package["name"].as_str().unwrap_or_default();
        let level = LAYERS.iter().position(|l| *l == name);
        if level.is_none() && !TOP.contains(&name) {
            problems.push(format!(
                "{name} is in no layer: add it to xtask/src/layers.rs and docs/ARCHITECTURE.md"
            ));
            continue;
        }
        for dep in package["dependencies"].as_array().into_iter().flatten() {
            let dep_name = dep["name"].as_str().unwrap_or_default();
            let dev = dep["kind"].as_str() == Some("dev");
            if let Some((_, _, why)) = FORBIDDEN
                .iter()
                .find(|(from, to, _)| *from == name && *to == dep_name)
            {
                problems.push(format!(
                    "{name} depends on {dep_name}: forbidden ({name} is {why})"
                ));
            }
            if TOP.contains(&dep_name) && !(dev && dep_name == "peergos-testkit") {
                problems.push(format!(
                    "{name} depends on {dep_name}, which sits at the top"
                ));
            }
            if let (Some(level), Some(dep_level)) =
                (level, LAYERS.iter().position(|l| *l == dep_name))
            {
                // A test of a lower crate may use a higher one through
                // testkit only; a dev-dependency on a sibling library
                // (the server's tests driving the real client) points
                // down as long as the layers order them.
                if dep_level >= level {
                    problems.push(format!(
                        "{name} (layer {level}) depends on {dep_name} (layer {dep_level}): edges must point down"
                    ));
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn package(name: &str, deps: &[(&str, Option<&str>)]) -> serde_json::Value {
        let deps: Vec<_> = deps
            .iter()
            .map(|(n, kind)| json!({"name": n, "kind": kind}))
            .collect();
        json!({"name": name, "dependencies": deps})
    }

    #[test]
    fn downward_edges_pass() {
        let metadata = json!({"packages": [
            package("peergos-ipld", &[("serde", None)]),
            package("peergos-keys", &[("peergos-ipld", None)]),
            package("peergos-blockstore", &[("peergos-keys", None), ("peergos-testkit", Some("dev"))]),
            package("peergos-testkit", &[("peergos-blockstore", None)]),
        ]});
        assert_eq!(problems(&metadata), Vec::<String>::new());
    }

    #[test]
    fn forbidden_edges_fail_even_for_tests() {
        let metadata = json!({"packages": [
            package("peergos-core", &[("peergos-server", Some("dev"))]),
            package("peergos-server", &[("peergos-core", Some("dev"))]),
        ]});
        let found = problems(&metadata);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(found[0].contains("forbidden"), "{found:#?}");
        assert!(found[1].contains("edges must point down"), "{found:#?}");
    }

    #[test]
    fn upward_sideways_and_unknown_edges_fail() {
        let metadata = json!({"packages": [
            package("peergos-keys", &[("peergos-blockstore", None), ("peergos-keys", None)]),
            package("peergos-ipld", &[("peergos-testkit", None)]),
            package("peergos-stray", &[]),
        ]});
        let found = problems(&metadata);
        assert_eq!(found.len(), 4, "{found:#?}");
        assert!(found[0].contains("peergos-keys (layer 1) depends on peergos-blockstore"));
        assert!(found[2].contains("sits at the top"));
        assert!(found[3].contains("peergos-stray is in no layer"));
    }
}
