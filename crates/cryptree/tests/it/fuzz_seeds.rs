//! The `capability` fuzz seeds named `valid-*` are real capability links,
//! written by this test when PEERGOS_WRITE_SEEDS names the corpus folder.

use peergos_cryptree::{AbsoluteCapability, Label, TEXT_PREFIX};
use peergos_keys::{Bat, PublicKeyHash, SigningKeyPair, SymmetricKey};
use peergos_testkit::fuzz::{seed_dir, valid_seeds};

#[test]
fn valid_seeds_parse() {
    if let Some(dir) = seed_dir() {
        for (i, (writable, bat)) in [(false, false), (true, true), (false, true)]
            .into_iter()
            .enumerate()
        {
            let cap = AbsoluteCapability {
                owner: PublicKeyHash::of(&SigningKeyPair::random().public()),
                writer: PublicKeyHash::of(&SigningKeyPair::random().public()),
                label: Label::random(),
                bat: bat.then(Bat::random),
                read: SymmetricKey::random(),
                write: writable.then(SymmetricKey::random),
            };
            std::fs::write(dir.join(format!("valid-text-{i}")), cap.to_text().unwrap()).unwrap();
            std::fs::write(
                dir.join(format!("valid-cbor-{i}")),
                peergos_ipld::cbor::to_vec(&cap).unwrap(),
            )
            .unwrap();
        }
    }
    let seeds = valid_seeds("capability");
    for seed in &seeds {
        // Text links start with the version prefix; the rest are CBOR.
        if seed.starts_with(TEXT_PREFIX.as_bytes()) {
            AbsoluteCapability::from_text(std::str::from_utf8(seed).unwrap()).unwrap();
        } else {
            let _: AbsoluteCapability = peergos_ipld::cbor::from_slice(seed).unwrap();
        }
    }
    assert!(
        seeds.len() >= 6,
        "expected 6 valid-* seeds, found {}",
        seeds.len()
    );
}
