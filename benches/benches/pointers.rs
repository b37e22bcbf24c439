//! Pointer CAS updates per second: sqlite (durable and NORMAL) against the
//! in-memory store, with the same signature checks in every case.

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use peergos_ipld::{Cid, Codec};
use peergos_keys::{PublicKeyHash, SigningKeyPair};
use peergos_pointers::{
    Durability, MemoryPointerStore, OwnerOnly, PointerStore, PointerUpdate, SignedPointer,
    SqlitePointerStore,
};

fn target(n: u64) -> Option<Cid> {
    (n > 0).then(|| Cid::hash(Codec::DagCbor, &n.to_be_bytes()))
}

fn bench_cas(c: &mut Criterion, name: &str, store: Arc<dyn PointerStore>) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let pair = SigningKeyPair::random();
    let owner = PublicKeyHash::of(&pair.public());
    let mut sequence = 0u64;
    let mut group = c.benchmark_group("pointers");
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("{name}_cas"), |b| {
        b.iter_batched(
            || {
                // Signing is the client's work: done outside the timing.
                sequence += 1;
                let update = PointerUpdate {
                    previous: target(sequence - 1),
                    current: target(sequence),
                    sequence,
                };
                SignedPointer::sign(&pair, &owner, update).unwrap()
            },
            |update| runtime.block_on(store.set(&owner, &owner, update)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// 16 clients, each moving its own pointer, at once: the server's load.
/// Group commit lets the sqlite store share one fsync among them.
fn bench_concurrent(c: &mut Criterion, name: &str, store: Arc<dyn PointerStore>) {
    const CLIENTS: u64 = 16;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let clients: Vec<(SigningKeyPair, PublicKeyHash)> = (0..CLIENTS)
        .map(|_| {
            let pair = SigningKeyPair::random();
            let owner = PublicKeyHash::of(&pair.public());
            (pair, owner)
        })
        .collect();
    let mut sequence = 0u64;
    let mut group = c.benchmark_group("pointers");
    group.throughput(Throughput::Elements(CLIENTS));
    group.bench_function(format!("{name}_cas_16_clients"), |b| {
        b.iter_batched(
            || {
                sequence += 1;
                clients
                    .iter()
                    .map(|(pair, owner)| {
                        let update = PointerUpdate {
                            previous: target(sequence - 1),
                            current: target(sequence),
                            sequence,
                        };
                        (*owner, SignedPointer::sign(pair, owner, update).unwrap())
                    })
                    .collect::<Vec<_>>()
            },
            |updates| {
                runtime.block_on(async {
                    let sets = updates.into_iter().map(|(owner, update)| {
                        let store = Arc::clone(&store);
                        tokio::spawn(async move { store.set(&owner, &owner, update).await })
                    });
                    for set in sets.collect::<Vec<_>>() {
                        set.await.unwrap().unwrap();
                    }
                })
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn stores(c: &mut Criterion) {
    bench_cas(
        c,
        "memory",
        Arc::new(MemoryPointerStore::new(Arc::new(OwnerOnly))),
    );
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for (name, durability) in [
        ("sqlite_full", Durability::Full),
        ("sqlite_normal", Durability::Normal),
    ] {
        let path = dir.path().join(format!("{name}.sqlite"));
        let store = SqlitePointerStore::open(path, Arc::new(OwnerOnly), durability).unwrap();
        bench_cas(c, name, Arc::new(store));
    }
    bench_concurrent(
        c,
        "memory",
        Arc::new(MemoryPointerStore::new(Arc::new(OwnerOnly))),
    );
    let path = dir.path().join("concurrent.sqlite");
    let store = SqlitePointerStore::open(path, Arc::new(OwnerOnly), Durability::Full).unwrap();
    bench_concurrent(c, "sqlite_full", Arc::new(store));
}

criterion_group!(benches, stores);
criterion_main!(benches);
