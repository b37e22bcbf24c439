//! Replays every committed fuzz corpus (`fuzz/corpus/<target>/`) through
//! the same bodies the fuzzers run, so a crash once found stays fixed.

use std::path::Path;

#[test]
fn every_fuzz_corpus_replays_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for (name, body) in peergos_testkit::fuzz::TARGETS {
        let dir = root.join(name);
        let mut inputs = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| body(&data));
            assert!(outcome.is_ok(), "{name} panicked on {}", path.display());
            inputs += 1;
        }
        assert!(
            inputs >= 5,
            "{name}: only {inputs} corpus inputs in {}",
            dir.display()
        );
    }
}

#[test]
fn every_target_has_a_fuzz_binary() {
    let targets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/fuzz_targets");
    for (name, _) in peergos_testkit::fuzz::TARGETS {
        let file = targets.join(format!("{name}.rs"));
        let source =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            source.contains(&format!("peergos_testkit::fuzz::{name}(")),
            "{} does not call peergos_testkit::fuzz::{name}",
            file.display()
        );
    }
}
