//! Moving and copying: rename within or across directories (one writer),
//! and deep copies with fresh keys.

use peergos_blockstore::{BlockStore, TransactionId};
use peergos_keys::{Bat, PublicKeyHash, SigningKeyPair};
use peergos_pointers::PointerStore;

use super::write::{
    read_chunk, split_parent, Content, DirEdit, FileSink, Fresh, Mutation, NodeSpec, ParentSide,
    Plan, UploadOptions,
};
use super::{child_path, components, Filesystem, Found, View};
use crate::node::{self, name_tag, ChildLink, ParentPart, MAX_CHILDREN_PER_NODE};
use crate::{Error, Label, Properties, Result};

impl<B: BlockStore + ?Sized, P: PointerStore + ?Sized> Filesystem<B, P> {
    /// Renames or moves `from` to the path `to` (within one writer). An
    /// existing file at `to` is replaced by a file, an existing empty
    /// directory by a directory; anything else there is an error.
    pub async fn rename(&self, from: &str, to: &str) -> Result<()> {
        let (src_path, src_name) = split_parent(from)?;
        let (dst_path, dst_name) = split_parent(to)?;
        let from_norm = super::child_path(&src_path, &src_name);
        let to_norm = super::child_path(&dst_path, &dst_name);
        if from_norm == to_norm {
            self.stat(from).await?;
            return Ok(());
        }
        if to_norm.starts_with(&format!("{from_norm}/")) {
            return Err(Error::BadMove {
                from: from_norm,
                to: to_norm,
                reason: "a directory cannot move inside itself",
            });
        }
        self.transact(|tx| {
            let (src_path, src_name, dst_path, dst_name) =
                (&src_path, &src_name, &dst_path, &dst_name);
            async move {
                let view = View::default();
                let (src, src_chunks) = self.writable_dir(&view, src_path).await?;
                let (c, i, child) = self.child_of(&view, &src, &src_chunks, src_name).await?;
                let same_dir = src_path == dst_path;
                let (dst, dst_chunks) = if same_dir {
                    (src.clone(), src_chunks.clone())
                } else {
                    self.writable_dir(&view, dst_path).await?
                };
                if child.cap.writer != src.cap.writer || dst.cap.writer != src.cap.writer {
                    return Err(Error::CrossWriter {
                        path: child.path.clone(),
                    });
                }
                let signer = src.signer()?;
                let side = ParentSide::of(&dst)?;
                let mut mutations = Vec::new();
                let existing = self.find_child(&view, &dst, &dst_chunks, dst_name).await?;
                if let Some((_, _, old)) = &existing {
                    let replaceable = match (child.base.dir, old.base.dir) {
                        (false, false) => true,
                        (true, true) => self
                            .dir_chunks(&view, old)
                            .await?
                            .iter()
                            .all(|c| c.children.is_empty()),
                        _ => false,
                    };
                    if !replaceable {
                        return Err(if old.base.dir {
                            Error::DirectoryNotEmpty {
                                path: old.path.clone(),
                            }
                        } else {
                            Error::AlreadyExists {
                                path: old.path.clone(),
                            }
                        });
                    }
                    mutations.extend(self.removals(&view, old).await?);
                }
                // The child keeps its label, keys and content; only its
                // parent link and name change.
                let mut props = child.props.clone();
                props.name = dst_name.clone();
                let parent = ParentPart {
                    parent: Some(side.link.clone()),
                    props: Some(props),
                }
                .seal(child.parent_key(), &child.cap.label)?;
                let spec = NodeSpec {
                    label: child.cap.label,
                    bat: child.cap.bat.clone().unwrap_or_else(Bat::random),
                    base: child.block.base.clone(),
                    parent,
                    content: Content::Stored {
                        inline: child.block.inline.clone(),
                        fragments: child.block.fragments.clone(),
                    },
                };
                let cid = self.write_nodes(&signer, tx, vec![spec]).await?[0];
                mutations.push(Mutation {
                    label: child.cap.label,
                    expected: Some(child.cid),
                    new: Some(cid),
                });
                let child_write = child.cap.write.as_ref().ok_or(Error::NotWritable)?;
                let link = ChildLink {
                    writer: None,
                    label: child.cap.label,
                    bat: child.cap.bat.clone(),
                    read: child.cap.read.clone(),
                    write: Some(ChildLink::seal_write(
                        &side.write,
                        &child.cap.label,
                        child_write,
                    )),
                    name_tag: name_tag(&side.read, dst_name),
                };
                if same_dir {
                    let mut edit = DirEdit::new(src, src_chunks);
                    edit.replace(c, i, link);
                    if let Some((c2, i2, _)) = existing {
                        edit.remove(c2, i2);
                    }
                    mutations.extend(edit.finish(self, &signer, tx).await?);
                } else {
                    let mut from_edit = DirEdit::new(src, src_chunks);
                    from_edit.remove(c, i);
                    mutations.extend(from_edit.finish(self, &signer, tx).await?);
                    let mut to_edit = DirEdit::new(dst, dst_chunks);
                    match existing {
                        Some((c2, i2, _)) => to_edit.replace(c2, i2, link),
                        None => to_edit.add(link),
                    }
                    mutations.extend(to_edit.finish(self, &signer, tx).await?);
                }
                Ok((Plan::new(signer, mutations), ()))
            }
        })
        .await
    }

    /// Copies a file or a directory tree to the path `to` (which must not
    /// exist), with fresh keys and labels: the copy shares nothing with
    /// the original.
    pub async fn copy(&self, from: &str, to: &str) -> Result<()> {
        let (dst_path, dst_name) = split_parent(to)?;
        let from_norm = format!("/{}", components(from)?.join("/"));
        let to_norm = child_path(&dst_path, &dst_name);
        if to_norm == from_norm || to_norm.starts_with(&format!("{from_norm}/")) {
            return Err(Error::BadMove {
                from: from_norm,
                to: to_norm,
                reason: "a directory cannot be copied inside itself",
            });
        }
        let view = View::default();
        let src = self.resolve(&view, from).await?;
        let (_, signer, side) = self.new_file_target(&view, &dst_path).await?;
        let tx = self.blocks().start_transaction(&self.root.owner).await?;
        let outcome = async {
            let (link, copied) =
                Box::pin(self.copy_node(&view, &src, &side, &dst_name, &signer, tx)).await?;
            self.transact_in(tx, |tx| {
                let (link, copied, dst_path, dst_name) = (&link, &copied, &dst_path, &dst_name);
                let signer = &signer;
                async move {
                    let view = View::default();
                    let (dir, chunks) = self.writable_dir(&view, dst_path).await?;
                    if dir.cap.label != side.link.label {
                        return Err(Error::NotFound {
                            path: dst_path.clone(),
                        });
                    }
                    if self
                        .find_child(&view, &dir, &chunks, dst_name)
                        .await?
                        .is_some()
                    {
                        return Err(Error::AlreadyExists {
                            path: child_path(dst_path, dst_name),
                        });
                    }
                    let mut mutations = copied.clone();
                    let mut edit = DirEdit::new(dir, chunks);
                    edit.add(link.clone());
                    mutations.extend(edit.finish(self, signer, tx).await?);
                    Ok((Plan::new(signer.clone(), mutations), ()))
                }
            })
            .await
        }
        .await;
        let _ = self.blocks().close_transaction(&self.root.owner, &tx).await;
        outcome
    }

    /// Writes a fresh copy of `src` (recursively) as a child of `dir`, in
    /// the tree of the writer whose key is `signer`.
    pub(super) async fn copy_node(
        &self,
        view: &View,
        src: &Found,
        dir: &ParentSide,
        name: &str,
        signer: &SigningKeyPair,
        tx: TransactionId,
    ) -> Result<(ChildLink, Vec<Mutation>)> {
        let options = UploadOptions {
            modified: Some(src.props.modified),
            mime: src.props.mime.clone(),
            hidden: src.props.hidden,
        };
        let fresh = Fresh::new(self.root.owner, PublicKeyHash::of(&signer.public()));
        if !src.base.dir {
            let mut sink = FileSink::new(fresh, signer.clone(), tx);
            // The source's chunks, fetched ahead, feed the upload's
            // pipeline (sealing and storing overlap the fetches).
            use futures::TryStreamExt as _;
            let pieces = self
                .pieces_from(view, src, 0)
                .map_err(std::io::Error::other);
            let mut reader = tokio_util::io::StreamReader::new(pieces);
            let copied = async {
                let first = read_chunk(&mut reader).await?;
                self.store_chunks(&mut reader, &mut sink, Some(first), false)
                    .await
            }
            .await;
            copied.map_err(source_error)?;
            return sink.finish(self, dir, name, &options).await;
        }
        let me = ParentSide::of_fresh(&fresh);
        let chunks = self.dir_chunks(view, src).await?;
        let mut links = Vec::new();
        let mut mutations = Vec::new();
        for child in self.children(view, src, &chunks).await? {
            let (link, m) =
                Box::pin(self.copy_node(view, &child, &me, &child.props.name, signer, tx)).await?;
            links.push(link);
            mutations.extend(m);
        }
        let mut specs = Vec::new();
        let mut label = fresh.cap.label;
        let mut bat = fresh.bat();
        let groups: Vec<&[ChildLink]> = if links.is_empty() {
            vec![&[]]
        } else {
            links.chunks(MAX_CHILDREN_PER_NODE).collect()
        };
        for (k, group) in groups.into_iter().enumerate() {
            if k > 0 {
                (label, bat) = node::next_chunk(&fresh.stream, &label);
            }
            let parent = ParentPart {
                parent: (k == 0).then(|| dir.link.clone()),
                props: (k == 0).then(|| Properties {
                    name: name.to_string(),
                    size: 0,
                    modified: src.props.modified,
                    mime: String::new(),
                    hidden: src.props.hidden,
                    stream: fresh.stream,
                    ..src.props.clone()
                }),
            };
            specs.push(NodeSpec {
                label,
                bat: bat.clone(),
                base: fresh.base(true, &label, signer)?,
                parent: parent.seal(fresh.parent_key(true), &label)?,
                content: Content::Plain {
                    key: fresh.cap.read.clone(),
                    padded: node::encode_children(group)?.into(),
                },
            });
        }
        let labels: Vec<Label> = specs.iter().map(|s| s.label).collect();
        let cids = self.write_nodes(signer, tx, specs).await?;
        mutations.extend(
            labels
                .into_iter()
                .zip(cids)
                .map(|(label, cid)| Mutation::create(label, cid)),
        );
        Ok((fresh.link(dir, name), mutations))
    }
}

/// The source's own error, where reading it failed inside the copy's
/// reader (which carries it as an I/O error).
fn source_error(e: Error) -> Error {
    match e {
        Error::Read(io) if io.get_ref().is_some_and(|inner| inner.is::<Error>()) => {
            match io.into_inner().map(|inner| inner.downcast::<Error>()) {
                Some(Ok(inner)) => *inner,
                Some(Err(other)) => Error::Read(std::io::Error::other(other)),
                None => Error::Task("a copy's read error vanished".into()),
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_reports_its_source_error_as_itself() {
        let wrapped = Error::Read(std::io::Error::other(Error::NotWritable));
        assert!(matches!(source_error(wrapped), Error::NotWritable));
        let local = Error::Read(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        assert!(
            matches!(source_error(local), Error::Read(e) if e.kind() == std::io::ErrorKind::UnexpectedEof)
        );
    }
}
