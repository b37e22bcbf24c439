//! The block-exchange answer codec: what one server sends another.

use bytes::Bytes;
use peergos_api::{ErrorBody, ErrorCode};
use peergos_server::peers::{answer_header, decode_answer, encode_answer, Have, MAX_EXCHANGE};
use proptest::prelude::*;

fn have() -> impl Strategy<Value = Have> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..2048).prop_map(|b| Have {
            block: Some(Bytes::from(b)),
            refused: None,
        }),
        proptest::sample::select(ErrorCode::ALL).prop_map(|code| Have {
            block: None,
            refused: Some(ErrorBody::new(code, format!("refused: {code}"))),
        }),
        Just(Have {
            block: None,
            refused: None,
        }),
    ]
}

proptest! {
    #[test]
    fn answers_round_trip(haves in proptest::collection::vec(have(), 0..20)) {
        let frame = Bytes::from(encode_answer(&haves));
        prop_assert_eq!(decode_answer(&frame).unwrap(), haves);
    }

    #[test]
    fn a_cut_or_padded_answer_is_refused(
        haves in proptest::collection::vec(have(), 1..8),
        cut in 1usize..64,
    ) {
        let frame = encode_answer(&haves);
        let short = Bytes::copy_from_slice(&frame[..frame.len().saturating_sub(cut)]);
        prop_assert!(decode_answer(&short).is_err());
        let mut long = frame.clone();
        long.extend(std::iter::repeat_n(0u8, cut));
        prop_assert!(decode_answer(&Bytes::from(long)).is_err());
    }
}

#[test]
fn blocks_are_slices_of_the_frame_not_copies() {
    let haves = vec![
        Have {
            block: Some(Bytes::from(vec![7u8; 1000])),
            refused: None,
        },
        Have {
            block: Some(Bytes::from(vec![9u8; 500])),
            refused: None,
        },
    ];
    let frame = Bytes::from(encode_answer(&haves));
    let decoded = decode_answer(&frame).unwrap();
    let range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
    for have in &decoded {
        let block = have.block.as_ref().unwrap();
        assert!(range.contains(&(block.as_ptr() as usize)));
    }
    assert_eq!(decoded, haves);
}

#[test]
fn a_block_and_a_refusal_for_one_want_is_refused() {
    // Build the header by hand: one entry with both a length and an error.
    let header = peergos_ipld::cbor::to_vec(&vec![peergos_server::peers::HaveHeader {
        len: Some(1),
        refused: Some(ErrorBody::new(ErrorCode::AccessDenied, "no")),
    }])
    .unwrap();
    let mut frame = (header.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&header);
    frame.push(1);
    let err = decode_answer(&Bytes::from(frame)).unwrap_err();
    assert!(err.contains("both sends and refuses"), "{err}");
}

#[test]
fn too_many_answers_are_refused() {
    let haves = vec![
        Have {
            block: None,
            refused: None,
        };
        MAX_EXCHANGE + 1
    ];
    let err = decode_answer(&Bytes::from(encode_answer(&haves))).unwrap_err();
    assert!(err.contains("at most"), "{err}");
    // The header alone is what the answering side writes before the blocks.
    assert_eq!(answer_header(&haves), encode_answer(&haves));
}

#[test]
fn a_huge_header_length_is_refused_before_reading() {
    let err = decode_answer(&Bytes::from(vec![0xff, 0xff, 0xff, 0xff])).unwrap_err();
    assert!(err.contains("header of"), "{err}");
}
