//! The put body: `u32 BE header length ‖ CBOR PutHeader ‖ every block's
//! bytes, in order`, and its bounded, streaming reader.

use std::collections::VecDeque;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use peergos_blockstore::{BlockBuf, PutBlocks, SignedBlock, TransactionId, SMALL_BLOCK_MAX};
use peergos_ipld::{cbor, Codec, HashFn};
use peergos_keys::{PublicKeyHash, Signature};
use serde::{Deserialize, Serialize};

use crate::MAX_BODY;

/// The content type of a put body ([`encode_put`]).
pub const PUT_CONTENT_TYPE: &str = "application/vnd.peergos.put";

/// The largest CBOR header of a put body.
pub const MAX_PUT_HEADER: usize = 256 << 10;

/// The most blocks in one put.
pub const MAX_PUT_BLOCKS: usize = 1024;

/// What a put body says about one block.
///
/// CBOR: `{"c": u64 codec, ?"h": u64 multihash, "n": u64 length, "s":
/// bytes(64)}`; without `"h"` the block is named with sha2-256 (0x12), as
/// before BLAKE3 names (0x1e) existed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlockHeader {
    /// Codec (0x71 dag-cbor, 0x55 raw).
    #[serde(rename = "c")]
    pub codec: u64,
    /// The multihash code that names the block (0x12 sha2-256, 0x1e
    /// BLAKE3); left out for sha2-256.
    #[serde(
        rename = "h",
        default = "sha2_code",
        skip_serializing_if = "is_sha2_code"
    )]
    pub hash: u64,
    /// The block's length in bytes.
    #[serde(rename = "n")]
    pub len: u64,
    /// The writer's signature over the CID.
    #[serde(rename = "s")]
    pub signature: Signature,
}

fn sha2_code() -> u64 {
    HashFn::Sha2_256.code()
}

fn is_sha2_code(code: &u64) -> bool {
    *code == sha2_code()
}

/// The header of a put body.
///
/// CBOR: `{"o": link, "w": link, "t": bytes(16), "b": [BlockHeader]}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PutHeader {
    /// Owner.
    #[serde(rename = "o")]
    pub owner: PublicKeyHash,
    /// Writer.
    #[serde(rename = "w")]
    pub writer: PublicKeyHash,
    /// Transaction.
    #[serde(rename = "t", with = "serde_bytes")]
    pub transaction: [u8; 16],
    /// The blocks, in the order their bytes follow.
    #[serde(rename = "b")]
    pub blocks: Vec<BlockHeader>,
}

/// The body of `POST /v1/blocks/put`: `u32 BE header length ‖ CBOR
/// PutHeader ‖ every block's bytes, in order`. Block bytes are not CBOR,
/// so megabytes of ciphertext are neither re-encoded nor copied on the
/// way in; the server slices them out of the body.
pub fn encode_put(put: &PutBlocks) -> Vec<u8> {
    encode_put_parts(put).concat()
}

/// A put body ([`encode_put`]) as the buffers it is made of: the framed
/// header, then each block's bytes (shared, not copied), for a client that
/// sends them one after another.
pub fn encode_put_parts(put: &PutBlocks) -> Vec<Bytes> {
    let header = PutHeader {
        owner: put.owner,
        writer: put.writer,
        transaction: put.transaction.to_bytes(),
        blocks: put
            .blocks
            .iter()
            .map(|b| BlockHeader {
                codec: b.codec.code(),
                hash: b.hash.code(),
                len: b.data.len() as u64,
                signature: b.signature,
            })
            .collect(),
    };
    // A header of plain fields always encodes.
    let header = cbor::to_vec(&header).unwrap_or_default();
    let mut parts = Vec::with_capacity(1 + put.blocks.len());
    parts.push(Bytes::from(crate::framing::prefixed(&header, 0)));
    parts.extend(put.blocks.iter().map(|b| b.data.clone()));
    parts
}

/// Why a put body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadPut {
    /// Its blocks add up to more than [`MAX_BODY`].
    TooLarge,
    /// It is not a put body: the reason.
    Malformed(String),
}

impl std::fmt::Display for BadPut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadPut::TooLarge => write!(f, "a put body over the {} MiB limit", MAX_BODY >> 20),
            BadPut::Malformed(reason) => f.write_str(reason),
        }
    }
}

/// The start of a put body read from its frames: the header, every frame
/// read so far (whole, so the body can be passed on unchanged), and where
/// the blocks start in them.
pub struct PutHead {
    /// The parsed header.
    pub header: PutHeader,
    /// The frames read, in order.
    pub frames: Vec<Bytes>,
    /// How many bytes of `frames` the length prefix and header take.
    pub blocks_at: usize,
}

/// Reads a put body's frames until its header is complete, and parses the
/// header (which must be canonical CBOR of at most [`MAX_PUT_HEADER`]
/// bytes). Only the header is copied.
pub async fn read_put_head<S, E>(frames: &mut S) -> Result<PutHead, BadPut>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut read: Vec<Bytes> = Vec::new();
    let (mut have, mut need, mut header_len) = (0, 4, None);
    loop {
        while have < need {
            let frame = next_frame(frames).await?.ok_or_else(|| {
                BadPut::Malformed(match header_len {
                    None => "a put body starts with a 4-byte header length".into(),
                    Some(_) => "the put body is shorter than its header length".into(),
                })
            })?;
            have += frame.len();
            read.push(frame);
        }
        if header_len.is_some() {
            break;
        }
        let prefix = first_bytes(&read, 4);
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if len > MAX_PUT_HEADER {
            return Err(BadPut::Malformed(format!(
                "a put body header of {len} bytes (at most {MAX_PUT_HEADER})"
            )));
        }
        header_len = Some(len);
        need = 4 + len;
    }
    let header = cbor::from_slice_extensible(
        &first_bytes(&read, need)[4..],
        cbor::Limits {
            max_size: MAX_PUT_HEADER,
            max_depth: 8,
        },
    )
    .map_err(|e| BadPut::Malformed(format!("put header: {e}")))?;
    Ok(PutHead {
        header,
        frames: read,
        blocks_at: need,
    })
}

/// The next non-empty frame, None at the end of the body.
async fn next_frame<S, E>(frames: &mut S) -> Result<Option<Bytes>, BadPut>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    loop {
        match frames.next().await {
            Some(Ok(frame)) if frame.is_empty() => {}
            Some(Ok(frame)) => return Ok(Some(frame)),
            Some(Err(e)) => return Err(BadPut::Malformed(format!("reading the put body: {e}"))),
            None => return Ok(None),
        }
    }
}

/// A copy of the first `n` bytes of `frames` (which hold at least that).
fn first_bytes(frames: &[Bytes], n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    for frame in frames {
        let take = (n - out.len()).min(frame.len());
        out.extend_from_slice(&frame[..take]);
        if out.len() == n {
            break;
        }
    }
    out
}

/// Reads a put body ([`encode_put`]) as its frames arrive: its head, the
/// header's bounds ([`check_put_header`]), then its blocks
/// ([`read_put_blocks`]).
pub async fn read_put<S, E>(frames: &mut S) -> Result<PutBlocks, BadPut>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let head = read_put_head(frames).await?;
    check_put_header(&head.header)?;
    read_put_blocks(head, frames).await
}

/// Checks a put header's bounds before any block's bytes are read or
/// memory is set aside for them: at most [`MAX_PUT_BLOCKS`] blocks, each
/// at most [`peergos_ipld::MAX_BLOCK_SIZE`], at most [`MAX_BODY`] in all.
/// Returns the total the blocks declare.
pub fn check_put_header(header: &PutHeader) -> Result<u64, BadPut> {
    if header.blocks.len() > MAX_PUT_BLOCKS {
        return Err(BadPut::Malformed(format!(
            "at most {MAX_PUT_BLOCKS} blocks per put"
        )));
    }
    let mut total: u64 = 0;
    for b in &header.blocks {
        if b.len > peergos_ipld::MAX_BLOCK_SIZE as u64 {
            return Err(BadPut::Malformed(format!(
                "a block of {} bytes (at most {} per block)",
                b.len,
                peergos_ipld::MAX_BLOCK_SIZE
            )));
        }
        total = total.saturating_add(b.len);
    }
    if total > MAX_BODY as u64 {
        return Err(BadPut::TooLarge);
    }
    Ok(total)
}

/// Reads the blocks of a put body whose head ([`read_put_head`]) was read
/// and whose header was checked ([`check_put_header`]). Each block
/// larger than [`peergos_blockstore::SMALL_BLOCK_MAX`] is copied once,
/// into a pooled, aligned [`peergos_blockstore::BlockBuf`] that the file
/// store writes to the disk from where it lies; a smaller one is a slice
/// of its frame when it fits in one. The lengths the header names must add
/// up to exactly the rest of the body.
pub async fn read_put_blocks<S, E>(head: PutHead, frames: &mut S) -> Result<PutBlocks, BadPut>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let header = head.header;
    check_put_header(&header)?;
    // The bytes after the header in the frames read so far.
    let mut pending: VecDeque<Bytes> = VecDeque::new();
    let mut skip = head.blocks_at;
    for frame in head.frames {
        if skip >= frame.len() {
            skip -= frame.len();
        } else {
            pending.push_back(frame.slice(skip..));
            skip = 0;
        }
    }
    let short = || BadPut::Malformed("the put body is shorter than its blocks' lengths".into());
    let mut blocks = Vec::with_capacity(header.blocks.len());
    for b in &header.blocks {
        let codec = Codec::from_code(b.codec)
            .ok_or_else(|| BadPut::Malformed(format!("unknown codec 0x{:x}", b.codec)))?;
        let hash = HashFn::from_code(b.hash).ok_or_else(|| {
            BadPut::Malformed(format!(
                "unknown multihash 0x{:x} (expected 0x12 sha2-256 or 0x1e blake3)",
                b.hash
            ))
        })?;
        // Within MAX_BODY, checked above.
        let len = b.len as usize;
        if pending.is_empty() && len > 0 {
            pending.push_back(next_frame(frames).await?.ok_or_else(short)?);
        }
        let data = match pending.front_mut() {
            Some(front) if len <= SMALL_BLOCK_MAX && front.len() >= len => front.split_to(len),
            _ => {
                let mut buf = BlockBuf::new(len);
                let into = buf.as_mut_slice();
                let mut filled = 0;
                while filled < len {
                    let mut piece = match pending.pop_front() {
                        Some(piece) => piece,
                        None => next_frame(frames).await?.ok_or_else(short)?,
                    };
                    let take = piece.len().min(len - filled);
                    into[filled..filled + take].copy_from_slice(&piece.split_to(take));
                    filled += take;
                    if !piece.is_empty() {
                        pending.push_front(piece);
                    }
                }
                buf.freeze()
            }
        };
        if pending.front().is_some_and(Bytes::is_empty) {
            pending.pop_front();
        }
        blocks.push(SignedBlock {
            codec,
            hash,
            data,
            signature: b.signature,
        });
    }
    let mut extra: usize = pending.iter().map(Bytes::len).sum();
    while extra <= MAX_BODY {
        match next_frame(frames).await? {
            Some(frame) => extra += frame.len(),
            None => break,
        }
    }
    if extra > 0 {
        return Err(BadPut::Malformed(format!(
            "{extra} bytes after the last block of the put body"
        )));
    }
    Ok(PutBlocks {
        owner: header.owner,
        writer: header.writer,
        transaction: TransactionId::from_bytes(header.transaction),
        blocks,
    })
}

/// Parses a put body ([`encode_put`]) held whole: [`read_put`] on one
/// frame.
pub fn decode_put(body: &Bytes) -> Result<PutBlocks, String> {
    let mut frames = futures::stream::iter([Ok::<_, std::convert::Infallible>(body.clone())]);
    futures::executor::block_on(read_put(&mut frames)).map_err(|e| e.to_string())
}
