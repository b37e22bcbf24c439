//! Open handles and the write path: buffered writes committed a chunk at
//! a time in the background, and on flush, fsync and release.

use super::*;

impl<B: BlockStore + ?Sized + 'static, P: PointerStore + ?Sized + 'static> Vfs<B, P> {
    pub(super) async fn commit_inode_handles(&self, path: &str) -> Result<()> {
        let ino = lock(&self.inner.inodes).get_or_insert(path, false);
        let handles: Vec<Arc<Handle>> = lock(&self.inner.handles)
            .values()
            .filter(|h| h.ino == ino && h.writable)
            .cloned()
            .collect();
        for handle in handles {
            let mut state = handle.state.lock().await;
            self.commit_now(&handle, &mut state).await?;
        }
        Ok(())
    }

    // ---- files ----

    pub(super) fn handle(&self, fh: u64) -> Result<Arc<Handle>> {
        lock(&self.inner.handles)
            .get(&fh)
            .cloned()
            .ok_or(Error::UnknownHandle(fh))
    }

    pub(super) fn new_handle(&self, ino: u64, writable: bool, state: HandleState) -> u64 {
        let fh = self.inner.next_fh.fetch_add(1, Ordering::Relaxed);
        let handle = Arc::new(Handle {
            ino,
            writable,
            pending_len: Mutex::new(None),
            state: tokio::sync::Mutex::new(state),
        });
        lock(&self.inner.handles).insert(fh, handle);
        fh
    }

    /// Creates an empty file and opens it for writing. It is stored by the
    /// handle's first commit (with its first bytes, in one upload); until
    /// then only this mount sees it.
    pub async fn create(&self, parent: u64, name: &std::ffi::OsStr) -> Result<(Attr, u64)> {
        let Target {
            dir,
            name,
            path,
            fs_path: _,
        } = self.target(parent, name)?;
        if !self.entry(&dir).await?.writable {
            return Err(peergos_cryptree::Error::ReadOnly { path: dir }.into());
        }
        self.require_free(&path).await?;
        // Nothing is stored yet: the handle's first commit (a full chunk,
        // fsync or close) makes the file with its bytes in one upload.
        let entry = Entry {
            name: name.to_string(),
            kind: Kind::File,
            size: 0,
            modified: now_ms(),
            mime: String::new(),
            hidden: false,
            writable: true,
        };
        lock(&self.inner.creating).insert(path.clone(), entry.clone());
        let ino = lock(&self.inner.inodes).get_or_insert(&path, true);
        let state = HandleState {
            creating: true,
            ..HandleState::default()
        };
        let fh = self.new_handle(ino, true, state);
        Ok((self.attr_of(ino, &entry), fh))
    }

    /// Opens a file; `truncate` (with `write`) empties it on the first
    /// commit.
    pub async fn open(&self, ino: u64, write: bool, truncate: bool) -> Result<u64> {
        let path = self.path_of(ino)?;
        // A second handle works on the stored file.
        self.store_created(&path).await?;
        let entry = self.entry(&path).await?;
        if entry.kind == Kind::Dir {
            return Err(peergos_cryptree::Error::IsADirectory { path }.into());
        }
        let mut state = HandleState::default();
        if write {
            self.writable_mount()?;
            if !entry.writable {
                return Err(peergos_cryptree::Error::ReadOnly { path }.into());
            }
            if truncate {
                let _ = state.dirty.truncate(0);
            }
        }
        let fh = self.new_handle(ino, write, state);
        if write && truncate {
            let handle = self.handle(fh)?;
            *lock(&handle.pending_len) = Some(0);
        }
        Ok(fh)
    }

    /// Records the file's length with uncommitted bytes, for `getattr`.
    pub(super) async fn note_pending(&self, handle: &Handle, state: &HandleState) {
        let pending = if state.dirty.is_empty() && state.inflight.is_none() {
            None
        } else {
            match self.stored_len(handle, state).await {
                Ok(stored) => {
                    let after_inflight = state
                        .inflight
                        .as_ref()
                        .map_or(stored, |f| f.change.len(stored));
                    Some(state.dirty.len(after_inflight))
                }
                Err(_) => None,
            }
        };
        *lock(&handle.pending_len) = pending;
    }

    /// The committed length the handle's snapshot (or the cache) knows.
    pub(super) async fn stored_len(&self, handle: &Handle, state: &HandleState) -> Result<u64> {
        if state.creating {
            return Ok(0);
        }
        let generation = lock(&self.inner.cache).generation;
        if let Some(reader) = &state.reader {
            if reader.generation == generation {
                return Ok(reader.file.size());
            }
        }
        let path = self.path_of(handle.ino)?;
        Ok(self.entry(&path).await?.size)
    }

    /// Waits for the commit in flight, if any; its failure becomes the
    /// handle's error.
    pub(super) async fn settle(&self, state: &mut HandleState) {
        if let Some(inflight) = state.inflight.take() {
            let outcome = match inflight.task.await {
                Ok(outcome) => outcome,
                Err(e) => Err(peergos_cryptree::Error::Join(e).into()),
            };
            state.reader = None;
            if let Err(e) = outcome {
                state.error.get_or_insert(e);
            }
            // The task has ended, so the change is no longer shared.
            state.dirty.recycle(inflight.change);
        }
    }

    /// Starts committing what waits, in the background, after the
    /// previous commit.
    pub(super) async fn commit_background(
        &self,
        handle: &Handle,
        state: &mut HandleState,
    ) -> Result<()> {
        self.settle(state).await;
        if state.dirty.is_empty() && !state.creating {
            return Ok(());
        }
        let change = Arc::new(state.dirty.take_whole_chunks(CHUNK_SIZE));
        if self.path_of(handle.ino).is_err() {
            // Removed while open: the bytes have nowhere to go.
            return Ok(());
        }
        if std::mem::take(&mut state.creating) {
            // The first commit of a new file makes it, here and now.
            if let Err(e) = self.commit_change(handle.ino, &change, true).await {
                state.error.get_or_insert(e);
            }
            return Ok(());
        }
        let vfs = self.clone();
        let job = Arc::clone(&change);
        let ino = handle.ino;
        let task = tokio::spawn(async move { vfs.commit_patch(ino, &job).await });
        state.inflight = Some(Inflight { change, task });
        Ok(())
    }

    /// Commits what waits and reports any failure since the last report.
    pub(super) async fn commit_now(&self, handle: &Handle, state: &mut HandleState) -> Result<()> {
        self.settle(state).await;
        if !state.dirty.is_empty() || state.creating {
            let change = Arc::new(state.dirty.take_change());
            let create = std::mem::take(&mut state.creating);
            state.reader = None;
            if self.path_of(handle.ino).is_ok() {
                if let Err(e) = self.commit_change(handle.ino, &change, create).await {
                    state.error.get_or_insert(e);
                }
            }
            state.dirty.recycle(change);
        }
        self.note_pending(handle, state).await;
        match state.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Commits `change` to the file's path at the time of the commit (it
    /// may have been renamed since the bytes were written).
    /// A file made by `create` is stored by its first commit (`create`).
    pub(super) async fn commit_change(
        &self,
        ino: u64,
        change: &Arc<Dirty>,
        create: bool,
    ) -> Result<Entry> {
        if !create {
            return self.commit_patch(ino, change).await;
        }
        let path = &self.path_of(ino)?;
        let fs_path = self.fs_path(path)?.ok_or(Error::ReadOnlyMount)?;
        tracing::debug!("creating {path} with {} bytes", change.bytes());
        let stored = {
            match change.from_empty() {
                // The common case: one upload makes the file with its bytes.
                Some(bytes) => {
                    let options = peergos_cryptree::UploadOptions {
                        modified: change.modified(),
                        ..Default::default()
                    };
                    let (fs_dir, name) = parent_and_name(&fs_path);
                    self.inner
                        .fs
                        .write_files(&fs_dir, vec![(name, bytes.to_vec(), options)])
                        .await
                        .and_then(|mut made| {
                            made.pop().ok_or(peergos_cryptree::Error::Task(
                                "a one-file write returned no entry".into(),
                            ))
                        })
                }
                None => {
                    let made = self.inner.fs.write_file(&fs_path, &[]).await;
                    self.inner.commits.fetch_add(1, Ordering::Relaxed);
                    match made {
                        Ok(_) => self.inner.fs.patch(&fs_path, &change.patch()).await,
                        Err(e) => Err(e),
                    }
                }
            }
        };
        lock(&self.inner.creating).remove(path);
        self.stored(path, stored?)
    }

    /// Commits a change to a stored file (a `Send` future, for background
    /// commits).
    pub(super) async fn commit_patch(&self, ino: u64, change: &Arc<Dirty>) -> Result<Entry> {
        let path = &self.path_of(ino)?;
        let fs_path = self.fs_path(path)?.ok_or(Error::ReadOnlyMount)?;
        tracing::debug!("committing {} bytes to {path}", change.bytes());
        let entry = self.inner.fs.patch(&fs_path, &change.patch()).await?;
        self.stored(path, entry)
    }

    /// Records a commit's outcome in the cache.
    pub(super) fn stored(&self, path: &str, mut entry: Entry) -> Result<Entry> {
        self.inner.commits.fetch_add(1, Ordering::Relaxed);
        let (dir, name) = parent_and_name(path);
        entry.name = name.clone();
        self.cache_edit(&dir, &name, Some(entry.clone()));
        Ok(entry)
    }

    /// Writes `data` at `offset` through an open handle. The bytes wait in
    /// the handle; a full chunk's worth starts a commit, unless one is in
    /// flight: then up to six chunks gather for the next.
    pub async fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<u32> {
        let handle = self.handle(fh)?;
        if !handle.writable {
            return Err(Error::NotOpenForWriting(fh));
        }
        let mut state = handle.state.lock().await;
        if let Some(e) = state.error.take() {
            return Err(e);
        }
        state.dirty.write(offset, data);
        let waiting = state.dirty.bytes() as u64;
        if waiting >= CHUNK_SIZE {
            let busy = state
                .inflight
                .as_ref()
                .is_some_and(|inflight| !inflight.task.is_finished());
            if !busy || waiting >= GATHER_CHUNKS * CHUNK_SIZE {
                self.commit_background(&handle, &mut state).await?;
            }
        }
        self.note_pending(&handle, &state).await;
        Ok(data.len() as u32)
    }

    /// Commits what the handle holds (`flush` on close and `fsync`).
    pub async fn fsync(&self, fh: u64) -> Result<()> {
        let handle = self.handle(fh)?;
        let mut state = handle.state.lock().await;
        self.commit_now(&handle, &mut state).await
    }

    /// Commits what the handle holds and closes it.
    pub async fn release(&self, fh: u64) -> Result<()> {
        let handle = self.handle(fh)?;
        let outcome = {
            let mut state = handle.state.lock().await;
            if let Some(reader) = &mut state.reader {
                for (_, task) in reader.prefetch.drain(..) {
                    task.abort();
                }
            }
            self.commit_now(&handle, &mut state).await
        };
        lock(&self.inner.handles).remove(&fh);
        // A file removed while open has nowhere to commit to.
        if self.path_of(handle.ino).is_err() {
            return Ok(());
        }
        outcome
    }

    /// Commits every open handle (before unmounting).
    pub async fn commit_all(&self) -> Result<()> {
        let handles: Vec<Arc<Handle>> = lock(&self.inner.handles).values().cloned().collect();
        let mut first = None;
        for handle in handles {
            let mut state = handle.state.lock().await;
            if let Err(e) = self.commit_now(&handle, &mut state).await {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}
