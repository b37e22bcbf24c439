//! CHAMP benches: get and put per second at 10^4 and 10^6 entries over the
//! memory and file stores, and the node count of a one-change diff.

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use peergos_blockstore::{BlockStore, FileStore, MemoryStore};
use peergos_champ::{Champ, Config, Key, Value, Writer};
use peergos_ipld::{Cid, Codec};
use peergos_keys::{sha256, PublicKeyHash, SigningKeyPair};

fn key(n: u64) -> Key {
    Key(sha256(&n.to_be_bytes()))
}

fn value(n: u64) -> Value {
    Value::Link(Cid::hash(Codec::Raw, &n.to_be_bytes()))
}

fn writer(runtime: &tokio::runtime::Runtime, store: &dyn BlockStore) -> Writer {
    let keys = SigningKeyPair::random();
    let owner = PublicKeyHash::of(&keys.public());
    let transaction = runtime.block_on(store.start_transaction(&owner)).unwrap();
    Writer {
        owner,
        keys,
        transaction,
    }
}

fn bench_tree<S: BlockStore>(c: &mut Criterion, name: &str, store: Arc<S>, size: u64) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let champ = Champ::new(Arc::clone(&store));
    let w = writer(&runtime, &*store);
    let started = Instant::now();
    let mut root = runtime
        .block_on(champ.from_entries(&w, Config::default(), (0..size).map(|n| (key(n), value(n)))))
        .unwrap();
    eprintln!(
        "built {name} tree of {size} entries in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut group = c.benchmark_group("champ");
    group.throughput(Throughput::Elements(1));
    group.sample_size(if name == "file" { 10 } else { 50 });
    let mut i = 0u64;
    group.bench_function(format!("{name}_get_{size}"), |b| {
        b.iter(|| {
            i = (i + 7919) % size;
            runtime
                .block_on(champ.get(&root, &key(i)))
                .unwrap()
                .unwrap()
        })
    });
    let mut next = size;
    group.bench_function(format!("{name}_put_{size}"), |b| {
        b.iter(|| {
            next += 1;
            root = runtime
                .block_on(champ.put(&w, &root, &key(next), None, value(next)))
                .unwrap();
        })
    });
    group.finish();
}

/// Gets in a 10^6-entry tree with a cache large enough for the whole tree:
/// what the default (bounded) cache costs at that size.
fn large_cache(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = Arc::new(MemoryStore::new());
    let champ = Champ::with_cache(Arc::clone(&store), 1 << 20);
    let w = writer(&runtime, &*store);
    let size = 1_000_000u64;
    let root = runtime
        .block_on(champ.from_entries(&w, Config::default(), (0..size).map(|n| (key(n), value(n)))))
        .unwrap();
    peergos_benches::record_count(
        "champ/nodes_in_1000000_entry_tree",
        store.len() as u64,
        "nodes",
    );
    let mut group = c.benchmark_group("champ");
    group.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    group.bench_function("memory_get_1000000_whole_tree_cached", |b| {
        b.iter(|| {
            i = (i + 7919) % size;
            runtime
                .block_on(champ.get(&root, &key(i)))
                .unwrap()
                .unwrap()
        })
    });
    group.finish();
}

fn sizes(c: &mut Criterion) {
    for size in [10_000, 1_000_000] {
        bench_tree(c, "memory", Arc::new(MemoryStore::new()), size);
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        bench_tree(
            c,
            "file",
            Arc::new(FileStore::open(dir.path()).unwrap()),
            size,
        );
    }
}

/// How many nodes a diff visits for one change among 10^5 entries,
/// against the length of the changed path.
fn diff_cost(_: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = Arc::new(MemoryStore::new());
    let champ = Champ::new(Arc::clone(&store));
    let w = writer(&runtime, &*store);
    let size = 100_000;
    let root = runtime
        .block_on(champ.from_entries(&w, Config::default(), (0..size).map(|n| (key(n), value(n)))))
        .unwrap();
    let changed = runtime
        .block_on(champ.put(&w, &root, &key(42), Some(&value(42)), value(u64::MAX)))
        .unwrap();
    let path = runtime
        .block_on(champ.proof(&changed, &key(42)))
        .unwrap()
        .len() as u64;
    let before = champ.node_visits();
    let diff = runtime.block_on(champ.diff(&root, &changed)).unwrap();
    assert_eq!(diff.len(), 1);
    let visited = champ.node_visits() - before;
    peergos_benches::record_count(
        "champ/diff_1_change_in_100000_nodes_visited",
        visited,
        "nodes",
    );
    peergos_benches::record_count("champ/path_length_in_100000", path, "nodes");
}

criterion_group!(benches, diff_cost, sizes, large_cache);
criterion_main!(benches);
