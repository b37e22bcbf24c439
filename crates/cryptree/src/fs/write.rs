//! Changing the filesystem: building and storing nodes, and committing
//! CHAMP changes with compare-and-swap.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use peergos_blockstore::{BlockStore, PutBlocks, SignedBlock, TransactionId};
use peergos_champ::{Batch, Config, Value, Writer};
use peergos_ipld::{Cid, Codec};
use peergos_keys::{bat, Bat, PublicKeyHash, SigningKeyPair, SymmetricKey};
use peergos_pointers::PointerStore;
use serde_bytes::ByteBuf;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{child_path, components, DirChunk, Entry, Filesystem, Found, View};
use crate::node::{
    self, name_tag, BasePart, ChildLink, NodeBlock, ParentLink, ParentPart, Properties, CHUNK_SIZE,
    MAX_CHILDREN_PER_NODE,
};
use crate::{AbsoluteCapability, Error, Label, Result, Turn};

/// How many times an operation re-plans after a concurrent change to a
/// node it touches.
const MAX_PLAN_ATTEMPTS: usize = 16;

/// Block bytes gathered before a put when writing many files at once.
const BATCH_PUT_BYTES: usize = 8 << 20;
/// At most this much of a batch's data waits for the commit's put (which
/// a commit that loses a race sends again).
const DEFERRED_PUT_BYTES: usize = 1 << 20;

/// How often a resumable upload commits the chunks it has stored, so an
/// interruption loses at most about this much work.
pub(super) const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Options for a new file or directory.
#[derive(Clone, Debug, Default)]
pub struct UploadOptions {
    /// Modification time, milliseconds since the Unix epoch (default: now).
    pub modified: Option<i64>,
    /// MIME type (default: empty, unknown).
    pub mime: String,
    /// Hidden from ordinary listings.
    pub hidden: bool,
}

impl UploadOptions {
    /// What `stat` will say of a file just written with these options.
    pub(super) fn entry(&self, name: String, size: u64) -> Entry {
        Entry {
            name,
            kind: super::Kind::File,
            size,
            modified: self.modified.unwrap_or_else(now_ms),
            mime: self.mime.clone(),
            hidden: self.hidden,
            writable: true,
        }
    }
}

/// One change to a writer's CHAMP: `label` goes from `expected` to `new`
/// (None: absent).
#[derive(Clone, Debug)]
pub(super) struct Mutation {
    pub(super) label: Label,
    pub(super) expected: Option<Cid>,
    pub(super) new: Option<Cid>,
}

impl Mutation {
    pub(super) fn create(label: Label, cid: Cid) -> Self {
        Mutation {
            label,
            expected: None,
            new: Some(cid),
        }
    }
}

/// The changes of one operation, all in one writer's tree.
pub(super) struct Plan {
    pub(super) signer: SigningKeyPair,
    pub(super) mutations: Vec<Mutation>,
    /// Keys to add to (true) or remove from (false) the writer's owned set.
    pub(super) owned: Vec<(PublicKeyHash, bool)>,
    /// Blocks the mutations link to that are not stored yet (signed by
    /// `signer`): they go up in the commit's one put.
    pub(super) blocks: Vec<SignedBlock>,
}

impl Plan {
    pub(super) fn new(signer: SigningKeyPair, mutations: Vec<Mutation>) -> Self {
        Plan {
            signer,
            mutations,
            owned: Vec::new(),
            blocks: Vec::new(),
        }
    }

    /// The plan, with `blocks` stored by its commit.
    pub(super) fn with_blocks(mut self, blocks: Vec<SignedBlock>) -> Self {
        self.blocks.extend(blocks);
        self
    }
}

/// A node to build: its place, its sealed parts, and its content.
pub(super) struct NodeSpec {
    pub(super) label: Label,
    pub(super) bat: Bat,
    pub(super) base: Vec<u8>,
    pub(super) parent: Vec<u8>,
    pub(super) content: Content,
}

pub(super) enum Content {
    /// Plaintext (already padded) to encrypt under `key`: shared, so a
    /// chunk a caller already holds whole is sealed where it lies.
    Plain { key: SymmetricKey, padded: Bytes },
    /// Content already sealed and stored.
    Stored {
        inline: Option<ByteBuf>,
        fragments: Vec<Cid>,
    },
}

/// Fresh keys for a new file or directory.
pub(super) struct Fresh {
    pub(super) cap: AbsoluteCapability,
    pub(super) write: SymmetricKey,
    pub(super) second: SymmetricKey,
    pub(super) stream: [u8; 32],
}

impl Fresh {
    pub(super) fn new(owner: PublicKeyHash, writer: PublicKeyHash) -> Self {
        let write = SymmetricKey::random();
        Fresh {
            cap: AbsoluteCapability {
                owner,
                writer,
                label: Label::random(),
                bat: Some(Bat::random()),
                read: SymmetricKey::random(),
                write: Some(write.clone()),
            },
            write,
            second: SymmetricKey::random(),
            stream: *Bat::random().as_bytes(),
        }
    }

    /// The keys for a node at a writable capability chosen before it
    /// exists (the parts no capability holds are fresh).
    fn at(cap: &AbsoluteCapability) -> Result<Self> {
        let write = cap.write.clone().ok_or(Error::NotWritable)?;
        Ok(Fresh {
            cap: cap.clone(),
            write,
            second: SymmetricKey::random(),
            stream: *Bat::random().as_bytes(),
        })
    }

    pub(super) fn bat(&self) -> Bat {
        self.cap.bat.clone().unwrap_or_else(Bat::random)
    }

    pub(super) fn base(
        &self,
        dir: bool,
        label: &Label,
        signer: &SigningKeyPair,
    ) -> Result<Vec<u8>> {
        BasePart {
            dir,
            second: self.second.clone(),
            signer: Some(BasePart::seal_signer(&self.write, label, signer)),
        }
        .seal(&self.cap.read, label)
    }

    /// The parent key of a directory, or the base key of a file.
    pub(super) fn parent_key(&self, dir: bool) -> &SymmetricKey {
        if dir {
            &self.second
        } else {
            &self.cap.read
        }
    }

    /// The link a directory keeps to this node under `name`.
    pub(super) fn link(&self, dir: &ParentSide, name: &str) -> ChildLink {
        ChildLink {
            writer: (dir.writer != self.cap.writer).then_some(self.cap.writer),
            label: self.cap.label,
            bat: self.cap.bat.clone(),
            read: self.cap.read.clone(),
            write: Some(ChildLink::seal_write(
                &dir.write,
                &self.cap.label,
                &self.write,
            )),
            name_tag: name_tag(&dir.read, name),
        }
    }
}

/// What a new child needs of the directory it goes in.
pub(super) struct ParentSide {
    pub(super) link: ParentLink,
    pub(super) writer: PublicKeyHash,
    pub(super) read: SymmetricKey,
    pub(super) write: SymmetricKey,
}

impl ParentSide {
    pub(super) fn of(dir: &Found) -> Result<Self> {
        Ok(ParentSide {
            link: dir.as_parent(),
            writer: dir.cap.writer,
            read: dir.cap.read.clone(),
            write: dir.cap.write.clone().ok_or_else(|| Error::ReadOnly {
                path: dir.path.clone(),
            })?,
        })
    }

    pub(super) fn of_fresh(fresh: &Fresh) -> Self {
        ParentSide {
            link: ParentLink {
                writer: fresh.cap.writer,
                label: fresh.cap.label,
                bat: fresh.cap.bat.clone(),
                key: fresh.second.clone(),
            },
            writer: fresh.cap.writer,
            read: fresh.cap.read.clone(),
            write: fresh.write.clone(),
        }
    }
}

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Splits a path into its directory and last name.
pub(super) fn split_parent(path: &str) -> Result<(String, String)> {
    let names = components(path)?;
    let Some((last, dir)) = names.split_last() else {
        return Err(Error::BadPath {
            path: path.to_string(),
            reason: "the root has no parent",
        });
    };
    Ok((format!("/{}", dir.join("/")), (*last).to_string()))
}

/// Seals content and frames its fragments with the chunk's token; signs
/// every block. Synchronous: run it off the async threads.
fn seal_content(
    key: &SymmetricKey,
    label: &Label,
    bat: &Bat,
    signer: &SigningKeyPair,
    padded: &[u8],
    blocks: &mut Vec<SignedBlock>,
) -> Result<(Option<ByteBuf>, Vec<Cid>)> {
    if padded.len() <= node::INLINE_MAX {
        let sealed = node::seal_inline(key, label, padded);
        return Ok((Some(ByteBuf::from(sealed)), Vec::new()));
    }
    let prefix = bat::raw_prefix(&[bat.id()])?;
    let sealed = node::seal_fragments(key, label, padded, &prefix, |framed| {
        SignedBlock::sign_with_cid(signer, Codec::Raw, framed)
    });
    let mut cids = Vec::with_capacity(sealed.len());
    for (cid, block) in sealed {
        cids.push(cid);
        blocks.push(block);
    }
    Ok((None, cids))
}

/// Builds nodes off the async threads: their CIDs, and the blocks to
/// store (their fragments, then the nodes).
async fn build_off_thread(
    signer: &SigningKeyPair,
    specs: Vec<NodeSpec>,
) -> Result<(Vec<(Cid, Arc<NodeBlock>)>, Vec<SignedBlock>)> {
    let pair = signer.clone();
    blocking(move || {
        let mut blocks = Vec::new();
        let nodes = specs
            .into_iter()
            .map(|spec| build(spec, &pair, &mut blocks))
            .collect::<Result<Vec<_>>>()?;
        Ok((nodes, blocks))
    })
    .await
}

fn build(
    spec: NodeSpec,
    signer: &SigningKeyPair,
    blocks: &mut Vec<SignedBlock>,
) -> Result<(Cid, Arc<NodeBlock>)> {
    let (inline, fragments) = match spec.content {
        Content::Plain { key, padded } => {
            seal_content(&key, &spec.label, &spec.bat, signer, &padded, blocks)?
        }
        Content::Stored { inline, fragments } => (inline, fragments),
    };
    let node = NodeBlock {
        version: node::VERSION,
        bats: vec![spec.bat.id()],
        base: spec.base,
        parent: spec.parent,
        inline,
        fragments,
    };
    let (cid, block) =
        SignedBlock::sign_with_cid(signer, Codec::DagCbor, node.to_block()?.into_data());
    blocks.push(block);
    Ok((cid, Arc::new(node)))
}

/// A chunk encrypted and signed, ready to store.
pub(super) struct SealedChunk {
    len: u64,
    blocks: Vec<SignedBlock>,
    kind: SealedKind,
}

enum SealedKind {
    /// The first chunk's content (its node is written last).
    First((Option<ByteBuf>, Vec<Cid>)),
    /// A later chunk's node, at its label.
    Node(Label, Cid),
}

/// A new file being written chunk by chunk.
pub(super) struct FileSink {
    fresh: Fresh,
    signer: SigningKeyPair,
    tx: TransactionId,
    index: u64,
    label: Label,
    bat: Bat,
    first: Option<(Option<ByteBuf>, Vec<Cid>)>,
    size: u64,
    mutations: Vec<Mutation>,
}

impl FileSink {
    pub(super) fn new(fresh: Fresh, signer: SigningKeyPair, tx: TransactionId) -> Self {
        FileSink {
            label: fresh.cap.label,
            bat: fresh.bat(),
            fresh,
            signer,
            tx,
            index: 0,
            first: None,
            size: 0,
            mutations: Vec::new(),
        }
    }

    /// Continues after chunks `1..index` that an earlier attempt stored:
    /// the next [`push`](Self::push) writes chunk `index`. Call after
    /// pushing chunk 0. `size` is the data in chunks `0..index`.
    pub(super) fn skip_to(&mut self, index: u64, size: u64) {
        // `label` is always the last pushed chunk's: push() steps from it.
        while self.index < index {
            (self.label, self.bat) = node::next_chunk(&self.fresh.stream, &self.label);
            self.index += 1;
        }
        self.size = size;
    }

    /// Bytes pushed so far (counting skipped chunks).
    pub(super) fn size(&self) -> u64 {
        self.size
    }

    /// Takes the first `n` CHAMP changes (those of the first `n` chunks
    /// after chunk 0 not yet taken).
    pub(super) fn take_first_mutations(&mut self, n: usize) -> Vec<Mutation> {
        let n = n.min(self.mutations.len());
        self.mutations.drain(..n).collect()
    }

    /// Stores the next chunk: exactly [`CHUNK_SIZE`] bytes, except the last.
    pub(super) async fn push<B: BlockStore + ?Sized, P: PointerStore + ?Sized>(
        &mut self,
        fs: &Filesystem<B, P>,
        data: Vec<u8>,
    ) -> Result<()> {
        let sealed = self.seal(data).await?;
        self.store(fs, sealed).await
    }

    /// Takes the next chunk's place in the chain and returns a future that
    /// encrypts, frames, hashes and signs it on a blocking thread. The
    /// future borrows nothing, so it can run while an earlier chunk is
    /// being stored; pass its output to [`store`](Self::store) in order.
    pub(super) fn seal(
        &mut self,
        data: Vec<u8>,
    ) -> impl Future<Output = Result<SealedChunk>> + Send + 'static {
        if self.index > 0 {
            (self.label, self.bat) = node::next_chunk(&self.fresh.stream, &self.label);
        }
        let index = self.index;
        self.index += 1;
        let label = self.label;
        let bat = self.bat.clone();
        let signer = self.signer.clone();
        let key = self.fresh.second.clone();
        let sealed_parts = if index == 0 {
            Ok(None)
        } else {
            // Later chunks are complete nodes: base and empty parent part.
            self.fresh.base(false, &label, &signer).and_then(|base| {
                let parent = ParentPart {
                    parent: None,
                    props: None,
                }
                .seal(&self.fresh.cap.read, &label)?;
                Ok(Some((base, parent)))
            })
        };
        async move {
            let parts = sealed_parts?;
            let len = data.len() as u64;
            blocking(move || {
                let mut blocks = Vec::new();
                let padded = node::pad_data(data);
                let kind = match parts {
                    None => SealedKind::First(seal_content(
                        &key,
                        &label,
                        &bat,
                        &signer,
                        &padded,
                        &mut blocks,
                    )?),
                    Some((base, parent)) => {
                        let spec = NodeSpec {
                            label,
                            bat,
                            base,
                            parent,
                            content: Content::Plain {
                                key,
                                padded: padded.into(),
                            },
                        };
                        SealedKind::Node(label, build(spec, &signer, &mut blocks)?.0)
                    }
                };
                Ok(SealedChunk { len, blocks, kind })
            })
            .await
        }
    }

    /// Stores a chunk sealed by [`seal`](Self::seal).
    pub(super) async fn store<B: BlockStore + ?Sized, P: PointerStore + ?Sized>(
        &mut self,
        fs: &Filesystem<B, P>,
        sealed: SealedChunk,
    ) -> Result<()> {
        let blocks = self.record(sealed);
        fs.put_blocks(&self.signer, self.tx, blocks).await?;
        Ok(())
    }

    /// Takes note of a sealed chunk (its size, and the change that links
    /// it) and returns its blocks, for the caller to store before the
    /// file is committed.
    pub(super) fn record(&mut self, sealed: SealedChunk) -> Vec<SignedBlock> {
        self.size += sealed.len;
        match sealed.kind {
            // The first node carries the size: it is built in finish().
            SealedKind::First(content) => self.first = Some(content),
            SealedKind::Node(label, cid) => self.mutations.push(Mutation::create(label, cid)),
        }
        sealed.blocks
    }

    /// Writes the first node with the properties; returns the file's link
    /// in `dir` and the changes that add its chunks.
    pub(super) async fn finish<B: BlockStore + ?Sized, P: PointerStore + ?Sized>(
        mut self,
        fs: &Filesystem<B, P>,
        dir: &ParentSide,
        name: &str,
        options: &UploadOptions,
    ) -> Result<(ChildLink, Vec<Mutation>)> {
        if self.index == 0 {
            self.push(fs, Vec::new()).await?;
        }
        let (spec, label) = self.first_node(dir, name, options)?;
        let cid = fs.write_nodes(&self.signer, self.tx, vec![spec]).await?[0];
        self.mutations.push(Mutation::create(label, cid));
        Ok((self.fresh.link(dir, name), self.mutations))
    }

    /// The first node, carrying the properties (chunk 0 must have been
    /// recorded), and its label.
    fn first_node(
        &mut self,
        dir: &ParentSide,
        name: &str,
        options: &UploadOptions,
    ) -> Result<(NodeSpec, Label)> {
        let (inline, fragments) = self.first.take().ok_or(Error::MalformedNode {
            reason: "a file without a first chunk",
        })?;
        let label = self.fresh.cap.label;
        let props = Properties {
            name: name.to_string(),
            size: self.size,
            modified: options.modified.unwrap_or_else(now_ms),
            mime: options.mime.clone(),
            hidden: options.hidden,
            stream: self.fresh.stream,
        };
        let spec = NodeSpec {
            label,
            bat: self.fresh.bat(),
            base: self.fresh.base(false, &label, &self.signer)?,
            parent: ParentPart {
                parent: Some(dir.link.clone()),
                props: Some(props),
            }
            .seal(self.fresh.parent_key(false), &label)?,
            content: Content::Stored { inline, fragments },
        };
        Ok((spec, label))
    }
}

pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Task(e.to_string()))?
}

/// Reads up to one chunk; fewer bytes only at the end of the input.
pub(super) async fn read_chunk<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(CHUNK_SIZE as usize);
    let mut limited = reader.take(CHUNK_SIZE);
    while (buf.len() as u64) < CHUNK_SIZE {
        if limited.read_buf(&mut buf).await.map_err(Error::Read)? == 0 {
            break;
        }
    }
    Ok(buf)
}

/// A directory's chunks being edited: links removed, replaced and added,
/// then only the chunks that changed are rewritten.
pub(super) struct DirEdit {
    dir: Found,
    chunks: Vec<DirChunk>,
    dirty: Vec<bool>,
    added: Option<(Label, Bat, Vec<ChildLink>)>,
}

impl DirEdit {
    pub(super) fn new(dir: Found, chunks: Vec<DirChunk>) -> Self {
        DirEdit {
            dirty: vec![false; chunks.len()],
            dir,
            chunks,
            added: None,
        }
    }

    pub(super) fn remove(&mut self, chunk: usize, pos: usize) {
        Arc::make_mut(&mut self.chunks[chunk].children).remove(pos);
        self.dirty[chunk] = true;
    }

    pub(super) fn replace(&mut self, chunk: usize, pos: usize, link: ChildLink) {
        Arc::make_mut(&mut self.chunks[chunk].children)[pos] = link;
        self.dirty[chunk] = true;
    }

    /// Adds a link to the first chunk with room, or to a new last chunk.
    pub(super) fn add(&mut self, link: ChildLink) {
        if let Some(c) = self
            .chunks
            .iter()
            .position(|c| c.children.len() < MAX_CHILDREN_PER_NODE)
        {
            Arc::make_mut(&mut self.chunks[c].children).push(link);
            self.dirty[c] = true;
            return;
        }
        match &mut self.added {
            Some((_, _, links)) => links.push(link),
            None => {
                let last = self.chunks.last().map_or(self.dir.cap.label, |c| c.label);
                let (label, bat) = node::next_chunk(&self.dir.props.stream, &last);
                self.added = Some((label, bat, vec![link]));
            }
        }
    }

    /// Writes the changed chunks; returns their CHAMP changes.
    pub(super) async fn finish<B: BlockStore + ?Sized, P: PointerStore + ?Sized>(
        self,
        fs: &Filesystem<B, P>,
        signer: &SigningKeyPair,
        tx: TransactionId,
    ) -> Result<Vec<Mutation>> {
        let (mutations, blocks) = self.finish_unstored(fs, signer).await?;
        fs.put_blocks(signer, tx, blocks).await?;
        Ok(mutations)
    }

    /// [`finish`](Self::finish) without storing: the CHAMP changes and the
    /// blocks to store before they commit (see [`Plan::with_blocks`]).
    pub(super) async fn finish_unstored<B: BlockStore + ?Sized, P: PointerStore + ?Sized>(
        self,
        fs: &Filesystem<B, P>,
        signer: &SigningKeyPair,
    ) -> Result<(Vec<Mutation>, Vec<SignedBlock>)> {
        let read = self.dir.cap.read.clone();
        let mut specs = Vec::new();
        let mut olds = Vec::new();
        let mut listings = Vec::new();
        for (chunk, dirty) in self.chunks.iter().zip(&self.dirty) {
            if !dirty {
                continue;
            }
            listings.push(Arc::clone(&chunk.children));
            specs.push(NodeSpec {
                label: chunk.label,
                bat: chunk.bat.clone(),
                base: chunk.block.base.clone(),
                parent: chunk.block.parent.clone(),
                content: Content::Plain {
                    key: read.clone(),
                    padded: node::encode_children(&chunk.children)?.into(),
                },
            });
            olds.push((chunk.label, Some(chunk.cid)));
        }
        if let Some((label, bat, links)) = self.added {
            let write = self.dir.cap.write.as_ref().ok_or(Error::NotWritable)?;
            let base = BasePart {
                dir: true,
                second: self.dir.base.second.clone(),
                signer: Some(BasePart::seal_signer(write, &label, signer)),
            }
            .seal(&read, &label)?;
            let parent = ParentPart {
                parent: None,
                props: None,
            }
            .seal(&self.dir.base.second, &label)?;
            specs.push(NodeSpec {
                label,
                bat,
                base,
                parent,
                content: Content::Plain {
                    key: read.clone(),
                    padded: node::encode_children(&links)?.into(),
                },
            });
            olds.push((label, None));
            listings.push(Arc::new(links));
        }
        let (cids, blocks) = fs.build_nodes(signer, specs).await?;
        for (cid, children) in cids.iter().zip(listings) {
            fs.remember_listing(*cid, children);
        }
        let mutations = olds
            .into_iter()
            .zip(cids)
            .map(|((label, expected), cid)| Mutation {
                label,
                expected,
                new: Some(cid),
            })
            .collect();
        Ok((mutations, blocks))
    }
}

/// One stored chunk of a node in a subtree, with its node's capability.
pub(super) struct ChunkOf {
    pub(super) cap: AbsoluteCapability,
    pub(super) label: Label,
    pub(super) bat: Bat,
    pub(super) cid: Cid,
    pub(super) block: Arc<NodeBlock>,
}

impl<B: BlockStore + ?Sized, P: PointerStore + ?Sized> Filesystem<B, P> {
    /// Creates a new, empty root directory called `name` in `writer`'s
    /// tree in `owner`'s space, and opens a filesystem on it.
    pub async fn create(
        blocks: Arc<B>,
        pointers: Arc<P>,
        owner: PublicKeyHash,
        writer: &SigningKeyPair,
        name: &str,
    ) -> Result<Self> {
        let root = Self::new_root(owner, PublicKeyHash::of(&writer.public()));
        Self::create_at(blocks, pointers, &root, writer, name).await
    }

    /// A fresh, writable capability for a root directory of `writer` in
    /// `owner`'s space, to create with [`create_at`](Self::create_at):
    /// an account records it before its home exists, so finishing an
    /// interrupted signup makes that very home, never another.
    pub fn new_root(owner: PublicKeyHash, writer: PublicKeyHash) -> AbsoluteCapability {
        Fresh::new(owner, writer).cap
    }

    /// [`create`](Self::create) at a capability chosen beforehand
    /// ([`new_root`](Self::new_root)); `writer` must be its writer.
    pub async fn create_at(
        blocks: Arc<B>,
        pointers: Arc<P>,
        root: &AbsoluteCapability,
        writer: &SigningKeyPair,
        name: &str,
    ) -> Result<Self> {
        node::check_name(name)?;
        if root.writer != PublicKeyHash::of(&writer.public()) {
            return Err(Error::NotWritable);
        }
        let owner = root.owner;
        let fresh = Fresh::at(root)?;
        let fs = Filesystem::open(blocks, pointers, fresh.cap.clone());
        let label = fresh.cap.label;
        let spec = NodeSpec {
            label,
            bat: fresh.bat(),
            base: fresh.base(true, &label, writer)?,
            parent: ParentPart {
                parent: None,
                props: Some(Properties {
                    name: name.to_string(),
                    size: 0,
                    modified: now_ms(),
                    mime: String::new(),
                    hidden: false,
                    stream: fresh.stream,
                }),
            }
            .seal(fresh.parent_key(true), &label)?,
            content: Content::Plain {
                key: fresh.cap.read.clone(),
                padded: node::encode_children(&[])?.into(),
            },
        };
        let tx = fs.blocks().start_transaction(&owner).await?;
        let outcome = async {
            let cid = fs.write_nodes(writer, tx, vec![spec]).await?[0];
            fs.apply(&Plan::new(
                writer.clone(),
                vec![Mutation::create(label, cid)],
            ))
            .await
        }
        .await;
        let _ = fs.blocks().close_transaction(&owner, &tx).await;
        outcome?;
        Ok(fs)
    }

    /// Stores signed blocks in the transaction.
    pub(super) async fn put_blocks(
        &self,
        signer: &SigningKeyPair,
        tx: TransactionId,
        blocks: Vec<SignedBlock>,
    ) -> Result<Vec<Cid>> {
        if blocks.is_empty() {
            return Ok(Vec::new());
        }
        let count = blocks.len() as u64;
        let cids = self
            .blocks()
            .put(PutBlocks {
                owner: self.root.owner,
                writer: PublicKeyHash::of(&signer.public()),
                transaction: tx,
                blocks,
            })
            .await?;
        self.blocks_written.fetch_add(count, Ordering::Relaxed);
        Ok(cids)
    }

    /// Builds nodes (off the async threads) and keeps them in the node
    /// cache under their CIDs, so reading what this client just wrote (the
    /// directory a file went into, say) needs no round trip. A node whose
    /// commit then fails is never looked up: nothing links its CID.
    pub(super) async fn build_nodes(
        &self,
        signer: &SigningKeyPair,
        specs: Vec<NodeSpec>,
    ) -> Result<(Vec<Cid>, Vec<SignedBlock>)> {
        let (nodes, blocks) = build_off_thread(signer, specs).await?;
        let cids = nodes.iter().map(|(cid, _)| *cid).collect();
        for (cid, node) in nodes {
            self.remember_node(cid, node);
        }
        Ok((cids, blocks))
    }

    /// Builds (off the async threads) and stores nodes; returns their CIDs.
    pub(super) async fn write_nodes(
        &self,
        signer: &SigningKeyPair,
        tx: TransactionId,
        specs: Vec<NodeSpec>,
    ) -> Result<Vec<Cid>> {
        let (cids, blocks) = self.build_nodes(signer, specs).await?;
        self.put_blocks(signer, tx, blocks).await?;
        Ok(cids)
    }

    /// Commits a plan: applies its CHAMP changes to the writer's current
    /// tree (each checked against the value it expects) and moves the
    /// pointer, retrying if the pointer moved meanwhile.
    pub(super) async fn apply(&self, plan: &Plan) -> Result<()> {
        self.apply_in(plan, None, None).await
    }

    /// [`apply`](Self::apply), in a turn the caller holds if given.
    /// The commit's nodes go in `tx` when given (the operation's open
    /// transaction), else in a transaction of the commit's own.
    async fn apply_in(
        &self,
        plan: &Plan,
        turn: Option<&Turn>,
        tx: Option<TransactionId>,
    ) -> Result<()> {
        if plan.mutations.is_empty() && plan.owned.is_empty() {
            // Nothing links to the plan's blocks, so none are stored.
            return Ok(());
        }
        let owner = self.root.owner;
        let champ = &self.champ;
        let held;
        let turn = match turn {
            Some(turn) => turn,
            None => {
                held = self
                    .committer
                    .turn(&PublicKeyHash::of(&plan.signer.public()))
                    .await;
                &held
            }
        };
        // Boxed: the commit's state machine is large, and operations nest
        // it deep inside their own.
        Box::pin(self.committer.commit_in_transaction(
            turn,
            &owner,
            &plan.signer,
            tx,
            |mut data, transaction| async move {
                let writer = Writer {
                    owner,
                    keys: plan.signer.clone(),
                    transaction,
                };
                let mut root = match data.tree {
                    Some(root) => root,
                    None => champ.empty(&writer, Config::default()).await?,
                };
                // Every change in memory, then the nodes the new root
                // reaches stored in one put.
                let mut batch = Batch::new();
                for m in &plan.mutations {
                    let key = m.label.key();
                    let expected = m.expected.map(Value::Link);
                    root = match m.new {
                        Some(new) => {
                            champ
                                .put_batched(
                                    &mut batch,
                                    &root,
                                    &key,
                                    expected.as_ref(),
                                    Value::Link(new),
                                )
                                .await?
                        }
                        None => match &expected {
                            Some(expected) => {
                                champ
                                    .remove_batched(&mut batch, &root, &key, expected)
                                    .await?
                            }
                            None => root,
                        },
                    };
                }
                let mut blocks = plan.blocks.clone();
                blocks.extend(champ.flush_signed(&writer, &mut batch, &root));
                data.tree = Some(root);
                for (key, add) in &plan.owned {
                    if *add {
                        data.owned.insert(*key);
                    } else {
                        data.owned.remove(key);
                    }
                }
                Ok((data, blocks))
            },
        ))
        .await?;
        self.blocks_written
            .fetch_add(plan.blocks.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Runs an operation in a fresh transaction: plans it against a fresh
    /// snapshot and commits, re-planning if a node it changes was changed
    /// by someone else first.
    pub(super) async fn transact<T, F, Fut>(&self, attempt: F) -> Result<T>
    where
        F: FnMut(TransactionId) -> Fut,
        Fut: Future<Output = Result<(Plan, T)>>,
    {
        let tx = self.blocks().start_transaction(&self.root.owner).await?;
        let outcome = Box::pin(self.transact_in(tx, attempt)).await;
        // A transaction left open only keeps its blocks from GC until it
        // times out; the operation's own outcome is what matters.
        let _ = self.blocks().close_transaction(&self.root.owner, &tx).await;
        outcome
    }

    pub(super) async fn transact_in<T, F, Fut>(
        &self,
        tx: TransactionId,
        mut attempt: F,
    ) -> Result<T>
    where
        F: FnMut(TransactionId) -> Fut,
        Fut: Future<Output = Result<(Plan, T)>>,
    {
        // After a lost race, plan again holding the writer's turn, so no
        // other operation of this client can move the nodes meanwhile: a
        // busy directory makes progress instead of starving an operation.
        let mut turn: Option<Turn> = None;
        for _ in 0..MAX_PLAN_ATTEMPTS {
            // Boxed, like the commit: operations' state machines are large
            // and nest (a share moves a subtree, which commits twice).
            let (plan, out) = Box::pin(attempt(tx)).await?;
            let writer = PublicKeyHash::of(&plan.signer.public());
            if turn.as_ref().is_some_and(|t| t.writer() != &writer) {
                turn = None;
            }
            match self.apply_in(&plan, turn.as_ref(), Some(tx)).await {
                Ok(()) => return Ok(out),
                // A node this operation changes moved: plan again.
                Err(Error::Champ(peergos_champ::Error::ValueMismatch(_))) => {
                    if turn.is_none() {
                        turn = Some(self.committer.turn(&writer).await);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::TooManyConflicts {
            attempts: MAX_PLAN_ATTEMPTS,
        })
    }

    /// A directory and its chunks, checked writable.
    pub(super) async fn writable_dir(
        &self,
        view: &View,
        path: &str,
    ) -> Result<(Found, Vec<DirChunk>)> {
        let dir = self.resolve(view, path).await?;
        dir.require_dir()?;
        if !dir.cap.is_writable() {
            return Err(Error::ReadOnly { path: dir.path });
        }
        let chunks = self.dir_chunks(view, &dir).await?;
        Ok((dir, chunks))
    }

    /// Creates a directory. Its parent must exist.
    pub async fn mkdir(&self, path: &str) -> Result<Entry> {
        self.mkdir_with(path, &UploadOptions::default()).await
    }

    /// Creates a directory with options (hidden, modification time).
    pub async fn mkdir_with(&self, path: &str, options: &UploadOptions) -> Result<Entry> {
        let (dir_path, name) = split_parent(path)?;
        self.transact(|_tx| {
            let (dir_path, name) = (&dir_path, &name);
            async move {
                let view = View::default();
                let (dir, chunks) = self.writable_dir(&view, dir_path).await?;
                if self.find_child(&view, &dir, &chunks, name).await?.is_some() {
                    return Err(Error::AlreadyExists {
                        path: child_path(&dir.path, name),
                    });
                }
                let signer = dir.signer()?;
                let side = ParentSide::of(&dir)?;
                let fresh = Fresh::new(dir.cap.owner, dir.cap.writer);
                let label = fresh.cap.label;
                let props = Properties {
                    name: name.clone(),
                    size: 0,
                    modified: options.modified.unwrap_or_else(now_ms),
                    mime: String::new(),
                    hidden: options.hidden,
                    stream: fresh.stream,
                };
                let spec = NodeSpec {
                    label,
                    bat: fresh.bat(),
                    base: fresh.base(true, &label, &signer)?,
                    parent: ParentPart {
                        parent: Some(side.link.clone()),
                        props: Some(props.clone()),
                    }
                    .seal(fresh.parent_key(true), &label)?,
                    content: Content::Plain {
                        key: fresh.cap.read.clone(),
                        padded: node::encode_children(&[])?.into(),
                    },
                };
                // The new node and the parent's changed chunk go up in the
                // commit's one put.
                let (cids, mut blocks) = self.build_nodes(&signer, vec![spec]).await?;
                let cid = cids
                    .first()
                    .copied()
                    .ok_or_else(|| Error::Task("building a node gave no CID".into()))?;
                let mut edit = DirEdit::new(dir, chunks);
                edit.add(fresh.link(&side, name));
                let (mut mutations, edit_blocks) = edit.finish_unstored(self, &signer).await?;
                blocks.extend(edit_blocks);
                mutations.push(Mutation::create(label, cid));
                let entry = Entry {
                    name: props.name,
                    kind: super::Kind::Dir,
                    size: 0,
                    modified: props.modified,
                    mime: props.mime,
                    hidden: props.hidden,
                    writable: true,
                };
                Ok((Plan::new(signer, mutations).with_blocks(blocks), entry))
            }
        })
        .await
    }

    /// Uploads a file from `reader`, streaming: one chunk (5 MiB) is read
    /// while the previous one is encrypted and stored, so memory stays
    /// bounded whatever the size. An existing file of that name is
    /// replaced (atomically, when the upload commits); an existing
    /// directory is an error. Not cancel-safe: a dropped upload leaves
    /// unreferenced blocks for garbage collection and the old tree intact.
    pub async fn upload<R>(
        &self,
        path: &str,
        mut reader: R,
        options: UploadOptions,
    ) -> Result<Entry>
    where
        R: AsyncRead + Unpin + Send,
    {
        let (dir_path, name) = split_parent(path)?;
        let (dir, signer, side) = self.new_file_target(&View::default(), &dir_path).await?;
        let tx = self.blocks().start_transaction(&self.root.owner).await?;
        let outcome = async {
            let fresh = Fresh::new(dir.cap.owner, dir.cap.writer);
            let mut sink = FileSink::new(fresh, signer.clone(), tx);
            let first = read_chunk(&mut reader).await?;
            self.store_chunks(&mut reader, &mut sink, Some(first), false)
                .await?;
            let size = sink.size;
            let (link, chunks) = sink.finish(self, &side, &name, &options).await?;
            self.link_file(tx, &dir_path, &name, &side, &signer, &link, &chunks)
                .await?;
            Ok(options.entry(name.clone(), size))
        }
        .await;
        let _ = self.blocks().close_transaction(&self.root.owner, &tx).await;
        outcome
    }

    /// Seals and stores `data` and every further chunk of `reader` into
    /// `sink`, as a pipeline: up to three chunks being stored, chunk k + 1
    /// being sealed and chunk k + 2 being read, so both cores stay busy
    /// and the server's write latency overlaps (three puts kept the cores
    /// 82-85% busy against 75-78% for two); at most six chunks are in
    /// memory. `data` is sealed even when empty (chunk 0 always exists).
    ///
    /// With `progress`, the chunks stored so far are committed about every
    /// [`PROGRESS_EVERY`] while the pipeline runs (and whenever every put
    /// is done while the input is read), and once more when it fails, so
    /// an interrupted upload can resume after them. Only a run of
    /// chunks from the front is committed (puts finish in order), so the
    /// first missing chunk is where a resume starts. Uncommitted chunks
    /// stay in `sink` for the file's final commit.
    pub(super) async fn store_chunks<R>(
        &self,
        reader: &mut R,
        sink: &mut FileSink,
        data: Option<Vec<u8>>,
        progress: bool,
    ) -> Result<()>
    where
        R: AsyncRead + Unpin + Send,
    {
        use futures::StreamExt as _;
        let (signer, tx) = (sink.signer.clone(), sink.tx);
        // Each put answers whether its chunk has a node to link (all but
        // chunk 0, whose node is written last).
        let mut puts = futures::stream::FuturesOrdered::new();
        // Chunk nodes stored and not yet committed: the first `stored` of
        // the sink's changes.
        let mut stored = 0usize;
        let commit = |plan: Plan| Box::pin(async move { self.apply(&plan).await });
        let mut committing = None;
        let mut last_commit = std::time::Instant::now();
        let mut data = data;
        let mut sealed: Option<SealedChunk> = None;
        // Set when a put fails: the puts after it are not a run from the
        // front, so none of them may be committed.
        let mut put_failed = false;
        let outcome: Result<()> = async {
            loop {
                if let Some(chunk) = sealed.take() {
                    let node = matches!(chunk.kind, SealedKind::Node(..));
                    let blocks = sink.record(chunk);
                    let put = self.put_blocks(&signer, tx, blocks);
                    puts.push_back(async move { put.await.map(|_| node) });
                }
                let more = data.as_ref().is_some_and(|d| d.len() as u64 == CHUNK_SIZE);
                let sealing = data.take().map(|d| sink.seal(d));
                let reading = &mut *reader;
                let work = async move {
                    tokio::join!(
                        async move {
                            match sealing {
                                Some(job) => job.await.map(Some),
                                None => Ok(None),
                            }
                        },
                        async move {
                            if more {
                                read_chunk(reading).await.map(Some)
                            } else {
                                Ok(None)
                            }
                        },
                    )
                };
                let mut work = std::pin::pin!(work);
                // Seal and read while the puts in flight progress; go on once
                // at most two are in flight beside the next one.
                let mut finished = None;
                let (next_sealed, next_data) = loop {
                    match finished.take() {
                        Some(done) if puts.len() <= 2 => break done,
                        other => finished = other,
                    }
                    // Also when no put is in flight: the input is slower than
                    // the server, and a commit costs nothing in waiting
                    // (no timer: the caller's runtime may have none).
                    if progress
                        && committing.is_none()
                        && stored > 0
                        && (puts.is_empty() || last_commit.elapsed() >= PROGRESS_EVERY)
                    {
                        let changes = sink.take_first_mutations(stored);
                        stored = 0;
                        committing = Some(commit(Plan::new(signer.clone(), changes)));
                        last_commit = std::time::Instant::now();
                    }
                    let waiting = async {
                        match committing.as_mut() {
                            Some(c) => c.await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        done = &mut work, if finished.is_none() => finished = Some(done),
                        Some(put) = puts.next(), if !puts.is_empty() => {
                            put_failed = put.is_err();
                            stored += usize::from(put?);
                        }
                        committed = waiting => {
                            committing = None;
                            committed?;
                        }
                    }
                };
                sealed = next_sealed?;
                data = next_data?.filter(|d| !d.is_empty());
                if sealed.is_none() {
                    return Ok(());
                }
            }
        }
        .await;
        let outcome = match outcome {
            Ok(()) => {
                let mut last = Ok(());
                while let Some(put) = puts.next().await {
                    last = put.map(|_| ());
                    if last.is_err() {
                        put_failed = true;
                        break;
                    }
                }
                last
            }
            Err(e) => Err(e),
        };
        let outcome = match committing.take() {
            Some(c) => outcome.and(c.await),
            None => outcome,
        };
        if let Err(e) = outcome {
            if progress {
                // Keep what was stored before the failure: the puts still
                // in flight, up to the first that fails, then one commit.
                if !put_failed {
                    while let Some(Ok(node)) = puts.next().await {
                        stored += usize::from(node);
                    }
                }
                if stored > 0 {
                    let changes = sink.take_first_mutations(stored);
                    // The failure is what the caller needs to see.
                    let _ = self.apply(&Plan::new(signer.clone(), changes)).await;
                }
            }
            return Err(e);
        }
        Ok(())
    }

    /// The writable directory a new file or copy will go in, its writer's
    /// key and what the new child needs of it; checked before any data is
    /// written. The directory's listing is not read here: it is read once,
    /// when the link is added.
    pub(super) async fn new_file_target(
        &self,
        view: &View,
        dir_path: &str,
    ) -> Result<(Found, SigningKeyPair, ParentSide)> {
        let dir = self.resolve(view, dir_path).await?;
        dir.require_dir()?;
        let signer = dir.signer()?;
        let side = ParentSide::of(&dir)?;
        Ok((dir, signer, side))
    }

    /// Commits a new file: its chunks' changes, and its link in the
    /// directory at `dir_path` (the directory `side` describes), replacing
    /// a file of the same name. Re-plans against concurrent changes.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn link_file(
        &self,
        tx: TransactionId,
        dir_path: &str,
        name: &str,
        side: &ParentSide,
        signer: &SigningKeyPair,
        link: &ChildLink,
        chunks: &[Mutation],
    ) -> Result<()> {
        self.link_files(
            tx,
            dir_path,
            side,
            signer,
            &[(name.to_string(), link.clone())],
            chunks,
            &[],
            None,
        )
        .await
    }

    /// [`link_file`](Self::link_file) for many files in one directory, in
    /// one commit, storing `blocks` (the files' nodes, not stored yet) in
    /// the commit's put. The first plan reads the trees through `view`
    /// when given (what the caller read moments ago: one pointer read
    /// fewer); a plan made again after a lost race reads them afresh.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn link_files(
        &self,
        tx: TransactionId,
        dir_path: &str,
        side: &ParentSide,
        signer: &SigningKeyPair,
        links: &[(String, ChildLink)],
        chunks: &[Mutation],
        blocks: &[SignedBlock],
        view: Option<View>,
    ) -> Result<()> {
        let mut first = view;
        self.transact_in(tx, |_tx| {
            let view = first.take().unwrap_or_default();
            async move {
                let (dir, dir_chunks) = self.writable_dir(&view, dir_path).await?;
                if dir.cap.label != side.link.label {
                    return Err(Error::NotFound {
                        path: dir_path.to_string(),
                    });
                }
                let mut mutations = chunks.to_vec();
                let mut existing = Vec::with_capacity(links.len());
                for (name, _) in links {
                    existing.push(self.find_child(&view, &dir, &dir_chunks, name).await?);
                }
                let mut edit = DirEdit::new(dir, dir_chunks);
                for ((_, link), existing) in links.iter().zip(existing) {
                    match existing {
                        Some((_, _, old)) if old.base.dir => {
                            return Err(Error::IsADirectory { path: old.path })
                        }
                        Some((c, i, old)) => {
                            mutations.extend(self.removals(&view, &old).await?);
                            edit.replace(c, i, link.clone());
                        }
                        None => edit.add(link.clone()),
                    }
                }
                let (edited, edit_blocks) = edit.finish_unstored(self, signer).await?;
                mutations.extend(edited);
                let plan = Plan::new(signer.clone(), mutations)
                    .with_blocks(blocks.to_vec())
                    .with_blocks(edit_blocks);
                Ok((plan, ()))
            }
        })
        .await
    }

    /// Writes many files into the directory at `dir_path` in one commit:
    /// each is sealed as [`upload`](Self::upload) would, their blocks are
    /// stored in a few large puts, and one pointer update links them all
    /// (files of the same name are replaced). The way to add thousands of
    /// small files quickly; nothing is visible until the commit.
    pub async fn write_files(
        &self,
        dir_path: &str,
        files: Vec<(String, Vec<u8>, UploadOptions)>,
    ) -> Result<Vec<Entry>> {
        let mut names = std::collections::HashSet::new();
        for (name, _, _) in &files {
            node::check_name(name)?;
            if !names.insert(name.as_str()) {
                return Err(Error::BadPath {
                    path: name.clone(),
                    reason: "the same name twice in one batch",
                });
            }
        }
        // The transaction opens while the directory is found.
        let view = View::default();
        let (target, tx) = futures::future::join(
            self.new_file_target(&view, dir_path),
            self.blocks().start_transaction(&self.root.owner),
        )
        .await;
        let tx = tx?;
        let (dir, signer, side) = match target {
            Ok(target) => target,
            Err(e) => {
                let _ = self.blocks().close_transaction(&self.root.owner, &tx).await;
                return Err(e);
            }
        };
        let outcome = async {
            let mut pending: Vec<SignedBlock> = Vec::new();
            let mut pending_bytes = 0usize;
            let mut specs = Vec::with_capacity(files.len());
            let mut firsts = Vec::with_capacity(files.len());
            let mut links = Vec::with_capacity(files.len());
            let mut mutations = Vec::new();
            let mut entries = Vec::with_capacity(files.len());
            for (name, data, options) in files {
                let mut sink = FileSink::new(
                    Fresh::new(dir.cap.owner, dir.cap.writer),
                    signer.clone(),
                    tx,
                );
                let size = data.len() as u64;
                let mut rest = &data[..];
                loop {
                    let n = rest.len().min(CHUNK_SIZE as usize);
                    let sealed = sink.seal(rest[..n].to_vec()).await?;
                    for block in sink.record(sealed) {
                        pending_bytes += block.data.len();
                        pending.push(block);
                    }
                    rest = &rest[n..];
                    if pending_bytes >= BATCH_PUT_BYTES {
                        self.put_blocks(&signer, tx, std::mem::take(&mut pending))
                            .await?;
                        pending_bytes = 0;
                    }
                    if rest.is_empty() {
                        break;
                    }
                }
                let (spec, label) = sink.first_node(&side, &name, &options)?;
                specs.push(spec);
                firsts.push(label);
                links.push((name.clone(), sink.fresh.link(&side, &name)));
                mutations.append(&mut sink.mutations);
                entries.push(options.entry(name, size));
            }
            // The files' first nodes, and the last of their data when it
            // is small, go up in the commit's put: a batch of small files
            // costs one put.
            if pending_bytes > DEFERRED_PUT_BYTES {
                self.put_blocks(&signer, tx, std::mem::take(&mut pending))
                    .await?;
            }
            let (cids, nodes) = self.build_nodes(&signer, specs).await?;
            pending.extend(nodes);
            mutations.extend(
                firsts
                    .into_iter()
                    .zip(cids)
                    .map(|(label, cid)| Mutation::create(label, cid)),
            );
            self.link_files(
                tx,
                dir_path,
                &side,
                &signer,
                &links,
                &mutations,
                &pending,
                Some(view),
            )
            .await?;
            Ok(entries)
        }
        .await;
        let _ = self.blocks().close_transaction(&self.root.owner, &tx).await;
        outcome
    }

    /// Uploads `data` as a file (see [`upload`](Self::upload)).
    pub async fn write_file(&self, path: &str, data: &[u8]) -> Result<Entry> {
        self.upload(path, data, UploadOptions::default()).await
    }

    /// Every node of a subtree in its own writer's tree, as removals. A
    /// child under another writer is unlinked, not emptied.
    pub(super) async fn removals(&self, view: &View, found: &Found) -> Result<Vec<Mutation>> {
        Ok(self
            .subtree_chunks(view, found)
            .await?
            .into_iter()
            .map(|c| Mutation {
                label: c.label,
                expected: Some(c.cid),
                new: None,
            })
            .collect())
    }

    /// Every chunk of every node of a subtree that lives in the subtree
    /// root's writer (children under other writers are not entered).
    pub(super) async fn subtree_chunks(&self, view: &View, found: &Found) -> Result<Vec<ChunkOf>> {
        let mut out = Vec::new();
        let mut stack = vec![found.clone()];
        while let Some(node) = stack.pop() {
            if node.base.dir {
                let chunks = self.dir_chunks(view, &node).await?;
                for child in self.children(view, &node, &chunks).await? {
                    if child.cap.writer == found.cap.writer {
                        stack.push(child);
                    }
                }
                out.extend(chunks.into_iter().map(|c| ChunkOf {
                    cap: node.cap.clone(),
                    label: c.label,
                    bat: c.bat,
                    cid: c.cid,
                    block: c.block,
                }));
            } else {
                for (index, label, bat) in Self::file_chunks(&node) {
                    let (cid, block) = self.file_chunk(view, &node, index, &label, &bat).await?;
                    out.push(ChunkOf {
                        cap: node.cap.clone(),
                        label,
                        bat,
                        cid,
                        block,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Deletes a file, or a directory and everything in it. Deleting the
    /// root of a write subspace also empties that writer's tree and drops
    /// the key from its owner's owned keys (after the unlink commits).
    pub async fn rm(&self, path: &str) -> Result<()> {
        let (dir_path, name) = split_parent(path)?;
        let unlinked = self
            .transact(|tx| {
                let (dir_path, name) = (&dir_path, &name);
                async move {
                    let view = View::default();
                    let (dir, chunks) = self.writable_dir(&view, dir_path).await?;
                    let (c, i, child) = self.child_of(&view, &dir, &chunks, name).await?;
                    let signer = dir.signer()?;
                    let own_writer = child.cap.writer != dir.cap.writer;
                    let mut mutations = if own_writer {
                        Vec::new()
                    } else {
                        self.removals(&view, &child).await?
                    };
                    let parent_signer = signer.clone();
                    let mut edit = DirEdit::new(dir, chunks);
                    edit.remove(c, i);
                    mutations.extend(edit.finish(self, &signer, tx).await?);
                    let subspace = own_writer.then_some((child, parent_signer));
                    Ok((Plan::new(signer, mutations), subspace))
                }
            })
            .await?;
        if let Some((child, parent_signer)) = unlinked {
            // Best effort from here: the subtree is already unreachable.
            let view = View::default();
            if let Ok(child_signer) = child.signer() {
                let removals = self.removals(&view, &child).await?;
                self.apply(&Plan::new(child_signer, removals)).await?;
            }
            let mut drop_key = Plan::new(parent_signer, Vec::new());
            drop_key.owned.push((child.cap.writer, false));
            self.apply(&drop_key).await?;
        }
        Ok(())
    }

    /// Deletes an empty directory (fails with
    /// [`Error::DirectoryNotEmpty`] otherwise).
    pub async fn rmdir(&self, path: &str) -> Result<()> {
        let view = View::default();
        let dir = self.resolve(&view, path).await?;
        dir.require_dir()?;
        let chunks = self.dir_chunks(&view, &dir).await?;
        if chunks.iter().any(|c| !c.children.is_empty()) {
            return Err(Error::DirectoryNotEmpty { path: dir.path });
        }
        self.rm(path).await
    }
}
