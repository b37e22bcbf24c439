//! Keeps the `signed_pointer` fuzz seeds honest: the committed seeds that
//! are meant to be valid still decode.

use peergos_pointers::SignedPointer;

#[test]
fn valid_seeds_decode() {
    let seeds = peergos_testkit::fuzz::valid_seeds("signed_pointer");
    for seed in &seeds {
        SignedPointer::from_bytes(seed).unwrap();
    }
    assert!(seeds.len() >= 3, "expected at least 3 valid-* seeds");
}
