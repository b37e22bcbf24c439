//! Criterion benches for block stores: put and get of 1 MiB raw blocks
//! (signature check, hashing, fsync included for the file store).

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use peergos_blockstore::{BlockStore, FileStore, MemoryStore, PutBlocks, SignedBlock};
use peergos_ipld::{Cid, Codec};
use peergos_keys::{PublicKeyHash, SigningKeyPair, SymmetricKey};
use std::sync::Arc;

const MIB: usize = 1 << 20;

fn fragment(key: &SymmetricKey, n: u64) -> Bytes {
    let mut data = vec![0u8; MIB - SymmetricKey::OVERHEAD];
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
    group.finish();
}

fn stores(c: &mut Criterion) {
    bench_store(c, "memory", Arc::new(MemoryStore::new()));
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    bench_store(c, "file", Arc::new(FileStore::open(dir.path()).unwrap()));
}

criterion_group!(benches, stores);
criterion_main!(benches);
