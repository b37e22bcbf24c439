//! Sealing a file's chunks: encrypting and framing their fragments,
//! building their nodes off the async threads, and the sink an upload
//! pushes chunks into.

use std::future::Future;
use std::sync::Arc;

use peergos_blockstore::{BlockStore, SignedBlock, TransactionId};
use peergos_ipld::{Cid, Codec};
use peergos_keys::{bat, Bat, SigningKeyPair, SymmetricKey};
use peergos_pointers::PointerStore;
use serde_bytes::ByteBuf;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::Filesystem;
use crate::node::{self, ChildLink, NodeBlock, ParentPart, CHUNK_SIZE};
use crate::{Error, Label, Properties, Result};

use super::write::*;

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
pub(super) async fn build_off_thread(
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
    pub(super) len: u64,
    pub(super) blocks: Vec<SignedBlock>,
    pub(super) kind: SealedKind,
}

pub(super) enum SealedKind {
    /// The first chunk's content (its node is written last).
    First((Option<ByteBuf>, Vec<Cid>)),
    /// A later chunk's node, at its label.
    Node(Label, Cid),
}

/// A new file being written chunk by chunk.
pub(super) struct FileSink {
    pub(super) fresh: Fresh,
    pub(super) signer: SigningKeyPair,
    pub(super) tx: TransactionId,
    pub(super) index: u64,
    pub(super) label: Label,
    pub(super) bat: Bat,
    pub(super) first: Option<(Option<ByteBuf>, Vec<Cid>)>,
    pub(super) size: u64,
    pub(super) mutations: Vec<Mutation>,
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
    pub(super) fn first_node(
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
            ..Properties::default()
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
    tokio::task::spawn_blocking(work).await?
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
