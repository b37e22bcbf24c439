//! Criterion benches for the lowest layers: AEAD, hashing, DAG-CBOR, and
//! the encrypt+hash "limit" that storage throughput is compared against.

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use peergos_ipld::{cbor, Cid, Codec, HashFn};
use peergos_keys::{Bat, BatId, SymmetricKey};
use sha2::{Digest, Sha256};
use std::hint::black_box;

const CHUNK: usize = 5 << 20;
const MIB: usize = 1 << 20;

fn aead(c: &mut Criterion) {
    let key = SymmetricKey::random();
    let plaintext = vec![0x5a; CHUNK];
    let sealed = key.encrypt(&plaintext);
    let mut group = c.benchmark_group("aead");
    group.throughput(Throughput::Bytes(CHUNK as u64));
    group.sample_size(20);
    group.bench_function("xchacha20poly1305_encrypt_5MiB", |b| {
        b.iter(|| key.encrypt(black_box(&plaintext)))
    });
    group.bench_function("xchacha20poly1305_decrypt_5MiB", |b| {
        b.iter(|| key.decrypt(black_box(&sealed)).unwrap())
    });
    // The baseline: RustCrypto's XChaCha20-Poly1305 (the crate the design
    // brief names), the same work in the same buffer layout.
    use chacha20poly1305::aead::{AeadInPlace, KeyInit};
    let reference = chacha20poly1305::XChaCha20Poly1305::new(key.as_bytes().into());
    let nonce = [7u8; 24];
    group.bench_function("reference_rustcrypto_encrypt_5MiB", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(CHUNK + SymmetricKey::OVERHEAD);
            out.extend_from_slice(&nonce);
            out.extend_from_slice(black_box(&plaintext));
            let tag = reference
                .encrypt_in_place_detached((&nonce).into(), b"", &mut out[24..])
                .unwrap();
            out.extend_from_slice(&tag);
            out
        })
    });
    group.finish();
}

fn hash(c: &mut Criterion) {
    let data = vec![0xa5; MIB];
    let mut group = c.benchmark_group("hash");
    group.throughput(Throughput::Bytes(MIB as u64));
    group.bench_function("sha256_1MiB", |b| {
        b.iter(|| Sha256::digest(black_box(&data)))
    });
    // What raw fragments are named with (against SHA-256 above, measured
    // in the same run).
    group.bench_function("blake3_1MiB", |b| {
        b.iter(|| HashFn::Blake3.digest(black_box(&data)))
    });
    group.finish();
}

/// What one 1 MiB fragment costs at the least: encrypt it, hash it.
fn limit(c: &mut Criterion) {
    let key = SymmetricKey::random();
    let data = vec![0x11; MIB];
    let mut group = c.benchmark_group("limit");
    group.throughput(Throughput::Bytes(MIB as u64));
    group.bench_function("encrypt_and_hash_1MiB", |b| {
        b.iter(|| {
            let sealed = key.encrypt(black_box(&data));
            Cid::hash_with(HashFn::for_new(Codec::Raw), Codec::Raw, &sealed)
        })
    });
    group.finish();
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Node {
    bats: Vec<BatId>,
    links: Vec<Cid>,
    #[serde(with = "serde_bytes")]
    base: Vec<u8>,
    #[serde(with = "serde_bytes")]
    parent: Vec<u8>,
    size: u64,
}

/// A node shaped like a cryptree directory block: tokens, 32 child links,
/// and two small encrypted parts.
fn typical_node() -> Node {
    Node {
        bats: vec![Bat::random().id()],
        links: (0..32u8).map(|i| Cid::hash(Codec::Raw, &[i])).collect(),
        base: vec![3; 256],
        parent: vec![4; 512],
        size: 4096,
    }
}

fn dag_cbor(c: &mut Criterion) {
    let node = typical_node();
    let bytes = cbor::to_vec(&node).unwrap();
    let mut group = c.benchmark_group("cbor");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_with_input(
        BenchmarkId::new("encode_node", bytes.len()),
        &node,
        |b, n| b.iter(|| cbor::to_vec(black_box(n)).unwrap()),
    );
    group.bench_with_input(
        BenchmarkId::new("decode_node", bytes.len()),
        &bytes,
        |b, bytes| b.iter(|| cbor::from_slice::<Node>(black_box(bytes)).unwrap()),
    );
    group.finish();
}

criterion_group!(benches, aead, hash, limit, dag_cbor);
criterion_main!(benches);
