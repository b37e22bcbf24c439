//! CHAMP keys, values and the node block format.
//!
//! ```text
//! Node = {
//!   "c": {"b": bits, "m": bucket},   root only: the tree's parameters
//!   "d": u64,                         bitmap of slots holding a bucket
//!   "e": [bucket, ...],               one per set bit of "d", in slot order
//!   "l": [link, ...],                 one per set bit of "n", in slot order
//!   "n": u64,                         bitmap of slots holding a child link
//! }
//! bucket = [[key: bytes(32), value: link | bytes], ...]   1..=bucket entries, sorted by key
//! ```

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use peergos_ipld::cbor::{self, Value as Cbor};
use peergos_ipld::{Block, Cid};

use crate::{Error, Result};

/// The longest inline value, in bytes. With at most 64 slots of 16 entries,
/// a node stays far below the block size limit.
pub const MAX_INLINE: usize = 512;

/// A 32-byte key (for a filesystem tree: a random label).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub [u8; 32]);

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0
            .iter()
            .take(8)
            .try_for_each(|b| write!(f, "{b:02x}"))?;
        f.write_str("..")
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

/// What a key maps to.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Value {
    /// A link to a block.
    Link(Cid),
    /// A few bytes stored in the node itself (at most [`MAX_INLINE`]).
    Inline(Bytes),
}

impl Value {
    /// An inline value, checked against [`MAX_INLINE`].
    pub fn inline(bytes: impl Into<Bytes>) -> Result<Self> {
        let bytes = bytes.into();
        if bytes.len() > MAX_INLINE {
            return Err(Error::InlineTooLarge {
                size: bytes.len(),
                max: MAX_INLINE,
            });
        }
        Ok(Value::Inline(bytes))
    }

    fn to_cbor(&self) -> Result<Cbor> {
        match self {
            Value::Link(cid) => Ok(cbor::to_value(cid)?),
            Value::Inline(bytes) => Ok(Cbor::Bytes(bytes.to_vec())),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Link(cid) => write!(f, "{cid}"),
            Value::Inline(bytes) => write!(f, "{} inline bytes", bytes.len()),
        }
    }
}

/// A tree's shape, fixed when the tree is created and recorded in its root.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Config {
    /// Bits of the key hash used per level (1..=6): `2^bits` slots a node.
    pub bits: u8,
    /// Most entries in a bucket before it splits into a child (1..=16).
    pub bucket: u8,
}

impl Default for Config {
    /// Branching 8 (3 bits a level), 4 entries a bucket.
    fn default() -> Self {
        Config { bits: 3, bucket: 4 }
    }
}

impl Config {
    /// Checks the parameters are supported.
    pub fn validate(&self) -> Result<()> {
        if !(1..=6).contains(&self.bits) {
            return Err(Error::BadConfig {
                reason: format!("bits = {} is outside 1..=6", self.bits),
            });
        }
        if !(1..=16).contains(&self.bucket) {
            return Err(Error::BadConfig {
                reason: format!("bucket = {} is outside 1..=16", self.bucket),
            });
        }
        Ok(())
    }

    /// The slot of a key hash at `depth`: `bits` bits, most significant
    /// first.
    pub(crate) fn position(&self, hash: &[u8; 32], depth: usize) -> Result<u8> {
        let bits = usize::from(self.bits);
        let start = depth * bits;
        if start + bits > 256 {
            return Err(Error::HashExhausted);
        }
        let mut slot = 0u8;
        for i in start..start + bits {
            let bit = (hash[i / 8] >> (7 - i % 8)) & 1;
            slot = (slot << 1) | bit;
        }
        Ok(slot)
    }
}

/// What a slot holds.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) enum Slot {
    Bucket(Vec<(Key, Value)>),
    Child(Cid),
}

/// A decoded node.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub(crate) struct Node {
    /// Present on the root only.
    pub(crate) config: Option<Config>,
    pub(crate) slots: BTreeMap<u8, Slot>,
}

impl Node {
    /// True when the node could be replaced by a single bucket in its
    /// parent: it has no children and at most `bucket` entries.
    pub(crate) fn collapsible(&self, config: &Config) -> bool {
        let mut count = 0;
        for slot in self.slots.values() {
            match slot {
                Slot::Child(_) => return false,
                Slot::Bucket(entries) => count += entries.len(),
            }
        }
        count <= usize::from(config.bucket)
    }

    /// All entries of a node without children, sorted by key.
    pub(crate) fn bucket_entries(&self) -> Vec<(Key, Value)> {
        let mut all: Vec<(Key, Value)> = self
            .slots
            .values()
            .flat_map(|slot| match slot {
                Slot::Bucket(entries) => entries.clone(),
                Slot::Child(_) => Vec::new(),
            })
            .collect();
        all.sort_by_key(|entry| entry.0);
        all
    }

    pub(crate) fn encode(&self) -> Result<Block> {
        let (mut data, mut nodes) = (0u64, 0u64);
        let (mut buckets, mut links) = (Vec::new(), Vec::new());
        for (&pos, slot) in &self.slots {
            match slot {
                Slot::Bucket(entries) => {
                    data |= 1 << pos;
                    let entries = entries
                        .iter()
                        .map(|(k, v)| {
                            Ok(Cbor::Array(vec![Cbor::Bytes(k.0.to_vec()), v.to_cbor()?]))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    buckets.push(Cbor::Array(entries));
                }
                Slot::Child(cid) => {
                    nodes |= 1 << pos;
                    links.push(cbor::to_value(cid)?);
                }
            }
        }
        let text = |s: &str| Cbor::Text(s.to_string());
        let mut map = vec![
            (text("d"), Cbor::Integer(data.into())),
            (text("e"), Cbor::Array(buckets)),
            (text("l"), Cbor::Array(links)),
            (text("n"), Cbor::Integer(nodes.into())),
        ];
        if let Some(config) = &self.config {
            map.push((
                text("c"),
                Cbor::Map(vec![
                    (text("b"), Cbor::Integer(config.bits.into())),
                    (text("m"), Cbor::Integer(config.bucket.into())),
                ]),
            ));
        }
        Ok(Block::from_value(&Cbor::Map(map))?)
    }

    /// Decodes the bytes of node `cid`, whose hash the caller has checked.
    /// `root` says whether a config must be present (root) or absent (any
    /// other node). The strict decoder runs once, here.
    pub(crate) fn decode(cid: &Cid, data: &[u8], root: bool) -> Result<Node> {
        let cid = *cid;
        let bad = |reason: &str| Error::MalformedNode {
            cid,
            reason: reason.to_string(),
        };
        let Cbor::Map(fields) = cbor::decode_value(data)? else {
            return Err(bad("not a map"));
        };
        let get = |name: &str| -> Option<Cbor> {
            fields
                .iter()
                .position(|(k, _)| matches!(k, Cbor::Text(t) if t == name))
                .map(|i| fields[i].1.clone())
        };
        let config = match get("c") {
            Some(Cbor::Map(c)) => {
                let field = |name: &str| {
                    c.iter()
                        .find(|(k, _)| matches!(k, Cbor::Text(t) if t == name))
                        .and_then(|(_, v)| v.as_integer())
                        .and_then(|i| u8::try_from(i).ok())
                };
                let (Some(bits), Some(bucket)) = (field("b"), field("m")) else {
                    return Err(bad("config needs small integers \"b\" and \"m\""));
                };
                if c.len() != 2 {
                    return Err(bad("unknown config fields"));
                }
                let config = Config { bits, bucket };
                config.validate().map_err(|e| bad(&e.to_string()))?;
                Some(config)
            }
            None => None,
            Some(_) => return Err(bad("config must be a map")),
        };
        if config.is_some() != root {
            return Err(bad(if root {
                "root node has no config"
            } else {
                "inner node carries a config"
            }));
        }
        let bitmap = |value: Option<Cbor>, name: &str| -> Result<u64> {
            value
                .and_then(|v| v.as_integer())
                .and_then(|i| u64::try_from(i).ok())
                .ok_or_else(|| bad(&format!("\"{name}\" must be an unsigned integer")))
        };
        let data = bitmap(get("d"), "d")?;
        let nodes = bitmap(get("n"), "n")?;
        let Some(Cbor::Array(buckets)) = get("e") else {
            return Err(bad("\"e\" must be a list"));
        };
        let Some(Cbor::Array(links)) = get("l") else {
            return Err(bad("\"l\" must be a list"));
        };
        if fields.len() != 4 + usize::from(root) {
            return Err(bad("unknown node fields"));
        }
        if data & nodes != 0 {
            return Err(bad("a slot is both a bucket and a link"));
        }
        if buckets.len() != data.count_ones() as usize || links.len() != nodes.count_ones() as usize
        {
            return Err(bad("bitmaps do not match the lists"));
        }
        let mut slots = BTreeMap::new();
        let mut buckets = buckets.into_iter();
        let mut links = links.into_iter();
        for pos in 0..64u8 {
            if data & (1 << pos) != 0 {
                let Some(Cbor::Array(entries)) = buckets.next() else {
                    return Err(bad("bucket must be a list"));
                };
                if entries.is_empty() || entries.len() > 16 {
                    return Err(bad("bucket must hold 1 to 16 entries"));
                }
                let mut parsed = Vec::with_capacity(entries.len());
                for entry in entries {
                    let Cbor::Array(pair) = entry else {
                        return Err(bad("entry must be a [key, value] pair"));
                    };
                    let [key, value] = <[Cbor; 2]>::try_from(pair)
                        .map_err(|_| bad("entry must be a [key, value] pair"))?;
                    let key = match key {
                        Cbor::Bytes(k) => {
                            Key(k.try_into().map_err(|_| bad("keys are 32 bytes"))?)
                        }
                        _ => return Err(bad("keys are byte strings")),
                    };
                    let value = match value {
                        Cbor::Bytes(b) => Value::inline(b).map_err(|e| bad(&e.to_string()))?,
                        link @ Cbor::Tag(..) => Value::Link(cbor::from_value(link)?),
                        _ => return Err(bad("values are links or byte strings")),
                    };
                    parsed.push((key, value));
                }
                if !parsed.windows(2).all(|w| w[0].0 < w[1].0) {
                    return Err(bad("bucket keys must be sorted and distinct"));
                }
                slots.insert(pos, Slot::Bucket(parsed));
            } else if nodes & (1 << pos) != 0 {
                let link = links.next().ok_or_else(|| bad("missing link"))?;
                slots.insert(pos, Slot::Child(cbor::from_value(link)?));
            }
        }
        Ok(Node { config, slots })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_take_bits_most_significant_first() {
        let mut hash = [0u8; 32];
        hash[0] = 0b1011_0010;
        let c = Config { bits: 3, bucket: 4 };
        assert_eq!(c.position(&hash, 0).unwrap(), 0b101);
        assert_eq!(c.position(&hash, 1).unwrap(), 0b100);
        assert_eq!(c.position(&hash, 2).unwrap(), 0b100); // crosses into byte 1
        assert_eq!(c.position(&hash, 84).unwrap(), 0);
        assert!(matches!(c.position(&hash, 85), Err(Error::HashExhausted)));
        let six = Config { bits: 6, bucket: 4 };
        assert_eq!(six.position(&hash, 0).unwrap(), 0b101100);
    }

    #[test]
    fn nodes_round_trip() {
        let mut node = Node {
            config: Some(Config::default()),
            slots: BTreeMap::new(),
        };
        node.slots.insert(
            1,
            Slot::Bucket(vec![
                (Key([1; 32]), Value::inline(vec![9u8; 3]).unwrap()),
                (
                    Key([2; 32]),
                    Value::Link(Cid::hash(peergos_ipld::Codec::Raw, b"x")),
                ),
            ]),
        );
        node.slots.insert(
            5,
            Slot::Child(Cid::hash(peergos_ipld::Codec::DagCbor, b"y")),
        );
        let block = node.encode().unwrap();
        assert_eq!(Node::decode(block.cid(), block.data(), true).unwrap(), node);
        assert!(
            Node::decode(block.cid(), block.data(), false).is_err(),
            "inner nodes carry no config"
        );
    }

    fn raw_node(fields: Vec<(&str, Cbor)>) -> Block {
        let map = fields
            .into_iter()
            .map(|(k, v)| (Cbor::Text(k.into()), v))
            .collect();
        Block::new(
            peergos_ipld::Codec::DagCbor,
            cbor::encode_value(&Cbor::Map(map)).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn malformed_nodes_are_rejected() {
        let int = |n: u64| Cbor::Integer(n.into());
        let entry = |k: u8| Cbor::Array(vec![Cbor::Bytes(vec![k; 32]), Cbor::Bytes(vec![])]);
        let cases = [
            // bitmap says one bucket, list has none
            vec![
                ("d", int(1)),
                ("e", Cbor::Array(vec![])),
                ("l", Cbor::Array(vec![])),
                ("n", int(0)),
            ],
            // a slot is both a bucket and a link
            vec![
                ("d", int(1)),
                ("e", Cbor::Array(vec![Cbor::Array(vec![entry(1)])])),
                (
                    "l",
                    Cbor::Array(vec![cbor::to_value(&Cid::hash(
                        peergos_ipld::Codec::DagCbor,
                        b"",
                    ))
                    .unwrap()]),
                ),
                ("n", int(1)),
            ],
            // unsorted bucket
            vec![
                ("d", int(1)),
                (
                    "e",
                    Cbor::Array(vec![Cbor::Array(vec![entry(2), entry(1)])]),
                ),
                ("l", Cbor::Array(vec![])),
                ("n", int(0)),
            ],
            // empty bucket
            vec![
                ("d", int(1)),
                ("e", Cbor::Array(vec![Cbor::Array(vec![])])),
                ("l", Cbor::Array(vec![])),
                ("n", int(0)),
            ],
            // short key
            vec![
                ("d", int(1)),
                (
                    "e",
                    Cbor::Array(vec![Cbor::Array(vec![Cbor::Array(vec![
                        Cbor::Bytes(vec![1; 31]),
                        Cbor::Bytes(vec![]),
                    ])])]),
                ),
                ("l", Cbor::Array(vec![])),
                ("n", int(0)),
            ],
            // unknown field
            vec![
                ("d", int(0)),
                ("e", Cbor::Array(vec![])),
                ("l", Cbor::Array(vec![])),
                ("n", int(0)),
                ("x", int(0)),
            ],
            // missing field
            vec![("d", int(0)), ("e", Cbor::Array(vec![])), ("n", int(0))],
        ];
        for (i, fields) in cases.into_iter().enumerate() {
            let block = raw_node(fields);
            assert!(
                matches!(
                    Node::decode(block.cid(), block.data(), false),
                    Err(Error::MalformedNode { .. })
                ),
                "case {i} accepted"
            );
        }
    }
}
