//! The directory listing encoder writes canonical DAG-CBOR by hand; it
//! must produce exactly what the generic encoder does, and decode back.

use peergos_cryptree::node::{
    decode_children, encode_children, encode_children_generic, ChildLink,
};
use peergos_cryptree::Label;
use peergos_keys::{Bat, PublicKeyHash, SigningKeyPair, SymmetricKey};
use proptest::prelude::*;

fn link(bat: bool, write_len: Option<usize>, writer: bool, seed: u8) -> ChildLink {
    ChildLink {
        writer: writer.then(|| {
            PublicKeyHash::of(
                &SigningKeyPair::from_seed(zeroize::Zeroizing::new([seed; 32])).public(),
            )
        }),
        label: Label([seed; 32]),
        bat: bat.then(|| Bat::from_bytes([seed.wrapping_add(1); 32])),
        read: SymmetricKey::from_bytes([seed.wrapping_add(2); 32]),
        write: write_len.map(|n| serde_bytes::ByteBuf::from(vec![seed; n])),
        name_tag: [seed.wrapping_add(3); 16],
    }
}

proptest! {
    #[test]
    fn hand_encoder_matches_the_generic_one(
        shapes in proptest::collection::vec(
            (any::<bool>(), proptest::option::of(0usize..300), any::<bool>(), any::<u8>()),
            0..40,
        )
    ) {
        let children: Vec<ChildLink> = shapes
            .into_iter()
            .map(|(b, k, w, seed)| link(b, k, w, seed))
            .collect();
        let mut generic = encode_children_generic(&children).unwrap();
        peergos_keys::pad(&mut generic, 4096);
        let fast = encode_children(&children).unwrap();
        prop_assert_eq!(&fast, &generic);
        let back = decode_children(&fast).unwrap();
        prop_assert!(back == children);
    }
}

#[test]
fn long_lists_use_wider_heads() {
    for n in [23, 24, 255, 256, 500] {
        let children: Vec<ChildLink> = (0..n)
            .map(|i| link(true, Some(72), i % 7 == 0, i as u8))
            .collect();
        let mut generic = encode_children_generic(&children).unwrap();
        peergos_keys::pad(&mut generic, 4096);
        assert_eq!(encode_children(&children).unwrap(), generic, "{n} children");
    }
}
