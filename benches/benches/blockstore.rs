//! Criterion benches for block stores: put and get of 1 MiB raw blocks,
//! and a put of seven 4 KiB blocks (the shape of one small file's commit)
//! and a get of one (signature check, hashing, fsync included for the file
//! store).

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use peergos_blockstore::{BlockStore, FileStore, MemoryStore, PutBlocks, SignedBlock};
use peergos_ipld::{Cid, Codec};
use peergos_keys::{PublicKeyHash, SigningKeyPair, SymmetricKey};
use std::sync::Arc;

const MIB: usize = 1 << 20;
const SMALL: usize = 4096;
/// Blocks in the put of one small file's commit through the mount: the
/// file's node, its directory's chunk, CHAMP nodes and the `WriterData`.
const SMALL_PER_PUT: usize = 7;

fn fragment(key: &SymmetricKey, n: u64) -> Bytes {
    sealed(key, n, MIB)
}

fn sealed(key: &SymmetricKey, n: u64, size: usize) -> Bytes {
    let mut data = vec![0u8; size - SymmetricKey::OVERHEAD];
    data[..8].copy_from_slice(&n.to_le_bytes());
    key.encrypt(&data).into()
}

fn bench_store(c: &mut Criterion, name: &str, store: Arc<dyn BlockStore>) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let keys = SigningKeyPair::random();
    let owner = PublicKeyHash::of(&keys.public());
    let key = SymmetricKey::random();
    let tx = runtime.block_on(store.start_transaction(&owner)).unwrap();
    let mut group = c.benchmark_group("blockstore");
    group.throughput(Throughput::Bytes(MIB as u64));
    group.sample_size(30);
    let mut n = 0u64;
    group.bench_function(format!("{name}_put_1MiB"), |b| {
        b.iter_batched(
            || {
                n += 1;
                SignedBlock::sign(&keys, Codec::Raw, fragment(&key, n))
            },
            |block| {
                let request = PutBlocks {
                    owner,
                    writer: owner,
                    transaction: tx,
                    blocks: vec![block],
                };
                runtime.block_on(store.put(request)).unwrap()
            },
            criterion::BatchSize::LargeInput,
        )
    });
    let data = fragment(&key, u64::MAX);
    let cid: Cid = runtime
        .block_on(store.put(PutBlocks {
            owner,
            writer: owner,
            transaction: tx,
            blocks: vec![SignedBlock::sign(&keys, Codec::Raw, data)],
        }))
        .unwrap()[0];
    group.bench_function(format!("{name}_get_1MiB"), |b| {
        b.iter(|| runtime.block_on(store.get(&cid, None)).unwrap().unwrap())
    });

    group.throughput(Throughput::Elements(SMALL_PER_PUT as u64));
    group.bench_function(format!("{name}_put_7x4KiB"), |b| {
        b.iter_batched(
            || {
                (0..SMALL_PER_PUT)
                    .map(|_| {
                        n += 1;
                        SignedBlock::sign(&keys, Codec::Raw, sealed(&key, n, SMALL))
                    })
                    .collect()
            },
            |blocks| {
                let request = PutBlocks {
                    owner,
                    writer: owner,
                    transaction: tx,
                    blocks,
                };
                runtime.block_on(store.put(request)).unwrap()
            },
            criterion::BatchSize::SmallInput,
        )
    });
    let small: Cid = runtime
        .block_on(store.put(PutBlocks {
            owner,
            writer: owner,
            transaction: tx,
            blocks: vec![SignedBlock::sign(
                &keys,
                Codec::Raw,
                sealed(&key, u64::MAX, SMALL),
            )],
        }))
        .unwrap()[0];
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("{name}_get_4KiB"), |b| {
        b.iter(|| runtime.block_on(store.get(&small, None)).unwrap().unwrap())
    });
    group.finish();
}

fn stores(c: &mut Criterion) {
    bench_store(c, "memory", Arc::new(MemoryStore::new()));
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    bench_store(c, "file", Arc::new(FileStore::open(dir.path()).unwrap()));
}

criterion_group!(benches, stores);
criterion_main!(benches);
