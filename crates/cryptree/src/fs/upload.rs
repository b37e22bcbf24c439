//! Uploading files: streaming one, writing many small ones in a batch,
//! and linking them into their directory.

use peergos_blockstore::{BlockStore, SignedBlock, TransactionId};
use peergos_keys::SigningKeyPair;
use peergos_pointers::PointerStore;
use tokio::io::AsyncRead;

use super::{Entry, Filesystem, Found, View};
use crate::node::{self, ChildLink, CHUNK_SIZE};
use crate::{Error, Result};

use super::dir_edit::*;
use super::sink::*;
use super::write::*;

impl<B: BlockStore + ?Sized, P: PointerStore + ?Sized> Filesystem<B, P> {
    /// Uploads a file from `reader`, streaming: one chunk (5 MiB) is read
    /// while the previous one is encrypted and stored, so memory stays
    /// bounded whatever the size. An existing file of that name is
    /// replaced (atomically, when the upload commits); an existing
    /// directory is an error. Not cancel-safe: a dropped upload leaves
    /// unreferenced blocks for garbage collection and the old tree intact.
    pub async fn upload<R>(
        &self,
        path: &str,
        mut reader: R,
        options: UploadOptions,
    ) -> Result<Entry>
    where
        R: AsyncRead + Unpin + Send,
    {
        let (dir_path, name) = split_parent(path)?;
        let (dir, signer, side) = self.new_file_target(&View::default(), &dir_path).await?;
        let tx = self.blocks().start_transaction(&self.root.owner).await?;
        let outcome = async {
            let fresh = Fresh::new(dir.cap.owner, dir.cap.writer);
            let mut sink = FileSink::new(fresh, signer.clone(), tx);
            let first = read_chunk(&mut reader).await?;
            self.store_chunks(&mut reader, &mut sink, Some(first), false)
                .await?;
            let size = sink.size;
            let (link, chunks) = sink.finish(self, &side, &name, &options).await?;
            self.link_file(tx, &dir_path, &name, &side, &signer, &link, &chunks)
                .await?;
            Ok(options.entry(name.clone(), size))
        }
        .await;
        let _ = self.blocks().close_transaction(&self.root.owner, &tx).await;
        outcome
    }

    /// Seals and stores `data` and every further chunk of `reader` into
    /// `sink`, as a pipeline: up to three chunks being stored, chunk k + 1
    /// being sealed and chunk k + 2 being read, so both cores stay busy
    /// and the server's write latency overlaps (three puts kept the cores
    /// 82-85% busy against 75-78% for two); at most six chunks are in
    /// memory. `data` is sealed even when empty (chunk 0 always exists).
    ///
    /// With `progress`, the chunks stored so far are committed about every
    /// [`PROGRESS_EVERY`] while the pipeline runs (and whenever every put
    /// is done while the input is read), and once more when it fails, so
    /// an interrupted upload can resume after them. Only a run of
    /// chunks from the front is committed (puts finish in order), so the
    /// first missing chunk is where a resume starts. Uncommitted chunks
    /// stay in `sink` for the file's final commit.
    pub(super) async fn store_chunks<R>(
        &self,
        reader: &mut R,
        sink: &mut FileSink,
        data: Option<Vec<u8>>,
        progress: bool,
    ) -> Result<()>
    where
        R: AsyncRead + Unpin + Send,
    {
        use futures::StreamExt as _;
        let (signer, tx) = (sink.signer.clone(), sink.tx);
        // Each put answers whether its chunk has a node to link (all but
        // chunk 0, whose node is written last).
        let mut puts = futures::stream::FuturesOrdered::new();
        // Chunk nodes stored and not yet committed: the first `stored` of
        // the sink's changes.
        let mut stored = 0usize;
        let commit = |plan: Plan| Box::pin(async move { self.apply(&plan).await });
        let mut committing = None;
        let mut last_commit = std::time::Instant::now();
        let mut data = data;
        let mut sealed: Option<SealedChunk> = None;
        // Set when a put fails: the puts after it are not a run from the
        // front, so none of them may be committed.
        let mut put_failed = false;
        let outcome: Result<()> = async {
            loop {
                if let Some(chunk) = sealed.take() {
                    let node = matches!(chunk.kind, SealedKind::Node(..));
                    let blocks = sink.record(chunk);
                    let put = self.put_blocks(&signer, tx, blocks);
                    puts.push_back(async move { put.await.map(|_| node) });
                }
                let more = data.as_ref().is_some_and(|d| d.len() as u64 == CHUNK_SIZE);
                let sealing = data.take().map(|d| sink.seal(d));
                let reading = &mut *reader;
                let work = async move {
                    tokio::join!(
                        async move {
                            match sealing {
                                Some(job) => job.await.map(Some),
                                None => Ok(None),
                            }
                        },
                        async move {
                            if more {
                                read_chunk(reading).await.map(Some)
                            } else {
                                Ok(None)
                            }
                        },
                    )
                };
                let mut work = std::pin::pin!(work);
                // Seal and read while the puts in flight progress; go on once
                // at most two are in flight beside the next one.
                let mut finished = None;
                let (next_sealed, next_data) = loop {
                    match finished.take() {
                        Some(done) if puts.len() <= 2 => break done,
                        other => finished = other,
                    }
                    // Also when no put is in flight: the input is slower than
                    // the server, and a commit costs nothing in waiting
                    // (no timer: the caller's runtime may have none).
                    if progress
                        && committing.is_none()
                        && stored > 0
                        && (puts.is_empty() || last_commit.elapsed() >= PROGRESS_EVERY)
                    {
                        let changes = sink.take_first_mutations(stored);
                        stored = 0;
                        committing = Some(commit(Plan::new(signer.clone(), changes)));
                        last_commit = std::time::Instant::now();
                    }
                    let waiting = async {
                        match committing.as_mut() {
                            Some(c) => c.await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        done = &mut work, if finished.is_none() => finished = Some(done),
                        Some(put) = puts.next(), if !puts.is_empty() => {
                            put_failed = put.is_err();
                            stored += usize::from(put?);
                        }
                        committed = waiting => {
                            committing = None;
                            committed?;
                        }
                    }
                };
                sealed = next_sealed?;
                data = next_data?.filter(|d| !d.is_empty());
                if sealed.is_none() {
                    return Ok(());
                }
            }
        }
        .await;
        let outcome = match outcome {
            Ok(()) => {
                let mut last = Ok(());
                while let Some(put) = puts.next().await {
                    last = put.map(|_| ());
                    if last.is_err() {
                        put_failed = true;
                        break;
                    }
                }
                last
            }
            Err(e) => Err(e),
        };
        let outcome = match committing.take() {
            Some(c) => outcome.and(c.await),
            None => outcome,
        };
        if let Err(e) = outcome {
            if progress {
                // Keep what was stored before the failure: the puts still
                // in flight, up to the first that fails, then one commit.
                if !put_failed {
                    while let Some(Ok(node)) = puts.next().await {
                        stored += usize::from(node);
                    }
                }
                if stored > 0 {
                    let changes = sink.take_first_mutations(stored);
                    // The failure is what the caller needs to see.
                    let _ = self.apply(&Plan::new(signer.clone(), changes)).await;
                }
            }
            return Err(e);
        }
        Ok(())
    }

    /// The writable directory a new file or copy will go in, its writer's
    /// key and what the new child needs of it; checked before any data is
    /// written. The directory's listing is not read here: it is read once,
    /// when the link is added.
    pub(super) async fn new_file_target(
        &self,
        view: &View,
        dir_path: &str,
    ) -> Result<(Found, SigningKeyPair, ParentSide)> {
        let dir = self.resolve(view, dir_path).await?;
        dir.require_dir()?;
        let signer = dir.signer()?;
        let side = ParentSide::of(&dir)?;
        Ok((dir, signer, side))
    }

    /// Commits a new file: its chunks' changes, and its link in the
    /// directory at `dir_path` (the directory `side` describes), replacing
    /// a file of the same name. Re-plans against concurrent changes.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn link_file(
        &self,
        tx: TransactionId,
        dir_path: &str,
        name: &str,
        side: &ParentSide,
        signer: &SigningKeyPair,
        link: &ChildLink,
        chunks: &[Mutation],
    ) -> Result<()> {
        self.link_files(
            tx,
            dir_path,
            side,
            signer,
            &[(name.to_string(), link.clone())],
            chunks,
            &[],
            None,
        )
        .await
    }

    /// [`link_file`](Self::link_file) for many files in one directory, in
    /// one commit, storing `blocks` (the files' nodes, not stored yet) in
    /// the commit's put. The first plan reads the trees through `view`
    /// when given (what the caller read moments ago: one pointer read
    /// fewer); a plan made again after a lost race reads them afresh.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn link_files(
        &self,
        tx: TransactionId,
        dir_path: &str,
        side: &ParentSide,
        signer: &SigningKeyPair,
        links: &[(String, ChildLink)],
        chunks: &[Mutation],
        blocks: &[SignedBlock],
        view: Option<View>,
    ) -> Result<()> {
        let mut first = view;
        self.transact_in(tx, |_tx| {
            let view = first.take().unwrap_or_default();
            async move {
                let (dir, dir_chunks) = self.writable_dir(&view, dir_path).await?;
                if dir.cap.label != side.link.label {
                    return Err(Error::NotFound {
                        path: dir_path.to_string(),
                    });
                }
                let mut mutations = chunks.to_vec();
                let mut existing = Vec::with_capacity(links.len());
                for (name, _) in links {
                    existing.push(self.find_child(&view, &dir, &dir_chunks, name).await?);
                }
                let mut edit = DirEdit::new(dir, dir_chunks);
                for ((_, link), existing) in links.iter().zip(existing) {
                    match existing {
                        Some((_, _, old)) if old.base.dir => {
                            return Err(Error::IsADirectory { path: old.path })
                        }
                        Some((c, i, old)) => {
                            mutations.extend(self.removals(&view, &old).await?);
                            edit.replace(c, i, link.clone());
                        }
                        None => edit.add(link.clone()),
                    }
                }
                let (edited, edit_blocks) = edit.finish_unstored(self, signer).await?;
                mutations.extend(edited);
                let plan = Plan::new(signer.clone(), mutations)
                    .with_blocks(blocks.to_vec())
                    .with_blocks(edit_blocks);
                Ok((plan, ()))
            }
        })
        .await
    }

    /// Writes many files into the directory at `dir_path` in one commit:
    /// each is sealed as [`upload`](Self::upload) would, their blocks are
    /// stored in a few large puts, and one pointer update links them all
    /// (files of the same name are replaced). The way to add thousands of
    /// small files quickly; nothing is visible until the commit.
    pub async fn write_files(
        &self,
        dir_path: &str,
        files: Vec<(String, Vec<u8>, UploadOptions)>,
    ) -> Result<Vec<Entry>> {
        let mut names = std::collections::HashSet::new();
        for (name, _, _) in &files {
            node::check_name(name)?;
            if !names.insert(name.as_str()) {
                return Err(Error::BadPath {
                    path: name.clone(),
                    reason: "the same name twice in one batch",
                });
            }
        }
        // The transaction opens while the directory is found.
        let view = View::default();
        let (target, tx) = futures::future::join(
            self.new_file_target(&view, dir_path),
            self.blocks().start_transaction(&self.root.owner),
        )
        .await;
        let tx = tx?;
        let (dir, signer, side) = match target {
            Ok(target) => target,
            Err(e) => {
                let _ = self.blocks().close_transaction(&self.root.owner, &tx).await;
                return Err(e);
            }
        };
        let outcome = async {
            let mut pending: Vec<SignedBlock> = Vec::new();
            let mut pending_bytes = 0usize;
            let mut specs = Vec::with_capacity(files.len());
            let mut firsts = Vec::with_capacity(files.len());
            let mut links = Vec::with_capacity(files.len());
            let mut mutations = Vec::new();
            let mut entries = Vec::with_capacity(files.len());
            for (name, data, options) in files {
                let mut sink = FileSink::new(
                    Fresh::new(dir.cap.owner, dir.cap.writer),
                    signer.clone(),
                    tx,
                );
                let size = data.len() as u64;
                let mut rest = &data[..];
                loop {
                    let n = rest.len().min(CHUNK_SIZE as usize);
                    let sealed = sink.seal(rest[..n].to_vec()).await?;
                    for block in sink.record(sealed) {
                        pending_bytes += block.data.len();
                        pending.push(block);
                    }
                    rest = &rest[n..];
                    if pending_bytes >= BATCH_PUT_BYTES {
                        self.put_blocks(&signer, tx, std::mem::take(&mut pending))
                            .await?;
                        pending_bytes = 0;
                    }
                    if rest.is_empty() {
                        break;
                    }
                }
                let (spec, label) = sink.first_node(&side, &name, &options)?;
                specs.push(spec);
                firsts.push(label);
                links.push((name.clone(), sink.fresh.link(&side, &name)));
                mutations.append(&mut sink.mutations);
                entries.push(options.entry(name, size));
            }
            // The files' first nodes, and the last of their data when it
            // is small, go up in the commit's put: a batch of small files
            // costs one put.
            if pending_bytes > DEFERRED_PUT_BYTES {
                self.put_blocks(&signer, tx, std::mem::take(&mut pending))
                    .await?;
            }
            let (cids, nodes) = self.build_nodes(&signer, specs).await?;
            pending.extend(nodes);
            mutations.extend(
                firsts
                    .into_iter()
                    .zip(cids)
                    .map(|(label, cid)| Mutation::create(label, cid)),
            );
            self.link_files(
                tx,
                dir_path,
                &side,
                &signer,
                &links,
                &mutations,
                &pending,
                Some(view),
            )
            .await?;
            Ok(entries)
        }
        .await;
        let _ = self.blocks().close_transaction(&self.root.owner, &tx).await;
        outcome
    }

    /// Uploads `data` as a file (see [`upload`](Self::upload)).
    pub async fn write_file(&self, path: &str, data: &[u8]) -> Result<Entry> {
        self.upload(path, data, UploadOptions::default()).await
    }
}
