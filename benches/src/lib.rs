//! Helpers shared by the criterion benches in `benches/`.

use std::path::PathBuf;

/// Records a count that is not a time (such as nodes visited) where
/// `cargo xtask bench` picks it up: `target/criterion/counts/<id>.json`.
pub fn record_count(id: &str, value: u64, unit: &str) {
    let dir = target_dir().join("criterion").join("counts");
    let _ = std::fs::create_dir_all(&dir);
    let json = format!("{{\"id\": \"{id}\", \"value\": {value}, \"unit\": \"{unit}\"}}\n");
    let file = dir.join(format!("{}.json", id.replace('/', "_")));
    if let Err(e) = std::fs::write(&file, json) {
        eprintln!("could not record {id}: {}: {e}", file.display());
    }
    eprintln!("count {id}: {value} {unit}");
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}
