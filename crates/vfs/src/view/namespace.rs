//! Names: lookup, attributes, directories, unlink and rename.

use super::*;

impl<B: BlockStore + ?Sized + 'static, P: PointerStore + ?Sized + 'static> Vfs<B, P> {
    /// Finds `name` in the directory `parent`; counts one kernel lookup.
    pub async fn lookup(&self, parent: u64, name: &std::ffi::OsStr) -> Result<Attr> {
        let name = name_str(name)?;
        let path = child(&self.path_of(parent)?, name);
        let entry = self.entry(&path).await?;
        let ino = lock(&self.inner.inodes).get_or_insert(&path, true);
        Ok(self.attr_of(ino, &entry))
    }

    /// The kernel dropped `count` lookups of `ino`.
    pub fn forget(&self, ino: u64, count: u64) {
        let pinned = lock(&self.inner.handles).values().any(|h| h.ino == ino);
        lock(&self.inner.inodes).forget(ino, count, pinned);
    }

    /// The inode's attributes.
    pub async fn getattr(&self, ino: u64) -> Result<Attr> {
        let path = self.path_of(ino)?;
        let entry = self.entry(&path).await?;
        Ok(self.attr_of(ino, &entry))
    }

    /// Changes size and modification time (milliseconds). Through an
    /// open handle the change waits with its other bytes; otherwise it is
    /// committed at once. Directory times are kept by the filesystem
    /// itself and a new one is accepted without effect.
    pub async fn setattr(
        &self,
        ino: u64,
        fh: Option<u64>,
        size: Option<u64>,
        modified: Option<i64>,
    ) -> Result<Attr> {
        let path = self.path_of(ino)?;
        if size.is_none() && modified.is_none() {
            return self.getattr(ino).await;
        }
        self.writable_mount()?;
        let entry = self.entry(&path).await?;
        if entry.kind == Kind::Dir {
            if size.is_some() {
                return Err(peergos_cryptree::Error::IsADirectory { path }.into());
            }
            return Ok(self.attr_of(ino, &entry));
        }
        // Through a handle (ftruncate, futimens), the change waits with
        // the handle's bytes, in order.
        if let Some(handle) = fh
            .and_then(|fh| self.handle(fh).ok())
            .filter(|h| h.writable)
        {
            let mut state = handle.state.lock().await;
            if let Some(size) = size {
                if state.dirty.truncate(size).is_err() {
                    self.commit_now(&handle, &mut state).await?;
                    let _ = state.dirty.truncate(size);
                }
            }
            if let Some(modified) = modified {
                state.dirty.set_modified(modified);
            }
            self.note_pending(&handle, &state).await;
            drop(state);
            let mut attr = self.getattr(ino).await?;
            if let Some(modified) = modified {
                attr.modified = modified;
            }
            return Ok(attr);
        }
        // By path (truncate, utimensat): whatever open handles hold is
        // committed first, so a later commit of theirs cannot undo this.
        self.commit_inode_handles(&path).await?;
        let fs_path = self.fs_path(&path)?.ok_or(Error::ReadOnlyMount)?;
        let patch = peergos_cryptree::Patch {
            size,
            writes: Vec::new(),
            modified,
        };
        let mut updated = self.inner.fs.patch(&fs_path, &patch).await?;
        self.inner.commits.fetch_add(1, Ordering::Relaxed);
        updated.name = entry.name.clone();
        let (dir, name) = parent_and_name(&path);
        self.cache_edit(&dir, &name, Some(updated.clone()));
        Ok(self.attr_of(ino, &updated))
    }

    // ---- directories ----

    /// Makes a directory.
    pub async fn mkdir(&self, parent: u64, name: &std::ffi::OsStr) -> Result<Attr> {
        let Target {
            dir,
            name,
            path,
            fs_path,
        } = self.target(parent, name)?;
        self.require_free(&path).await?;
        let entry = self.inner.fs.mkdir(&fs_path).await?;
        self.inner.commits.fetch_add(1, Ordering::Relaxed);
        self.cache_edit(&dir, name, Some(entry.clone()));
        let ino = lock(&self.inner.inodes).get_or_insert(&path, true);
        Ok(self.attr_of(ino, &entry))
    }

    /// Removes an empty directory.
    pub async fn rmdir(&self, parent: u64, name: &std::ffi::OsStr) -> Result<()> {
        let Target {
            dir,
            name,
            path,
            fs_path,
        } = self.target(parent, name)?;
        self.store_created(&path).await?;
        self.inner.fs.rmdir(&fs_path).await?;
        self.inner.commits.fetch_add(1, Ordering::Relaxed);
        self.cache_edit(&dir, name, None);
        self.cache_drop_tree(&path);
        lock(&self.inner.inodes).remove(&path);
        Ok(())
    }

    /// Opens a directory for reading: its entries (with `.` and `..`) as
    /// they are now, so offsets stay stable across `readdir` calls.
    pub async fn opendir(&self, ino: u64) -> Result<u64> {
        let path = self.path_of(ino)?;
        let entry = self.entry(&path).await?;
        if entry.kind != Kind::Dir {
            return Err(peergos_cryptree::Error::NotADirectory { path }.into());
        }
        let listing = self.listing(&path).await?;
        let (parent, _) = parent_and_name(&path);
        let mut entries = Vec::with_capacity(listing.len() + 2);
        {
            let mut inodes = lock(&self.inner.inodes);
            let parent_ino = if path == "/" {
                ROOT
            } else {
                inodes.get_or_insert(&parent, false)
            };
            entries.push(DirEntry {
                ino,
                name: ".".into(),
                kind: Kind::Dir,
            });
            entries.push(DirEntry {
                ino: parent_ino,
                name: "..".into(),
                kind: Kind::Dir,
            });
            let creating = self.creating_in(&path);
            for e in listing.iter().filter(|e| !e.hidden).chain(&creating) {
                entries.push(DirEntry {
                    ino: inodes.get_or_insert(&child(&path, &e.name), false),
                    name: e.name.clone(),
                    kind: e.kind,
                });
            }
        }
        let fh = self.inner.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.inner.dirs).insert(fh, Arc::new(entries));
        Ok(fh)
    }

    /// The entries of an open directory from position `offset` on.
    pub fn readdir(&self, fh: u64, offset: u64) -> Result<Vec<DirEntry>> {
        let entries = lock(&self.inner.dirs)
            .get(&fh)
            .cloned()
            .ok_or(Error::UnknownHandle(fh))?;
        Ok(entries
            .get(offset as usize..)
            .map(<[DirEntry]>::to_vec)
            .unwrap_or_default())
    }

    /// Closes an open directory.
    pub fn releasedir(&self, fh: u64) {
        lock(&self.inner.dirs).remove(&fh);
    }

    // ---- names ----

    /// Removes a file.
    pub async fn unlink(&self, parent: u64, name: &std::ffi::OsStr) -> Result<()> {
        let Target {
            dir,
            name,
            path,
            fs_path,
        } = self.target(parent, name)?;
        if self.entry(&path).await?.kind == Kind::Dir {
            return Err(peergos_cryptree::Error::IsADirectory { path }.into());
        }
        if lock(&self.inner.creating).remove(&path).is_some() {
            // Never stored: forgetting the path is the whole removal (the
            // handle finds no path to commit to).
            lock(&self.inner.inodes).remove(&path);
            return Ok(());
        }
        self.inner.fs.rm(&fs_path).await?;
        self.inner.commits.fetch_add(1, Ordering::Relaxed);
        self.cache_edit(&dir, name, None);
        lock(&self.inner.inodes).remove(&path);
        Ok(())
    }

    /// Moves `name` in `parent` to `new_name` in `new_parent`, replacing a
    /// file there (or an empty directory, by a directory) in one commit.
    /// `flags` may hold [`RENAME_NOREPLACE`].
    pub async fn rename(
        &self,
        parent: u64,
        name: &std::ffi::OsStr,
        new_parent: u64,
        new_name: &std::ffi::OsStr,
        flags: u32,
    ) -> Result<()> {
        if flags & !RENAME_NOREPLACE != 0 {
            return Err(Error::RenameFlags(flags));
        }
        let source = self.target(parent, name)?;
        let dest = self.target(new_parent, new_name)?;
        let (dir, name, from, fs_from) = (source.dir, source.name, source.path, source.fs_path);
        let (new_dir, new_name, to, fs_to) = (dest.dir, dest.name, dest.path, dest.fs_path);
        let moving = self.entry(&from).await?;
        match self.find(&to).await? {
            Some(existing) if existing.hidden || flags & RENAME_NOREPLACE != 0 => {
                return Err(Error::Exists(to));
            }
            _ => {}
        }
        // Commit what open handles of the moving file hold, under its old
        // name, so nothing is committed to a path that is gone; files being
        // created inside a moving folder are stored first.
        self.store_created(&from).await?;
        self.commit_inode_handles(&from).await?;
        self.inner.fs.rename(&fs_from, &fs_to).await?;
        self.inner.commits.fetch_add(1, Ordering::Relaxed);
        self.cache_edit(&dir, name, None);
        let mut moved = moving;
        moved.name = new_name.to_string();
        self.cache_edit(&new_dir, new_name, Some(moved));
        self.cache_drop_tree(&from);
        self.cache_drop_tree(&to);
        lock(&self.inner.inodes).rename(&from, &to);
        Ok(())
    }
}
