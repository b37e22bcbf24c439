//! Real API bodies for the `api_request` fuzz target: they decode and
//! round-trip, and the committed `valid-*` seeds keep decoding.

use bytes::Bytes;
use peergos_api::*;
use peergos_blockstore::{PutBlocks, SignedBlock, TransactionId};
use peergos_ipld::{cbor, Cid, Codec, HashFn};
use peergos_keys::{LoginParams, PublicKeyHash, SigningKeyPair};
use peergos_pki::{Claim, KeyChain};
use peergos_server::peers::{
    decode_answer, encode_answer, Have, TunnelRequest, TunnelResponse, Want,
};

fn bodies() -> Vec<(&'static str, Vec<u8>)> {
    let key = SigningKeyPair::random();
    let owner = PublicKeyHash::of(&key.public());
    let put = PutBlocks {
        owner,
        writer: owner,
        transaction: TransactionId::random(),
        blocks: vec![SignedBlock::sign(&key, Codec::Raw, vec![1u8, 2, 3])],
    };
    // As clients sent it before fragments were named with BLAKE3.
    let put_sha256 = PutBlocks {
        blocks: vec![
            SignedBlock::sign_with_hash(&key, HashFn::Sha2_256, Codec::Raw, vec![1u8, 2, 3]).1,
        ],
        ..put.clone()
    };
    let cid = Cid::hash(Codec::Raw, b"x");
    let chain = KeyChain::new(
        Claim {
            username: "alice".into(),
            identity: owner,
            expiry: 2_000_000_000,
            servers: vec![owner.to_string()],
        },
        &key,
    )
    .unwrap();
    let stamp = Stamp {
        time_ms: 1,
        signature: key.sign(LOGIN_AUTH, b"m"),
    };
    vec![
        ("put", encode_put(&put)),
        ("put-sha256", encode_put(&put_sha256)),
        (
            "get",
            cbor::to_vec(&GetRequest {
                cid,
                auth: None,
                owner: None,
            })
            .unwrap(),
        ),
        (
            "lookup",
            cbor::to_vec(&ChampLookup {
                root: cid,
                key: [7; 32],
            })
            .unwrap(),
        ),
        (
            "tx",
            cbor::to_vec(&TxRequest {
                owner,
                transaction: Some([1; 16]),
            })
            .unwrap(),
        ),
        (
            "signup",
            cbor::to_vec(&SignupRequest {
                username: "alice".into(),
                chain,
                login: LoginParams::new_random(),
                login_key: key.public(),
                data: Bytes::from_static(b"sealed"),
                token: None,
            })
            .unwrap(),
        ),
        (
            "login",
            cbor::to_vec(&LoginRequest {
                stamp: stamp.clone(),
            })
            .unwrap(),
        ),
        (
            "change",
            cbor::to_vec(&ChangeRequest {
                stamp,
                login: LoginParams::new_random(),
                login_key: key.public(),
                data: Bytes::from_static(b"sealed"),
            })
            .unwrap(),
        ),
        (
            "space",
            cbor::to_vec(&Space {
                used: 1,
                quota: 2,
                pending: 3,
            })
            .unwrap(),
        ),
        (
            "tunnel-request",
            cbor::to_vec(&TunnelRequest {
                method: "POST".into(),
                path: "/v1/blocks/get".into(),
                content_type: Some("application/cbor".into()),
                body: vec![0xa0],
            })
            .unwrap(),
        ),
        (
            "tunnel-response",
            cbor::to_vec(&TunnelResponse {
                status: 200,
                content_type: None,
                body: b"ok".to_vec(),
            })
            .unwrap(),
        ),
        (
            "exchange-want",
            cbor::to_vec(&vec![Want { cid, auth: None }]).unwrap(),
        ),
        (
            "exchange-have",
            encode_answer(&[
                Have {
                    block: Some(Bytes::from_static(b"x")),
                    refused: None,
                },
                Have {
                    block: None,
                    refused: None,
                },
            ]),
        ),
    ]
}

fn decodes_as_something(data: &[u8]) -> bool {
    decode_put(&Bytes::copy_from_slice(data)).is_ok()
        || cbor::from_slice::<GetRequest>(data).is_ok()
        || cbor::from_slice::<TunnelRequest>(data).is_ok()
        || cbor::from_slice::<TunnelResponse>(data).is_ok()
        || cbor::from_slice::<Vec<Want>>(data).is_ok()
        || decode_answer(&Bytes::copy_from_slice(data)).is_ok()
        || cbor::from_slice::<ChampLookup>(data).is_ok()
        || cbor::from_slice::<TxRequest>(data).is_ok()
        || cbor::from_slice::<SignupRequest>(data).is_ok()
        || cbor::from_slice::<LoginRequest>(data).is_ok()
        || cbor::from_slice::<ChangeRequest>(data).is_ok()
        || cbor::from_slice::<Space>(data).is_ok()
}

#[test]
fn real_bodies_round_trip_and_seed_the_fuzzer() {
    for (name, body) in bodies() {
        assert!(decodes_as_something(&body), "{name}");
        peergos_server::fuzzing::request(&body);
        if let Some(dir) = peergos_testkit::fuzz::seed_dir() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("valid-{name}")), &body).unwrap();
        }
    }
}

#[test]
fn committed_seeds_still_decode() {
    let seeds = peergos_testkit::fuzz::valid_seeds("api_request");
    assert!(seeds.len() >= 5, "only {} valid seeds", seeds.len());
    for seed in seeds {
        assert!(decodes_as_something(&seed));
    }
}

/// The put seed an older build wrote (before BLAKE3 names) decodes as
/// sha2-256 blocks and encodes back byte for byte: a client of this build
/// sends sha2-256 blocks exactly as older clients did, which is what an
/// older server reads.
#[test]
fn a_put_from_before_blake3_round_trips_byte_for_byte() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/api_request");
    let old = Bytes::from(std::fs::read(dir.join("valid-put-sha256")).unwrap());
    let put = decode_put(&old).unwrap();
    assert!(!put.blocks.is_empty());
    assert!(put.blocks.iter().all(|b| b.hash == HashFn::Sha2_256));
    assert_eq!(encode_put(&put), old.to_vec());
    // The same put named with BLAKE3 is another body.
    let new = Bytes::from(std::fs::read(dir.join("valid-put")).unwrap());
    assert!(decode_put(&new)
        .unwrap()
        .blocks
        .iter()
        .all(|b| b.hash == HashFn::Blake3));
}
