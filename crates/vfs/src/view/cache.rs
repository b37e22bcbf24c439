//! The listing cache: directory listings and the entries in them, kept
//! until a change of this mount edits them or a writer's pointer moves.

use super::*;

impl<B: BlockStore + ?Sized + 'static, P: PointerStore + ?Sized + 'static> Vfs<B, P> {
    /// The directory's children, hidden ones included, from the cache or
    /// the filesystem.
    pub(super) async fn listing(&self, dir: &str) -> Result<Arc<Vec<Entry>>> {
        let epoch = {
            let cache = lock(&self.inner.cache);
            if let Some(listing) = cache.listings.get(dir) {
                return Ok(Arc::clone(listing));
            }
            cache.epoch
        };
        let entries = match self.fs_path(dir)? {
            None => {
                let mut file = self.inner.fs.stat("/").await?;
                if let Some(name) = &self.inner.options.single_file {
                    file.name = name.clone();
                }
                vec![file]
            }
            Some(path) => self.inner.fs.ls_all(&path).await?,
        };
        self.inner.listings.fetch_add(1, Ordering::Relaxed);
        let entries = Arc::new(entries);
        let mut cache = lock(&self.inner.cache);
        if cache.epoch == epoch {
            cache.listings.insert(dir.to_string(), Arc::clone(&entries));
        }
        Ok(entries)
    }

    /// What is at `path` in the mount.
    pub(super) async fn entry(&self, path: &str) -> Result<Entry> {
        if path == "/" {
            if let Some(root) = lock(&self.inner.cache).root.clone() {
                return Ok(root);
            }
            let root = match self.fs_path("/")? {
                None => Entry {
                    name: String::new(),
                    kind: Kind::Dir,
                    size: 0,
                    modified: 0,
                    mime: String::new(),
                    hidden: false,
                    writable: false,
                },
                Some(path) => self.inner.fs.stat(&path).await?,
            };
            lock(&self.inner.cache).root = Some(root.clone());
            return Ok(root);
        }
        match self.find(path).await? {
            Some(entry) if !entry.hidden => Ok(entry),
            _ => Err(peergos_cryptree::Error::NotFound { path: path.into() }.into()),
        }
    }

    /// What is at `path` (not the root), hidden entries included: hidden
    /// files (the social state, unfinished uploads) are not shown, but
    /// their names cannot be taken either.
    pub(super) async fn find(&self, path: &str) -> Result<Option<Entry>> {
        let (dir, name) = parent_and_name(path);
        let listing = self.listing(&dir).await?;
        if let Some(entry) = listing.iter().find(|e| e.name == name) {
            return Ok(Some(entry.clone()));
        }
        Ok(lock(&self.inner.creating).get(path).cloned())
    }

    /// Files being created in `dir` (not stored yet), by name.
    pub(super) fn creating_in(&self, dir: &str) -> Vec<Entry> {
        lock(&self.inner.creating)
            .iter()
            .filter(|(path, _)| parent_and_name(path).0 == dir)
            .map(|(_, entry)| entry.clone())
            .collect()
    }

    /// Stores the files being created at `path` or under it, so that an
    /// operation on the stored tree finds them.
    pub(super) async fn store_created(&self, path: &str) -> Result<()> {
        let prefix = format!("{path}/");
        let paths: Vec<String> = lock(&self.inner.creating)
            .keys()
            .filter(|p| *p == path || p.starts_with(&prefix))
            .cloned()
            .collect();
        for p in paths {
            self.commit_inode_handles(&p).await?;
        }
        Ok(())
    }

    /// Refuses a new entry at `path` if anything, even hidden, is there.
    pub(super) async fn require_free(&self, path: &str) -> Result<()> {
        match self.find(path).await? {
            Some(_) => Err(Error::Exists(path.to_string())),
            None => Ok(()),
        }
    }

    /// Records this mount's own change to `dir`: `entry` added or
    /// replaced (or, with None, `name` removed).
    pub(super) fn cache_edit(&self, dir: &str, name: &str, entry: Option<Entry>) {
        let mut cache = lock(&self.inner.cache);
        cache.epoch += 1;
        if dir == "/" && name.is_empty() {
            return;
        }
        if let Some(listing) = cache.listings.get_mut(dir) {
            let list = Arc::make_mut(listing);
            list.retain(|e| e.name != name);
            if let Some(entry) = entry {
                let at = list.partition_point(|e| e.name < entry.name);
                list.insert(at, entry);
            }
        }
    }

    /// Forgets cached listings of `path` and everything under it.
    pub(super) fn cache_drop_tree(&self, path: &str) {
        let prefix = format!("{path}/");
        let mut cache = lock(&self.inner.cache);
        cache.epoch += 1;
        cache
            .listings
            .retain(|p, _| p != path && !p.starts_with(&prefix));
    }

    /// Drops every cached answer: the next questions go to the filesystem.
    pub fn invalidate(&self) {
        let mut cache = lock(&self.inner.cache);
        cache.epoch += 1;
        cache.generation += 1;
        cache.listings.clear();
        cache.root = None;
    }

    /// Reads every writer's pointer the filesystem has seen; if any moved
    /// since the last call, drops the cache. Returns whether it did.
    pub async fn refresh(&self) -> Result<bool> {
        let mut last = self.inner.versions.lock().await;
        let now = self.inner.fs.versions().await?;
        let changed = last.as_ref().is_some_and(|seen| *seen != now);
        *last = Some(now);
        if changed {
            self.invalidate();
            self.inner.invalidations.fetch_add(1, Ordering::Relaxed);
        }
        Ok(changed)
    }

    /// Runs [`refresh`](Self::refresh) every `every` until the returned
    /// task is aborted. A failed refresh (the server is away) drops the
    /// cache, so nothing stale is served once it is back.
    pub fn spawn_refresher(&self, every: Duration) -> JoinHandle<()> {
        let vfs = self.clone();
        tokio::spawn(async move {
            let mut timer = tokio::time::interval(every);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                timer.tick().await;
                if let Err(e) = vfs.refresh().await {
                    tracing::warn!("checking for changes failed: {e}");
                    vfs.invalidate();
                }
            }
        })
    }

    pub(super) fn attr_of(&self, ino: u64, entry: &Entry) -> Attr {
        let mut size = entry.size;
        if entry.kind == Kind::File {
            for handle in lock(&self.inner.handles).values() {
                if handle.ino == ino {
                    if let Some(len) = *lock(&handle.pending_len) {
                        size = len;
                    }
                }
            }
        }
        Attr {
            ino,
            kind: entry.kind,
            size,
            modified: entry.modified,
            writable: entry.writable && !self.inner.options.read_only,
        }
    }

    // ---- lookups ----
}
