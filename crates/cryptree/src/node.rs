//! The cryptree node format: bytes to types and back, and the encryption of
//! each part. No I/O: the filesystem layer ([`crate::fs`]) fetches and
//! stores.
//!
//! A node is one chunk of a file or a directory, stored as a DAG-CBOR block
//! that the writer's CHAMP maps the chunk's label to:
//!
//! ```text
//! NodeBlock = {
//!   "v": 1,
//!   "bats": [BatId],     access tokens that may read the node (clear: the server checks them)
//!   "base": bytes,       BasePart, under the base read key
//!   "parent": bytes,     ParentPart, under the parent key (dirs) or the base key (files)
//!   "data": bytes,       the content, inline, when its padded size is at most 4 KiB  } exactly
//!   "frags": [link],     the content as raw fragment blocks of at most 1 MiB         } one
//! }
//! BasePart   = {"d": bool is-dir, "k": bytes(32) second key, "s"?: bytes signer link}   padded to 256
//! ParentPart = {"p": ParentLink | null, "q"?: Properties}                               padded to 256
//! ParentLink = {"b": bytes | null, "k": bytes(32), "l": bytes(32), "w": link}
//! Properties = {"h": bool, "m": i64, "n": text, "s": u64, "t": text, "x": bytes(32)}
//! ChildLink  = {"b": bytes | null, "l": bytes(32), "n": bytes(16), "r": bytes(32), "k"?: bytes, "w"?: link}
//! ```
//!
//! Keys, following cryptree: the base read key `R` (the capability's read
//! key) opens `BasePart`, which holds the second key: the parent key `P`
//! of a directory, or the data key `D` of a file. A directory's children
//! list is under `R`, its `ParentPart` under `P`; a file's data is under
//! `D`, its `ParentPart` under `R`. A child's `ParentLink` carries its
//! parent's `P`, so a child's holder can read the names on the path up to
//! it, but never a sibling (listing needs `R`).
//!
//! Every part is XChaCha20-Poly1305 with associated data binding it to its
//! role and the node's label, so no part can be moved to another node or
//! role. Fragments are encrypted one by one (associated data: label,
//! index, count) so a ranged read decrypts only the fragments it touches.
//! File data is zero-filled to a multiple of 4 KiB (the true length is the
//! encrypted size property); directory listings use marker padding.
//!
//! Chunk `k + 1` of a file or directory lives at label
//! `SHA-256(stream secret ‖ label k)` with token
//! `SHA-256("peergos/chunk-bat/v1" ‖ stream secret ‖ label k)`, so finding
//! chunk `k` costs local hashing only, and the server sees unrelated labels
//! and tokens. A chain ends at the first label missing from the writer's
//! (signed) CHAMP.

use hmac::{Hmac, Mac};
use peergos_ipld::{cbor, Block, Cid};
use peergos_keys::{pad, sha256, unpad, Bat, BatId, PublicKeyHash, SigningKeyPair, SymmetricKey};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use sha2::Sha256;
use zeroize::Zeroizing;

pub use crate::properties::Properties;
use crate::{AbsoluteCapability, Error, Label, Result};

/// Plaintext bytes of file data in one chunk (the last chunk may hold less).
pub const CHUNK_SIZE: u64 = 5 * 1024 * 1024;
/// Plaintext bytes of content in one fragment block.
pub const FRAGMENT_SIZE: usize = 1 << 20;
/// Content is padded to a multiple of this many bytes.
pub const PAD_MULTIPLE: usize = 4096;
/// Content whose padded size is at most this is stored inside the node.
pub const INLINE_MAX: usize = PAD_MULTIPLE;
/// Children links in one directory node before a new chunk is used.
pub const MAX_CHILDREN_PER_NODE: usize = 500;
/// The most fragments one node may list (a directory chunk of 500 links
/// needs one; a file chunk at most five).
pub const MAX_FRAGMENTS: usize = 8;
/// The node format version.
pub const VERSION: u64 = 1;
/// Bytes of a child's name tag.
pub const NAME_TAG_SIZE: usize = 16;
/// The longest name, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 255;

const BASE_PAD: usize = 256;
const PARENT_PAD: usize = 256;

/// Associated-data roles.
const AD_BASE: &[u8] = b"peergos/node-base/v1";
const AD_PARENT: &[u8] = b"peergos/node-parent/v1";
const AD_INLINE: &[u8] = b"peergos/node-inline/v1";
const AD_FRAGMENT: &[u8] = b"peergos/fragment/v1";
const AD_SIGNER: &[u8] = b"peergos/signer/v1";
const AD_CHILD_WRITE: &[u8] = b"peergos/child-write/v1";
const NAME_TAG_DOMAIN: &[u8] = b"peergos/name-tag/v1";
const CHUNK_BAT_DOMAIN: &[u8] = b"peergos/chunk-bat/v1";

/// A stored node, as the server sees it: everything but the token list is
/// ciphertext or a link to ciphertext.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeBlock {
    /// Format version, [`VERSION`].
    #[serde(rename = "v")]
    pub version: u64,
    /// Tokens that may read this node and its fragments.
    pub bats: Vec<BatId>,
    /// [`BasePart`], encrypted.
    #[serde(with = "serde_bytes")]
    pub base: Vec<u8>,
    /// [`ParentPart`], encrypted.
    #[serde(with = "serde_bytes")]
    pub parent: Vec<u8>,
    /// Inline content ciphertext.
    #[serde(rename = "data", default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<ByteBuf>,
    /// Fragment blocks holding the content ciphertext, in order.
    #[serde(rename = "frags", default, skip_serializing_if = "Vec::is_empty")]
    pub fragments: Vec<Cid>,
}

impl std::fmt::Debug for NodeBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeBlock")
            .field("inline", &self.inline.as_ref().map(|b| b.len()))
            .field("fragments", &self.fragments.len())
            .finish_non_exhaustive()
    }
}

impl NodeBlock {
    /// Decodes (strictly) and checks the shape of a node block.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let node: NodeBlock = cbor::from_slice_versioned(bytes, "cryptree node", VERSION)?;
        let bad = |reason: &'static str| Err(Error::MalformedNode { reason });
        match (&node.inline, node.fragments.len()) {
            (Some(_), 0) => {}
            (None, 1..=MAX_FRAGMENTS) => {}
            (Some(_), _) => return bad("both inline content and fragments"),
            (None, 0) => return bad("no content"),
            (None, _) => return bad("too many fragments"),
        }
        if node.bats.is_empty() || node.bats.len() > peergos_keys::bat::MAX_BATS_PER_BLOCK {
            return bad("a node lists 1 to 4 access tokens");
        }
        Ok(node)
    }

    /// The canonical block.
    pub fn to_block(&self) -> Result<Block> {
        Ok(Block::encode(self)?)
    }
}

/// The part under the base read key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BasePart {
    /// True for a directory.
    #[serde(rename = "d")]
    pub dir: bool,
    /// The parent key (directories) or data key (files).
    #[serde(rename = "k")]
    pub second: SymmetricKey,
    /// The writer's signing key seed, encrypted under the node's write key.
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<ByteBuf>,
}

/// Where a node's parent is: enough to read the parent's name and its own
/// parent link (its parent key), not to list the parent.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentLink {
    /// The parent's writer.
    #[serde(rename = "w")]
    pub writer: PublicKeyHash,
    /// The parent's label.
    #[serde(rename = "l")]
    pub label: Label,
    /// The parent's access token.
    #[serde(rename = "b")]
    pub bat: Option<Bat>,
    /// The parent's parent key.
    #[serde(rename = "k")]
    pub key: SymmetricKey,
}

/// The part under the parent key: the parent link, and on a first chunk
/// the properties.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentPart {
    /// The parent, if any (none for a root or a later chunk).
    #[serde(rename = "p")]
    pub parent: Option<ParentLink>,
    /// The properties, on the first chunk only.
    #[serde(rename = "q", default, skip_serializing_if = "Option::is_none")]
    pub props: Option<Properties>,
}

/// A directory's link to one child, stored in the directory's encrypted
/// children list.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildLink {
    /// The child's writer, when it differs from the directory's.
    #[serde(rename = "w", default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<PublicKeyHash>,
    /// The child's label.
    #[serde(rename = "l")]
    pub label: Label,
    /// The child's access token.
    #[serde(rename = "b")]
    pub bat: Option<Bat>,
    /// The child's base read key.
    #[serde(rename = "r")]
    pub read: SymmetricKey,
    /// The child's write key, encrypted under the directory's write key.
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    pub write: Option<ByteBuf>,
    /// Keyed hash of the child's name under the directory's read key, so a
    /// name is found without fetching every child.
    #[serde(rename = "n", with = "serde_bytes")]
    pub name_tag: [u8; NAME_TAG_SIZE],
}

impl std::fmt::Debug for ChildLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildLink")
            .field("label", &self.label)
            .field("writer", &self.writer)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct ChildList(Vec<ChildLink>);

fn ad(role: &[u8], label: &Label, extra: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(role.len() + 32 + extra.len());
    out.extend_from_slice(role);
    out.extend_from_slice(&label.0);
    out.extend_from_slice(extra);
    out
}

fn seal_padded<T: Serialize>(
    key: &SymmetricKey,
    value: &T,
    role: &[u8],
    label: &Label,
    multiple: usize,
) -> Result<Vec<u8>> {
    let mut plain = Zeroizing::new(cbor::to_vec(value)?);
    pad(&mut plain, multiple);
    Ok(key.encrypt_with_aad(&plain, &ad(role, label, &[])))
}

fn open_padded<T: serde::de::DeserializeOwned + Serialize>(
    key: &SymmetricKey,
    sealed: &[u8],
    role: &[u8],
    label: &Label,
    part: &'static str,
) -> Result<T> {
    let plain = Zeroizing::new(
        key.decrypt_with_aad(sealed, &ad(role, label, &[]))
            .map_err(|_| Error::Decrypt { part })?,
    );
    Ok(cbor::from_slice(unpad(&plain)?)?)
}

impl BasePart {
    /// Encrypts under the base read key.
    pub fn seal(&self, read: &SymmetricKey, label: &Label) -> Result<Vec<u8>> {
        seal_padded(read, self, AD_BASE, label, BASE_PAD)
    }

    /// Decrypts with the base read key.
    pub fn open(read: &SymmetricKey, sealed: &[u8], label: &Label) -> Result<Self> {
        open_padded(read, sealed, AD_BASE, label, "base")
    }

    /// Encrypts a writer's signing key under a node's write key.
    pub fn seal_signer(write: &SymmetricKey, label: &Label, signer: &SigningKeyPair) -> ByteBuf {
        ByteBuf::from(write.encrypt_with_aad(&signer.seed()[..], &ad(AD_SIGNER, label, &[])))
    }

    /// The writer's key pair, given the node's write key; checks it is the
    /// key of `writer`.
    pub fn signer(
        &self,
        write: &SymmetricKey,
        label: &Label,
        writer: &PublicKeyHash,
    ) -> Result<SigningKeyPair> {
        let sealed = self.signer.as_ref().ok_or(Error::NotWritable)?;
        let seed = Zeroizing::new(
            write
                .decrypt_with_aad(sealed, &ad(AD_SIGNER, label, &[]))
                .map_err(|_| Error::Decrypt { part: "signer" })?,
        );
        let seed: [u8; 32] = seed
            .as_slice()
            .try_into()
            .map_err(|_| Error::MalformedNode {
                reason: "signer seed is not 32 bytes",
            })?;
        let pair = SigningKeyPair::from_seed(Zeroizing::new(seed));
        if PublicKeyHash::of(&pair.public()) != *writer {
            return Err(Error::MalformedNode {
                reason: "signer link names another writer",
            });
        }
        Ok(pair)
    }
}

impl ParentPart {
    /// Encrypts under the parent key (or a file's base key).
    pub fn seal(&self, key: &SymmetricKey, label: &Label) -> Result<Vec<u8>> {
        seal_padded(key, self, AD_PARENT, label, PARENT_PAD)
    }

    /// Decrypts, and checks the properties' version and fields.
    pub fn open(key: &SymmetricKey, sealed: &[u8], label: &Label) -> Result<Self> {
        let part: ParentPart = open_padded(key, sealed, AD_PARENT, label, "parent")?;
        if let Some(props) = &part.props {
            props.check()?;
        }
        Ok(part)
    }
}

impl ChildLink {
    /// The child's capability, given its directory's: the owner is the
    /// directory's, the writer too unless the link names one, and the
    /// child is writable only through a writable directory.
    pub fn resolve(&self, dir: &AbsoluteCapability) -> Result<AbsoluteCapability> {
        Ok(AbsoluteCapability {
            owner: dir.owner,
            writer: self.writer.unwrap_or(dir.writer),
            label: self.label,
            bat: self.bat.clone(),
            read: self.read.clone(),
            write: self.write_key(dir.write.as_ref())?,
        })
    }

    /// The child's write key, given the directory's.
    pub fn write_key(&self, dir_write: Option<&SymmetricKey>) -> Result<Option<SymmetricKey>> {
        let (Some(sealed), Some(key)) = (&self.write, dir_write) else {
            return Ok(None);
        };
        let plain = Zeroizing::new(
            key.decrypt_with_aad(sealed, &ad(AD_CHILD_WRITE, &self.label, &[]))
                .map_err(|_| Error::Decrypt {
                    part: "child write key",
                })?,
        );
        let bytes: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| Error::MalformedNode {
                reason: "child write key is not 32 bytes",
            })?;
        Ok(Some(SymmetricKey::from_bytes(bytes)))
    }

    /// Encrypts a child's write key under the directory's.
    pub fn seal_write(dir_write: &SymmetricKey, child: &Label, write: &SymmetricKey) -> ByteBuf {
        ByteBuf::from(dir_write.encrypt_with_aad(write.as_bytes(), &ad(AD_CHILD_WRITE, child, &[])))
    }
}

/// The keyed tag of `name` in a directory whose base read key is `dir_read`.
pub fn name_tag(dir_read: &SymmetricKey, name: &str) -> [u8; NAME_TAG_SIZE] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(dir_read.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(NAME_TAG_DOMAIN);
    mac.update(name.as_bytes());
    let full = mac.finalize().into_bytes();
    let mut tag = [0u8; NAME_TAG_SIZE];
    tag.copy_from_slice(&full[..NAME_TAG_SIZE]);
    tag
}

/// The label and token of the chunk after the one at `label`.
pub fn next_chunk(stream: &[u8; 32], label: &Label) -> (Label, Bat) {
    let mut input = Vec::with_capacity(CHUNK_BAT_DOMAIN.len() + 64);
    input.extend_from_slice(stream);
    input.extend_from_slice(&label.0);
    let next = Label(sha256(&input));
    input.clear();
    input.extend_from_slice(CHUNK_BAT_DOMAIN);
    input.extend_from_slice(stream);
    input.extend_from_slice(&label.0);
    (next, Bat::from_bytes(sha256(&input)))
}

/// Chunks in a file of `size` bytes (an empty file has one, empty chunk).
pub fn chunk_count(size: u64) -> u64 {
    size.div_ceil(CHUNK_SIZE).max(1)
}

/// Bytes of data in chunk `index` of a file of `size` bytes.
pub fn chunk_len(size: u64, index: u64) -> usize {
    let start = index.saturating_mul(CHUNK_SIZE);
    // At most CHUNK_SIZE, so it fits a usize.
    size.saturating_sub(start).min(CHUNK_SIZE) as usize
}

/// Checks a name is usable: 1 to 255 bytes, no `/` or NUL, not `.`/`..`.
pub fn check_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > MAX_NAME_LEN {
        "it is longer than 255 bytes"
    } else if name.contains('/') || name.contains('\0') {
        "it contains '/' or NUL"
    } else if name == "." || name == ".." {
        "'.' and '..' are reserved"
    } else {
        return Ok(());
    };
    Err(Error::BadName {
        name: name.chars().take(64).collect(),
        reason,
    })
}

/// Encrypts padded content into fragment blocks that start with `prefix`
/// (a token frame), `prefix ‖ nonce ‖ ciphertext ‖ tag` each, and passes
/// each block to `finish` (to hash and sign it). Fragments are sealed on
/// two threads; the results come back in order.
pub fn seal_fragments<T, F>(
    key: &SymmetricKey,
    label: &Label,
    padded: &[u8],
    prefix: &[u8],
    finish: F,
) -> Vec<T>
where
    T: Send,
    F: Fn(Vec<u8>) -> T + Sync,
{
    let count = padded.len().div_ceil(FRAGMENT_SIZE);
    let pieces: Vec<&[u8]> = padded.chunks(FRAGMENT_SIZE).collect();
    let seal =
        |i: usize| finish(key.encrypt_after(prefix, pieces[i], &fragment_ad(label, i, count)));
    if count < 2 {
        return (0..count).map(seal).collect();
    }
    // Odd fragments on a helper thread, even ones here.
    let (even, odd) = std::thread::scope(|scope| {
        let helper = scope.spawn(|| (1..count).step_by(2).map(seal).collect::<Vec<_>>());
        let even: Vec<T> = (0..count).step_by(2).map(seal).collect();
        // If the helper panicked, seal its share here.
        let odd = helper
            .join()
            .unwrap_or_else(|_| (1..count).step_by(2).map(seal).collect());
        (even, odd)
    });
    let mut out = Vec::with_capacity(count);
    let mut odd = odd.into_iter();
    for block in even {
        out.push(block);
        out.extend(odd.next());
    }
    out
}

fn fragment_ad(label: &Label, index: usize, count: usize) -> Vec<u8> {
    let mut extra = [0u8; 8];
    extra[..4].copy_from_slice(&(index as u32).to_be_bytes());
    extra[4..].copy_from_slice(&(count as u32).to_be_bytes());
    ad(AD_FRAGMENT, label, &extra)
}

/// Encrypts padded content of at most [`INLINE_MAX`] bytes for the node
/// itself.
pub fn seal_inline(key: &SymmetricKey, label: &Label, padded: &[u8]) -> Vec<u8> {
    key.encrypt_with_aad(padded, &ad(AD_INLINE, label, &[]))
}

/// Decrypts inline content.
pub fn open_inline(key: &SymmetricKey, label: &Label, sealed: &[u8]) -> Result<Vec<u8>> {
    key.decrypt_with_aad(sealed, &ad(AD_INLINE, label, &[]))
        .map_err(|_| Error::Decrypt { part: "content" })
}

/// Decrypts fragment `index` of `count` in the buffer it lies in (no
/// copy of a 1 MiB fragment): returns where in `sealed` its plaintext now
/// is. A fragment that does not open has its ciphertext overwritten with
/// zeros.
pub fn open_fragment_in_place(
    key: &SymmetricKey,
    label: &Label,
    index: usize,
    count: usize,
    sealed: &mut [u8],
) -> Result<std::ops::Range<usize>> {
    key.decrypt_in_place_with_aad(sealed, &fragment_ad(label, index, count))
        .map_err(|_| Error::Decrypt { part: "fragment" })
}

/// The padded length of `len` bytes of file data: the next multiple of
/// [`PAD_MULTIPLE`], and at least one.
pub fn padded_len(len: usize) -> usize {
    len.div_ceil(PAD_MULTIPLE).max(1) * PAD_MULTIPLE
}

/// Zero-fills file data to its padded length.
pub fn pad_data(mut data: Vec<u8>) -> Vec<u8> {
    let len = padded_len(data.len());
    data.resize(len, 0);
    data
}

/// Encodes and pads a directory's children list.
///
/// This runs on every change to a directory, so it writes canonical
/// DAG-CBOR directly instead of through a generic value tree (which
/// allocated per field and dominated the cost of adding a file to a large
/// directory). A property test checks the bytes equal the generic
/// encoder's.
pub fn encode_children(children: &[ChildLink]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(8 + children.len() * 200);
    cbor::head(&mut out, 4, children.len() as u64);
    for child in children {
        // Keys in canonical order: all one byte long, so bytewise.
        let fields = 4 + usize::from(child.write.is_some()) + usize::from(child.writer.is_some());
        cbor::head(&mut out, 5, fields as u64);
        cbor_text(&mut out, "b");
        match &child.bat {
            Some(bat) => cbor_bytes(&mut out, bat.as_bytes()),
            None => out.push(0xf6),
        }
        if let Some(write) = &child.write {
            cbor_text(&mut out, "k");
            cbor_bytes(&mut out, write);
        }
        cbor_text(&mut out, "l");
        cbor_bytes(&mut out, &child.label.0);
        cbor_text(&mut out, "n");
        cbor_bytes(&mut out, &child.name_tag);
        cbor_text(&mut out, "r");
        cbor_bytes(&mut out, child.read.as_bytes());
        if let Some(writer) = &child.writer {
            cbor_text(&mut out, "w");
            // A link: tag 42 around the identity multibase prefix and the CID.
            out.extend_from_slice(&[0xd8, 42]);
            let cid = writer.cid().to_bytes();
            cbor::head(&mut out, 2, cid.len() as u64 + 1);
            out.push(0);
            out.extend_from_slice(&cid);
        }
    }
    pad(&mut out, PAD_MULTIPLE);
    Ok(out)
}

fn cbor_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    cbor::head(out, 2, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn cbor_text(out: &mut Vec<u8>, text: &str) {
    cbor::head(out, 3, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

/// The generic encoder's output for a children list, unpadded: what
/// [`encode_children`] must match.
#[doc(hidden)]
pub fn encode_children_generic(children: &[ChildLink]) -> Result<Vec<u8>> {
    Ok(cbor::to_vec(&ChildList(children.to_vec()))?)
}

/// Decodes a padded children list.
pub fn decode_children(padded: &[u8]) -> Result<Vec<ChildLink>> {
    let ChildList(children) = cbor::from_slice(unpad(padded)?)?;
    if children.len() > MAX_CHILDREN_PER_NODE {
        return Err(Error::MalformedNode {
            reason: "more than 500 children in one directory node",
        });
    }
    Ok(children)
}

/// Entry points for the fuzz targets; not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// Decodes an untrusted node block; whatever decodes re-encodes to the
    /// same bytes. Then tries to open its parts with a fixed key.
    pub fn node(data: &[u8]) {
        let key = SymmetricKey::from_bytes([7; 32]);
        let label = Label([3; 32]);
        if let Ok(node) = NodeBlock::decode(data) {
            match node.to_block() {
                Ok(again) => assert_eq!(again.data().as_ref(), data, "not canonical"),
                Err(e) => panic!("a decoded node does not re-encode: {e}"),
            }
            let _ = BasePart::open(&key, &node.base, &label);
            let _ = ParentPart::open(&key, &node.parent, &label);
        }
        let _ = decode_children(data);
        if let Ok(part) = cbor::from_slice::<BasePart>(data) {
            let _ = part.signer(
                &key,
                &label,
                &PublicKeyHash::of(&SigningKeyPair::from_seed(Zeroizing::new([1; 32])).public()),
            );
        }
        let _ = cbor::from_slice::<ParentPart>(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_arithmetic() {
        assert_eq!(chunk_count(0), 1);
        assert_eq!(chunk_count(1), 1);
        assert_eq!(chunk_count(CHUNK_SIZE), 1);
        assert_eq!(chunk_count(CHUNK_SIZE + 1), 2);
        assert_eq!(chunk_len(CHUNK_SIZE + 1, 0), CHUNK_SIZE as usize);
        assert_eq!(chunk_len(CHUNK_SIZE + 1, 1), 1);
        assert_eq!(chunk_len(CHUNK_SIZE + 1, 2), 0);
        assert_eq!(chunk_len(0, 0), 0);
    }

    #[test]
    fn content_seals_inline_or_in_fragments() {
        let key = SymmetricKey::random();
        let label = Label::random();
        let small = seal_inline(&key, &label, &pad_data(vec![1; 10]));
        assert_eq!(small.len(), PAD_MULTIPLE + SymmetricKey::OVERHEAD);
        assert_eq!(open_inline(&key, &label, &small).unwrap()[..10], [1; 10]);
        assert!(open_inline(&key, &Label::random(), &small).is_err());

        let data = pad_data(vec![2; CHUNK_SIZE as usize]);
        let frags = seal_fragments(&key, &label, &data, b"frame", |block| block);
        assert_eq!(frags.len(), 5);
        for (i, frag) in frags.iter().enumerate() {
            assert_eq!(frag.len(), 5 + FRAGMENT_SIZE + SymmetricKey::OVERHEAD);
            assert_eq!(&frag[..5], b"frame");
            // In order, and each opens only at its own position.
            let mut sealed = frag[5..].to_vec();
            let plain = open_fragment_in_place(&key, &label, i, 5, &mut sealed).unwrap();
            assert_eq!(sealed[plain], vec![2; FRAGMENT_SIZE]);
        }
        for (index, count) in [(2, 5), (3, 4)] {
            let mut sealed = frags[3][5..].to_vec();
            assert!(open_fragment_in_place(&key, &label, index, count, &mut sealed).is_err());
            let end = sealed.len() - SymmetricKey::TAG_SIZE;
            assert!(
                sealed[SymmetricKey::NONCE_SIZE..end]
                    .iter()
                    .all(|&b| b == 0),
                "a failed open left plaintext in the buffer"
            );
        }
    }

    #[test]
    fn parts_are_bound_to_role_and_label() {
        let key = SymmetricKey::random();
        let label = Label::random();
        let base = BasePart {
            dir: true,
            second: SymmetricKey::random(),
            signer: None,
        };
        let sealed = base.seal(&key, &label).unwrap();
        assert_eq!(sealed.len(), BASE_PAD + SymmetricKey::OVERHEAD);
        assert!(BasePart::open(&key, &sealed, &label).unwrap() == base);
        assert!(matches!(
            BasePart::open(&key, &sealed, &Label::random()),
            Err(Error::Decrypt { part: "base" })
        ));
        assert!(ParentPart::open(&key, &sealed, &label).is_err());
    }

    #[test]
    fn signer_link_needs_the_write_key_and_names_the_writer() {
        let write = SymmetricKey::random();
        let label = Label::random();
        let pair = SigningKeyPair::random();
        let writer = PublicKeyHash::of(&pair.public());
        let base = BasePart {
            dir: false,
            second: SymmetricKey::random(),
            signer: Some(BasePart::seal_signer(&write, &label, &pair)),
        };
        let back = base.signer(&write, &label, &writer).unwrap();
        assert_eq!(back.public(), pair.public());
        assert!(base
            .signer(&SymmetricKey::random(), &label, &writer)
            .is_err());
        let other = PublicKeyHash::of(&SigningKeyPair::random().public());
        assert!(matches!(
            base.signer(&write, &label, &other),
            Err(Error::MalformedNode { .. })
        ));
    }

    #[test]
    fn child_links_resolve_against_their_directory() {
        let owner = PublicKeyHash::of(&SigningKeyPair::random().public());
        let dir_write = SymmetricKey::random();
        let dir = AbsoluteCapability {
            owner,
            writer: owner,
            label: Label::random(),
            bat: Some(Bat::random()),
            read: SymmetricKey::random(),
            write: Some(dir_write.clone()),
        };
        let child_write = SymmetricKey::random();
        let label = Label::random();
        let link = ChildLink {
            writer: None,
            label,
            bat: Some(Bat::random()),
            read: SymmetricKey::random(),
            write: Some(ChildLink::seal_write(&dir_write, &label, &child_write)),
            name_tag: name_tag(&dir.read, "child"),
        };
        let cap = link.resolve(&dir).unwrap();
        assert_eq!((cap.owner, cap.writer, cap.label), (owner, owner, label));
        assert!(cap.write == Some(child_write));
        // A child under its own writer keeps it.
        let own = PublicKeyHash::of(&SigningKeyPair::random().public());
        let moved = ChildLink {
            writer: Some(own),
            ..link.clone()
        };
        assert_eq!(moved.resolve(&dir).unwrap().writer, own);
        // Through a read-only directory, the child is read-only too.
        assert!(!link.resolve(&dir.read_only()).unwrap().is_writable());
        // The wrong directory write key does not open the child's.
        let other = AbsoluteCapability {
            write: Some(SymmetricKey::random()),
            ..dir.clone()
        };
        assert!(matches!(link.resolve(&other), Err(Error::Decrypt { .. })));
    }

    #[test]
    fn names_are_checked() {
        for good in ["a", "file.txt", ".hidden", "ünïcødé", &"x".repeat(255)] {
            check_name(good).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "nul\0", &"x".repeat(256)] {
            assert!(
                matches!(check_name(bad), Err(Error::BadName { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn chunk_chain_is_deterministic_and_unlinkable() {
        let stream = [9u8; 32];
        let label = Label::random();
        let (a, bat_a) = next_chunk(&stream, &label);
        let (b, bat_b) = next_chunk(&stream, &label);
        assert_eq!(a, b);
        assert_eq!(bat_a, bat_b);
        assert_ne!(a.0, *bat_a.as_bytes());
        assert_ne!(next_chunk(&[8u8; 32], &label).0, a);
    }
}
