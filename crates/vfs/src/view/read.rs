//! Reads through a handle's snapshot of the file, with read-ahead once
//! reading is sequential, and the space the quota leaves.

use super::*;

impl<B: BlockStore + ?Sized + 'static, P: PointerStore + ?Sized + 'static> Vfs<B, P> {
    /// Reads up to `size` bytes at `offset` through an open handle,
    /// including bytes not yet committed.
    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        let handle = self.handle(fh)?;
        let mut state = handle.state.lock().await;
        if state
            .inflight
            .as_ref()
            .is_some_and(|inflight| inflight.task.is_finished())
        {
            self.settle(&mut state).await;
        }
        let generation = lock(&self.inner.cache).generation;
        if state.creating {
            // Not stored yet: every byte is in the handle.
            let mut buf = Vec::new();
            state.dirty.overlay(0, offset, size as usize, &mut buf);
            return Ok(buf);
        }
        if state
            .reader
            .as_ref()
            .is_none_or(|r| r.generation != generation)
        {
            let path = self.path_of(handle.ino)?;
            let fs_path = self.fs_path(&path)?.ok_or(Error::ReadOnlyMount)?;
            let file = Arc::new(self.inner.fs.open_file(&fs_path).await?);
            state.reader = Some(Reader {
                generation,
                file,
                chunks: Vec::new(),
                prefetch: std::collections::VecDeque::new(),
                next_offset: 0,
                sequential: 0,
            });
        }
        let want = size as usize;
        let (mut buf, stored) = {
            let Some(reader) = state.reader.as_mut() else {
                return Ok(Vec::new());
            };
            let stored = reader.file.size();
            let end = offset.saturating_add(want as u64).min(stored);
            let buf = if offset < end {
                self.read_stored(reader, offset, (end - offset) as usize)
                    .await?
            } else {
                Vec::new()
            };
            (buf, stored)
        };
        let mut len = stored;
        if let Some(inflight) = &state.inflight {
            inflight.change.overlay(len, offset, want, &mut buf);
            len = inflight.change.len(len);
        }
        state.dirty.overlay(len, offset, want, &mut buf);
        Ok(buf)
    }

    /// Committed bytes `offset..offset + len` of the handle's snapshot.
    pub(super) async fn read_stored(
        &self,
        reader: &mut Reader,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>> {
        // The kernel reads ahead with several requests at once, so they
        // may arrive a little out of order: near the last one still counts
        // as sequential.
        if offset.abs_diff(reader.next_offset) <= SEQUENTIAL_SLACK {
            reader.sequential += len as u64;
        } else {
            reader.sequential = 0;
        }
        reader.next_offset = reader.next_offset.max(offset + len as u64);
        if reader.sequential < SEQUENTIAL_AFTER {
            // Small or scattered reads: only the fragments they touch.
            return Ok(self.inner.fs.read_open(&reader.file, offset, len).await?);
        }
        let mut out = Vec::with_capacity(len);
        let end = offset + len as u64;
        let mut at = offset;
        while at < end {
            let index = at / CHUNK_SIZE;
            let chunk = self.chunk(reader, index).await?;
            let start = index * CHUNK_SIZE;
            let from = (at - start) as usize;
            let to = ((end - start) as usize).min(chunk.len());
            if from >= to {
                break;
            }
            chunk.copy_range(from, to, &mut out);
            at = start + to as u64;
        }
        // Fetch the next chunks while this one is read.
        let mut next = end / CHUNK_SIZE + 1;
        while next < reader.file.chunk_count() && next <= end / CHUNK_SIZE + READ_AHEAD {
            let known = reader.prefetch.iter().any(|(i, _)| *i == next)
                || reader.chunks.iter().any(|(i, _)| *i == next);
            if !known {
                let fs = Arc::clone(&self.inner.fs);
                let file = Arc::clone(&reader.file);
                let index = next;
                reader.prefetch.push_back((
                    index,
                    tokio::spawn(async move { Chunk::read(&fs, &file, index).await }),
                ));
            }
            next += 1;
        }
        Ok(out)
    }

    pub(super) async fn chunk(&self, reader: &mut Reader, index: u64) -> Result<Chunk> {
        if let Some((_, data)) = reader.chunks.iter().find(|(i, _)| *i == index) {
            return Ok(data.clone());
        }
        // Fetches ahead of a position the reader left are dropped.
        while reader.prefetch.front().is_some_and(|(i, _)| *i < index) {
            if let Some((_, task)) = reader.prefetch.pop_front() {
                task.abort();
            }
        }
        let ahead = if reader.prefetch.front().is_some_and(|(i, _)| *i == index) {
            reader.prefetch.pop_front()
        } else {
            None
        };
        let data = match ahead {
            Some((_, task)) => match task.await {
                Ok(outcome) => outcome?,
                Err(e) => return Err(peergos_cryptree::Error::Join(e).into()),
            },
            None => Chunk::read(&self.inner.fs, &reader.file, index).await?,
        };
        if reader.chunks.len() >= HANDLE_CHUNKS {
            reader.chunks.remove(0);
        }
        reader.chunks.push((index, data.clone()));
        Ok(data)
    }

    /// Space under the owner's quota.
    pub async fn statfs(&self) -> Result<StatFs> {
        const BLOCK: u64 = 4096;
        let (used, quota) = match self.inner.space.get() {
            Some(source) => source.space().await.map_err(Error::Space)?,
            None => (0, 0),
        };
        Ok(StatFs {
            block_size: BLOCK as u32,
            blocks: quota / BLOCK,
            free: quota.saturating_sub(used) / BLOCK,
            name_max: 255,
        })
    }
}
