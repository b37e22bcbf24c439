//! Capabilities and their text form.

use peergos_cryptree::{AbsoluteCapability, Error, Label, TEXT_PREFIX};
use peergos_keys::{Bat, PublicKeyHash, SigningKeyPair, SymmetricKey};
use proptest::prelude::*;

fn key_hash() -> PublicKeyHash {
    PublicKeyHash::of(&SigningKeyPair::random().public())
}

fn capability(writable: bool, with_bat: bool) -> AbsoluteCapability {
    AbsoluteCapability {
        owner: key_hash(),
        writer: key_hash(),
        label: Label::random(),
        bat: with_bat.then(Bat::random),
        read: SymmetricKey::random(),
        write: writable.then(SymmetricKey::random),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn text_form_round_trips_exactly(writable in any::<bool>(), with_bat in any::<bool>()) {
        let cap = capability(writable, with_bat);
        let text = cap.to_text().unwrap();
        prop_assert!(text.starts_with(TEXT_PREFIX));
        prop_assert!(text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        let back = AbsoluteCapability::from_text(&text).unwrap();
        prop_assert_eq!(&back, &cap);
        prop_assert_eq!(back.to_text().unwrap(), text);
    }

    #[test]
    fn any_single_character_change_is_caught(index in any::<prop::sample::Index>(), replacement in "[a-z2-7]") {
        let text = capability(true, true).to_text().unwrap();
        let i = TEXT_PREFIX.len() + index.index(text.len() - TEXT_PREFIX.len());
        let mut changed = text.clone();
        changed.replace_range(i..i + 1, &replacement);
        prop_assume!(changed != text);
        prop_assert!(AbsoluteCapability::from_text(&changed).is_err());
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,200}") {
        let _ = AbsoluteCapability::from_text(&text);
        let _ = AbsoluteCapability::from_text(&format!("{TEXT_PREFIX}{text}"));
    }
}

#[test]
fn garbage_gets_clear_errors() {
    let text = capability(false, true).to_text().unwrap();
    let message = |t: &str| AbsoluteCapability::from_text(t).unwrap_err().to_string();
    assert!(message("https://example.org/").contains("does not start with pcap1"));
    assert!(message("pcap2abc").contains("newer version of Peergos"));
    assert!(message("pcap0abc").contains("format version 0"));
    assert!(message(&text.to_uppercase().replacen("PCAP1", "pcap1", 1)).contains("upper-case"));
    assert!(message("pcap1!!!").contains("invalid base32"));
    assert!(message("pcap1").contains("too short"));
    // Truncation is caught by the checksum (or the base32 length).
    let truncated = &text[..text.len() - 8];
    assert!(AbsoluteCapability::from_text(truncated).is_err());
    // A flipped character: the checksum says the link was damaged.
    let mut chars: Vec<char> = text.chars().collect();
    let i = TEXT_PREFIX.len() + 10;
    chars[i] = if chars[i] == 'a' { 'b' } else { 'a' };
    let damaged: String = chars.into_iter().collect();
    assert!(matches!(
        AbsoluteCapability::from_text(&damaged),
        Err(Error::ChecksumMismatch)
    ));
}

#[test]
fn debug_never_prints_keys() {
    let cap = capability(true, true);
    let shown = format!("{cap:?}");
    assert!(shown.contains("writable: true"));
    let text = cap.to_text().unwrap();
    assert!(!shown.contains(&text[TEXT_PREFIX.len()..TEXT_PREFIX.len() + 20]));
}
