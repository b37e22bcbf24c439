//! Write subspaces (a subtree under a writer key of its own) and key
//! rotation (revoking old capabilities to a subtree).

use peergos_blockstore::BlockStore;
use peergos_keys::{PublicKeyHash, SigningKeyPair};
use peergos_pointers::PointerStore;

use super::write::{split_parent, Content, DirEdit, Mutation, NodeSpec, ParentSide, Plan};
use super::{DirChunk, Filesystem, Found, View};
use crate::node::BasePart;
use crate::{AbsoluteCapability, Error, Result};

impl<B: BlockStore + ?Sized, P: PointerStore + ?Sized> Filesystem<B, P> {
    /// Reads afresh the directory at `dir_path` and where it links to
    /// `name`, which must still be the node `before` (a step after the
    /// first of a multi-commit operation must not act on a changed node).
    async fn unchanged_child(
        &self,
        dir_path: &str,
        name: &str,
        before: &Found,
    ) -> Result<(Found, Vec<DirChunk>, usize, usize)> {
        let view = View::default();
        let (dir, chunks) = self.writable_dir(&view, dir_path).await?;
        let (c, i, now) = self.child_of(&view, &dir, &chunks, name).await?;
        if now.cid != before.cid || now.cap.label != before.cap.label {
            return Err(Error::Conflict { path: now.path });
        }
        Ok((dir, chunks, c, i))
    }

    /// Moves the subtree at `path` under a new writer key, owned by the key
    /// of the directory it is in, and returns a writable capability for
    /// it. Writes inside it are then signed by the new key, so the
    /// capability can be given to someone who may write there and
    /// nowhere else; the holder of the parent still reads and writes it.
    /// A subtree that already has a writer of its own keeps it.
    ///
    /// Three commits, each leaving a consistent tree if the next never
    /// happens: the parent writer records the new key as owned; the new
    /// writer's tree receives the subtree's nodes (same labels, keys and
    /// content; their signer links now name the new key); the parent's
    /// link moves to the new writer and the old nodes are removed.
    pub async fn grant_write(&self, path: &str) -> Result<AbsoluteCapability> {
        let (dir_path, name) = split_parent(path)?;
        let view = View::default();
        let (dir, chunks) = self.writable_dir(&view, &dir_path).await?;
        let (_, _, child) = self.child_of(&view, &dir, &chunks, &name).await?;
        if child.cap.writer != dir.cap.writer {
            return Ok(child.cap);
        }
        let parent_signer = dir.signer()?;
        let key = SigningKeyPair::random();
        let writer = PublicKeyHash::of(&key.public());

        let mut record = Plan::new(parent_signer.clone(), Vec::new());
        record.owned.push((writer, true));
        self.apply(&record).await?;

        let nodes = self.subtree_chunks(&view, &child).await?;
        let tx = self.blocks().start_transaction(&self.root.owner).await?;
        let outcome = async {
            let mut specs = Vec::with_capacity(nodes.len());
            let mut removals = Vec::with_capacity(nodes.len());
            for chunk in &nodes {
                let base = BasePart::open(&chunk.cap.read, &chunk.block.base, &chunk.label)?;
                let write = chunk.cap.write.as_ref().ok_or(Error::NotWritable)?;
                specs.push(NodeSpec {
                    label: chunk.label,
                    bat: chunk.bat.clone(),
                    base: BasePart {
                        signer: Some(BasePart::seal_signer(write, &chunk.label, &key)),
                        ..base
                    }
                    .seal(&chunk.cap.read, &chunk.label)?,
                    parent: chunk.block.parent.clone(),
                    content: Content::Stored {
                        inline: chunk.block.inline.clone(),
                        fragments: chunk.block.fragments.clone(),
                    },
                });
                removals.push(Mutation {
                    label: chunk.label,
                    expected: Some(chunk.cid),
                    new: None,
                });
            }
            let labels: Vec<_> = specs.iter().map(|s| s.label).collect();
            let cids = self.write_nodes(&key, tx, specs).await?;
            let created = labels
                .into_iter()
                .zip(cids)
                .map(|(label, cid)| Mutation::create(label, cid))
                .collect();
            self.apply(&Plan::new(key.clone(), created)).await?;

            self.transact_in(tx, |tx| {
                let (removals, dir_path, name, signer) =
                    (&removals, &dir_path, &name, &parent_signer);
                let child = &child;
                async move {
                    let (dir, chunks, c, i) = self.unchanged_child(dir_path, name, child).await?;
                    let mut link = chunks[c].children[i].clone();
                    link.writer = Some(writer);
                    let mut edit = DirEdit::new(dir, chunks);
                    edit.replace(c, i, link);
                    let mut mutations = removals.clone();
                    mutations.extend(edit.finish(self, signer, tx).await?);
                    Ok((Plan::new(signer.clone(), mutations), ()))
                }
            })
            .await
        }
        .await;
        let _ = self.blocks().close_transaction(&self.root.owner, &tx).await;
        outcome?;
        Ok(AbsoluteCapability {
            writer,
            ..child.cap
        })
    }

    /// Rotates every key of the subtree at `path`: its files and
    /// directories are re-encrypted under fresh read, data, parent and
    /// write keys, at fresh labels with fresh access tokens, and the old
    /// nodes are removed. Holders of an old capability to the subtree (or
    /// anything in it) can no longer find or read anything in it, new or
    /// changed; the holder of the parent keeps access through the parent's
    /// new link, and the returned capability is the subtree's new one
    /// (share it again with whoever should keep access).
    ///
    /// A subtree with a writer of its own (see
    /// [`grant_write`](Self::grant_write)) moves to a fresh writer key and
    /// the old key is dropped from its owner's owned keys, so whoever held
    /// the old key can no longer write either. Write subspaces nested
    /// inside the subtree are folded into its writer (grant them again if
    /// needed).
    ///
    /// In one writer this is one commit. For a subtree with its own
    /// writer, the steps are ordered so an interruption never leaves a
    /// dangling link: the new key is recorded as owned, the new nodes are
    /// committed, the parent's link moves, the old nodes are removed, and
    /// the old key is dropped.
    pub async fn rotate(&self, path: &str) -> Result<AbsoluteCapability> {
        let (dir_path, name) = split_parent(path)?;
        let view = View::default();
        let (dir, chunks) = self.writable_dir(&view, &dir_path).await?;
        let (_, _, child) = self.child_of(&view, &dir, &chunks, &name).await?;
        let old_signer = child.signer()?;
        let parent_signer = dir.signer()?;
        let side = ParentSide::of(&dir)?;
        let own_writer = child.cap.writer != dir.cap.writer;
        let new_signer = if own_writer {
            let key = SigningKeyPair::random();
            let mut record = Plan::new(parent_signer.clone(), Vec::new());
            record.owned.push((PublicKeyHash::of(&key.public()), true));
            self.apply(&record).await?;
            key
        } else {
            old_signer.clone()
        };
        let tx = self.blocks().start_transaction(&self.root.owner).await?;
        let outcome = async {
            let (link, created) =
                Box::pin(self.copy_node(&view, &child, &side, &name, &new_signer, tx)).await?;
            let removals = self.removals(&view, &child).await?;
            if own_writer {
                self.apply(&Plan::new(new_signer.clone(), created.clone()))
                    .await?;
            }
            self.transact_in(tx, |tx| {
                let (link, created, removals) = (&link, &created, &removals);
                let (dir_path, name, signer) = (&dir_path, &name, &parent_signer);
                let child = &child;
                async move {
                    let (dir, chunks, c, i) = self.unchanged_child(dir_path, name, child).await?;
                    let mut mutations = if own_writer {
                        Vec::new()
                    } else {
                        let mut m = created.clone();
                        m.extend(removals.iter().cloned());
                        m
                    };
                    let mut edit = DirEdit::new(dir, chunks);
                    edit.replace(c, i, link.clone());
                    mutations.extend(edit.finish(self, signer, tx).await?);
                    Ok((Plan::new(signer.clone(), mutations), ()))
                }
            })
            .await?;
            if own_writer {
                self.apply(&Plan::new(old_signer.clone(), removals)).await?;
                let mut drop_old = Plan::new(parent_signer.clone(), Vec::new());
                drop_old.owned.push((child.cap.writer, false));
                self.apply(&drop_old).await?;
            }
            link.resolve(&dir.cap)
        }
        .await;
        let _ = self.blocks().close_transaction(&self.root.owner, &tx).await;
        outcome
    }
}
