//! Tree operations over a block store.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use peergos_blockstore::{BlockStore, PutBlocks, SignedBlock, TransactionId};
use peergos_ipld::{Block, Cid};
use peergos_keys::{sha256, PublicKeyHash, SigningKeyPair};

use crate::node::{Node, Slot};
use crate::{Config, Error, Key, Result, Value, ValueMismatch};

mod read;

pub use self::read::verify_proof;

/// Who writes the new nodes of a change: the owner whose space they count
/// against, the writer key that signs them, and the open transaction that
/// protects them until the new root is committed to a pointer.
pub struct Writer {
    /// The owner.
    pub owner: PublicKeyHash,
    /// The writer's key pair.
    pub keys: SigningKeyPair,
    /// An open transaction of the owner.
    pub transaction: TransactionId,
}

/// One key whose value differs between two trees.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Change {
    /// The key.
    pub key: Key,
    /// Its value in the old tree (None: absent).
    pub old: Option<Value>,
    /// Its value in the new tree (None: absent).
    pub new: Option<Value>,
}

/// Changes made with [`Champ::put_batched`] and
/// [`Champ::remove_batched`]: their new nodes stay in memory until
/// [`Champ::flush`] stores the ones the final root still reaches, in one
/// put. A thousand changes to one tree then cost one round trip to the
/// store, and the intermediate roots are never stored at all.
#[derive(Default)]
pub struct Batch {
    nodes: HashMap<Cid, (Block, Arc<Node>)>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch::default()
    }

    /// New nodes held, reachable or not.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True if no change was made.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// Where a change's new nodes go.
enum Target<'a> {
    Store(&'a Writer),
    Batch(&'a mut Batch),
}

impl Target<'_> {
    fn batch(&self) -> Option<&Batch> {
        match self {
            Target::Store(_) => None,
            Target::Batch(batch) => Some(batch),
        }
    }
}

/// Default number of decoded nodes kept in the cache.
const DEFAULT_CACHE_NODES: usize = 1 << 15;

/// Nodes [`Champ::get_many`] asks the store for in one request.
pub const LOAD_BATCH: usize = 256;

/// CHAMP operations over a block store `S`, with a cache of decoded nodes.
pub struct Champ<S: BlockStore + ?Sized> {
    store: Arc<S>,
    cache: Mutex<HashMap<Cid, Arc<Node>>>,
    /// Nodes already checked against the tree's shape at a depth (a CID
    /// names immutable content, so the check holds for good).
    checked: Mutex<HashSet<(Cid, usize, u8, u8)>>,
    cache_limit: usize,
    visits: AtomicU64,
}

type Path = Vec<(Arc<Node>, u8)>;

impl<S: BlockStore + ?Sized> Champ<S> {
    /// CHAMP operations over `store`.
    pub fn new(store: Arc<S>) -> Self {
        Self::with_cache(store, DEFAULT_CACHE_NODES)
    }

    /// As [`new`](Self::new), caching at most `nodes` decoded nodes.
    pub fn with_cache(store: Arc<S>, nodes: usize) -> Self {
        Champ {
            store,
            cache: Mutex::new(HashMap::new()),
            checked: Mutex::new(HashSet::new()),
            cache_limit: nodes.max(1),
            visits: AtomicU64::new(0),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// How many nodes operations have visited so far (from the cache or
    /// the store): the cost measure for [`diff`](Self::diff) and friends.
    pub fn node_visits(&self) -> u64 {
        self.visits.load(Ordering::Relaxed)
    }

    /// Writes the empty tree with `config` and returns its root.
    pub async fn empty(&self, writer: &Writer, config: Config) -> Result<Cid> {
        config.validate()?;
        let root = Node {
            config: Some(config),
            slots: BTreeMap::new(),
        };
        let block = root.encode()?;
        let cid = *block.cid();
        self.write(writer, vec![(block, Arc::new(root))]).await?;
        Ok(cid)
    }

    /// Writes the canonical tree holding `entries` in one go (the same root
    /// as putting them one by one, in any order) and returns its root.
    /// Later entries win over earlier ones with the same key.
    pub async fn from_entries(
        &self,
        writer: &Writer,
        config: Config,
        entries: impl IntoIterator<Item = (Key, Value)>,
    ) -> Result<Cid> {
        config.validate()?;
        let entries: BTreeMap<Key, Value> = entries.into_iter().collect();
        for value in entries.values() {
            if let Value::Inline(bytes) = value {
                Value::inline(bytes.clone())?;
            }
        }
        let mut written = Vec::new();
        let mut root = group(&config, entries.into_iter().collect(), 0, &mut written)?;
        root.config = Some(config);
        let block = root.encode()?;
        let cid = *block.cid();
        written.push((block, Arc::new(root)));
        self.write(writer, written).await?;
        Ok(cid)
    }

    async fn load(&self, cid: &Cid, root: bool) -> Result<Arc<Node>> {
        self.load_in(cid, root, None).await
    }

    async fn load_in(&self, cid: &Cid, root: bool, batch: Option<&Batch>) -> Result<Arc<Node>> {
        self.visits.fetch_add(1, Ordering::Relaxed);
        if let Some((_, node)) = batch.and_then(|b| b.nodes.get(cid)) {
            return Ok(Arc::clone(node));
        }
        if let Some(node) = self.lock().get(cid) {
            return Ok(Arc::clone(node));
        }
        let data = self
            .store
            .get(cid, None)
            .await?
            .ok_or(Error::MissingNode { cid: *cid })?;
        // The store checked the hash too, but the store may be remote and
        // untrusted: the client checks again.
        cid.verify(&data)?;
        let node = Arc::new(Node::decode(cid, &data, root)?);
        self.remember(*cid, Arc::clone(&node));
        Ok(node)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Cid, Arc<Node>>> {
        // Entries are immutable; a poisoned lock still guards a valid map.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remember(&self, cid: Cid, node: Arc<Node>) {
        let mut cache = self.lock();
        if cache.len() >= self.cache_limit {
            // Drop about half, arbitrarily: cheap, and bounded.
            let mut keep = false;
            cache.retain(|_, _| {
                keep = !keep;
                keep
            });
        }
        cache.insert(cid, node);
    }

    async fn load_root(&self, root: &Cid, batch: Option<&Batch>) -> Result<(Arc<Node>, Config)> {
        let node = self.load_in(root, true, batch).await?;
        let config = node.config.ok_or(Error::MalformedNode {
            cid: *root,
            reason: "root node has no config".into(),
        })?;
        Ok((node, config))
    }

    /// Checks a node's slots are within the tree's shape and, for buckets,
    /// that every key hashes to the slot and prefix it sits under.
    fn check(&self, cid: &Cid, node: &Node, config: &Config, depth: usize) -> Result<()> {
        let bad = |reason: &str| Error::MalformedNode {
            cid: *cid,
            reason: reason.into(),
        };
        for (&pos, slot) in &node.slots {
            if u32::from(pos) >= 1u32 << config.bits {
                return Err(bad("slot outside the tree's branching"));
            }
            if let Slot::Bucket(entries) = slot {
                if entries.len() > usize::from(config.bucket) {
                    return Err(bad("bucket larger than the tree allows"));
                }
                for (key, _) in entries {
                    if config.position(&sha256(&key.0), depth)? != pos {
                        return Err(bad("key stored under the wrong slot"));
                    }
                }
            }
        }
        Ok(())
    }

    /// [`check`](Self::check), skipped for a node already checked at this
    /// depth under this config.
    fn check_once(&self, cid: &Cid, node: &Node, config: &Config, depth: usize) -> Result<()> {
        let key = (*cid, depth, config.bits, config.bucket);
        let lock = || self.checked.lock().unwrap_or_else(|e| e.into_inner());
        if lock().contains(&key) {
            return Ok(());
        }
        self.check(cid, node, config, depth)?;
        let mut checked = lock();
        if checked.len() >= self.cache_limit {
            checked.clear();
        }
        checked.insert(key);
        Ok(())
    }

    /// Walks from `root` towards `key`: the path of (node, slot) above the
    /// node where the key's slot holds a bucket or nothing, that node, and
    /// the slot.
    async fn walk(
        &self,
        root: &Cid,
        key: &Key,
        batch: Option<&Batch>,
    ) -> Result<(Path, Arc<Node>, u8, Config)> {
        let (mut node, config) = self.load_root(root, batch).await?;
        let hash = sha256(&key.0);
        let mut path = Vec::new();
        let mut cid = *root;
        let mut depth = 0;
        loop {
            self.check_once(&cid, &node, &config, depth)?;
            let pos = config.position(&hash, depth)?;
            match node.slots.get(&pos) {
                Some(Slot::Child(child)) => {
                    cid = *child;
                    let next = self.load_in(child, false, batch).await?;
                    path.push((node, pos));
                    node = next;
                    depth += 1;
                }
                _ => return Ok((path, node, pos, config)),
            }
        }
    }

    /// Sets `key` to `value` if its current value is `expected` (None:
    /// absent); otherwise fails with [`Error::ValueMismatch`]. Returns the
    /// new root; the old tree is unchanged.
    pub async fn put(
        &self,
        writer: &Writer,
        root: &Cid,
        key: &Key,
        expected: Option<&Value>,
        value: Value,
    ) -> Result<Cid> {
        self.put_to(Target::Store(writer), root, key, expected, value)
            .await
    }

    /// [`put`](Self::put), keeping the new nodes in `batch` until
    /// [`flush`](Self::flush). `root` may be a root returned by an earlier
    /// batched change.
    pub async fn put_batched(
        &self,
        batch: &mut Batch,
        root: &Cid,
        key: &Key,
        expected: Option<&Value>,
        value: Value,
    ) -> Result<Cid> {
        self.put_to(Target::Batch(batch), root, key, expected, value)
            .await
    }

    async fn put_to(
        &self,
        target: Target<'_>,
        root: &Cid,
        key: &Key,
        expected: Option<&Value>,
        value: Value,
    ) -> Result<Cid> {
        if let Value::Inline(bytes) = &value {
            Value::inline(bytes.clone())?;
        }
        let (path, leaf, pos, config) = self.walk(root, key, target.batch()).await?;
        let depth = path.len();
        let mut leaf = (*leaf).clone();
        let mut written = Vec::new();
        let actual = match leaf.slots.get(&pos) {
            Some(Slot::Bucket(entries)) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        };
        if actual != expected {
            return Err(mismatch(key, expected.cloned(), actual.cloned()));
        }
        let slot = match leaf.slots.remove(&pos) {
            None => Slot::Bucket(vec![(*key, value)]),
            Some(Slot::Bucket(mut entries)) => {
                match entries.binary_search_by(|(k, _)| k.cmp(key)) {
                    Ok(i) => entries[i].1 = value,
                    Err(i) => entries.insert(i, (*key, value)),
                }
                if entries.len() <= usize::from(config.bucket) {
                    Slot::Bucket(entries)
                } else {
                    Slot::Child(build(&config, entries, depth + 1, &mut written)?)
                }
            }
            Some(Slot::Child(_)) => unreachable!("walk stops above buckets and empty slots"),
        };
        leaf.slots.insert(pos, slot);
        self.commit(target, path, leaf, &config, written, false)
            .await
    }

    /// Removes `key` if its current value is `expected`; otherwise fails
    /// with [`Error::ValueMismatch`]. Returns the new root.
    pub async fn remove(
        &self,
        writer: &Writer,
        root: &Cid,
        key: &Key,
        expected: &Value,
    ) -> Result<Cid> {
        self.remove_to(Target::Store(writer), root, key, expected)
            .await
    }

    /// [`remove`](Self::remove), keeping the new nodes in `batch` until
    /// [`flush`](Self::flush).
    pub async fn remove_batched(
        &self,
        batch: &mut Batch,
        root: &Cid,
        key: &Key,
        expected: &Value,
    ) -> Result<Cid> {
        self.remove_to(Target::Batch(batch), root, key, expected)
            .await
    }

    async fn remove_to(
        &self,
        target: Target<'_>,
        root: &Cid,
        key: &Key,
        expected: &Value,
    ) -> Result<Cid> {
        let (path, leaf, pos, config) = self.walk(root, key, target.batch()).await?;
        let mut leaf = (*leaf).clone();
        let Some(Slot::Bucket(entries)) = leaf.slots.get_mut(&pos) else {
            return Err(mismatch(key, Some(expected.clone()), None));
        };
        let Ok(i) = entries.binary_search_by(|(k, _)| k.cmp(key)) else {
            return Err(mismatch(key, Some(expected.clone()), None));
        };
        if &entries[i].1 != expected {
            return Err(mismatch(
                key,
                Some(expected.clone()),
                Some(entries[i].1.clone()),
            ));
        }
        entries.remove(i);
        if entries.is_empty() {
            leaf.slots.remove(&pos);
        }
        self.commit(target, path, leaf, &config, Vec::new(), true)
            .await
    }

    /// Rewrites the path above a changed node, bottom up, and stores every
    /// new node in one put. With `collapse`, a child left with no children
    /// and at most `bucket` entries becomes a bucket in its parent, which
    /// keeps the tree canonical after removals.
    async fn commit(
        &self,
        target: Target<'_>,
        mut path: Path,
        mut node: Node,
        config: &Config,
        mut written: Vec<(Block, Arc<Node>)>,
        collapse: bool,
    ) -> Result<Cid> {
        while let Some((parent, pos)) = path.pop() {
            let mut parent = (*parent).clone();
            if collapse && node.collapsible(config) {
                let entries = node.bucket_entries();
                if entries.is_empty() {
                    parent.slots.remove(&pos);
                } else {
                    parent.slots.insert(pos, Slot::Bucket(entries));
                }
            } else {
                let block = node.encode()?;
                parent.slots.insert(pos, Slot::Child(*block.cid()));
                written.push((block, Arc::new(node)));
            }
            node = parent;
        }
        let block = node.encode()?;
        let root = *block.cid();
        written.push((block, Arc::new(node)));
        match target {
            Target::Store(writer) => self.write(writer, written).await?,
            Target::Batch(batch) => {
                for (block, node) in written {
                    batch.nodes.insert(*block.cid(), (block, node));
                }
            }
        }
        Ok(root)
    }

    /// Stores the nodes of `batch` that `root` reaches, in one put, and
    /// empties the batch. Nodes of intermediate roots are dropped.
    pub async fn flush(&self, writer: &Writer, batch: &mut Batch, root: &Cid) -> Result<()> {
        let reached = Self::reached(batch, root);
        if reached.is_empty() {
            return Ok(());
        }
        self.write(writer, reached).await
    }

    /// [`flush`](Self::flush) without the put: the nodes of `batch` that
    /// `root` reaches, signed by `writer`, for the caller to store in a put
    /// of its own (with other blocks, before anything links to `root`).
    /// The batch is emptied.
    pub fn flush_signed(&self, writer: &Writer, batch: &mut Batch, root: &Cid) -> Vec<SignedBlock> {
        let reached = Self::reached(batch, root);
        let signed = Self::sign_all(writer, &reached);
        for (block, node) in reached {
            self.remember(*block.cid(), node);
        }
        signed
    }

    fn reached(batch: &mut Batch, root: &Cid) -> Vec<(Block, Arc<Node>)> {
        let mut nodes = std::mem::take(&mut batch.nodes);
        let mut reached = Vec::new();
        let mut stack = vec![*root];
        while let Some(cid) = stack.pop() {
            let Some((block, node)) = nodes.remove(&cid) else {
                // Already stored (or not new): nothing below it is new.
                continue;
            };
            for slot in node.slots.values() {
                if let Slot::Child(child) = slot {
                    stack.push(*child);
                }
            }
            reached.push((block, node));
        }
        reached
    }

    fn sign_all(writer: &Writer, blocks: &[(Block, Arc<Node>)]) -> Vec<SignedBlock> {
        blocks
            .iter()
            .map(|(block, _)| {
                SignedBlock::sign(
                    &writer.keys,
                    peergos_ipld::Codec::DagCbor,
                    block.data().clone(),
                )
            })
            .collect()
    }

    async fn write(&self, writer: &Writer, blocks: Vec<(Block, Arc<Node>)>) -> Result<()> {
        let signed = Self::sign_all(writer, &blocks);
        self.store
            .put(PutBlocks {
                owner: writer.owner,
                writer: PublicKeyHash::of(&writer.keys.public()),
                transaction: writer.transaction,
                blocks: signed,
            })
            .await?;
        for (block, node) in blocks {
            self.remember(*block.cid(), node);
        }
        Ok(())
    }
}

/// Builds the canonical subtree holding `entries` (more than a bucket) at
/// `depth`, appending its blocks to `written`; returns its CID.
fn build(
    config: &Config,
    entries: Vec<(Key, Value)>,
    depth: usize,
    written: &mut Vec<(Block, Arc<Node>)>,
) -> Result<Cid> {
    let node = group(config, entries, depth, written)?;
    let block = node.encode()?;
    let cid = *block.cid();
    written.push((block, Arc::new(node)));
    Ok(cid)
}

/// The node at `depth` holding `entries`: each slot's share becomes a
/// bucket, or a child subtree (written to `written`) if it is too big.
fn group(
    config: &Config,
    entries: Vec<(Key, Value)>,
    depth: usize,
    written: &mut Vec<(Block, Arc<Node>)>,
) -> Result<Node> {
    let mut groups: BTreeMap<u8, Vec<(Key, Value)>> = BTreeMap::new();
    for (key, value) in entries {
        let pos = config.position(&sha256(&key.0), depth)?;
        groups.entry(pos).or_default().push((key, value));
    }
    let mut node = Node::default();
    for (pos, mut group) in groups {
        group.sort_by_key(|entry| entry.0);
        let slot = if group.len() <= usize::from(config.bucket) {
            Slot::Bucket(group)
        } else {
            Slot::Child(build(config, group, depth + 1, written)?)
        };
        node.slots.insert(pos, slot);
    }
    Ok(node)
}

fn mismatch(key: &Key, expected: Option<Value>, actual: Option<Value>) -> Error {
    Error::ValueMismatch(Box::new(ValueMismatch {
        key: *key,
        expected,
        actual,
    }))
}

fn record(
    changes: &mut BTreeMap<Key, Change>,
    before: BTreeMap<Key, Value>,
    after: BTreeMap<Key, Value>,
) {
    for (key, old) in &before {
        let new = after.get(key);
        if new != Some(old) {
            changes.insert(
                *key,
                Change {
                    key: *key,
                    old: Some(old.clone()),
                    new: new.cloned(),
                },
            );
        }
    }
    for (key, new) in after {
        if !before.contains_key(&key) {
            changes.insert(
                key,
                Change {
                    key,
                    old: None,
                    new: Some(new),
                },
            );
        }
    }
}
