//! The put body read as it streams in (`read_put`): however its bytes are
//! split into frames, it decodes to the blocks that were sent, large
//! blocks land in aligned buffers, and a cut, padded or oversized body is
//! refused with the reason.

use bytes::Bytes;
use futures::executor::block_on;
use peergos_api::{encode_put, read_put, BadPut, BlockHeader, PutHeader, MAX_BODY};
use peergos_blockstore::{PutBlocks, SignedBlock, TransactionId, SMALL_BLOCK_MAX};
use peergos_ipld::{cbor, Codec, HashFn};
use peergos_keys::{PublicKeyHash, SigningKeyPair};
use proptest::prelude::*;

fn put_of(sizes: &[usize]) -> PutBlocks {
    let writer = SigningKeyPair::random();
    let blocks = sizes
        .iter()
        .enumerate()
        .map(|(n, &len)| {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 + n) as u8).collect();
            // Both names: BLAKE3 as clients write now, sha2-256 as before.
            let hash = [HashFn::Blake3, HashFn::Sha2_256][n % 2];
            SignedBlock::sign_with_hash(&writer, hash, Codec::Raw, data).1
        })
        .collect();
    PutBlocks {
        owner: PublicKeyHash::of(&writer.public()),
        writer: PublicKeyHash::of(&writer.public()),
        transaction: TransactionId::from_bytes([7; 16]),
        blocks,
    }
}

/// `body` cut at `cuts` (offsets, in any order) into frames.
fn frames(body: &[u8], cuts: &[usize]) -> Vec<Bytes> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
    at.push(0);
    at.push(body.len());
    at.sort_unstable();
    at.windows(2)
        .map(|w| Bytes::copy_from_slice(&body[w[0]..w[1]]))
        .collect()
}

fn read(frames: Vec<Bytes>) -> Result<PutBlocks, BadPut> {
    let mut frames =
        futures::stream::iter(frames.into_iter().map(Ok::<_, std::convert::Infallible>));
    block_on(read_put(&mut frames))
}

fn sizes() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(
        prop_oneof![
            0usize..300,
            SMALL_BLOCK_MAX - 2..SMALL_BLOCK_MAX + 3,
            200_000usize..300_000
        ],
        0..5,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_framing_decodes_to_the_blocks_sent(
        sizes in sizes(),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let put = put_of(&sizes);
        let body = encode_put(&put);
        let got = read(frames(&body, &cuts)).unwrap();
        prop_assert_eq!(got.owner, put.owner);
        prop_assert_eq!(got.writer, put.writer);
        prop_assert_eq!(got.transaction, put.transaction);
        prop_assert_eq!(got.blocks.len(), put.blocks.len());
        for (got, sent) in got.blocks.iter().zip(&put.blocks) {
            prop_assert_eq!(&got.data, &sent.data);
            prop_assert_eq!(got.codec, sent.codec);
            prop_assert_eq!(got.hash, sent.hash);
            prop_assert_eq!(got.signature, sent.signature);
            // What the file store writes with direct I/O lies aligned.
            if sent.data.len() > SMALL_BLOCK_MAX {
                prop_assert_eq!(got.data.as_ptr() as usize % peergos_blockstore::buffer::ALIGN, 0);
            }
        }
    }

    #[test]
    fn a_cut_or_padded_body_is_refused(
        sizes in proptest::collection::vec(1usize..5000, 1..4),
        cut in 1usize..4000,
        pad in 1usize..100,
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let body = encode_put(&put_of(&sizes));
        let short = &body[..body.len().saturating_sub(cut)];
        let err = read(frames(short, &cuts)).unwrap_err();
        prop_assert!(matches!(err, BadPut::Malformed(_)), "{err}");
        let mut long = body.clone();
        long.extend(std::iter::repeat_n(0u8, pad));
        let err = read(frames(&long, &cuts)).unwrap_err();
        prop_assert_eq!(
            err,
            BadPut::Malformed(format!("{pad} bytes after the last block of the put body"))
        );
    }
}

#[test]
fn blocks_adding_up_to_more_than_the_limit_are_too_large_before_any_is_read() {
    // A header naming blocks of 1 MiB each, more of them than the limit
    // allows, and no block bytes at all: refused on the header alone.
    let blocks = MAX_BODY / (1 << 20) + 1;
    let mut put = put_of(&[1 << 20]);
    let one = put.blocks[0].clone();
    put.blocks = vec![one; blocks];
    let body = encode_put(&put);
    let header_len = u32::from_be_bytes([body[0], body[1], body[2], body[3]]) as usize;
    let head = Bytes::copy_from_slice(&body[..4 + header_len]);
    assert_eq!(read(vec![head]).unwrap_err(), BadPut::TooLarge);
}

#[test]
fn a_body_that_is_not_a_put_says_why() {
    for (body, why) in [
        (&b""[..], "4-byte header length"),
        (&b"\x00\x00"[..], "4-byte header length"),
        (&b"\x00\x00\x00\x10ab"[..], "shorter than its header length"),
        (&b"\xff\xff\xff\xff"[..], "header of 4294967295 bytes"),
        (&b"\x00\x00\x00\x01\x01"[..], "put header"),
    ] {
        let err = read(vec![Bytes::from_static(body)]).unwrap_err();
        assert!(err.to_string().contains(why), "{body:?}: {err}");
    }
}

/// A body of one sha2-256 block whose header names `hash` (None: no
/// `"h"`, as clients from before BLAKE3 sent).
fn old_body(data: &[u8], hash: Option<u64>) -> Vec<u8> {
    let writer = SigningKeyPair::random();
    let (_, signed) =
        SignedBlock::sign_with_hash(&writer, HashFn::Sha2_256, Codec::Raw, data.to_vec());
    let header = PutHeader {
        owner: PublicKeyHash::of(&writer.public()),
        writer: PublicKeyHash::of(&writer.public()),
        transaction: [7; 16],
        blocks: vec![BlockHeader {
            codec: Codec::Raw.code(),
            hash: hash.unwrap_or(HashFn::Sha2_256.code()),
            len: data.len() as u64,
            signature: signed.signature,
        }],
    };
    let header = cbor::to_vec(&header).unwrap();
    let mut body = (header.len() as u32).to_be_bytes().to_vec();
    body.extend_from_slice(&header);
    body.extend_from_slice(data);
    body
}

#[test]
fn a_header_without_a_hash_names_sha256() {
    // As older clients sent every block (fuzz_seeds.rs checks that such
    // a body encodes back byte for byte).
    let got = read(vec![Bytes::from(old_body(b"fragment", None))]).unwrap();
    assert_eq!(got.blocks[0].hash, HashFn::Sha2_256);
    let put = put_of(&[10]);
    assert_eq!(put.blocks[0].hash, HashFn::Blake3);
    let got = read(vec![Bytes::from(encode_put(&put))]).unwrap();
    assert_eq!(got.blocks[0].hash, HashFn::Blake3);
}

#[test]
fn a_hash_the_server_does_not_know_is_refused_by_name() {
    // sha3-256 (0x16).
    let err = read(vec![Bytes::from(old_body(b"fragment", Some(0x16)))]).unwrap_err();
    assert_eq!(
        err,
        BadPut::Malformed("unknown multihash 0x16 (expected 0x12 sha2-256 or 0x1e blake3)".into())
    );
}
