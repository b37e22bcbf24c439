//! Criterion benches for the encrypted filesystem, in process:
//!
//! - upload and download of a 1 GiB file over the memory and file stores,
//!   against `cryptree/limit_encrypt_and_hash_1GiB` (encrypting and hashing
//!   the same bytes on one core) measured in the same run;
//! - resident memory growth while streaming a 2 GiB file up and down
//!   (recorded as a count);
//! - `ls` of a 10,000-entry directory, warm;
//! - adding one file to a 100,000-entry directory, with the count of
//!   blocks it writes;
//! - random 4 KiB reads in a 1 GiB file, and sequential 128 KiB reads.

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use peergos_benches::record_count;
use peergos_blockstore::{BlockStore, FileStore, MemoryStore};
use peergos_cryptree::{Filesystem, UploadOptions};
use peergos_ipld::{Cid, Codec, HashFn};
use peergos_keys::{PublicKeyHash, SigningKeyPair, SymmetricKey};
use peergos_pointers::MemoryPointerStore;
use tokio::io::AsyncReadExt;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn new_fs<B: BlockStore>(store: B) -> Filesystem<B, MemoryPointerStore> {
    let keys = SigningKeyPair::random();
    Filesystem::create(
        Arc::new(store),
        Arc::new(MemoryPointerStore::default()),
        PublicKeyHash::of(&keys.public()),
        &keys,
        "bench",
    )
    .await
    .unwrap()
}

/// `len` bytes of input that are cheap to produce (contents do not matter
/// to the cost: everything is encrypted).
fn input(len: u64) -> impl tokio::io::AsyncRead + Unpin + Send {
    tokio::io::repeat(0x5a).take(len)
}

/// The single-core limit: XChaCha20-Poly1305 over 1 GiB in 1 MiB pieces
/// plus the SHA-256 CID of each ciphertext.
fn limit(c: &mut Criterion) {
    let key = SymmetricKey::random();
    let piece = vec![0x5au8; MIB as usize];
    let mut group = c.benchmark_group("cryptree");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(GIB));
    group.bench_function("limit_encrypt_and_hash_1GiB", |b| {
        b.iter(|| {
            for _ in 0..GIB / MIB {
                let sealed = key.encrypt(&piece);
                std::hint::black_box(Cid::hash_with(
                    HashFn::for_new(Codec::Raw),
                    Codec::Raw,
                    &sealed,
                ));
            }
        })
    });
    group.finish();
}

fn vm_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Streams 2 GiB up and down through the file store and records how far
/// resident memory rose above where it started.
fn bounded_memory(_: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let fs = rt.block_on(new_fs(FileStore::open(dir.path()).unwrap()));
    // Reset the peak so it measures this run only.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = vm_kib("VmRSS:");
    rt.block_on(async {
        fs.upload("/two-gib", input(2 * GIB), UploadOptions::default())
            .await
            .unwrap();
        let n = fs.download("/two-gib", tokio::io::sink()).await.unwrap();
        assert_eq!(n, 2 * GIB);
    });
    let peak = vm_kib("VmHWM:");
    record_count(
        "cryptree/rss_growth_2GiB_upload_and_download",
        peak.saturating_sub(before) / 1024,
        "MiB",
    );
}

fn transfer<B: BlockStore>(c: &mut Criterion, name: &str, make: impl Fn() -> B) {
    let rt = runtime();
    let mut group = c.benchmark_group("cryptree");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Bytes(GIB));
    group.bench_function(format!("{name}_upload_1GiB"), |b| {
        b.iter_batched(
            || rt.block_on(new_fs(make())),
            |fs| {
                rt.block_on(fs.upload("/f", input(GIB), UploadOptions::default()))
                    .unwrap();
                fs
            },
            BatchSize::PerIteration,
        )
    });
    let fs = rt.block_on(new_fs(make()));
    rt.block_on(fs.upload("/f", input(GIB), UploadOptions::default()))
        .unwrap();
    group.bench_function(format!("{name}_download_1GiB"), |b| {
        b.iter(|| rt.block_on(fs.download("/f", tokio::io::sink())).unwrap())
    });
    if name == "memory" {
        let mut offset = 0u64;
        group.throughput(Throughput::Elements(1));
        group.bench_function("memory_random_read_4KiB_in_1GiB", |b| {
            b.iter(|| {
                // A fixed-stride walk that lands all over the file.
                offset = (offset + 389 * MIB + 4096 * 7) % (GIB - 4096);
                rt.block_on(fs.read("/f", offset, 4096)).unwrap()
            })
        });
        // What a FUSE mount issues: 128 KiB reads one after another.
        let mut offset = 0u64;
        group.throughput(Throughput::Bytes(128 * 1024));
        group.bench_function("memory_sequential_read_128KiB", |b| {
            b.iter(|| {
                offset = (offset + 128 * 1024) % GIB;
                rt.block_on(fs.read("/f", offset, 128 * 1024)).unwrap()
            })
        });
    }
    group.finish();
}

fn memory_transfer(c: &mut Criterion) {
    transfer(c, "memory", MemoryStore::new);
}

fn file_transfer(c: &mut Criterion) {
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let n = std::sync::atomic::AtomicU64::new(0);
    transfer(c, "file", || {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = root.path().join(i.to_string());
        // Stores of earlier iterations are done with: reclaim the disk.
        if i > 0 {
            let _ = std::fs::remove_dir_all(root.path().join((i - 1).to_string()));
        }
        FileStore::open(dir).unwrap()
    });
}

fn directories(c: &mut Criterion) {
    let rt = runtime();
    let fs = rt.block_on(new_fs(MemoryStore::new()));
    rt.block_on(async {
        fs.mkdir("/ten-k").await.unwrap();
        for i in 0..10_000 {
            fs.write_file(&format!("/ten-k/file-{i:05}"), b"")
                .await
                .unwrap();
        }
    });
    let mut group = c.benchmark_group("cryptree");
    group.sample_size(20);
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("ls_10000_entries_warm", |b| {
        b.iter(|| {
            let listing = rt.block_on(fs.ls("/ten-k")).unwrap();
            assert_eq!(listing.len(), 10_000);
        })
    });

    let entries = std::env::var("PEERGOS_BENCH_BIG_DIR")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000u64);
    rt.block_on(async {
        fs.mkdir("/big").await.unwrap();
        for i in 0..entries {
            fs.write_file(&format!("/big/f{i:06}"), b"").await.unwrap();
        }
    });
    let before = fs.blocks_written();
    rt.block_on(fs.write_file("/big/one-more", b"x")).unwrap();
    record_count(
        &format!("cryptree/blocks_written_adding_a_file_to_{entries}_entries"),
        fs.blocks_written() - before,
        "blocks",
    );
    let mut n = 0u64;
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("add_file_to_{entries}_entries"), |b| {
        b.iter(|| {
            n += 1;
            rt.block_on(fs.write_file(&format!("/big/extra-{n}"), b"x"))
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    bounded_memory,
    limit,
    memory_transfer,
    file_transfer,
    directories
);
criterion_main!(benches);
