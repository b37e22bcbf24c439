//! What a server stores reveals no names, contents or sizes; what a hostile
//! server serves (tampered blocks, old pointers) fails with typed errors,
//! never wrong data.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use peergos_blockstore::{BlockAuth, BlockStore, MemoryStore, PutBlocks, TransactionId};
use peergos_cryptree::{AbsoluteCapability, Error, Filesystem, UploadOptions};
use peergos_ipld::{Cid, Codec};
use peergos_keys::{PublicKeyHash, SigningKeyPair, SymmetricKey};
use peergos_pointers::{MemoryPointerStore, PointerStore, SignedPointer};

const NAMES: &[&str] = &[
    "tax-return-2026.pdf",
    "secret-plans-xyzzy",
    "holiday photos",
    "diary.txt",
];
/// Sizes whose every encoding below is at least 5 bytes long, so none turns
/// up by chance in a few megabytes of ciphertext (odds about 2^-18).
const SIZES: &[usize] = &[1_234_567, 654_321, 70_001];

fn content(tag: &str, len: usize) -> Vec<u8> {
    let line = format!("the plaintext of {tag} must never reach the server. ");
    line.bytes().cycle().take(len).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.len() <= haystack.len() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every encoding of `n` a careless format might use.
fn size_encodings(n: u64) -> Vec<Vec<u8>> {
    let out = vec![
        n.to_be_bytes().to_vec(),
        n.to_le_bytes().to_vec(),
        n.to_string().into_bytes(),
        // CBOR unsigned integer, the shortest form (0x1a + 4 bytes here).
        peergos_ipld::cbor::to_vec(&n).unwrap(),
    ];
    assert!(out.iter().all(|e| e.len() >= 5), "{n} has a short encoding");
    out
}

#[tokio::test]
async fn stored_blocks_reveal_no_names_contents_or_sizes() {
    let blocks = Arc::new(MemoryStore::new());
    let pointers = Arc::new(MemoryPointerStore::default());
    let keys = SigningKeyPair::random();
    let fs = Filesystem::create(
        Arc::clone(&blocks),
        Arc::clone(&pointers),
        PublicKeyHash::of(&keys.public()),
        &keys,
        "alice-root-name",
    )
    .await
    .unwrap();
    fs.mkdir(&format!("/{}", NAMES[1])).await.unwrap();
    fs.mkdir(&format!("/{}/{}", NAMES[1], NAMES[2]))
        .await
        .unwrap();
    let mut plaintexts = Vec::new();
    for (i, size) in SIZES.iter().enumerate() {
        let path = format!("/{}/{}/{}-{i}", NAMES[1], NAMES[2], NAMES[0]);
        let data = content(&path, *size);
        let options = UploadOptions {
            mime: "application/x-very-private".into(),
            ..UploadOptions::default()
        };
        fs.upload(&path, data.as_slice(), options).await.unwrap();
        plaintexts.push(data);
    }
    fs.write_file(
        &format!("/{}", NAMES[3]),
        b"dear diary, the plaintext of a small file",
    )
    .await
    .unwrap();
    fs.rename(&format!("/{}", NAMES[3]), "/renamed-diary-entry")
        .await
        .unwrap();

    let cids: Vec<Cid> = blocks.list().map(|c| c.unwrap()).collect().await;
    assert!(
        cids.len() > 20,
        "expected a real tree, found {} blocks",
        cids.len()
    );
    let mut needles: Vec<(String, Vec<u8>)> = NAMES
        .iter()
        .chain(&[
            "alice-root-name",
            "renamed-diary-entry",
            "application/x-very-private",
        ])
        .map(|n| (format!("name {n:?}"), n.as_bytes().to_vec()))
        .collect();
    needles.push(("small file text".into(), b"dear diary".to_vec()));
    for data in &plaintexts {
        // Any 24-byte window of the plaintext (it repeats with a short period).
        needles.push(("file content".into(), data[100..124].to_vec()));
    }
    for size in SIZES {
        for (i, encoding) in size_encodings(*size as u64).into_iter().enumerate() {
            needles.push((format!("size {size} (encoding {i})"), encoding));
        }
    }
    for cid in &cids {
        let block = blocks.get_trusted(cid).await.unwrap().unwrap();
        for (what, needle) in &needles {
            assert!(!contains(&block, needle), "block {cid} contains {what}");
        }
        // Content blocks come in whole 4 KiB pages: their sizes say nothing
        // finer about the files.
        if cid.codec() == Some(Codec::Raw) {
            let (_, payload) = peergos_keys::bat::split_raw(&block).unwrap();
            assert_eq!(
                (payload.len() - SymmetricKey::OVERHEAD) % 4096,
                0,
                "fragment {cid} of {} bytes",
                payload.len()
            );
        }
    }
}

/// A block store that flips a byte in every block it serves while `evil`
/// is set.
struct Tampering {
    inner: MemoryStore,
    evil: AtomicBool,
}

#[async_trait]
impl BlockStore for Tampering {
    async fn put(&self, request: PutBlocks) -> peergos_blockstore::Result<Vec<Cid>> {
        self.inner.put(request).await
    }
    async fn get(
        &self,
        cid: &Cid,
        auth: Option<&BlockAuth>,
    ) -> peergos_blockstore::Result<Option<Bytes>> {
        let block = self.inner.get(cid, auth).await?;
        Ok(block.map(|b| {
            if self.evil.load(Ordering::SeqCst) && cid.codec() == Some(Codec::Raw) {
                let mut bad = b.to_vec();
                let last = bad.len() - 1;
                bad[last] ^= 1;
                Bytes::from(bad)
            } else {
                b
            }
        }))
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
    async fn protected(&self) -> peergos_blockstore::Result<BTreeSet<Cid>> {
        self.inner.protected().await
    }
    fn list(&self) -> BoxStream<'_, peergos_blockstore::Result<Cid>> {
        self.inner.list()
    }
    async fn delete(&self, cid: &Cid) -> peergos_blockstore::Result<()> {
        self.inner.delete(cid).await
    }
}

#[tokio::test]
async fn tampered_blocks_fail_with_a_typed_error() {
    let blocks = Arc::new(Tampering {
        inner: MemoryStore::new(),
        evil: AtomicBool::new(false),
    });
    let keys = SigningKeyPair::random();
    let fs = Filesystem::create(
        Arc::clone(&blocks),
        Arc::new(MemoryPointerStore::default()),
        PublicKeyHash::of(&keys.public()),
        &keys,
        "root",
    )
    .await
    .unwrap();
    let data = vec![42u8; 3 << 20];
    fs.write_file("/big", &data).await.unwrap();
    blocks.evil.store(true, Ordering::SeqCst);
    let err = fs.read("/big", 0, 10).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Encoding(peergos_ipld::Error::HashMismatch { .. })
        ),
        "{err}"
    );
    let mut out = Vec::new();
    assert!(fs.download("/big", &mut out).await.is_err());
    assert!(out.is_empty(), "no byte of a tampered chunk is returned");
    blocks.evil.store(false, Ordering::SeqCst);
    assert_eq!(fs.read("/big", 0, 10).await.unwrap(), vec![42u8; 10]);
}

/// A pointer store that can be told to serve an old pointer.
struct Replaying {
    inner: MemoryPointerStore,
    replay: Mutex<Option<SignedPointer>>,
}

#[async_trait]
impl PointerStore for Replaying {
    async fn get(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
    ) -> peergos_pointers::Result<Option<SignedPointer>> {
        if let Some(old) = self.replay.lock().unwrap().clone() {
            return Ok(Some(old));
        }
        self.inner.get(owner, writer).await
    }
    async fn set(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
        update: SignedPointer,
    ) -> peergos_pointers::Result<()> {
        self.inner.set(owner, writer, update).await
    }
}

#[tokio::test]
async fn an_old_pointer_is_a_rollback_error() {
    let pointers = Arc::new(Replaying {
        inner: MemoryPointerStore::default(),
        replay: Mutex::new(None),
    });
    let keys = SigningKeyPair::random();
    let owner = PublicKeyHash::of(&keys.public());
    let fs = Filesystem::create(
        Arc::new(MemoryStore::new()),
        Arc::clone(&pointers),
        owner,
        &keys,
        "root",
    )
    .await
    .unwrap();
    fs.write_file("/f", b"version one").await.unwrap();
    let old = pointers.inner.get(&owner, &owner).await.unwrap();
    fs.write_file("/f", b"version two").await.unwrap();
    assert_eq!(fs.read("/f", 0, 100).await.unwrap(), b"version two");
    *pointers.replay.lock().unwrap() = old;
    let err = fs.read("/f", 0, 100).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Pointer(peergos_pointers::Error::Rollback { .. })
        ),
        "{err}"
    );
}

#[tokio::test]
async fn wrong_keys_and_read_only_capabilities_are_refused() {
    let blocks = Arc::new(MemoryStore::new());
    let pointers = Arc::new(MemoryPointerStore::default());
    let keys = SigningKeyPair::random();
    let fs = Filesystem::create(
        Arc::clone(&blocks),
        Arc::clone(&pointers),
        PublicKeyHash::of(&keys.public()),
        &keys,
        "root",
    )
    .await
    .unwrap();
    fs.write_file("/f", b"data").await.unwrap();

    let wrong = AbsoluteCapability {
        read: SymmetricKey::random(),
        ..fs.root().clone()
    };
    let stranger = Filesystem::open(Arc::clone(&blocks), Arc::clone(&pointers), wrong);
    assert!(matches!(
        stranger.ls("/").await,
        Err(Error::Decrypt { part: "base" })
    ));

    let reader = Filesystem::open(blocks, pointers, fs.root().read_only());
    assert_eq!(reader.read("/f", 0, 4).await.unwrap(), b"data");
    assert!(!reader.stat("/f").await.unwrap().writable);
    assert!(matches!(
        reader.write_file("/g", b"x").await,
        Err(Error::ReadOnly { .. })
    ));
    assert!(matches!(
        reader.write_at("/f", 0, b"x").await,
        Err(Error::ReadOnly { .. })
    ));
    assert!(matches!(reader.rm("/f").await, Err(Error::ReadOnly { .. })));
}
