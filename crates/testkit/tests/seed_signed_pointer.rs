//! Keeps the `signed_pointer` fuzz seeds honest: the committed seeds that
//! are meant to be valid still decode.

use peergos_pointers::SignedPointer;

#[test]
fn valid_seeds_decode() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/signed_pointer");
    let mut valid = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("valid-")
        {
            SignedPointer::from_bytes(&std::fs::read(&path).unwrap()).unwrap();
            valid += 1;
        }
    }
    assert!(valid >= 3, "expected at least 3 valid-* seeds");
}
