//! The filesystem: paths, directories and streaming files over cryptree
//! nodes, in any [`BlockStore`] and [`PointerStore`].
//!
//! Reads take a snapshot of each writer's tree (its verified pointer) once
//! per operation. Writes build new blocks first, then commit a list of
//! CHAMP changes, each with the value it expects to replace, through
//! [`Committer`]: a concurrent change to the same node makes the operation
//! re-plan from a fresh snapshot; a concurrent change elsewhere in the
//! writer's tree is merged by the committer's retry. Nothing is visible
//! until the writer's pointer moves, so an interrupted operation leaves the
//! old tree whole.

mod dir_edit;
mod dirs;
mod moves;
mod read;
mod resume;
mod rewrite;
mod sink;
mod subspace;
mod upload;
mod write;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt, TryStreamExt};
use peergos_blockstore::{BlockAuth, BlockStore};
use peergos_champ::{Champ, Value};
use peergos_ipld::Cid;
use peergos_keys::{bat, Bat, PublicKeyHash, SigningKeyPair, SymmetricKey};
use peergos_pointers::PointerStore;

use crate::node::{
    self, chunk_count, chunk_len, name_tag, BasePart, ChildLink, NodeBlock, ParentPart, Properties,
    FRAGMENT_SIZE,
};
use crate::{AbsoluteCapability, Committer, Error, Label, Result};

pub use resume::UPLOADS_DIR;
pub use rewrite::Patch;
pub use write::UploadOptions;

/// Decoded node blocks, and their decrypted parts, kept in memory (they
/// are immutable, named by CID). A node is about 1 KiB, its parts a few
/// hundred bytes.
const NODE_CACHE: usize = 1 << 15;
/// Decrypted directory listings kept in memory, by node CID.
const LISTING_CACHE: usize = 1 << 10;
/// Decrypted fragments kept for sequential small reads (1 MiB each).
const FRAGMENT_CACHE: usize = 8;
/// Node blocks fetched in one batch request when listing a directory.
const NODE_BATCH: usize = 256;

/// Batches of node blocks being fetched at once.
const NODE_BATCHES_IN_FLIGHT: usize = 4;
/// Fragments of one chunk fetched at once.
const FRAGMENT_CONCURRENCY: usize = 3;
/// Chunks a streamed read fetches ahead. Four instead of two read a
/// 256 MiB file about 15% faster from its home server and 35% faster
/// through another server (`docs/BENCHMARKS.md`), for 10 MiB more memory.
const READ_AHEAD: usize = 4;

/// A file or a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A file.
    File,
    /// A directory.
    Dir,
}

/// What a listing or `stat` tells about one file or directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its name.
    pub name: String,
    /// File or directory.
    pub kind: Kind,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Last modification, milliseconds since the Unix epoch.
    pub modified: i64,
    /// MIME type, or empty.
    pub mime: String,
    /// Hidden from [`Filesystem::ls`] (shown by [`Filesystem::ls_all`]).
    pub hidden: bool,
    /// Whether this client can write it.
    pub writable: bool,
}

/// An encrypted filesystem rooted at one directory capability.
///
/// Cheap to share behind an `Arc`; every method takes `&self` and may run
/// concurrently with others.
pub struct Filesystem<B: BlockStore + ?Sized, P: PointerStore + ?Sized> {
    committer: Committer<B, P>,
    champ: Champ<B>,
    root: AbsoluteCapability,
    requester: Vec<u8>,
    nodes: Mutex<HashMap<Cid, Arc<NodeBlock>>>,
    listings: Mutex<HashMap<Cid, Arc<Vec<ChildLink>>>>,
    fragments: Mutex<std::collections::VecDeque<(FragmentKey, Bytes)>>,
    parts: Mutex<HashMap<PartsKey, Arc<(BasePart, ParentPart)>>>,
    blocks_written: AtomicU64,
    /// Every writer whose tree this filesystem has read.
    writers: Mutex<std::collections::BTreeSet<PublicKeyHash>>,
}

/// A file as it was when it was opened: reading it needs no path lookup
/// and no pointer read, and later changes to the file are not seen.
pub struct OpenFile {
    found: Found,
    view: View,
    chain: Vec<(u64, Label, Bat)>,
}

impl OpenFile {
    /// What the file was when opened.
    pub fn entry(&self) -> Entry {
        self.found.entry()
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.found.props.size
    }

    /// How many chunks it has (each [`node::CHUNK_SIZE`] bytes but the last).
    pub fn chunk_count(&self) -> u64 {
        self.chain.len() as u64
    }
}

/// A node's CID and a digest of the key that opened its parts.
type PartsKey = (Cid, [u8; 32]);

/// A decrypted fragment is cached under its CID and the whole context it
/// was decrypted in (a digest of the key, the label, its position), so a
/// caller with another key never gets it.
#[derive(Clone, Copy, PartialEq, Eq)]
struct FragmentKey {
    cid: Cid,
    context: [u8; 32],
}

/// Each writer's tree root, read once per operation.
#[derive(Default)]
pub(crate) struct View {
    roots: Mutex<HashMap<PublicKeyHash, Option<Cid>>>,
}

/// A node found by path: its capability, its decrypted first chunk, and
/// where its parent links to it.
#[derive(Clone)]
pub(crate) struct Found {
    pub(crate) path: String,
    pub(crate) cap: AbsoluteCapability,
    pub(crate) cid: Cid,
    pub(crate) block: Arc<NodeBlock>,
    pub(crate) base: BasePart,
    pub(crate) parent: ParentPart,
    pub(crate) props: Properties,
}

impl Found {
    pub(crate) fn kind(&self) -> Kind {
        if self.base.dir {
            Kind::Dir
        } else {
            Kind::File
        }
    }

    /// The key the node's parent part is under.
    pub(crate) fn parent_key(&self) -> &SymmetricKey {
        if self.base.dir {
            &self.base.second
        } else {
            &self.cap.read
        }
    }

    pub(crate) fn entry(&self) -> Entry {
        Entry {
            name: self.props.name.clone(),
            kind: self.kind(),
            size: if self.base.dir { 0 } else { self.props.size },
            modified: self.props.modified,
            mime: self.props.mime.clone(),
            hidden: self.props.hidden,
            writable: self.cap.is_writable(),
        }
    }

    pub(crate) fn require_dir(&self) -> Result<()> {
        if self.base.dir {
            Ok(())
        } else {
            Err(Error::NotADirectory {
                path: self.path.clone(),
            })
        }
    }

    pub(crate) fn require_file(&self) -> Result<()> {
        if self.base.dir {
            Err(Error::IsADirectory {
                path: self.path.clone(),
            })
        } else {
            Ok(())
        }
    }

    /// The writer's key pair, from the node's signer link.
    pub(crate) fn signer(&self) -> Result<SigningKeyPair> {
        let write = self.cap.write.as_ref().ok_or_else(|| Error::ReadOnly {
            path: self.path.clone(),
        })?;
        self.base.signer(write, &self.cap.label, &self.cap.writer)
    }

    /// The link a child keeps to this directory.
    pub(crate) fn as_parent(&self) -> node::ParentLink {
        node::ParentLink {
            writer: self.cap.writer,
            label: self.cap.label,
            bat: self.cap.bat.clone(),
            key: self.base.second.clone(),
        }
    }
}

/// One chunk of a directory: where it is and its children.
#[derive(Clone)]
pub(crate) struct DirChunk {
    pub(crate) label: Label,
    pub(crate) bat: Bat,
    pub(crate) cid: Cid,
    pub(crate) block: Arc<NodeBlock>,
    /// Shared with the listing cache; edits copy it first.
    pub(crate) children: Arc<Vec<ChildLink>>,
}

/// Splits a path into its names. `""` and `"/"` are the root; empty
/// components and `.` are skipped; `..` is refused.
pub(crate) fn components(path: &str) -> Result<Vec<&str>> {
    let mut out = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(Error::BadPath {
                    path: path.to_string(),
                    reason: "'..' is not supported",
                })
            }
            name => {
                node::check_name(name)?;
                out.push(name);
            }
        }
    }
    Ok(out)
}

fn join(names: &[&str]) -> String {
    format!("/{}", names.join("/"))
}

impl<B: BlockStore + ?Sized, P: PointerStore + ?Sized> Filesystem<B, P> {
    /// A filesystem over the stores, rooted at `root` (writable if the
    /// capability is).
    pub fn open(blocks: Arc<B>, pointers: Arc<P>, root: AbsoluteCapability) -> Self {
        Filesystem {
            champ: Champ::new(Arc::clone(&blocks)),
            committer: Committer::new(blocks, pointers),
            root,
            requester: b"peergos/in-process".to_vec(),
            nodes: Mutex::new(HashMap::new()),
            listings: Mutex::new(HashMap::new()),
            fragments: Mutex::new(std::collections::VecDeque::new()),
            parts: Mutex::new(HashMap::new()),
            blocks_written: AtomicU64::new(0),
            writers: Mutex::new(std::collections::BTreeSet::new()),
        }
    }

    /// Sets the peer id that access-token proofs are bound to (the id the
    /// block server sees this client as).
    pub fn with_requester(mut self, requester: &[u8]) -> Self {
        self.requester = requester.to_vec();
        self
    }

    /// The root directory's capability. Treat it as a secret.
    pub fn root(&self) -> &AbsoluteCapability {
        &self.root
    }

    /// The owner of the space.
    pub fn owner(&self) -> &PublicKeyHash {
        &self.root.owner
    }

    /// Blocks this filesystem has written so far (nodes, fragments, CHAMP
    /// nodes, writer data): the cost measure of a change.
    pub fn blocks_written(&self) -> u64 {
        self.blocks_written.load(Ordering::Relaxed)
    }

    pub(crate) fn blocks(&self) -> &Arc<B> {
        self.committer.blocks()
    }

    /// The tree root of `writer` in this view, reading its pointer the
    /// first time.
    async fn tree(&self, view: &View, writer: &PublicKeyHash) -> Result<Option<Cid>> {
        if let Some(root) = lock(&view.roots).get(writer) {
            return Ok(*root);
        }
        let (current, _) = self.committer.current(&self.root.owner, writer).await?;
        let root = current.and_then(|(data, _)| data.tree);
        lock(&view.roots).insert(*writer, root);
        lock(&self.writers).insert(*writer);
        Ok(root)
    }

    /// The current pointer sequence of every writer whose tree this
    /// filesystem has read so far (one pointer read each). When any of
    /// them differs from an earlier answer, something this filesystem has
    /// looked at may have changed: a cache above it can use this to know
    /// when to forget what it saw.
    pub async fn versions(&self) -> Result<Vec<(PublicKeyHash, u64)>> {
        let writers: Vec<PublicKeyHash> = lock(&self.writers).iter().copied().collect();
        let mut out = Vec::with_capacity(writers.len());
        for writer in writers {
            let (_, sequence) = self.committer.current(&self.root.owner, &writer).await?;
            out.push((writer, sequence));
        }
        Ok(out)
    }

    /// The node block stored at (`writer`, `label`), if any.
    pub(crate) async fn fetch(
        &self,
        view: &View,
        writer: &PublicKeyHash,
        label: &Label,
        bat: Option<&Bat>,
    ) -> Result<Option<(Cid, Arc<NodeBlock>)>> {
        let Some(cid) = self.locate(view, writer, label).await? else {
            return Ok(None);
        };
        if let Some(block) = lock(&self.nodes).get(&cid) {
            return Ok(Some((cid, Arc::clone(block))));
        }
        let bytes = self.get_block(&cid, bat).await?;
        let block = Arc::new(NodeBlock::decode(&bytes)?);
        self.remember_node(cid, Arc::clone(&block));
        Ok(Some((cid, block)))
    }

    pub(super) fn remember_node(&self, cid: Cid, block: Arc<NodeBlock>) {
        let mut nodes = lock(&self.nodes);
        if nodes.len() >= NODE_CACHE {
            nodes.clear();
        }
        nodes.insert(cid, block);
    }

    /// The CID of the node at (`writer`, `label`) in this view, if any.
    async fn locate(
        &self,
        view: &View,
        writer: &PublicKeyHash,
        label: &Label,
    ) -> Result<Option<Cid>> {
        let Some(root) = self.tree(view, writer).await? else {
            return Ok(None);
        };
        node_link(self.champ.get(&root, &label.key()).await?)
    }

    /// The CIDs of the nodes `caps` name, in order (children are usually
    /// in their directory's writer's tree: each writer's tree is searched
    /// for all of its keys at once, a CHAMP level per round trip).
    async fn locate_many(
        &self,
        view: &View,
        caps: Vec<AbsoluteCapability>,
        dir_path: &str,
    ) -> Result<Vec<(AbsoluteCapability, Cid)>> {
        let mut by_writer: HashMap<PublicKeyHash, Vec<usize>> = HashMap::new();
        for (i, cap) in caps.iter().enumerate() {
            by_writer.entry(cap.writer).or_default().push(i);
        }
        let mut cids: Vec<Option<Cid>> = vec![None; caps.len()];
        for (writer, indices) in by_writer {
            let Some(root) = self.tree(view, &writer).await? else {
                continue;
            };
            let keys: Vec<_> = indices.iter().map(|&i| caps[i].label.key()).collect();
            let values = self.champ.get_many(&root, &keys).await?;
            for (&i, value) in indices.iter().zip(values) {
                cids[i] = node_link(value)?;
            }
        }
        caps.into_iter()
            .zip(cids)
            .map(|(cap, cid)| {
                let cid = cid.ok_or_else(|| Error::NotFound {
                    path: format!("{dir_path}/ (a child it links)"),
                })?;
                Ok((cap, cid))
            })
            .collect()
    }

    /// Node blocks by CID (with the token each is read under), in order:
    /// from the cache, the rest fetched in batches of [`NODE_BATCH`], a
    /// round trip per batch rather than per node (a listing of 10,000
    /// children is about 40 requests). Each block's hash is checked here.
    async fn node_blocks(&self, wanted: &[(Cid, Option<Bat>)]) -> Result<Vec<Arc<NodeBlock>>> {
        let mut out: Vec<Option<Arc<NodeBlock>>> = {
            let nodes = lock(&self.nodes);
            wanted
                .iter()
                .map(|(cid, _)| nodes.get(cid).cloned())
                .collect()
        };
        let missing: Vec<usize> = (0..wanted.len()).filter(|&i| out[i].is_none()).collect();
        let missing: Vec<Vec<usize>> = missing.chunks(NODE_BATCH).map(<[usize]>::to_vec).collect();
        let batches: Vec<(Vec<usize>, Vec<Arc<NodeBlock>>)> = futures::stream::iter(missing)
            .map(|batch| async move {
                let requests: Vec<(Cid, Option<BlockAuth>)> = batch
                    .iter()
                    .map(|&i| {
                        let (cid, bat) = &wanted[i];
                        let auth = bat
                            .as_ref()
                            .map(|bat| BlockAuth::new(bat, cid, &self.requester));
                        (*cid, auth)
                    })
                    .collect();
                let answers = self.blocks().get_many(&requests).await?;
                if answers.len() != requests.len() {
                    return Err(Error::Task(format!(
                        "{} blocks answered for a batch of {}",
                        answers.len(),
                        requests.len()
                    )));
                }
                let blocks = requests
                    .iter()
                    .zip(answers)
                    .map(|((cid, _), bytes)| {
                        let bytes = bytes.ok_or(Error::MissingBlock { cid: *cid })?;
                        cid.verify(&bytes)?;
                        Ok(Arc::new(NodeBlock::decode(&bytes)?))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok::<_, Error>((batch, blocks))
            })
            .buffered(NODE_BATCHES_IN_FLIGHT)
            .try_collect()
            .await?;
        for (indices, blocks) in batches {
            for (i, block) in indices.into_iter().zip(blocks) {
                self.remember_node(wanted[i].0, Arc::clone(&block));
                out[i] = Some(block);
            }
        }
        out.into_iter()
            .zip(wanted)
            .map(|(block, (cid, _))| block.ok_or(Error::MissingBlock { cid: *cid }))
            .collect()
    }

    /// A block, with the access proof for `bat`, its hash checked here
    /// whatever the store did.
    async fn get_block(&self, cid: &Cid, bat: Option<&Bat>) -> Result<Bytes> {
        let auth = bat.map(|bat| BlockAuth::new(bat, cid, &self.requester));
        let bytes = self
            .blocks()
            .get(cid, auth.as_ref())
            .await?
            .ok_or(Error::MissingBlock { cid: *cid })?;
        cid.verify(&bytes)?;
        Ok(bytes)
    }

    /// Decrypts the node that `cap` names, as found at `path`.
    async fn load(&self, view: &View, cap: AbsoluteCapability, path: String) -> Result<Found> {
        let (cid, block) = self
            .fetch(view, &cap.writer, &cap.label, cap.bat.as_ref())
            .await?
            .ok_or_else(|| Error::NotFound { path: path.clone() })?;
        self.open_node(cap, cid, block, path)
    }

    /// Decrypts a node block fetched for `cap`, as found at `path`.
    fn open_node(
        &self,
        cap: AbsoluteCapability,
        cid: Cid,
        block: Arc<NodeBlock>,
        path: String,
    ) -> Result<Found> {
        // Decrypted parts are cached by the node's CID and a digest of the
        // key that opened them, so another key never gets them.
        let cache_key = (cid, peergos_keys::sha256(cap.read.as_bytes()));
        let cached = lock(&self.parts).get(&cache_key).cloned();
        let parts = match cached {
            Some(parts) => parts,
            None => {
                let base = BasePart::open(&cap.read, &block.base, &cap.label)?;
                let parent_key = if base.dir { &base.second } else { &cap.read };
                let parent = ParentPart::open(parent_key, &block.parent, &cap.label)?;
                let parts = Arc::new((base, parent));
                let mut cache = lock(&self.parts);
                if cache.len() >= NODE_CACHE {
                    cache.clear();
                }
                cache.insert(cache_key, Arc::clone(&parts));
                parts
            }
        };
        let (base, parent) = (parts.0.clone(), parts.1.clone());
        let props = parent.props.clone().ok_or(Error::MalformedNode {
            reason: "a first chunk without properties",
        })?;
        Ok(Found {
            path,
            cap,
            cid,
            block,
            base,
            parent,
            props,
        })
    }
}

/// The node a writer's tree entry links to (None: no entry).
fn node_link(value: Option<Value>) -> Result<Option<Cid>> {
    match value {
        None => Ok(None),
        Some(Value::Link(cid)) => Ok(Some(cid)),
        Some(Value::Inline(_)) => Err(Error::MalformedNode {
            reason: "a tree entry holds inline bytes, not a node link",
        }),
    }
}

pub(crate) fn child_path(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A chunk's parts as one buffer: the part itself when there is one.
fn joined(parts: Vec<Bytes>) -> Bytes {
    match <[Bytes; 1]>::try_from(parts) {
        Ok([only]) => only,
        Err(parts) => Bytes::from(parts.concat()),
    }
}
