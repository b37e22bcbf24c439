//! Directories: their chunks and children, finding a child by name, and
//! resolving a path to its node.

use super::*;

impl<B: BlockStore + ?Sized, P: PointerStore + ?Sized> Filesystem<B, P> {
    /// Caches a directory chunk's decrypted listing by the chunk's CID.
    pub(crate) fn remember_listing(&self, cid: Cid, children: Arc<Vec<ChildLink>>) {
        let mut listings = lock(&self.listings);
        if listings.len() >= LISTING_CACHE {
            listings.clear();
        }
        listings.insert(cid, children);
    }

    /// Every chunk of a directory, first chunk first.
    pub(crate) async fn dir_chunks(&self, view: &View, dir: &Found) -> Result<Vec<DirChunk>> {
        dir.require_dir()?;
        let mut chunks = Vec::new();
        let mut label = dir.cap.label;
        let mut bat = dir
            .cap
            .bat
            .clone()
            .unwrap_or_else(|| Bat::from_bytes([0; 32]));
        let mut current = Some((dir.cid, Arc::clone(&dir.block)));
        while let Some((cid, block)) = current {
            let cached = lock(&self.listings).get(&cid).cloned();
            let children = match cached {
                Some(children) => children,
                None => {
                    let padded = self
                        .content_parts(&dir.cap.read, &label, Some(&bat), &block)
                        .await?
                        .concat();
                    let children = Arc::new(node::decode_children(&padded)?);
                    self.remember_listing(cid, Arc::clone(&children));
                    children
                }
            };
            chunks.push(DirChunk {
                label,
                bat: bat.clone(),
                cid,
                block,
                children,
            });
            (label, bat) = node::next_chunk(&dir.props.stream, &label);
            current = self
                .fetch(view, &dir.cap.writer, &label, Some(&bat))
                .await?;
        }
        Ok(chunks)
    }

    /// The child of `dir` called `name`: which chunk links to it, where in
    /// that chunk, and the child itself.
    pub(crate) async fn find_child(
        &self,
        view: &View,
        dir: &Found,
        chunks: &[DirChunk],
        name: &str,
    ) -> Result<Option<(usize, usize, Found)>> {
        let tag = name_tag(&dir.cap.read, name);
        for (c, chunk) in chunks.iter().enumerate() {
            for (i, link) in chunk.children.iter().enumerate() {
                if link.name_tag != tag {
                    continue;
                }
                let path = child_path(&dir.path, name);
                let child = self.load(view, link.resolve(&dir.cap)?, path).await?;
                // Tags are 128-bit keyed hashes; a collision would be a bug.
                if child.props.name == name {
                    return Ok(Some((c, i, child)));
                }
            }
        }
        Ok(None)
    }

    /// [`find_child`](Self::find_child), where a missing child is an
    /// error.
    pub(crate) async fn child_of(
        &self,
        view: &View,
        dir: &Found,
        chunks: &[DirChunk],
        name: &str,
    ) -> Result<(usize, usize, Found)> {
        self.find_child(view, dir, chunks, name)
            .await?
            .ok_or_else(|| Error::NotFound {
                path: child_path(&dir.path, name),
            })
    }

    /// The node at `path`.
    pub(crate) async fn resolve(&self, view: &View, path: &str) -> Result<Found> {
        let names = components(path)?;
        let mut current = self.load(view, self.root.clone(), "/".into()).await?;
        for (depth, name) in names.iter().enumerate() {
            if !current.base.dir {
                return Err(Error::NotADirectory {
                    path: join(&names[..depth]),
                });
            }
            let chunks = self.dir_chunks(view, &current).await?;
            current = match self.find_child(view, &current, &chunks, name).await? {
                Some((_, _, child)) => child,
                None => {
                    return Err(Error::NotFound {
                        path: join(&names[..=depth]),
                    })
                }
            };
        }
        Ok(current)
    }

    /// The capability of what is at `path` (writable if this filesystem
    /// can write there; [`AbsoluteCapability::read_only`] gives the
    /// read-only one). Treat it as a secret.
    pub async fn capability(&self, path: &str) -> Result<AbsoluteCapability> {
        Ok(self.resolve(&View::default(), path).await?.cap)
    }

    /// What is at `path`.
    pub async fn stat(&self, path: &str) -> Result<Entry> {
        Ok(self.resolve(&View::default(), path).await?.entry())
    }

    /// The directory's children, without hidden ones, sorted by name.
    pub async fn ls(&self, path: &str) -> Result<Vec<Entry>> {
        let mut all = self.ls_all(path).await?;
        all.retain(|e| !e.hidden);
        Ok(all)
    }

    /// The directory's children, hidden ones included, sorted by name.
    pub async fn ls_all(&self, path: &str) -> Result<Vec<Entry>> {
        let view = View::default();
        let dir = self.resolve(&view, path).await?;
        let chunks = self.dir_chunks(&view, &dir).await?;
        let children = self.children(&view, &dir, &chunks).await?;
        let mut entries: Vec<Entry> = children.iter().map(Found::entry).collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Loads every child of a directory: finds the nodes' CIDs in their
    /// writers' trees (all keys of a tree at once, a CHAMP level per
    /// round trip), fetches the node blocks in batches, then decrypts
    /// them.
    pub(crate) async fn children(
        &self,
        view: &View,
        dir: &Found,
        chunks: &[DirChunk],
    ) -> Result<Vec<Found>> {
        let caps: Vec<AbsoluteCapability> = chunks
            .iter()
            .flat_map(|c| c.children.iter())
            .map(|link| link.resolve(&dir.cap))
            .collect::<Result<_>>()?;
        let located = self.locate_many(view, caps, &dir.path).await?;
        let wanted: Vec<(Cid, Option<Bat>)> = located
            .iter()
            .map(|(cap, cid)| (*cid, cap.bat.clone()))
            .collect();
        let blocks = self.node_blocks(&wanted).await?;
        located
            .into_iter()
            .zip(blocks)
            .map(|((cap, cid), block)| {
                let mut child = self.open_node(cap, cid, block, String::new())?;
                child.path = child_path(&dir.path, &child.props.name);
                Ok(child)
            })
            .collect()
    }
}
