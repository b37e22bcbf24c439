//! What a server stores reveals no names, contents or sizes; what a hostile
//! server serves (tampered blocks, old pointers) fails with typed errors,
//! never wrong data.

use peergos_blockstore::LocalBlockStore as _;
use std::sync::Arc;

use futures::StreamExt;
use peergos_blockstore::{BlockStore, MemoryStore};
use peergos_cryptree::{AbsoluteCapability, Error, Filesystem, UploadOptions};
use peergos_ipld::{Cid, Codec};
use peergos_keys::SymmetricKey;
use peergos_pointers::{MemoryPointerStore, PointerStore};
use peergos_testkit::blockstore::Watched;
use peergos_testkit::cryptree::new_fs;
use peergos_testkit::pointers::Replaying;

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
    let fs = new_fs(
        Arc::clone(&blocks),
        Arc::clone(&pointers),
        "alice-root-name",
    )
    .await;
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

#[tokio::test]
async fn tampered_blocks_fail_with_a_typed_error() {
    let blocks = Arc::new(Watched::new(MemoryStore::new()));
    let fs = new_fs(
        Arc::clone(&blocks),
        Arc::new(MemoryPointerStore::default()),
        "root",
    )
    .await;
    let data = vec![42u8; 3 << 20];
    fs.write_file("/big", &data).await.unwrap();
    blocks.set_evil(true);
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
    blocks.set_evil(false);
    assert_eq!(fs.read("/big", 0, 10).await.unwrap(), vec![42u8; 10]);
}

#[tokio::test]
async fn an_old_pointer_is_a_rollback_error() {
    let pointers = Arc::new(Replaying::new(MemoryPointerStore::default()));
    let fs = new_fs(Arc::new(MemoryStore::new()), Arc::clone(&pointers), "root").await;
    let owner = fs.root().owner;
    fs.write_file("/f", b"version one").await.unwrap();
    let old = pointers.inner.get(&owner, &fs.root().writer).await.unwrap();
    fs.write_file("/f", b"version two").await.unwrap();
    assert_eq!(fs.read("/f", 0, 100).await.unwrap(), b"version two");
    pointers.replay(old);
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
    let fs = new_fs(Arc::clone(&blocks), Arc::clone(&pointers), "root").await;
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
