//! Changing the filesystem: building and storing nodes, and committing
//! CHAMP changes with compare-and-swap.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use peergos_blockstore::{BlockStore, PutBlocks, SignedBlock, TransactionId};
use peergos_champ::{Batch, Config, Value, Writer};
use peergos_ipld::Cid;
use peergos_keys::{Bat, PublicKeyHash, SigningKeyPair, SymmetricKey};
use peergos_pointers::PointerStore;
use serde_bytes::ByteBuf;

use super::{child_path, components, DirChunk, Entry, Filesystem, Found, View};
use crate::node::{self, name_tag, BasePart, ChildLink, ParentLink, ParentPart};
use crate::{AbsoluteCapability, Error, Label, Properties, Result, Turn};

pub(super) use super::dir_edit::*;
pub(super) use super::sink::*;

/// How many times an operation re-plans after a concurrent change to a
/// node it touches.
pub(super) const MAX_PLAN_ATTEMPTS: usize = 16;

/// Block bytes gathered before a put when writing many files at once.
pub(super) const BATCH_PUT_BYTES: usize = 8 << 20;
/// At most this much of a batch's data waits for the commit's put (which
/// a commit that loses a race sends again).
pub(super) const DEFERRED_PUT_BYTES: usize = 1 << 20;

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
                    ..Properties::default()
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
                    ..Properties::default()
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
