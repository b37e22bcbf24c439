//! Editing a directory's chunks: links removed, replaced and added, and
//! only the chunks that changed rewritten.

use std::sync::Arc;

use peergos_blockstore::{BlockStore, SignedBlock, TransactionId};
use peergos_ipld::Cid;
use peergos_keys::{Bat, SigningKeyPair};
use peergos_pointers::PointerStore;

use super::{DirChunk, Filesystem, Found};
use crate::node::{self, BasePart, ChildLink, NodeBlock, ParentPart, MAX_CHILDREN_PER_NODE};
use crate::{AbsoluteCapability, Error, Label, Result};

use super::write::*;

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
