//! Round-trip and tamper properties of every key type.

use peergos_ipld::{cbor, Cid, Codec};
use peergos_keys::{
    bat, pad, unpad, Bat, BatId, BatProof, BoxingKeyPair, Domain, Error, PublicBoxingKey,
    PublicKeyHash, PublicSigningKey, SigningKeyPair, SymmetricKey,
};
use proptest::prelude::*;

const DOMAIN: Domain = Domain::new("peergos/proptest/v1");

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn symmetric_round_trip_and_tamper(data in proptest::collection::vec(any::<u8>(), 0..2048), flip in any::<prop::sample::Index>()) {
        let key = SymmetricKey::random();
        let mut sealed = key.encrypt(&data);
        prop_assert_eq!(sealed.len(), data.len() + SymmetricKey::OVERHEAD);
        prop_assert_eq!(&key.decrypt(&sealed).unwrap(), &data);
        let i = flip.index(sealed.len());
        sealed[i] ^= 1;
        prop_assert!(matches!(key.decrypt(&sealed), Err(Error::DecryptionFailed)));
    }

    #[test]
    fn decrypting_in_place_matches_decrypt(data in proptest::collection::vec(any::<u8>(), 0..2048), aad in proptest::collection::vec(any::<u8>(), 0..64), flip in any::<prop::sample::Index>()) {
        let key = SymmetricKey::random();
        let sealed = key.encrypt_with_aad(&data, &aad);
        let mut buffer = sealed.clone();
        let range = key.decrypt_in_place_with_aad(&mut buffer, &aad).unwrap();
        prop_assert_eq!(&buffer[range], &data[..]);
        // A flipped bit anywhere (nonce, ciphertext, tag), or other aad:
        // refused, the ciphertext overwritten with zeros (no plaintext that
        // failed its check is left) and the nonce and tag as they were.
        let mut tampered = sealed.clone();
        let i = flip.index(tampered.len());
        tampered[i] ^= 1;
        let before = tampered.clone();
        prop_assert!(matches!(key.decrypt_in_place_with_aad(&mut tampered, &aad), Err(Error::DecryptionFailed)));
        let end = tampered.len() - SymmetricKey::TAG_SIZE;
        prop_assert!(tampered[SymmetricKey::NONCE_SIZE..end].iter().all(|&b| b == 0));
        prop_assert_eq!(&tampered[..SymmetricKey::NONCE_SIZE], &before[..SymmetricKey::NONCE_SIZE]);
        prop_assert_eq!(&tampered[end..], &before[end..]);
        let mut other = sealed.clone();
        prop_assert!(matches!(key.decrypt_in_place_with_aad(&mut other, b"other aad"), Err(Error::DecryptionFailed)));
        // Too short to hold a nonce and a tag.
        let mut short = vec![0u8; flip.index(SymmetricKey::OVERHEAD)];
        let refused = matches!(key.decrypt_in_place_with_aad(&mut short, &aad), Err(Error::InvalidLength { .. }));
        prop_assert!(refused);
    }

    #[test]
    fn padding_round_trips(data in proptest::collection::vec(any::<u8>(), 0..5000), multiple in prop_oneof![Just(16usize), Just(64), Just(4096)]) {
        let mut padded = data.clone();
        pad(&mut padded, multiple);
        prop_assert_eq!(padded.len() % multiple, 0);
        prop_assert!(padded.len() > data.len());
        prop_assert_eq!(unpad(&padded).unwrap(), &data[..]);
    }

    #[test]
    fn signatures_verify_only_their_message(message in proptest::collection::vec(any::<u8>(), 0..512), other in proptest::collection::vec(any::<u8>(), 0..512)) {
        let pair = SigningKeyPair::random();
        let signature = pair.sign(DOMAIN, &message);
        prop_assert!(pair.public().verify(DOMAIN, &message, &signature).is_ok());
        if other != message {
            prop_assert!(pair.public().verify(DOMAIN, &other, &signature).is_err());
        }
        let public = PublicSigningKey::from_bytes(&pair.public().to_bytes()).unwrap();
        prop_assert_eq!(public, pair.public());
        let hash = PublicKeyHash::of(&public);
        prop_assert_eq!(hash.key().unwrap(), public);
        prop_assert_eq!(cbor::from_slice::<PublicKeyHash>(&cbor::to_vec(&hash).unwrap()).unwrap(), hash);
    }

    #[test]
    fn public_key_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1300)) {
        let _ = PublicSigningKey::from_bytes(&bytes);
        let _ = PublicBoxingKey::from_bytes(&bytes);
        let _ = BoxingKeyPair::from_secret_bytes(&bytes);
        let _ = BatId::from_bytes(&bytes);
        let _ = bat::split_raw(&bytes);
    }

    #[test]
    fn bat_frames_and_proofs_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..600), count in 1usize..=4, time in 0u64..1u64 << 40) {
        let bats: Vec<Bat> = (0..count).map(|_| Bat::random()).collect();
        let ids: Vec<BatId> = bats.iter().map(Bat::id).collect();
        let framed = bat::frame_raw(&ids, &payload).unwrap();
        let (back, rest) = bat::split_raw(&framed).unwrap();
        prop_assert_eq!(&back, &ids);
        prop_assert_eq!(rest, &payload[..]);
        let cid = Cid::hash(Codec::Raw, &framed);
        let proof = bats[count - 1].prove(&cid, b"requester", time);
        let decoded: BatProof = cbor::from_slice(&cbor::to_vec(&proof).unwrap()).unwrap();
        prop_assert_eq!(&decoded, &proof);
        prop_assert!(decoded.verify(&ids, &cid, b"requester", time).is_ok());
    }
}

proptest! {
    // ML-KEM key generation dominates; fewer cases.
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn sealed_boxes_round_trip(data in proptest::collection::vec(any::<u8>(), 0..1024), hybrid in any::<bool>()) {
        let pair = if hybrid { BoxingKeyPair::random() } else { BoxingKeyPair::random_classic() };
        let public = PublicBoxingKey::from_bytes(&pair.public().to_bytes()).unwrap();
        let sealed = public.seal(&data).unwrap();
        prop_assert_eq!(pair.open(&sealed).unwrap(), data);
        let restored = BoxingKeyPair::from_secret_bytes(&pair.to_secret_bytes()).unwrap();
        prop_assert_eq!(restored.public(), pair.public());
    }
}
