//! The conformance suite for [`BlockStore`] backends.
//!
//! Each check takes a fresh, empty store. A backend's test file runs them
//! all with one line:
//!
//! ```ignore
//! peergos_testkit::blockstore_conformance!(|| async { MemoryStore::new() });
//! ```

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use peergos_blockstore::{BlockAuth, BlockStore, Error, LocalBlockStore, PutBlocks, SignedBlock};
use peergos_ipld::{cbor, Cid, Codec, HashFn, MAX_BLOCK_SIZE};
use peergos_keys::{bat, Bat, BatId, PublicKeyHash, SigningKeyPair};

/// A user writing into a store: an owner key that also writes.
pub struct Writer {
    /// The owner's (and writer's) key pair.
    pub keys: SigningKeyPair,
    /// Its hash.
    pub owner: PublicKeyHash,
}

impl Default for Writer {
    fn default() -> Self {
        Self::new()
    }
}

impl Writer {
    /// A writer with a fresh key.
    pub fn new() -> Self {
        let keys = SigningKeyPair::random();
        let owner = PublicKeyHash::of(&keys.public());
        Writer { keys, owner }
    }

    /// A signed put of `blocks` in transaction `tx`, each named with the
    /// hash new blocks of its codec use.
    pub fn request(
        &self,
        tx: peergos_blockstore::TransactionId,
        blocks: &[(Codec, Bytes)],
    ) -> PutBlocks {
        self.request_with(tx, None, blocks)
    }

    /// [`request`](Self::request), every block named with `hash` if set.
    pub fn request_with(
        &self,
        tx: peergos_blockstore::TransactionId,
        hash: Option<HashFn>,
        blocks: &[(Codec, Bytes)],
    ) -> PutBlocks {
        let sign = |(codec, data): &(Codec, Bytes)| {
            let hash = hash.unwrap_or(HashFn::for_new(*codec));
            SignedBlock::sign_with_hash(&self.keys, hash, *codec, data.clone()).1
        };
        PutBlocks {
            owner: self.owner,
            writer: self.owner,
            transaction: tx,
            blocks: blocks.iter().map(sign).collect(),
        }
    }

    /// Puts `blocks` in a transaction of their own, closed afterwards.
    pub async fn put(&self, store: &dyn BlockStore, blocks: &[(Codec, Bytes)]) -> Vec<Cid> {
        self.put_with(store, None, blocks).await
    }

    /// [`put`](Self::put), every block named with `hash` if set (as a
    /// client from before BLAKE3 named raw blocks: sha2-256).
    pub async fn put_with(
        &self,
        store: &dyn BlockStore,
        hash: Option<HashFn>,
        blocks: &[(Codec, Bytes)],
    ) -> Vec<Cid> {
        let tx = store.start_transaction(&self.owner).await.unwrap();
        let cids = store
            .put(self.request_with(tx, hash, blocks))
            .await
            .unwrap();
        store.close_transaction(&self.owner, &tx).await.unwrap();
        cids
    }
}

/// A raw block of `len` bytes derived from `seed`, with no access tokens.
pub fn raw(seed: u64, len: usize) -> (Codec, Bytes) {
    let mut data = Vec::with_capacity(len);
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while data.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(len);
    (Codec::Raw, data.into())
}

/// A DAG-CBOR block listing `bats`.
pub fn cbor_with_bats(bats: &[&Bat], body: &str) -> (Codec, Bytes) {
    #[derive(serde::Serialize)]
    struct Node<'a> {
        bats: Vec<BatId>,
        body: &'a str,
    }
    let node = Node {
        bats: bats.iter().map(|b| b.id()).collect(),
        body,
    };
    (Codec::DagCbor, cbor::to_vec(&node).unwrap().into())
}

/// Raw blocks and DAG-CBOR blocks round-trip (and a scrub's check finds
/// them intact); missing blocks are `None`.
pub async fn put_get_round_trip(store: Arc<dyn LocalBlockStore>) {
    let writer = Writer::new();
    let small = raw(1, 100);
    let large = raw(2, 1 << 20);
    let node = (
        Codec::DagCbor,
        Bytes::from(cbor::to_vec(&vec!["a", "b"]).unwrap()),
    );
    let cids = writer
        .put(&*store, &[small.clone(), large.clone(), node.clone()])
        .await;
    for (cid, (codec, data)) in cids.iter().zip([small, large, node]) {
        assert_eq!(*cid, Cid::hash_with(HashFn::for_new(codec), codec, &data));
        assert!(store.has(cid).await.unwrap());
        assert_eq!(store.get(cid, None).await.unwrap(), Some(data.clone()));
        assert_eq!(
            store.check(cid).await.unwrap(),
            Some(data.len() as u64),
            "a scrub's check of an intact block"
        );
        assert_eq!(store.get_trusted(cid).await.unwrap(), Some(data));
    }
    let missing = Cid::hash(Codec::Raw, b"never stored");
    assert!(!store.has(&missing).await.unwrap());
    assert_eq!(store.get(&missing, None).await.unwrap(), None);
    assert_eq!(store.check(&missing).await.unwrap(), None);
    let many = store
        .get_many(&[(cids[0], None), (missing, None)])
        .await
        .unwrap();
    assert_eq!(many[0].as_ref().map(Bytes::len), Some(100));
    assert_eq!(many[1], None);
    // Putting the same block again is fine and changes nothing.
    assert_eq!(writer.put(&*store, &[raw(1, 100)]).await, vec![cids[0]]);
    let listed: BTreeSet<Cid> = store.list().try_collect().await.unwrap();
    assert_eq!(listed, cids.iter().copied().collect());
}

/// Blocks named with either hash are stored and served: sha2-256 (every
/// raw block written before BLAKE3, and structured blocks) and BLAKE3 (new
/// raw blocks). A block is checked under the hash its put names, so a
/// signature over the block's name under the other hash is refused.
pub async fn both_hashes_name_blocks(store: Arc<dyn LocalBlockStore>) {
    let writer = Writer::new();
    let tx = store.start_transaction(&writer.owner).await.unwrap();
    let mut signed = Vec::new();
    for (i, (hash, codec, data)) in [
        (HashFn::Sha2_256, Codec::Raw, raw(6, 3000).1),
        (HashFn::Blake3, Codec::Raw, raw(7, 3000).1),
        (HashFn::Sha2_256, Codec::Raw, raw(8, 1 << 20).1),
        (HashFn::Blake3, Codec::Raw, raw(9, 1 << 20).1),
        (
            HashFn::Blake3,
            Codec::DagCbor,
            Bytes::from(cbor::to_vec(&["b3"]).unwrap()),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let (cid, block) = SignedBlock::sign_with_hash(&writer.keys, hash, codec, data.clone());
        assert_eq!(cid.hash_fn(), Some(hash), "block {i}");
        signed.push((cid, block));
    }
    let put = PutBlocks {
        owner: writer.owner,
        writer: writer.owner,
        transaction: tx,
        blocks: signed.iter().map(|(_, b)| b.clone()).collect(),
    };
    let cids = store.put(put).await.unwrap();
    assert_eq!(cids, signed.iter().map(|(c, _)| *c).collect::<Vec<_>>());
    for (cid, block) in &signed {
        assert_eq!(
            store.get(cid, None).await.unwrap(),
            Some(block.data.clone())
        );
        assert_eq!(
            store.check(cid).await.unwrap(),
            Some(block.data.len() as u64)
        );
        // The same bytes under the other hash are another, absent block.
        let other = match block.hash {
            HashFn::Sha2_256 => HashFn::Blake3,
            HashFn::Blake3 => HashFn::Sha2_256,
        };
        let renamed = Cid::hash_with(other, block.codec, &block.data);
        assert!(!store.has(&renamed).await.unwrap());
    }
    // Signed as sha2-256, sent as BLAKE3: the signature names another CID.
    let (_, mut relabelled) =
        SignedBlock::sign_with_hash(&writer.keys, HashFn::Sha2_256, Codec::Raw, raw(10, 50).1);
    relabelled.hash = HashFn::Blake3;
    let err = store
        .put(PutBlocks {
            owner: writer.owner,
            writer: writer.owner,
            transaction: tx,
            blocks: vec![relabelled.clone()],
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadWriterSignature { .. }), "{err}");
    assert!(!store
        .has(&Cid::hash_with(
            HashFn::Blake3,
            Codec::Raw,
            &relabelled.data
        ))
        .await
        .unwrap());
    store.close_transaction(&writer.owner, &tx).await.unwrap();
}

/// Identity CIDs are answered from the CID itself.
pub async fn identity_cids_need_no_storage(store: Arc<dyn LocalBlockStore>) {
    let cid = Cid::identity(Codec::Raw, b"inline").unwrap();
    assert!(store.has(&cid).await.unwrap());
    assert_eq!(
        store.get(&cid, None).await.unwrap().as_deref(),
        Some(&b"inline"[..])
    );
}

/// Bad puts are refused with the right error and store nothing.
pub async fn bad_puts_are_refused(store: Arc<dyn LocalBlockStore>) {
    let writer = Writer::new();
    let tx = store.start_transaction(&writer.owner).await.unwrap();

    let too_big = raw(3, MAX_BLOCK_SIZE + 1);
    let err = store.put(writer.request(tx, &[too_big])).await.unwrap_err();
    assert!(
        matches!(&err, Error::Block(peergos_ipld::Error::BlockTooLarge { size, max })
            if *size == MAX_BLOCK_SIZE + 1 && *max == MAX_BLOCK_SIZE),
        "{err}"
    );

    let mut forged = writer.request(tx, &[raw(4, 10)]);
    forged.blocks[0].signature = SigningKeyPair::random().sign(
        peergos_keys::Domain::BLOCK_PUT,
        &Cid::hash_with(HashFn::Blake3, Codec::Raw, &forged.blocks[0].data).to_bytes(),
    );
    let err = store.put(forged).await.unwrap_err();
    assert!(matches!(err, Error::BadWriterSignature { .. }), "{err}");

    let mut wrong_domain = writer.request(tx, &[raw(4, 10)]);
    wrong_domain.blocks[0].signature = writer.keys.sign(
        peergos_keys::Domain::POINTER,
        &Cid::hash_with(HashFn::Blake3, Codec::Raw, &wrong_domain.blocks[0].data).to_bytes(),
    );
    assert!(matches!(
        store.put(wrong_domain).await,
        Err(Error::BadWriterSignature { .. })
    ));

    let non_canonical = (Codec::DagCbor, Bytes::from_static(&[0x18, 0x01]));
    let err = store
        .put(writer.request(tx, &[raw(5, 10), non_canonical]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Block(peergos_ipld::Error::NonCanonical { .. })),
        "{err}"
    );
    // The valid block of a refused batch was not stored either.
    assert!(!store
        .has(&Cid::hash_with(HashFn::Blake3, Codec::Raw, &raw(5, 10).1))
        .await
        .unwrap());

    let mut bad_frame = bat::RAW_MAGIC.to_vec();
    bad_frame.extend_from_slice(&[9, 1, 2, 3]);
    let err = store
        .put(writer.request(tx, &[(Codec::Raw, bad_frame.into())]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Key(peergos_keys::Error::MalformedBats { .. })),
        "{err}"
    );

    let other = Writer::new();
    let err = store
        .put(other.request(tx, &[raw(6, 10)]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TransactionOwner { .. }), "{err}");

    store.close_transaction(&writer.owner, &tx).await.unwrap();
    let err = store
        .put(writer.request(tx, &[raw(7, 10)]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnknownTransaction { .. }), "{err}");
    assert_eq!(store.list().try_collect::<Vec<_>>().await.unwrap(), vec![]);
}

/// Blocks that list access tokens are served only with a valid proof.
pub async fn access_tokens_are_enforced(store: Arc<dyn LocalBlockStore>) {
    let writer = Writer::new();
    let bat = Bat::random();
    let framed = bat::frame_raw(&[bat.id()], b"ciphertext fragment").unwrap();
    let cids = writer
        .put(
            &*store,
            &[(Codec::Raw, framed.into()), cbor_with_bats(&[&bat], "node")],
        )
        .await;
    for cid in &cids {
        let err = store.get(cid, None).await.unwrap_err();
        assert!(matches!(err, Error::ProofRequired { .. }), "{err}");

        let good = BlockAuth::new(&bat, cid, b"peer-1");
        assert!(store.get(cid, Some(&good)).await.unwrap().is_some());

        let wrong_token = BlockAuth::new(&Bat::random(), cid, b"peer-1");
        let err = store.get(cid, Some(&wrong_token)).await.unwrap_err();
        assert!(
            denied_because(&err, |e| matches!(e, peergos_keys::Error::ProofInvalid)),
            "{err}"
        );

        // An overheard proof replayed by another peer is refused.
        let mut replayed = good.clone();
        replayed.requester = b"peer-2".to_vec();
        assert!(matches!(
            store.get(cid, Some(&replayed)).await,
            Err(Error::AccessDenied { .. })
        ));

        let mut stale = good.clone();
        stale.proof = bat.prove(cid, b"peer-1", 1_000);
        let err = store.get(cid, Some(&stale)).await.unwrap_err();
        assert!(
            denied_because(&err, |e| matches!(
                e,
                peergos_keys::Error::ProofExpired { .. }
            )),
            "{err}"
        );

        // The server's own reads need no proof.
        assert!(store.get_trusted(cid).await.unwrap().is_some());
    }
    // A proof for one block does not open another with the same token.
    let proof_for_first = BlockAuth::new(&bat, &cids[0], b"peer-1");
    assert!(store.get(&cids[1], Some(&proof_for_first)).await.is_err());
    // Batched reads hold every block to the same rules.
    let proved: Vec<_> = cids
        .iter()
        .map(|cid| (*cid, Some(BlockAuth::new(&bat, cid, b"peer-1"))))
        .collect();
    let many = store.get_many(&proved).await.unwrap();
    assert!(many.iter().all(Option::is_some));
    let one_unproved = vec![proved[0].clone(), (cids[1], None)];
    let err = store.get_many(&one_unproved).await.unwrap_err();
    assert!(matches!(err, Error::ProofRequired { .. }), "{err}");
}

fn denied_because(err: &Error, why: impl Fn(&peergos_keys::Error) -> bool) -> bool {
    matches!(err, Error::AccessDenied { source, .. } if why(source))
}

/// Open transactions protect their blocks; closing releases them.
pub async fn transactions_protect_blocks(store: Arc<dyn LocalBlockStore>) {
    let writer = Writer::new();
    let tx = store.start_transaction(&writer.owner).await.unwrap();
    let cids = store
        .put(writer.request(tx, &[raw(10, 50), raw(11, 50)]))
        .await
        .unwrap();
    let protected = store.protected().await.unwrap();
    assert!(cids.iter().all(|c| protected.contains(c)));
    store.close_transaction(&writer.owner, &tx).await.unwrap();
    assert!(store.protected().await.unwrap().is_empty());
    let err = store
        .close_transaction(&writer.owner, &tx)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnknownTransaction { .. }));
}

/// Deleted blocks are gone; deleting twice is fine.
pub async fn delete_removes_blocks(store: Arc<dyn LocalBlockStore>) {
    let writer = Writer::new();
    let cids = writer.put(&*store, &[raw(20, 10), raw(21, 10)]).await;
    store.delete(&cids[0]).await.unwrap();
    store.delete(&cids[0]).await.unwrap();
    assert!(!store.has(&cids[0]).await.unwrap());
    assert_eq!(store.get(&cids[0], None).await.unwrap(), None);
    let listed: Vec<Cid> = store.list().try_collect().await.unwrap();
    assert_eq!(listed, vec![cids[1]]);
}

/// 8 writers and 8 readers at once: every acknowledged block is readable
/// by every reader, intact, and nothing else appears.
pub async fn concurrent_writers_and_readers(store: Arc<dyn LocalBlockStore>) {
    const WRITERS: u64 = 8;
    const BLOCKS: u64 = 16;
    let (tx, rx) = tokio::sync::watch::channel(Vec::<(Cid, Bytes)>::new());
    let tx = Arc::new(tokio::sync::Mutex::new(tx));
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = Arc::clone(&store);
        let tx = Arc::clone(&tx);
        tasks.push(tokio::spawn(async move {
            let writer = Writer::new();
            for b in 0..BLOCKS {
                // Writers overlap: writer w and w+1 share half their blocks.
                let block = raw((w / 2) * 1000 + b, 1000 + (b as usize) * 997);
                let cid = writer.put(&*store, std::slice::from_ref(&block)).await[0];
                tx.lock()
                    .await
                    .send_modify(|acked| acked.push((cid, block.1)));
            }
        }));
    }
    let mut readers = Vec::new();
    for r in 0..8usize {
        let store = Arc::clone(&store);
        let rx = rx.clone();
        readers.push(tokio::spawn(async move {
            let mut reads = 0;
            for round in 0..40usize {
                let acked = rx.borrow().clone();
                if let Some((cid, data)) = acked.get((round * 7 + r) % acked.len().max(1)) {
                    assert_eq!(store.get(cid, None).await.unwrap().as_ref(), Some(data));
                    reads += 1;
                }
                tokio::task::yield_now().await;
            }
            reads
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for r in readers {
        r.await.unwrap();
    }
    let acked = rx.borrow().clone();
    assert_eq!(acked.len() as u64, WRITERS * BLOCKS);
    for (cid, data) in &acked {
        assert_eq!(store.get(cid, None).await.unwrap().as_ref(), Some(data));
    }
    let listed: BTreeSet<Cid> = store.list().try_collect().await.unwrap();
    let expected: BTreeSet<Cid> = acked.iter().map(|(c, _)| *c).collect();
    assert_eq!(listed, expected);
    assert_eq!(expected.len() as u64, WRITERS / 2 * BLOCKS);
}

/// Runs every conformance check against a backend, one `#[tokio::test]`
/// each. The argument is an expression evaluating to a closure that
/// returns a future of a fresh, empty store.
#[macro_export]
macro_rules! blockstore_conformance {
    ($make:expr) => {
        $crate::blockstore_conformance!(@tests $make;
            put_get_round_trip,
            identity_cids_need_no_storage,
            both_hashes_name_blocks,
            bad_puts_are_refused,
            access_tokens_are_enforced,
            transactions_protect_blocks,
            delete_removes_blocks,
            concurrent_writers_and_readers,
        );
    };
    (@tests $make:expr; $($check:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let store = ($make)().await;
                $crate::blockstore::$check(::std::sync::Arc::new(store)).await;
            }
        )*
    };
}

/// A block store for watching clients: it counts read requests (each a
/// round trip to a server: a `get` counts one, and so does a whole
/// `get_many`), and while `evil` is set it flips the last byte of every
/// raw block it serves and says nothing, as a compromised server would.
pub struct Watched<S> {
    /// The honest store underneath.
    pub inner: S,
    /// Serve tampered raw blocks.
    pub evil: std::sync::atomic::AtomicBool,
    /// Read requests so far.
    pub reads: std::sync::atomic::AtomicU64,
}

impl<S> Watched<S> {
    /// An honest store that counts its reads.
    pub fn new(inner: S) -> Self {
        Watched {
            inner,
            evil: std::sync::atomic::AtomicBool::new(false),
            reads: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Starts or stops tampering.
    pub fn set_evil(&self, evil: bool) {
        self.evil.store(evil, std::sync::atomic::Ordering::SeqCst);
    }

    /// Read requests so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn count(&self) {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn tamper(&self, cid: &Cid, block: Option<Bytes>) -> Option<Bytes> {
        let evil = self.evil.load(std::sync::atomic::Ordering::SeqCst);
        block.map(|b| {
            if evil && cid.codec() == Some(Codec::Raw) && !b.is_empty() {
                let mut bad = b.to_vec();
                let last = bad.len() - 1;
                bad[last] ^= 1;
                Bytes::from(bad)
            } else {
                b
            }
        })
    }
}

#[async_trait::async_trait]
impl<S: BlockStore> BlockStore for Watched<S> {
    async fn put(&self, request: PutBlocks) -> peergos_blockstore::Result<Vec<Cid>> {
        self.inner.put(request).await
    }
    async fn get(
        &self,
        cid: &Cid,
        auth: Option<&BlockAuth>,
    ) -> peergos_blockstore::Result<Option<Bytes>> {
        self.count();
        Ok(self.tamper(cid, self.inner.get(cid, auth).await?))
    }
    async fn get_many(
        &self,
        requests: &[(Cid, Option<BlockAuth>)],
    ) -> peergos_blockstore::Result<Vec<Option<Bytes>>> {
        self.count();
        let blocks = self.inner.get_many(requests).await?;
        Ok(requests
            .iter()
            .zip(blocks)
            .map(|((cid, _), block)| self.tamper(cid, block))
            .collect())
    }
    async fn get_trusted(&self, cid: &Cid) -> peergos_blockstore::Result<Option<Bytes>> {
        self.count();
        self.inner.get_trusted(cid).await
    }
    async fn has(&self, cid: &Cid) -> peergos_blockstore::Result<bool> {
        self.inner.has(cid).await
    }
    async fn start_transaction(
        &self,
        owner: &PublicKeyHash,
    ) -> peergos_blockstore::Result<peergos_blockstore::TransactionId> {
        self.inner.start_transaction(owner).await
    }
    async fn close_transaction(
        &self,
        owner: &PublicKeyHash,
        id: &peergos_blockstore::TransactionId,
    ) -> peergos_blockstore::Result<()> {
        self.inner.close_transaction(owner, id).await
    }
}

#[async_trait::async_trait]
impl<S: LocalBlockStore> LocalBlockStore for Watched<S> {
    async fn resume_transaction(
        &self,
        owner: &PublicKeyHash,
        id: peergos_blockstore::TransactionId,
        age: std::time::Duration,
        blocks: Vec<Cid>,
    ) -> peergos_blockstore::Result<()> {
        self.inner.resume_transaction(owner, id, age, blocks).await
    }
    async fn protected(&self) -> peergos_blockstore::Result<BTreeSet<Cid>> {
        self.inner.protected().await
    }
    fn list(&self) -> futures::stream::BoxStream<'_, peergos_blockstore::Result<Cid>> {
        self.inner.list()
    }
    async fn delete(&self, cid: &Cid) -> peergos_blockstore::Result<()> {
        self.inner.delete(cid).await
    }
}
