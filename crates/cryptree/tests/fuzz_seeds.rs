//! The `capability` fuzz seeds named `valid-*` are real capability links,
//! written by this test when PEERGOS_WRITE_SEEDS names the corpus folder.

use peergos_cryptree::{AbsoluteCapability, Label};
use peergos_keys::{Bat, PublicKeyHash, SigningKeyPair, SymmetricKey};

#[test]
fn valid_seeds_parse() {
    if let Ok(dir) = std::env::var("PEERGOS_WRITE_SEEDS") {
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
            let dir = std::path::Path::new(&dir);
            std::fs::write(dir.join(format!("valid-text-{i}")), cap.to_text().unwrap()).unwrap();
            std::fs::write(
                dir.join(format!("valid-cbor-{i}")),
                peergos_ipld::cbor::to_vec(&cap).unwrap(),
            )
            .unwrap();
        }
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/capability");
    let mut parsed = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("valid-text-") {
            AbsoluteCapability::from_text(&std::fs::read_to_string(&path).unwrap()).unwrap();
            parsed += 1;
        } else if name.starts_with("valid-cbor-") {
            let _: AbsoluteCapability =
                peergos_ipld::cbor::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            parsed += 1;
        }
    }
    assert!(parsed >= 6, "expected 6 valid-* seeds, found {parsed}");
}
