//! Blocks written by an earlier release still read the same.
//!
//! `tests/vectors/release-<commit>.cbor` is a small filesystem written by
//! that build (every block it put, with its writer's signatures, the
//! signed pointer, the root capability) and what that build read back
//! from it (every entry of a full listing, every file's SHA-256). The test
//! loads it into fresh stores and requires this build to read exactly the
//! same. Regenerate a vector (at the release being recorded) with
//! `PEERGOS_WRITE_VECTORS=DIR cargo test -p peergos-cryptree --test it
//! release_vectors -- --ignored`.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use peergos_blockstore::{
    BlockAuth, BlockStore, MemoryStore, PutBlocks, SignedBlock, TransactionId,
};
use peergos_cryptree::{AbsoluteCapability, Filesystem, Kind};
use peergos_ipld::{cbor, Cid, Codec, HashFn};
use peergos_keys::{PublicKeyHash, SigningKeyPair};
use peergos_pointers::{MemoryPointerStore, PointerStore, SignedPointer};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// One stored block as its writer put it.
#[derive(Serialize, Deserialize)]
struct StoredBlock {
    codec: u64,
    hash: u64,
    data: ByteBuf,
    #[serde(with = "serde_bytes")]
    sig: Vec<u8>,
    writer: PublicKeyHash,
}

/// What the recording build read back.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, Clone)]
struct Seen {
    path: String,
    dir: bool,
    size: u64,
    modified: i64,
    mime: String,
    hidden: bool,
    #[serde(with = "serde_bytes")]
    sha256: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Vector {
    release: String,
    owner: PublicKeyHash,
    writer: PublicKeyHash,
    cap: String,
    pointer: ByteBuf,
    blocks: Vec<StoredBlock>,
    seen: Vec<Seen>,
}

/// A memory store that remembers every block put into it.
#[derive(Default)]
struct Recording {
    inner: MemoryStore,
    puts: Mutex<Vec<StoredBlock>>,
}

#[async_trait]
impl BlockStore for Recording {
    async fn put(&self, request: PutBlocks) -> peergos_blockstore::Result<Vec<Cid>> {
        {
            let mut puts = self.puts.lock().unwrap();
            for b in &request.blocks {
                puts.push(StoredBlock {
                    codec: b.codec.code(),
                    hash: b.hash.code(),
                    data: ByteBuf::from(b.data.to_vec()),
                    sig: b.signature.to_bytes().to_vec(),
                    writer: request.writer,
                });
            }
        }
        self.inner.put(request).await
    }
    async fn get(
        &self,
        cid: &Cid,
        auth: Option<&BlockAuth>,
    ) -> peergos_blockstore::Result<Option<Bytes>> {
        self.inner.get(cid, auth).await
    }
    async fn get_trusted(&self, cid: &Cid) -> peergos_blockstore::Result<Option<Bytes>> {
        self.inner.get_trusted(cid).await
    }
    async fn has(&self, cid: &Cid) -> peergos_blockstore::Result<bool> {
        self.inner.has(cid).await
    }
    async fn start_transaction(
        &self,
        owner: &PublicKeyHash,
    ) -> peergos_blockstore::Result<TransactionId> {
        self.inner.start_transaction(owner).await
    }
    async fn close_transaction(
        &self,
        owner: &PublicKeyHash,
        id: &TransactionId,
    ) -> peergos_blockstore::Result<()> {
        self.inner.close_transaction(owner, id).await
    }
}

/// The pointer a vector recorded, as a read-only store.
struct Recorded {
    owner: PublicKeyHash,
    writer: PublicKeyHash,
    pointer: SignedPointer,
}

#[async_trait]
impl PointerStore for Recorded {
    async fn get(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
    ) -> peergos_pointers::Result<Option<SignedPointer>> {
        Ok((*owner == self.owner && *writer == self.writer).then(|| self.pointer.clone()))
    }

    async fn set(
        &self,
        _owner: &PublicKeyHash,
        _writer: &PublicKeyHash,
        _update: SignedPointer,
    ) -> peergos_pointers::Result<()> {
        Err(peergos_pointers::Error::Unsupported {
            operation: "writing a recorded vector",
        })
    }
}

/// Deterministic bytes.
fn data(seed: u8, len: usize) -> Vec<u8> {
    let mut state = u64::from(seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Everything `fs` shows under `/`, depth first, hidden entries included.
async fn read_everything<B, P>(fs: &Filesystem<B, P>) -> Vec<Seen>
where
    B: BlockStore + ?Sized,
    P: PointerStore + ?Sized,
{
    let mut out = Vec::new();
    let mut todo = vec!["/".to_string()];
    while let Some(dir) = todo.pop() {
        let mut entries = fs.ls_all(&dir).await.unwrap();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        for e in entries {
            let path = format!("{}/{}", dir.trim_end_matches('/'), e.name);
            let is_dir = e.kind == Kind::Dir;
            let sha256 = if is_dir {
                Vec::new()
            } else {
                let mut bytes = Vec::new();
                fs.download(&path, &mut bytes).await.unwrap();
                peergos_keys::sha256(&bytes).to_vec()
            };
            if is_dir {
                todo.push(path.clone());
            }
            out.push(Seen {
                path,
                dir: is_dir,
                size: e.size,
                modified: e.modified,
                mime: e.mime,
                hidden: e.hidden,
                sha256,
            });
        }
    }
    out
}

#[tokio::test]
#[ignore = "writes a vector; run at the release being recorded"]
async fn write_release_vector() {
    let Some(dir) = std::env::var_os("PEERGOS_WRITE_VECTORS") else {
        panic!("set PEERGOS_WRITE_VECTORS to the directory to write into");
    };
    let release = std::env::var("PEERGOS_VECTOR_RELEASE").unwrap_or_else(|_| "unnamed".into());
    let blocks = Arc::new(Recording::default());
    let pointers = Arc::new(MemoryPointerStore::default());
    let keys = SigningKeyPair::random();
    let owner = PublicKeyHash::of(&keys.public());
    let fs = Filesystem::create(
        Arc::clone(&blocks),
        Arc::clone(&pointers),
        owner,
        &keys,
        "home",
    )
    .await
    .unwrap();
    fs.mkdir("/docs").await.unwrap();
    fs.mkdir("/empty").await.unwrap();
    fs.write_file("/docs/notes.txt", b"written by an earlier release")
        .await
        .unwrap();
    // Over one inline block: stored as a fragment.
    fs.write_file("/docs/photo.bin", &data(3, 20_000))
        .await
        .unwrap();
    fs.write_file("/docs/empty.txt", b"").await.unwrap();
    fs.write_file("/.hidden", &data(4, 100)).await.unwrap();
    fs.write_file("/docs/renamed-from.txt", b"moved")
        .await
        .unwrap();
    fs.rename("/docs/renamed-from.txt", "/moved.txt")
        .await
        .unwrap();
    let seen = read_everything(&fs).await;
    let pointer = pointers.get(&owner, &owner).await.unwrap().unwrap();
    let vector = Vector {
        release: release.clone(),
        owner,
        writer: owner,
        cap: fs.root().to_text().unwrap(),
        pointer: ByteBuf::from(cbor::to_vec(&pointer).unwrap()),
        blocks: std::mem::take(&mut *blocks.puts.lock().unwrap()),
        seen,
    };
    let path = std::path::Path::new(&dir).join(format!("release-{release}.cbor"));
    std::fs::write(&path, cbor::to_vec(&vector).unwrap()).unwrap();
    eprintln!("wrote {}", path.display());
}

#[tokio::test]
async fn blocks_of_earlier_releases_read_the_same() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let mut found = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !(name.starts_with("release-") && name.ends_with(".cbor")) {
            continue;
        }
        found += 1;
        let bytes = std::fs::read(&path).unwrap();
        let vector: Vector = cbor::from_slice_with(
            &bytes,
            cbor::Limits {
                max_size: 64 << 20,
                max_depth: 16,
            },
        )
        .unwrap();
        let blocks = Arc::new(MemoryStore::new());
        let tx = blocks.start_transaction(&vector.owner).await.unwrap();
        for b in &vector.blocks {
            let block = SignedBlock {
                codec: Codec::from_code(b.codec).unwrap(),
                hash: HashFn::from_code(b.hash).unwrap(),
                data: Bytes::from(b.data.to_vec()),
                signature: peergos_keys::Signature::from_bytes(&b.sig).unwrap(),
            };
            blocks
                .put(PutBlocks {
                    owner: vector.owner,
                    writer: b.writer,
                    transaction: tx,
                    blocks: vec![block],
                })
                .await
                .unwrap();
        }
        let pointers = Arc::new(Recorded {
            owner: vector.owner,
            writer: vector.writer,
            pointer: cbor::from_slice(&vector.pointer).unwrap(),
        });
        let cap = AbsoluteCapability::from_text(&vector.cap).unwrap();
        let fs = Filesystem::open(blocks, pointers, cap);
        let seen = read_everything(&fs).await;
        assert_eq!(seen, vector.seen, "{name} (written by {})", vector.release);
        assert!(seen.len() >= 6, "{name}: {seen:?}");
    }
    assert!(found > 0, "no release vectors in {}", dir.display());
}
