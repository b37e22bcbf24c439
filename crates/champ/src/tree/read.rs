//! Reading a tree: lookups one key or many at a time, every entry, the
//! difference between two roots, and proofs of a key's value.

use super::*;

impl<S: BlockStore + ?Sized> Champ<S> {
    /// The value under `key`.
    pub async fn get(&self, root: &Cid, key: &Key) -> Result<Option<Value>> {
        let (_, node, pos, _) = self.walk(root, key, None).await?;
        Ok(match node.slots.get(&pos) {
            Some(Slot::Bucket(entries)) => entries
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone()),
            _ => None,
        })
    }

    /// The values under many keys, in order. The tree is walked a level
    /// at a time for all the keys together, and the nodes a level needs
    /// that are not cached are fetched with one
    /// [`BlockStore::get_many`] per [`LOAD_BATCH`] nodes: over a remote
    /// store, a round trip per level instead of one per node.
    pub async fn get_many(&self, root: &Cid, keys: &[Key]) -> Result<Vec<Option<Value>>> {
        let (root_node, config) = self.load_root(root, None).await?;
        let hashes: Vec<[u8; 32]> = keys.iter().map(|k| sha256(&k.0)).collect();
        let mut out = vec![None; keys.len()];
        // Each key still being looked for, at the node it has reached.
        let mut frontier: Vec<(usize, Cid, Arc<Node>)> = (0..keys.len())
            .map(|i| (i, *root, Arc::clone(&root_node)))
            .collect();
        let mut depth = 0;
        while !frontier.is_empty() {
            let mut deeper: Vec<(usize, Cid)> = Vec::new();
            for (i, cid, node) in frontier {
                self.check_once(&cid, &node, &config, depth)?;
                match node.slots.get(&config.position(&hashes[i], depth)?) {
                    Some(Slot::Child(child)) => deeper.push((i, *child)),
                    Some(Slot::Bucket(entries)) => {
                        out[i] = entries
                            .iter()
                            .find(|(k, _)| *k == keys[i])
                            .map(|(_, v)| v.clone());
                    }
                    None => {}
                }
            }
            let mut wanted: Vec<Cid> = deeper.iter().map(|(_, cid)| *cid).collect();
            wanted.sort_unstable();
            wanted.dedup();
            let loaded = self.load_many(&wanted).await?;
            frontier = deeper
                .into_iter()
                .map(|(i, cid)| {
                    let node = loaded
                        .get(&cid)
                        .cloned()
                        .ok_or(Error::MissingNode { cid })?;
                    Ok((i, cid, node))
                })
                .collect::<Result<_>>()?;
            depth += 1;
        }
        Ok(out)
    }

    /// Non-root nodes by CID: from the cache, the rest from the store in
    /// batches of [`LOAD_BATCH`], each hash checked here.
    pub(super) async fn load_many(&self, cids: &[Cid]) -> Result<HashMap<Cid, Arc<Node>>> {
        self.visits.fetch_add(cids.len() as u64, Ordering::Relaxed);
        let mut out = HashMap::with_capacity(cids.len());
        let mut missing = Vec::new();
        {
            let cache = self.lock();
            for cid in cids {
                match cache.get(cid) {
                    Some(node) => {
                        out.insert(*cid, Arc::clone(node));
                    }
                    None => missing.push(*cid),
                }
            }
        }
        for batch in missing.chunks(LOAD_BATCH) {
            let requests: Vec<(Cid, Option<peergos_blockstore::BlockAuth>)> =
                batch.iter().map(|cid| (*cid, None)).collect();
            let mut answers = self.store.get_many(&requests).await?.into_iter();
            for cid in batch {
                let data = answers
                    .next()
                    .flatten()
                    .ok_or(Error::MissingNode { cid: *cid })?;
                cid.verify(&data)?;
                let node = Arc::new(Node::decode(cid, &data, false)?);
                self.remember(*cid, Arc::clone(&node));
                out.insert(*cid, node);
            }
        }
        Ok(out)
    }

    /// Every entry, in trie order (by slot, depth first; buckets by key).
    pub async fn entries(&self, root: &Cid) -> Result<Vec<(Key, Value)>> {
        let (node, config) = self.load_root(root, None).await?;
        let mut out = Vec::new();
        self.collect(root, node, &config, 0, &mut out).await?;
        Ok(out)
    }

    /// Appends every entry under `node` (at `depth`) to `out`.
    pub(super) async fn collect(
        &self,
        cid: &Cid,
        node: Arc<Node>,
        config: &Config,
        depth: usize,
        out: &mut Vec<(Key, Value)>,
    ) -> Result<()> {
        let mut stack = vec![(*cid, node, depth)];
        while let Some((cid, node, depth)) = stack.pop() {
            self.check(&cid, &node, config, depth)?;
            // Reverse so the stack yields children in slot order.
            let mut children = Vec::new();
            for slot in node.slots.values() {
                match slot {
                    Slot::Bucket(entries) => out.extend(entries.iter().cloned()),
                    Slot::Child(child) => children.push(*child),
                }
            }
            for child in children.into_iter().rev() {
                let next = self.load(&child, false).await?;
                stack.push((child, next, depth + 1));
            }
        }
        Ok(())
    }

    /// The keys whose values differ between two trees of the same shape,
    /// sorted by key. Subtrees with equal CIDs are skipped unvisited, so a
    /// small change costs a walk of the changed paths only.
    pub async fn diff(&self, old: &Cid, new: &Cid) -> Result<Vec<Change>> {
        let ((old_node, old_config), (new_node, new_config)) =
            futures::future::try_join(self.load_root(old, None), self.load_root(new, None)).await?;
        if old_config != new_config {
            return Err(Error::BadConfig {
                reason: "cannot diff trees of different shapes".into(),
            });
        }
        let mut changes = BTreeMap::new();
        let mut stack = vec![((*old, old_node), (*new, new_node), 0usize)];
        while let Some(((old_cid, old), (new_cid, new), depth)) = stack.pop() {
            if old_cid == new_cid {
                continue;
            }
            self.check(&old_cid, &old, &old_config, depth)?;
            self.check(&new_cid, &new, &new_config, depth)?;
            let positions: std::collections::BTreeSet<u8> =
                old.slots.keys().chain(new.slots.keys()).copied().collect();
            for pos in positions {
                match (old.slots.get(&pos), new.slots.get(&pos)) {
                    (Some(Slot::Child(a)), Some(Slot::Child(b))) => {
                        if a != b {
                            let (na, nb) =
                                futures::future::try_join(self.load(a, false), self.load(b, false))
                                    .await?;
                            stack.push(((*a, na), (*b, nb), depth + 1));
                        }
                    }
                    (a, b) => {
                        let before = self.slot_entries(a, &old_config, depth + 1).await?;
                        let after = self.slot_entries(b, &new_config, depth + 1).await?;
                        record(&mut changes, before, after);
                    }
                }
            }
        }
        Ok(changes.into_values().collect())
    }

    pub(super) async fn slot_entries(
        &self,
        slot: Option<&Slot>,
        config: &Config,
        depth: usize,
    ) -> Result<BTreeMap<Key, Value>> {
        Ok(match slot {
            None => BTreeMap::new(),
            Some(Slot::Bucket(entries)) => entries.iter().cloned().collect(),
            Some(Slot::Child(cid)) => {
                let node = self.load(cid, false).await?;
                let mut out = Vec::new();
                self.collect(cid, node, config, depth, &mut out).await?;
                out.into_iter().collect()
            }
        })
    }

    /// The blocks on the path from `root` to where `key` is or would be:
    /// enough for [`verify_proof`] to answer "what is under `key`" without
    /// trusting whoever supplied them.
    pub async fn proof(&self, root: &Cid, key: &Key) -> Result<Vec<Block>> {
        let (node, config) = self.load_root(root, None).await?;
        let hash = sha256(&key.0);
        let mut blocks = Vec::new();
        let mut node = node;
        let mut depth = 0;
        loop {
            blocks.push(node.encode()?);
            let pos = config.position(&hash, depth)?;
            match node.slots.get(&pos) {
                Some(Slot::Child(child)) => {
                    node = self.load(child, false).await?;
                    depth += 1;
                }
                _ => break,
            }
        }
        debug_assert_eq!(blocks[0].cid(), root);
        Ok(blocks)
    }
}

/// Answers what `root` maps `key` to, from `blocks` alone (as returned by
/// [`Champ::proof`]): every block is checked against the CID that links
/// to it, starting from `root`.
pub fn verify_proof(root: &Cid, key: &Key, blocks: &[Block]) -> Result<Option<Value>> {
    let by_cid: HashMap<Cid, &Block> = blocks.iter().map(|b| (*b.cid(), b)).collect();
    // Every `Block` holds bytes that hash to its CID (its constructors
    // check), so finding a block by CID is verifying it.
    let fetch = |cid: &Cid| -> Result<&Block> {
        by_cid
            .get(cid)
            .copied()
            .ok_or(Error::ProofIncomplete { cid: *cid })
    };
    let root_node = Node::decode(root, fetch(root)?.data(), true)?;
    let config = root_node.config.ok_or(Error::MalformedNode {
        cid: *root,
        reason: "root node has no config".into(),
    })?;
    let hash = sha256(&key.0);
    let mut node = root_node;
    let mut depth = 0;
    loop {
        let pos = config.position(&hash, depth)?;
        match node.slots.get(&pos) {
            Some(Slot::Child(child)) => {
                node = Node::decode(child, fetch(child)?.data(), false)?;
                depth += 1;
            }
            Some(Slot::Bucket(entries)) => {
                return Ok(entries
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone()))
            }
            None => return Ok(None),
        }
    }
}
