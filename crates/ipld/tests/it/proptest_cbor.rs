//! Property tests for the canonical DAG-CBOR codec.

use peergos_ipld::cbor::{self, key_order, Value};
use peergos_ipld::{Cid, Codec, Error, HashFn};
use proptest::prelude::*;

/// Any value in the DAG-CBOR data model, maps already in canonical order.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(|n| Value::Integer(n.into())),
        any::<i64>().prop_map(|n| Value::Integer(n.into())),
        (0u64..=u64::MAX).prop_map(|n| Value::Integer((-1 - i128::from(n)).try_into().unwrap())),
        proptest::collection::vec(any::<u8>(), 0..80).prop_map(Value::Bytes),
        ".{0,40}".prop_map(Value::Text),
        (
            any::<bool>(),
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(raw, blake3, data)| {
                let codec = if raw { Codec::Raw } else { Codec::DagCbor };
                let hash = if blake3 {
                    HashFn::Blake3
                } else {
                    HashFn::Sha2_256
                };
                let cid = Cid::hash_with(hash, codec, &data);
                let mut bytes = vec![0];
                bytes.extend(cid.to_bytes());
                Value::Tag(42, Box::new(Value::Bytes(bytes)))
            }),
    ];
    leaf.prop_recursive(6, 96, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{0,6}", inner, 0..8).prop_map(|map| {
                let mut entries: Vec<(Value, Value)> =
                    map.into_iter().map(|(k, v)| (Value::Text(k), v)).collect();
                entries.sort_by(|(a, _), (b, _)| match (a, b) {
                    (Value::Text(a), Value::Text(b)) => key_order(a, b),
                    _ => unreachable!(),
                });
                Value::Map(entries)
            }),
        ]
    })
}

/// Ways to write a value that CBOR allows but DAG-CBOR forbids.
#[derive(Debug, Clone, Copy)]
enum Defect {
    LongHeader,
    Indefinite,
    ReversedKeys,
}

/// A plain CBOR writer that injects one `Defect` at the `target`-th place it
/// applies to (counting in write order), and records whether it did.
struct Writer {
    out: Vec<u8>,
    defect: Defect,
    target: usize,
    seen: usize,
    applied: bool,
}

impl Writer {
    fn hit(&mut self) -> bool {
        let hit = self.seen == self.target;
        self.seen += 1;
        if hit {
            self.applied = true;
        }
        hit
    }

    fn header(&mut self, major: u8, arg: u64) {
        let long = matches!(self.defect, Defect::LongHeader) && arg < u32::MAX as u64 && self.hit();
        let m = major << 5;
        match arg {
            0..=23 if !long => self.out.push(m | arg as u8),
            0..=255 if arg >= 24 || long => {
                if long && arg >= 24 {
                    self.out.push(m | 25);
                    self.out.extend((arg as u16).to_be_bytes());
                } else {
                    self.out.push(m | 24);
                    self.out.push(arg as u8);
                }
            }
            256..=65535 => {
                if long {
                    self.out.push(m | 26);
                    self.out.extend((arg as u32).to_be_bytes());
                } else {
                    self.out.push(m | 25);
                    self.out.extend((arg as u16).to_be_bytes());
                }
            }
            65536..=0xffff_ffff => {
                if long {
                    self.out.push(m | 27);
                    self.out.extend(arg.to_be_bytes());
                } else {
                    self.out.push(m | 26);
                    self.out.extend((arg as u32).to_be_bytes());
                }
            }
            _ => {
                self.out.push(m | 27);
                self.out.extend(arg.to_be_bytes());
            }
        }
    }

    fn indefinite(&mut self) -> bool {
        matches!(self.defect, Defect::Indefinite) && self.hit()
    }

    fn write(&mut self, value: &Value) {
        match value {
            Value::Null => self.out.push(0xf6),
            Value::Bool(b) => self.out.push(if *b { 0xf5 } else { 0xf4 }),
            Value::Integer(n) => {
                let n = i128::from(*n);
                if n >= 0 {
                    self.header(0, n as u64)
                } else {
                    self.header(1, (-1 - n) as u64)
                }
            }
            Value::Bytes(b) => self.string(2, b),
            Value::Text(t) => self.string(3, t.as_bytes()),
            Value::Tag(tag, inner) => {
                self.header(6, *tag);
                self.write(inner);
            }
            Value::Array(items) => {
                if self.indefinite() {
                    self.out.push(0x9f);
                    items.iter().for_each(|i| self.write(i));
                    self.out.push(0xff);
                } else {
                    self.header(4, items.len() as u64);
                    items.iter().for_each(|i| self.write(i));
                }
            }
            Value::Map(entries) => {
                let reverse =
                    matches!(self.defect, Defect::ReversedKeys) && entries.len() >= 2 && self.hit();
                let mut order: Vec<&(Value, Value)> = entries.iter().collect();
                if reverse {
                    order.reverse();
                }
                if self.indefinite() {
                    self.out.push(0xbf);
                    order.iter().for_each(|(k, v)| {
                        self.write(k);
                        self.write(v)
                    });
                    self.out.push(0xff);
                } else {
                    self.header(5, entries.len() as u64);
                    order.iter().for_each(|(k, v)| {
                        self.write(k);
                        self.write(v)
                    });
                }
            }
            other => panic!("not in the data model: {other:?}"),
        }
    }

    fn string(&mut self, major: u8, bytes: &[u8]) {
        if self.indefinite() {
            self.out.push((major << 5) | 31);
            self.header(major, bytes.len() as u64);
            self.out.extend_from_slice(bytes);
            self.out.push(0xff);
        } else {
            self.header(major, bytes.len() as u64);
            self.out.extend_from_slice(bytes);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn values_round_trip_canonically(value in value()) {
        let bytes = cbor::encode_value(&value).unwrap();
        let decoded = cbor::decode_value(&bytes).unwrap();
        prop_assert_eq!(&decoded, &value);
        prop_assert_eq!(cbor::encode_value(&decoded).unwrap(), bytes);
    }

    #[test]
    fn our_plain_writer_agrees_with_the_encoder(value in value()) {
        let mut writer = Writer { out: vec![], defect: Defect::LongHeader, target: usize::MAX, seen: 0, applied: false };
        writer.write(&value);
        prop_assert_eq!(writer.out, cbor::encode_value(&value).unwrap());
    }

    #[test]
    fn non_canonical_encodings_are_rejected(
        value in value(),
        defect in prop_oneof![Just(Defect::LongHeader), Just(Defect::Indefinite), Just(Defect::ReversedKeys)],
        target in 0usize..16,
    ) {
        let mut writer = Writer { out: vec![], defect, target, seen: 0, applied: false };
        writer.write(&value);
        prop_assume!(writer.applied);
        let result = cbor::decode_value(&writer.out);
        // A long header inside a link's bytes makes an invalid CID instead.
        prop_assert!(
            matches!(result, Err(Error::NonCanonical { .. }) | Err(Error::InvalidCid { .. })),
            "{:?} accepted: {:?}", defect, result
        );
    }

    #[test]
    fn every_accepted_mutation_re_encodes_exactly(
        value in value(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = cbor::encode_value(&value).unwrap();
        for (index, byte) in flips {
            let i = index.index(bytes.len());
            bytes[i] = byte;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        if let Ok(decoded) = cbor::decode_value(&bytes) {
            prop_assert_eq!(cbor::encode_value(&decoded).unwrap(), bytes);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(decoded) = cbor::decode_value(&bytes) {
            prop_assert_eq!(cbor::encode_value(&decoded).unwrap(), bytes);
        }
    }

    #[test]
    fn cid_text_and_bytes_round_trip(
        data in proptest::collection::vec(any::<u8>(), 0..100),
        raw in any::<bool>(),
        blake3 in any::<bool>(),
    ) {
        let codec = if raw { Codec::Raw } else { Codec::DagCbor };
        let hash = if blake3 { HashFn::Blake3 } else { HashFn::Sha2_256 };
        let cid = Cid::hash_with(hash, codec, &data);
        prop_assert_eq!(cid.to_string().parse::<Cid>().unwrap(), cid);
        prop_assert_eq!(Cid::from_bytes(&cid.to_bytes()).unwrap(), cid);
        prop_assert_eq!(cid.hash_fn(), Some(hash));
        cid.verify(&data).unwrap();
    }

    #[test]
    fn a_cid_verifies_only_its_own_content_under_its_own_hash(
        data in proptest::collection::vec(any::<u8>(), 0..100),
        flip in any::<prop::sample::Index>(),
    ) {
        let sha = Cid::hash_with(HashFn::Sha2_256, Codec::Raw, &data);
        let blake = Cid::hash_with(HashFn::Blake3, Codec::Raw, &data);
        prop_assert_ne!(sha, blake);
        sha.verify(&data).unwrap();
        blake.verify(&data).unwrap();
        // The same digest under the other hash's code names other content.
        let swapped = Cid::from_digest(HashFn::Sha2_256, Codec::Raw, blake.digest().try_into().unwrap());
        prop_assert!(swapped.verify(&data).is_err());
        if !data.is_empty() {
            let mut changed = data.clone();
            changed[flip.index(data.len())] ^= 1;
            prop_assert!(sha.verify(&changed).is_err());
            prop_assert!(blake.verify(&changed).is_err());
        }
    }

    #[test]
    fn a_streamed_head_matches_the_encoder(
        n in any::<u64>(),
        len in prop_oneof![0usize..30, 250usize..260, 65_530usize..65_540],
    ) {
        let mut int = Vec::new();
        cbor::head(&mut int, 0, n);
        prop_assert_eq!(int, cbor::encode_value(&Value::Integer(n.into())).unwrap());
        let mut bytes = Vec::new();
        cbor::head(&mut bytes, 2, len as u64);
        bytes.resize(bytes.len() + len, 7);
        prop_assert_eq!(bytes, cbor::encode_value(&Value::Bytes(vec![7; len])).unwrap());
        let mut nulls = Vec::new();
        cbor::head(&mut nulls, 4, len as u64);
        nulls.resize(nulls.len() + len, 0xf6);
        prop_assert_eq!(nulls, cbor::encode_value(&Value::Array(vec![Value::Null; len])).unwrap());
    }
}

/// The extension rule: a newer writer's structure (the old one plus fields
/// the old one does not know, at any depth) decodes in an older reader to
/// exactly what the older writer would have written; the strict decoder
/// refuses it; and a known field in a form the reader would not write is
/// refused by both.
mod extensible {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Inner {
        n: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        opt: Option<String>,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Old {
        name: String,
        inner: Inner,
        list: Vec<Inner>,
    }

    fn inner() -> impl Strategy<Value = Inner> {
        (any::<u64>(), proptest::option::of("[a-z]{0,8}")).prop_map(|(n, opt)| Inner { n, opt })
    }

    fn old() -> impl Strategy<Value = Old> {
        (
            "[a-z]{0,12}",
            inner(),
            proptest::collection::vec(inner(), 0..4),
        )
            .prop_map(|(name, inner, list)| Old { name, inner, list })
    }

    /// Adds `extra` fields (names no `Old` or `Inner` field has) to the
    /// top map and to every map in `list`.
    fn grow(value: &mut Value, extra: &[(String, Value)]) {
        if let Value::Map(entries) = value {
            for (k, v) in extra {
                entries.push((Value::Text(format!("new_{k}")), v.clone()));
            }
            for (k, v) in entries.iter_mut() {
                if k == &Value::Text("list".into()) {
                    if let Value::Array(items) = v {
                        for item in items {
                            grow(item, extra);
                        }
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn newer_fields_are_ignored_and_known_ones_kept(
            old in old(),
            extra in proptest::collection::vec(("[a-z]{1,6}", value()), 1..4),
        ) {
            let mut extra: Vec<_> = extra.into_iter().filter(|(_, v)| *v != Value::Null).collect();
            prop_assume!(!extra.is_empty());
            extra.sort_by(|a, b| a.0.cmp(&b.0));
            extra.dedup_by(|a, b| a.0 == b.0);
            let mut grown = cbor::to_value(&old).unwrap();
            grow(&mut grown, &extra);
            let bytes = cbor::encode_value(&grown).unwrap();
            let read: Old = cbor::from_slice_extensible(&bytes, cbor::Limits::BLOCK).unwrap();
            prop_assert_eq!(&read, &old);
            prop_assert!(cbor::from_slice::<Old>(&bytes).is_err());
            // The plain encoding reads the same both ways.
            let plain = cbor::to_vec(&old).unwrap();
            prop_assert_eq!(cbor::from_slice_extensible::<Old>(&plain, cbor::Limits::BLOCK).unwrap(), old);
        }
    }

    #[test]
    fn a_known_field_in_another_form_is_refused() {
        // `opt` present as null, where the writer leaves it out.
        let mut value = cbor::to_value(&Inner { n: 1, opt: None }).unwrap();
        if let Value::Map(entries) = &mut value {
            entries.push((Value::Text("opt".into()), Value::Null));
        }
        let bytes = cbor::encode_value(&value).unwrap();
        assert!(matches!(
            cbor::from_slice_extensible::<Inner>(&bytes, cbor::Limits::BLOCK),
            Err(Error::NonCanonical { .. })
        ));
        // A missing required field is a type error, as ever.
        let bytes = cbor::encode_value(&Value::Map(vec![])).unwrap();
        assert!(cbor::from_slice_extensible::<Inner>(&bytes, cbor::Limits::BLOCK).is_err());
    }

    #[test]
    fn a_newer_version_says_upgrade() {
        let e = peergos_ipld::check_version("test structure", 3, 2).unwrap_err();
        assert!(e.to_string().contains("newer version of Peergos"), "{e}");
        assert!(matches!(
            e,
            Error::NewerFormat {
                found: 3,
                supported: 2,
                ..
            }
        ));
        assert!(peergos_ipld::check_version("x", 0, 2).is_err());
        assert!(peergos_ipld::check_version("x", 2, 2).is_ok());
    }
}

mod versioned {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct V1 {
        v: u64,
        a: u64,
    }

    #[derive(Serialize)]
    struct V2 {
        v: u64,
        a: u64,
        b: String,
    }

    #[test]
    fn a_newer_version_is_refused_as_newer_not_as_damage() {
        let current = cbor::to_vec(&V1 { v: 1, a: 7 }).unwrap();
        assert_eq!(
            cbor::from_slice_versioned::<V1>(&current, "thing", 1).unwrap(),
            V1 { v: 1, a: 7 }
        );
        let newer = cbor::to_vec(&V2 {
            v: 2,
            a: 7,
            b: "new".into(),
        })
        .unwrap();
        let e = cbor::from_slice_versioned::<V1>(&newer, "thing", 1).unwrap_err();
        assert!(
            matches!(
                e,
                Error::NewerFormat {
                    what: "thing",
                    found: 2,
                    supported: 1
                }
            ),
            "{e}"
        );
        // Same version with a field it does not know: damage, refused.
        let odd = cbor::to_vec(&V2 {
            v: 1,
            a: 7,
            b: "x".into(),
        })
        .unwrap();
        assert!(matches!(
            cbor::from_slice_versioned::<V1>(&odd, "thing", 1),
            Err(Error::NonCanonical { .. })
        ));
        let unversioned = cbor::to_vec(&std::collections::BTreeMap::from([("a", 1u64)])).unwrap();
        assert!(cbor::from_slice_versioned::<V1>(&unversioned, "thing", 1).is_err());
    }
}
