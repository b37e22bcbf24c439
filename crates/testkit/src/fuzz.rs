//! Bodies of the fuzz targets: each takes untrusted bytes, must never
//! panic, and asserts the decoder's invariants on whatever it accepts.
//!
//! `fuzz/fuzz_targets/<name>.rs` calls the function of the same name; the
//! corpus in `fuzz/corpus/<name>/` is replayed by `tests/fuzz_corpora.rs`.

use std::sync::OnceLock;

use peergos_ipld::{cbor, Cid, Codec};
use peergos_keys::{
    bat, BoxingKeyPair, PublicBoxingKey, PublicSigningKey, SigningKeyPair, SymmetricKey,
};

/// A fuzz body: takes untrusted bytes, panics only on a broken invariant.
pub type Body = fn(&[u8]);

/// Every target: its name (the directory of its corpus) and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("cbor_decode", cbor_decode),
    ("cid_parse", cid_parse),
    ("ciphertext_open", ciphertext_open),
    ("bat_block", bat_block),
    ("signed_pointer", signed_pointer),
    ("champ_node", champ_node),
    ("capability", capability),
    ("cryptree_node", cryptree_node),
    ("pki_chain", pki_chain),
    ("api_request", api_request),
    ("follow_request", follow_request),
    ("secret_link", secret_link),
];

/// The strict DAG-CBOR decoder: whatever it accepts re-encodes exactly.
pub fn cbor_decode(data: &[u8]) {
    if let Ok(value) = cbor::decode_value(data) {
        assert_eq!(cbor::encode_value(&value).expect("re-encode"), data);
    }
}

/// Binary and text CIDs: whatever parses prints back identically.
pub fn cid_parse(data: &[u8]) {
    if let Ok(cid) = Cid::from_bytes(data) {
        assert_eq!(cid.to_bytes(), data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cid) = text.parse::<Cid>() {
            assert_eq!(cid.to_string(), text);
        }
    }
}

type Keys = (SymmetricKey, BoxingKeyPair, BoxingKeyPair, SigningKeyPair);

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        (
            SymmetricKey::from_bytes([7; 32]),
            BoxingKeyPair::from_secret_bytes(&[1; 33]).expect("classic secret"),
            BoxingKeyPair::from_secret_bytes(&[&[2u8][..], &[3; 96]].concat())
                .expect("hybrid secret"),
            SigningKeyPair::from_seed(zeroize::Zeroizing::new([9; 32])),
        )
    })
}

/// Ciphertexts, sealed boxes and encoded public keys from strangers: only
/// typed errors, and a key that parses re-encodes identically.
pub fn ciphertext_open(data: &[u8]) {
    let (key, classic, hybrid, _) = keys();
    let _ = key.decrypt(data);
    let _ = classic.open(data);
    let _ = hybrid.open(data);
    if let Ok(public) = PublicBoxingKey::from_bytes(data) {
        assert_eq!(public.to_bytes(), data);
    }
    if let Ok(public) = PublicSigningKey::from_bytes(data) {
        assert_eq!(public.to_bytes().as_slice(), data);
    }
}

/// Block-access-token lists on raw and DAG-CBOR blocks.
pub fn bat_block(data: &[u8]) {
    if let Ok((ids, payload)) = bat::split_raw(data) {
        if !ids.is_empty() {
            assert_eq!(bat::frame_raw(&ids, payload).expect("re-frame"), data);
        } else {
            assert_eq!(payload, data);
        }
    }
    let _ = bat::block_bats(&Cid::hash(Codec::DagCbor, data), data);
}

/// Signed pointer updates from a server or another client: whatever decodes
/// re-encodes identically, and verifying it never panics.
pub fn signed_pointer(data: &[u8]) {
    if let Ok(update) = peergos_pointers::SignedPointer::from_bytes(data) {
        assert_eq!(update.to_bytes().expect("re-encode"), data);
        let owner = peergos_keys::PublicKeyHash::of(&keys().3.public());
        let _ = update.verify(&owner, &owner);
    }
}

/// CHAMP nodes from a server (proofs, lookups): decoding is canonical and
/// walking a proof never panics.
pub fn champ_node(data: &[u8]) {
    peergos_champ::fuzzing::node(data);
}

/// Capability links and capability CBOR from strangers: whatever parses
/// prints back to the same text / bytes.
pub fn capability(data: &[u8]) {
    use peergos_cryptree::AbsoluteCapability;
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cap) = AbsoluteCapability::from_text(text) {
            assert_eq!(cap.to_text().expect("re-encode"), text);
        }
    }
    if let Ok(cap) = cbor::from_slice::<AbsoluteCapability>(data) {
        assert_eq!(cbor::to_vec(&cap).expect("re-encode"), data);
    }
}

/// Cryptree node blocks, their parts and directory listings from a server:
/// whatever decodes re-encodes identically; opening never panics.
pub fn cryptree_node(data: &[u8]) {
    peergos_cryptree::node::fuzzing::node(data);
}

/// Key chain blocks from a PKI node or a mirror: whatever decodes
/// re-encodes identically; checking it never panics.
pub fn pki_chain(data: &[u8]) {
    peergos_pki::fuzzing::chain(data);
}

/// HTTP API bodies: every request the server decodes and every answer a
/// client decodes; whatever decodes re-encodes identically.
pub fn api_request(data: &[u8]) {
    peergos_server::fuzzing::request(data);
}

/// The folder `PEERGOS_WRITE_SEEDS` names, if set: seed-writing tests
/// write real encodings there as `valid-*` files.
pub fn seed_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("PEERGOS_WRITE_SEEDS").map(std::path::PathBuf::from)
}

/// The committed `valid-*` seeds of fuzz target `target`: real encodings
/// that must keep decoding.
pub fn valid_seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut seeds = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("valid-")
        {
            seeds.push(std::fs::read(&path).unwrap());
        }
    }
    seeds
}

/// Follow requests: a sealed box as a server holds it (opened with a fixed
/// key), a padded plaintext, bare CBOR, the social state and share lists;
/// whatever decodes re-encodes identically and never verifies wrongly.
pub fn follow_request(data: &[u8]) {
    static KEY: OnceLock<BoxingKeyPair> = OnceLock::new();
    let key = KEY.get_or_init(BoxingKeyPair::random);
    let _ = peergos_social::FollowRequest::open(data, key);
    peergos_social::fuzzing::follow_request(data);
}

/// Secret links: records an owner sends a server, and link text;
/// whatever decodes re-encodes identically, and deriving never panics.
pub fn secret_link(data: &[u8]) {
    peergos_social::fuzzing::secret_link(data);
}
