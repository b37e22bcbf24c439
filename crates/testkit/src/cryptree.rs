//! Helpers for filesystem tests: a fresh filesystem over memory stores,
//! reading a whole file, and deterministic test data.

use std::sync::Arc;

use peergos_blockstore::{BlockStore, MemoryStore};
use peergos_cryptree::{AbsoluteCapability, Filesystem, Label};
use peergos_keys::{Bat, PublicKeyHash, SigningKeyPair, SymmetricKey};
use peergos_pointers::{MemoryPointerStore, PointerStore};

/// A filesystem over in-memory stores.
pub type MemoryFs = Filesystem<MemoryStore, MemoryPointerStore>;

/// A new filesystem whose root directory is `name`, owned and written by
/// a fresh key, over the given stores.
pub async fn new_fs<B: BlockStore, P: PointerStore>(
    blocks: Arc<B>,
    pointers: Arc<P>,
    name: &str,
) -> Filesystem<B, P> {
    let keys = SigningKeyPair::random();
    Filesystem::create(
        blocks,
        pointers,
        PublicKeyHash::of(&keys.public()),
        &keys,
        name,
    )
    .await
    .unwrap()
}

/// A new filesystem over fresh in-memory stores.
pub async fn memory_fs() -> MemoryFs {
    new_fs(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryPointerStore::default()),
        "root",
    )
    .await
}

/// The whole file at `path`, downloaded.
pub async fn read_all<B: BlockStore, P: PointerStore>(
    fs: &Filesystem<B, P>,
    path: &str,
) -> Vec<u8> {
    let mut out = Vec::new();
    fs.download(path, &mut out).await.unwrap();
    out
}

/// Deterministic bytes that do not repeat with a short period.
pub fn data(seed: u8, len: usize) -> Vec<u8> {
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

/// A capability with fresh random keys in `owner`'s space (pointing at
/// nothing stored): for format tests.
pub fn random_cap(owner: &SigningKeyPair, writable: bool) -> AbsoluteCapability {
    let owner = PublicKeyHash::of(&owner.public());
    AbsoluteCapability {
        owner,
        writer: owner,
        label: Label::random(),
        bat: Some(Bat::random()),
        read: SymmetricKey::random(),
        write: writable.then(SymmetricKey::random),
    }
}
