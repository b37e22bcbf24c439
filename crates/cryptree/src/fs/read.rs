//! Reading files: a chunk's content parts and fragments, whole and ranged
//! reads, streams of chunks, and open-file snapshots.

use super::*;

impl<B: BlockStore + ?Sized, P: PointerStore + ?Sized> Filesystem<B, P> {
    /// The plaintext content of a node (padded) as its decrypted fragments
    /// in order, each in the buffer it arrived in: no copy to join them.
    pub(crate) async fn content_parts(
        &self,
        key: &SymmetricKey,
        label: &Label,
        bat: Option<&Bat>,
        block: &NodeBlock,
    ) -> Result<Vec<Bytes>> {
        if let Some(inline) = &block.inline {
            return Ok(vec![Bytes::from(node::open_inline(key, label, inline)?)]);
        }
        let count = block.fragments.len();
        // Fetch a few fragments at once: each is a round trip to the
        // server, then hashing and decryption on a blocking thread.
        let jobs: Vec<_> = block
            .fragments
            .iter()
            .enumerate()
            .map(|(i, cid)| self.fragment(key, label, bat, cid, i, count, false))
            .collect();
        futures::stream::iter(jobs)
            .buffered(FRAGMENT_CONCURRENCY)
            .try_collect()
            .await
    }

    /// One fragment, decrypted. With `keep`, it is kept for the next small
    /// read (ranged reads walk a fragment in many steps); whole-chunk reads
    /// use each fragment once and do not churn the cache.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn fragment(
        &self,
        key: &SymmetricKey,
        label: &Label,
        bat: Option<&Bat>,
        cid: &Cid,
        index: usize,
        count: usize,
        keep: bool,
    ) -> Result<Bytes> {
        let mut context = Vec::with_capacity(32 + 32 + 16);
        context.extend_from_slice(key.as_bytes());
        context.extend_from_slice(&label.0);
        context.extend_from_slice(&(index as u64).to_be_bytes());
        context.extend_from_slice(&(count as u64).to_be_bytes());
        let cache_key = FragmentKey {
            cid: *cid,
            context: peergos_keys::sha256(&context),
        };
        if let Some((_, plain)) = lock(&self.fragments).iter().find(|(k, _)| *k == cache_key) {
            return Ok(plain.clone());
        }
        let auth = bat.map(|bat| BlockAuth::new(bat, cid, &self.requester));
        let framed = self
            .blocks()
            .get(cid, auth.as_ref())
            .await?
            .ok_or(Error::MissingBlock { cid: *cid })?;
        let key = key.clone();
        let label = *label;
        let cid = *cid;
        let plain = tokio::task::spawn_blocking(move || {
            // The hash is checked here whatever the store did.
            cid.verify(&framed)?;
            let start = framed.len() - bat::split_raw(&framed)?.1.len();
            // Decrypted in the buffer it arrived in; copied first only if
            // someone else holds it too (a store's own copy).
            let mut buffer = framed
                .try_into_mut()
                .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
            let plain =
                node::open_fragment_in_place(&key, &label, index, count, &mut buffer[start..])?;
            Ok::<_, Error>(
                buffer
                    .freeze()
                    .slice(start + plain.start..start + plain.end),
            )
        })
        .await??;
        if !keep {
            return Ok(plain);
        }
        let mut cache = lock(&self.fragments);
        if cache.len() >= FRAGMENT_CACHE {
            cache.pop_front();
        }
        cache.push_back((cache_key, plain.clone()));
        Ok(plain)
    }

    /// The capability and keys of every chunk of a file, in order.
    pub(crate) fn file_chunks(file: &Found) -> impl Iterator<Item = (u64, Label, Bat)> + '_ {
        let first = (
            file.cap.label,
            file.cap
                .bat
                .clone()
                .unwrap_or_else(|| Bat::from_bytes([0; 32])),
        );
        let count = chunk_count(file.props.size);
        (0..count).scan(None::<(Label, Bat)>, move |prev, index| {
            let here = match prev.take() {
                None => first.clone(),
                Some((label, _)) => node::next_chunk(&file.props.stream, &label),
            };
            *prev = Some(here.clone());
            Some((index, here.0, here.1))
        })
    }

    /// Fetches chunk `index` of a file, or says it is missing.
    pub(crate) async fn file_chunk(
        &self,
        view: &View,
        file: &Found,
        index: u64,
        label: &Label,
        bat: &Bat,
    ) -> Result<(Cid, Arc<NodeBlock>)> {
        if index == 0 {
            return Ok((file.cid, Arc::clone(&file.block)));
        }
        self.fetch(view, &file.cap.writer, label, Some(bat))
            .await?
            .ok_or_else(|| Error::MissingChunk {
                path: file.path.clone(),
                index,
            })
    }

    /// Reads a whole chunk's data (its true length, without padding) as
    /// its decrypted fragments, in order.
    pub(super) async fn read_chunk_parts(
        &self,
        view: &View,
        file: &Found,
        index: u64,
        label: Label,
        bat: Bat,
    ) -> Result<Vec<Bytes>> {
        let (_, block) = self.file_chunk(view, file, index, &label, &bat).await?;
        let mut parts = self
            .content_parts(&file.base.second, &label, Some(&bat), &block)
            .await?;
        // Cut the padding off: keep `len` bytes of the parts.
        let mut left = chunk_len(file.props.size, index);
        for part in &mut parts {
            let keep = part.len().min(left);
            part.truncate(keep);
            left -= keep;
        }
        if left > 0 {
            return Err(Error::MalformedNode {
                reason: "a chunk holds less data than the file size says",
            });
        }
        parts.retain(|part| !part.is_empty());
        Ok(parts)
    }

    /// The file's data as a stream of pieces in order (a chunk's decrypted
    /// fragments, up to 1 MiB each, as they arrived), fetching the next
    /// four chunks while the current one is consumed. Memory stays bounded
    /// by five chunks whatever the file size.
    pub async fn chunks<'a>(
        &'a self,
        path: &str,
    ) -> Result<impl Stream<Item = Result<Bytes>> + Send + 'a> {
        self.chunks_from(path, 0).await
    }

    /// As [`chunks`](Self::chunks), from byte `offset` on (nothing at or
    /// past the end): only the chunks from the one holding `offset` are
    /// fetched. The file is looked up once, so the stream is one version
    /// of it even if it changes meanwhile.
    pub async fn chunks_from<'a>(
        &'a self,
        path: &str,
        offset: u64,
    ) -> Result<impl Stream<Item = Result<Bytes>> + Send + 'a> {
        let view = View::default();
        let file = self.resolve(&view, path).await?;
        file.require_file()?;
        Ok(self.pieces_from(Arc::new(view), Arc::new(file), offset))
    }

    /// The decrypted pieces of an opened file from byte `offset` on, the
    /// chunks fetched [`READ_AHEAD`] ahead. `view` and `file` are held
    /// however the caller can lend them (borrowed, or shared when the
    /// stream outlives the caller).
    pub(crate) fn pieces_from<'s, V, F>(
        &'s self,
        view: V,
        file: F,
        offset: u64,
    ) -> impl Stream<Item = Result<Bytes>> + Send + 's
    where
        V: std::ops::Deref<Target = View> + Clone + Send + Sync + 's,
        F: std::ops::Deref<Target = Found> + Clone + Send + Sync + 's,
    {
        let first = offset / node::CHUNK_SIZE;
        let plan: Vec<(u64, Label, Bat)> = Self::file_chunks(&file)
            .skip_while(|(index, _, _)| *index < first)
            .collect();
        futures::stream::iter(plan)
            .map(move |(index, label, bat)| {
                let (view, file) = (view.clone(), file.clone());
                // Bytes of the first chunk before `offset` are dropped.
                let mut skip = if index == first {
                    (offset % node::CHUNK_SIZE) as usize
                } else {
                    0
                };
                async move {
                    let mut parts = self
                        .read_chunk_parts(&view, &file, index, label, bat)
                        .await?;
                    for part in &mut parts {
                        let cut = skip.min(part.len());
                        *part = part.slice(cut..);
                        skip -= cut;
                    }
                    parts.retain(|part| !part.is_empty());
                    Ok::<_, Error>(parts)
                }
            })
            .buffered(READ_AHEAD)
            .map_ok(|parts| futures::stream::iter(parts.into_iter().map(Ok)))
            .try_flatten()
    }

    /// Streams the file at `path` into `out`; returns the bytes written.
    /// Not cancel-safe: a dropped future leaves `out` partly written.
    pub async fn download<W>(&self, path: &str, mut out: W) -> Result<u64>
    where
        W: tokio::io::AsyncWrite + Unpin + Send,
    {
        use tokio::io::AsyncWriteExt;
        let mut chunks = std::pin::pin!(self.chunks(path).await?);
        let mut total = 0u64;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            out.write_all(&chunk).await.map_err(Error::Write)?;
            total += chunk.len() as u64;
        }
        out.flush().await.map_err(Error::Write)?;
        Ok(total)
    }

    /// The file at `path` as an [`AsyncRead`](tokio::io::AsyncRead).
    pub async fn reader<'a>(&'a self, path: &str) -> Result<impl tokio::io::AsyncRead + Send + 'a> {
        let chunks = self
            .chunks(path)
            .await?
            .map(|chunk| chunk.map_err(std::io::Error::other));
        Ok(tokio_util::io::StreamReader::new(chunks))
    }

    /// Opens the file at `path` for reading chunk by chunk with
    /// [`read_open_chunk`](Self::read_open_chunk).
    pub async fn open_file(&self, path: &str) -> Result<OpenFile> {
        let view = View::default();
        let found = self.resolve(&view, path).await?;
        found.require_file()?;
        let chain = Self::file_chunks(&found).collect();
        Ok(OpenFile { found, view, chain })
    }

    /// Chunk `index` of an opened file: its whole data (without padding),
    /// fetched and decrypted.
    pub async fn read_open_chunk(&self, file: &OpenFile, index: u64) -> Result<Bytes> {
        let parts = self.read_open_chunk_parts(file, index).await?;
        Ok(joined(parts))
    }

    /// Chunk `index` of an opened file as its decrypted fragments in order
    /// (its whole data without padding, none of them empty), each in the
    /// buffer it arrived in.
    pub async fn read_open_chunk_parts(&self, file: &OpenFile, index: u64) -> Result<Vec<Bytes>> {
        let (_, label, bat) =
            file.chain
                .get(index as usize)
                .cloned()
                .ok_or_else(|| Error::MissingChunk {
                    path: file.found.path.clone(),
                    index,
                })?;
        self.read_chunk_parts(&file.view, &file.found, index, label, bat)
            .await
    }

    /// Reads `len` bytes at `offset` (fewer at the end of the file),
    /// fetching and decrypting only the fragments that overlap the range.
    pub async fn read(&self, path: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let view = View::default();
        let file = self.resolve(&view, path).await?;
        file.require_file()?;
        self.read_found(&view, &file, offset, len).await
    }

    /// Reads `len` bytes at `offset` of an opened file, like
    /// [`read`](Self::read) but without a path lookup or pointer read.
    pub async fn read_open(&self, file: &OpenFile, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.read_found(&file.view, &file.found, offset, len).await
    }

    pub(super) async fn read_found(
        &self,
        view: &View,
        file: &Found,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>> {
        let size = file.props.size;
        let end = offset.saturating_add(len as u64).min(size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity((end - offset) as usize);
        let first = offset / node::CHUNK_SIZE;
        let last = (end - 1) / node::CHUNK_SIZE;
        for (index, label, bat) in Self::file_chunks(file) {
            if index < first {
                continue;
            }
            if index > last {
                break;
            }
            let (_, block) = self.file_chunk(view, file, index, &label, &bat).await?;
            let chunk_start = index * node::CHUNK_SIZE;
            // The range within this chunk.
            let from = (offset.max(chunk_start) - chunk_start) as usize;
            let to = (end.min(chunk_start + node::CHUNK_SIZE) - chunk_start) as usize;
            if let Some(inline) = &block.inline {
                let data = node::open_inline(&file.base.second, &label, inline)?;
                out.extend_from_slice(data.get(from..to).ok_or(Error::MalformedNode {
                    reason: "a chunk holds less data than the file size says",
                })?);
                continue;
            }
            let count = block.fragments.len();
            for f in from / FRAGMENT_SIZE..=(to - 1) / FRAGMENT_SIZE {
                let cid = block.fragments.get(f).ok_or(Error::MalformedNode {
                    reason: "a chunk has fewer fragments than the file size needs",
                })?;
                let data = self
                    .fragment(&file.base.second, &label, Some(&bat), cid, f, count, true)
                    .await?;
                let base = f * FRAGMENT_SIZE;
                let a = from.max(base) - base;
                let b = (to.min(base + FRAGMENT_SIZE) - base).min(data.len());
                out.extend_from_slice(data.get(a..b).ok_or(Error::MalformedNode {
                    reason: "a fragment is shorter than the file size needs",
                })?);
            }
        }
        Ok(out)
    }
}
