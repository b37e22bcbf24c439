//! Canonical DAG-CBOR.
//!
//! The encoder turns any `serde::Serialize` value into the one canonical byte
//! form: map keys are text, sorted by length and then bytewise, with no
//! duplicates; lengths are definite; integers take their shortest form; the
//! only tag is 42 (a link, see [`Cid`](crate::Cid)); there are no floats.
//!
//! The decoder is strict: it accepts an input only if it is one complete
//! value, no larger than [`Limits::max_size`], no deeper than
//! [`Limits::max_depth`], inside the DAG-CBOR data model, and byte-for-byte
//! equal to the canonical encoding of what it decoded. So for every accepted
//! input `x`, `encode(decode(x)) == x`.
//!
//! Byte strings must be declared with `serde_bytes` (or [`serde_bytes::ByteBuf`])
//! on the Rust side; a plain `Vec<u8>` is a list of integers in serde.

use std::cmp::Ordering;

pub use ciborium::value::Value;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::cid::{link_from_tagged_bytes, LINK_TAG};
use crate::{Error, Result, MAX_BLOCK_SIZE};

/// Bounds on what [`from_slice_with`] and [`decode_value_with`] accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest input, in bytes.
    pub max_size: usize,
    /// The deepest nesting of lists, maps and tags.
    pub max_depth: usize,
}

impl Limits {
    /// The limits for a single block: [`MAX_BLOCK_SIZE`] bytes, 64 levels.
    pub const BLOCK: Limits = Limits {
        max_size: MAX_BLOCK_SIZE,
        max_depth: 64,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::BLOCK
    }
}

/// Appends a CBOR item head (major type `major`, 0..=7, with argument
/// `value`) in its shortest, canonical form: for a writer that streams a
/// value's large byte strings instead of encoding them into one buffer.
pub fn head(out: &mut Vec<u8>, major: u8, value: u64) {
    let major = major << 5;
    match value {
        0..=23 => out.push(major | value as u8),
        24..=0xff => out.extend_from_slice(&[major | 24, value as u8]),
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend_from_slice(&(value as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(major | 26);
            out.extend_from_slice(&(value as u32).to_be_bytes());
        }
        _ => {
            out.push(major | 27);
            out.extend_from_slice(&value.to_be_bytes());
        }
    }
}

/// Encodes `value` as canonical DAG-CBOR.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    // `to_value` already sorted and checked it.
    write(&to_value(value)?)
}

/// Converts `value` to a canonical [`Value`] (maps sorted, links checked).
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value> {
    let mut value = Value::serialized(value).map_err(|e| Error::Type {
        reason: e.to_string(),
    })?;
    canonicalize(&mut value, Limits::BLOCK.max_depth)?;
    Ok(value)
}

/// Decodes canonical DAG-CBOR of at most one block into a `T`.
///
/// Strict for types too: the decoded `T` must encode back to exactly
/// `bytes`, so unknown fields, missing optional fields and any other input
/// that serde would accept loosely are refused. One meaning, one encoding.
pub fn from_slice<T: DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<T> {
    from_slice_with(bytes, Limits::BLOCK)
}

/// Decodes canonical DAG-CBOR into a `T` under the given limits, with the
/// same round-trip check as [`from_slice`].
pub fn from_slice_with<T: DeserializeOwned + Serialize>(bytes: &[u8], limits: Limits) -> Result<T> {
    typed_exactly(decode_value_with(bytes, limits)?, bytes)
}

/// `value` (decoded from `bytes`) as a `T` that encodes back to exactly
/// `bytes`: no unknown or missing fields.
fn typed_exactly<T: DeserializeOwned + Serialize>(value: Value, bytes: &[u8]) -> Result<T> {
    let typed: T = from_value(value)?;
    if to_vec(&typed)? != bytes {
        return Err(Error::NonCanonical {
            reason: "fields that do not round-trip (unknown or missing fields)",
        });
    }
    Ok(typed)
}

/// Decodes a versioned structure: reads its `"v"` field first and checks
/// it against `supported` ([`crate::check_version`]: a newer version is
/// [`Error::NewerFormat`], whatever else the structure holds), then
/// decodes strictly. `what` names the structure in errors.
pub fn from_slice_versioned<T: DeserializeOwned + Serialize>(
    bytes: &[u8],
    what: &'static str,
    supported: u64,
) -> Result<T> {
    let value = decode_value(bytes)?;
    let version = match &value {
        Value::Map(entries) => entries.iter().find_map(|(k, v)| match (k, v) {
            (Value::Text(k), Value::Integer(n)) if k == "v" => u64::try_from(*n).ok(),
            _ => None,
        }),
        _ => None,
    }
    .ok_or_else(|| Error::MalformedCbor {
        reason: format!("a {what} without a format version"),
    })?;
    crate::check_version(what, version, supported)?;
    typed_exactly(value, bytes)
}

/// Decodes canonical DAG-CBOR into a `T` under the extension rule
/// (PROTOCOL.md, "Formats that grow"): fields `T` does not know are
/// ignored, anywhere in the value, but every field it knows must be
/// exactly as `T` would encode it (so a known field still has one
/// encoding: an optional field is present or absent as `T` writes it),
/// and an unknown field is never `null` (added fields are left out when
/// empty).
/// The input itself must be canonical, as for [`from_slice`].
pub fn from_slice_extensible<T: DeserializeOwned + Serialize>(
    bytes: &[u8],
    limits: Limits,
) -> Result<T> {
    let value = decode_value_with(bytes, limits)?;
    let decoded: T = value.deserialized().map_err(|e| Error::Type {
        reason: e.to_string(),
    })?;
    if !covers(&value, &to_value(&decoded)?) {
        return Err(Error::NonCanonical {
            reason: "known fields that do not round-trip (missing or in another form)",
        });
    }
    Ok(decoded)
}

/// Whether `input` holds everything `known` (its re-encoding) holds,
/// with equal values: maps may have more keys, nothing else may differ.
/// A key `known` lacks must not be `null`: an added field is left out when
/// it has no value, so a `null` there is a known optional field in a form
/// its writer never uses.
fn covers(input: &Value, known: &Value) -> bool {
    match (input, known) {
        (Value::Map(input), Value::Map(known)) => {
            known.iter().all(|(key, value)| {
                input
                    .iter()
                    .find(|(k, _)| k == key)
                    .is_some_and(|(_, v)| covers(v, value))
            }) && input
                .iter()
                .all(|(k, v)| *v != Value::Null || known.iter().any(|(key, _)| key == k))
        }
        (Value::Array(input), Value::Array(known)) => {
            input.len() == known.len() && input.iter().zip(known).all(|(i, k)| covers(i, k))
        }
        (Value::Tag(a, input), Value::Tag(b, known)) => a == b && covers(input, known),
        _ => input == known,
    }
}

/// Converts a decoded [`Value`] into a `T`.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T> {
    value.deserialized().map_err(|e| Error::Type {
        reason: e.to_string(),
    })
}

/// Appends every link (tag 42) inside `value` to `out`, in document order:
/// the edges of the block graph, for walks such as garbage collection.
pub fn links(value: &Value, out: &mut Vec<crate::Cid>) -> Result<()> {
    match value {
        Value::Tag(LINK_TAG, inner) => match inner.as_ref() {
            Value::Bytes(bytes) => out.push(link_from_tagged_bytes(bytes)?),
            _ => {
                return Err(Error::MalformedCbor {
                    reason: "tag 42 must wrap a byte string".into(),
                })
            }
        },
        Value::Tag(_, inner) => links(inner, out)?,
        Value::Array(items) => {
            for item in items {
                links(item, out)?;
            }
        }
        Value::Map(entries) => {
            for (key, item) in entries {
                links(key, out)?;
                links(item, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Encodes a [`Value`] canonically, sorting its maps first.
///
/// Fails if the value is outside the DAG-CBOR data model (floats, non-text
/// map keys, duplicate keys, tags other than 42, malformed links).
pub fn encode_value(value: &Value) -> Result<Vec<u8>> {
    let mut owned = value.clone();
    canonicalize(&mut owned, Limits::BLOCK.max_depth)?;
    write(&owned)
}

/// Decodes one canonical DAG-CBOR value of at most one block.
pub fn decode_value(bytes: &[u8]) -> Result<Value> {
    decode_value_with(bytes, Limits::BLOCK)
}

/// Decodes one canonical DAG-CBOR value under the given limits.
pub fn decode_value_with(bytes: &[u8], limits: Limits) -> Result<Value> {
    if bytes.len() > limits.max_size {
        return Err(Error::BlockTooLarge {
            size: bytes.len(),
            max: limits.max_size,
        });
    }
    let mut reader = bytes;
    let value: Value =
        ciborium::de::from_reader_with_recursion_limit(&mut reader, limits.max_depth).map_err(
            |e| match e {
                ciborium::de::Error::RecursionLimitExceeded => Error::TooDeep {
                    max: limits.max_depth,
                },
                ciborium::de::Error::Io(_) => Error::MalformedCbor {
                    reason: "input ends in the middle of a value".into(),
                },
                ciborium::de::Error::Syntax(offset) => Error::MalformedCbor {
                    reason: format!("syntax error at byte {offset}"),
                },
                ciborium::de::Error::Semantic(offset, msg) => Error::MalformedCbor {
                    reason: match offset {
                        Some(offset) => format!("{msg} at byte {offset}"),
                        None => msg,
                    },
                },
            },
        )?;
    if !reader.is_empty() {
        return Err(Error::NonCanonical {
            reason: "trailing bytes after the value",
        });
    }
    check_canonical(&value, limits.max_depth)?;
    if write(&value)? != bytes {
        return Err(Error::NonCanonical {
            reason: "not the shortest, definite-length encoding",
        });
    }
    Ok(value)
}

fn write(value: &Value) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out).map_err(|e| Error::Type {
        reason: e.to_string(),
    })?;
    Ok(out)
}

/// DAG-CBOR map key order: shorter keys first, then bytewise.
pub fn key_order(a: &str, b: &str) -> Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

fn text_key(key: &Value) -> Result<&str> {
    match key {
        Value::Text(text) => Ok(text),
        _ => Err(Error::MalformedCbor {
            reason: "map keys must be text strings".into(),
        }),
    }
}

/// Sorts every map, then checks the result is in the data model.
fn canonicalize(value: &mut Value, depth: usize) -> Result<()> {
    if depth == 0 {
        return Err(Error::TooDeep {
            max: Limits::BLOCK.max_depth,
        });
    }
    match value {
        Value::Array(items) => {
            for item in items {
                canonicalize(item, depth - 1)?;
            }
        }
        Value::Map(entries) => {
            for (key, _) in entries.iter() {
                text_key(key)?;
            }
            entries.sort_by(|(a, _), (b, _)| match (a, b) {
                (Value::Text(a), Value::Text(b)) => key_order(a, b),
                _ => Ordering::Equal,
            });
            for (_, item) in entries.iter_mut() {
                canonicalize(item, depth - 1)?;
            }
        }
        Value::Tag(_, inner) => canonicalize(inner, depth - 1)?,
        _ => {}
    }
    check_canonical(value, depth)
}

/// Checks the data model and key order without changing anything.
fn check_canonical(value: &Value, depth: usize) -> Result<()> {
    if depth == 0 {
        return Err(Error::TooDeep {
            max: Limits::BLOCK.max_depth,
        });
    }
    match value {
        Value::Null | Value::Bool(_) | Value::Integer(_) | Value::Bytes(_) | Value::Text(_) => {
            Ok(())
        }
        Value::Float(_) => Err(Error::MalformedCbor {
            reason: "floats are not allowed".into(),
        }),
        Value::Tag(LINK_TAG, inner) => match inner.as_ref() {
            Value::Bytes(bytes) => link_from_tagged_bytes(bytes).map(|_| ()),
            _ => Err(Error::MalformedCbor {
                reason: "tag 42 must wrap a byte string".into(),
            }),
        },
        Value::Tag(tag, _) => Err(Error::MalformedCbor {
            reason: format!("tag {tag} is not allowed (only 42, a link)"),
        }),
        Value::Array(items) => items
            .iter()
            .try_for_each(|item| check_canonical(item, depth - 1)),
        Value::Map(entries) => {
            let mut previous: Option<&str> = None;
            for (key, item) in entries {
                let key = text_key(key)?;
                if let Some(previous) = previous {
                    match key_order(previous, key) {
                        Ordering::Less => {}
                        Ordering::Equal => {
                            return Err(Error::NonCanonical {
                                reason: "duplicate map key",
                            })
                        }
                        Ordering::Greater => {
                            return Err(Error::NonCanonical {
                                reason: "map keys out of order",
                            })
                        }
                    }
                }
                previous = Some(key);
                check_canonical(item, depth - 1)?;
            }
            Ok(())
        }
        _ => Err(Error::MalformedCbor {
            reason: "value outside the DAG-CBOR data model".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cid, Codec};
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Node {
        zebra: u64,
        a: bool,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        link: Option<Cid>,
    }

    #[test]
    fn struct_fields_are_sorted_canonically() {
        let node = Node {
            zebra: 1,
            a: true,
            data: vec![1, 2],
            link: None,
        };
        let bytes = to_vec(&node).unwrap();
        // map(4), "a", true, "data", h'0102', "link", null, "zebra", 1
        assert_eq!(
            hex::encode(&bytes),
            "a46161f56464617461420102646c696e6bf6657a6562726101"
        );
        assert_eq!(from_slice::<Node>(&bytes).unwrap(), node);
    }

    #[test]
    fn links_are_found_wherever_they_nest() {
        #[derive(serde::Serialize)]
        struct Doc {
            first: crate::Cid,
            list: Vec<Option<crate::Cid>>,
            plain: u64,
        }
        let (a, b) = (
            crate::Cid::hash(crate::Codec::Raw, b"a"),
            crate::Cid::hash(crate::Codec::DagCbor, b"b"),
        );
        let value = to_value(&Doc {
            first: a,
            list: vec![None, Some(b), Some(a)],
            plain: 7,
        })
        .unwrap();
        let mut found = Vec::new();
        links(&value, &mut found).unwrap();
        found.sort();
        let mut want = vec![a, b, a];
        want.sort();
        assert_eq!(found, want);
        let mut none = Vec::new();
        links(&Value::Integer(3.into()), &mut none).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn links_use_tag_42_with_a_zero_prefix() {
        let cid = Cid::hash(Codec::Raw, b"");
        let bytes = to_vec(&cid).unwrap();
        assert_eq!(&bytes[..2], &[0xd8, 42]);
        assert_eq!(bytes[2], 0x58); // byte string with a one-byte length
        assert_eq!(bytes[4], 0x00);
        assert_eq!(from_slice::<Cid>(&bytes).unwrap(), cid);
    }

    #[test]
    fn rejects_non_shortest_integer() {
        // 1 encoded with a one-byte argument instead of inline.
        let err = decode_value(&[0x18, 0x01]).unwrap_err();
        assert!(matches!(err, Error::NonCanonical { .. }), "{err}");
    }

    #[test]
    fn rejects_indefinite_lengths() {
        // [_ 1]
        let err = decode_value(&[0x9f, 0x01, 0xff]).unwrap_err();
        assert!(matches!(err, Error::NonCanonical { .. }), "{err}");
    }

    #[test]
    fn rejects_unsorted_and_duplicate_keys() {
        // {"b": 1, "a": 2}
        let err = decode_value(&[0xa2, 0x61, b'b', 0x01, 0x61, b'a', 0x02]).unwrap_err();
        assert!(matches!(err, Error::NonCanonical { reason } if reason.contains("order")));
        // {"aa": 1, "b": 2}: longer key first is out of order too
        let err = decode_value(&[0xa2, 0x62, b'a', b'a', 0x01, 0x61, b'b', 0x02]).unwrap_err();
        assert!(matches!(err, Error::NonCanonical { .. }));
        // {"a": 1, "a": 2}
        let err = decode_value(&[0xa2, 0x61, b'a', 0x01, 0x61, b'a', 0x02]).unwrap_err();
        assert!(matches!(err, Error::NonCanonical { reason } if reason.contains("duplicate")));
    }

    #[test]
    fn rejects_floats_other_tags_and_non_text_keys() {
        // 1.5 as a half float
        assert!(matches!(
            decode_value(&[0xf9, 0x3e, 0x00]),
            Err(Error::MalformedCbor { .. })
        ));
        // tag 1 (epoch time) around 0
        assert!(matches!(
            decode_value(&[0xc1, 0x00]),
            Err(Error::MalformedCbor { .. })
        ));
        // {1: 2}
        assert!(matches!(
            decode_value(&[0xa1, 0x01, 0x02]),
            Err(Error::MalformedCbor { .. })
        ));
        // undefined
        assert!(decode_value(&[0xf7]).is_err());
    }

    #[test]
    fn rejects_trailing_truncated_and_oversized_input() {
        assert!(matches!(
            decode_value(&[0x01, 0x01]),
            Err(Error::NonCanonical { .. })
        ));
        assert!(matches!(
            decode_value(&[0x82, 0x01]),
            Err(Error::MalformedCbor { .. })
        ));
        assert!(matches!(
            decode_value(&[]),
            Err(Error::MalformedCbor { .. })
        ));
        let big = vec![0u8; MAX_BLOCK_SIZE + 1];
        assert!(matches!(
            decode_value(&big),
            Err(Error::BlockTooLarge { .. })
        ));
    }

    #[test]
    fn rejects_deep_nesting() {
        let mut bytes = vec![0x81; 100];
        bytes.push(0x01);
        assert!(matches!(
            decode_value(&bytes),
            Err(Error::TooDeep { max: 64 })
        ));
        // The same depth is fine with a higher limit.
        let limits = Limits {
            max_depth: 200,
            ..Limits::BLOCK
        };
        decode_value_with(&bytes, limits).unwrap();
    }

    #[test]
    fn rejects_bad_links() {
        // tag 42 around a byte string without the zero prefix
        let cid = Cid::hash(Codec::Raw, b"").to_bytes();
        let mut bytes = vec![0xd8, 42, 0x58, cid.len() as u8];
        bytes.extend_from_slice(&cid);
        assert!(matches!(
            decode_value(&bytes),
            Err(Error::InvalidCid { .. })
        ));
        // tag 42 around text
        assert!(decode_value(&[0xd8, 42, 0x61, b'a']).is_err());
    }

    #[test]
    fn large_strings_and_bytes_decode() {
        let text = "x".repeat(100_000);
        let bytes = to_vec(&text).unwrap();
        assert_eq!(from_slice::<String>(&bytes).unwrap(), text);
        let blob = serde_bytes::ByteBuf::from(vec![7u8; 200_000]);
        let bytes = to_vec(&blob).unwrap();
        assert_eq!(from_slice::<serde_bytes::ByteBuf>(&bytes).unwrap(), blob);
    }

    #[test]
    fn typed_decoding_refuses_unknown_and_missing_fields() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Update {
            c: Option<u64>,
            s: u64,
        }
        let good = to_vec(&Update { c: None, s: 1 }).unwrap();
        assert_eq!(
            from_slice::<Update>(&good).unwrap(),
            Update { c: None, s: 1 }
        );
        // {"s": 1}: "c" missing, which serde alone reads as None.
        let missing = [0xa1, 0x61, b's', 0x01];
        assert!(matches!(
            from_slice::<Update>(&missing),
            Err(Error::NonCanonical { .. })
        ));
        // {"\\": null, "s": 1}: an unknown key instead of "c".
        let unknown = [0xa2, 0x61, b'\\', 0xf6, 0x61, b's', 0x01];
        assert!(matches!(
            from_slice::<Update>(&unknown),
            Err(Error::NonCanonical { .. })
        ));
    }

    #[test]
    fn extreme_integers_round_trip() {
        for n in [
            0i128,
            23,
            24,
            255,
            256,
            65_535,
            65_536,
            u64::MAX as i128,
            -1,
            -(1i128 << 64),
        ] {
            let value = Value::Integer(n.try_into().unwrap());
            let bytes = encode_value(&value).unwrap();
            assert_eq!(decode_value(&bytes).unwrap(), value);
        }
    }
}
