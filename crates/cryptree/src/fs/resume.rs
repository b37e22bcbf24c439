//! Resumable uploads: the upload's keys are recorded in the user's own
//! space, its chunks are committed as they are stored, and a retry finds
//! the record and continues from the first chunk that is missing.

use std::io::SeekFrom;

use peergos_blockstore::BlockStore;
use peergos_keys::{sha256, SymmetricKey};
use peergos_pointers::PointerStore;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncSeek, AsyncSeekExt};

use super::write::{read_chunk, split_parent, FileSink, Fresh, UploadOptions};
use super::{child_path, Entry, Filesystem, View};
use crate::node::{self, chunk_count, CHUNK_SIZE};
use crate::{AbsoluteCapability, Error, Label, Result};

/// The hidden directory (under the root) holding upload records.
pub const UPLOADS_DIR: &str = ".uploads";

/// What a retry needs to continue an upload. Stored, encrypted like any
/// file, at `/.uploads/<id>`.
#[derive(Serialize, Deserialize)]
struct UploadRecord {
    /// Where the file goes.
    #[serde(rename = "p")]
    path: String,
    /// The destination directory's label (the record is void elsewhere).
    #[serde(rename = "d")]
    dir: Label,
    /// The input's length.
    #[serde(rename = "n")]
    len: u64,
    /// SHA-256 of the input's first chunk.
    #[serde(rename = "h", with = "serde_bytes")]
    first: [u8; 32],
    /// The new file's capability (writable).
    #[serde(rename = "c")]
    cap: AbsoluteCapability,
    /// Its write key.
    #[serde(rename = "w")]
    write: SymmetricKey,
    /// Its data key.
    #[serde(rename = "k")]
    second: SymmetricKey,
    /// Its stream secret.
    #[serde(rename = "x", with = "serde_bytes")]
    stream: [u8; 32],
}

fn record_path(target: &str) -> String {
    let digest = sha256(target.as_bytes());
    let id: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("/{UPLOADS_DIR}/{id}")
}

impl<B: BlockStore + ?Sized, P: PointerStore + ?Sized> Filesystem<B, P> {
    /// Uploads a seekable input (such as a file) so that an interrupted
    /// upload can resume: the new file's keys are recorded in a hidden
    /// file under `/.uploads`, every chunk is committed as soon as it is
    /// stored, and calling this again with the same destination and an
    /// input of the same length whose first 5 MiB hash the same continues
    /// from the first missing chunk, producing the same file. The record
    /// is removed when the upload completes. An input of one chunk (5 MiB)
    /// or less is uploaded at once, without a record. Otherwise as
    /// [`upload`](Self::upload).
    pub async fn upload_resumable<R>(
        &self,
        path: &str,
        mut reader: R,
        options: UploadOptions,
    ) -> Result<Entry>
    where
        R: AsyncRead + AsyncSeek + Unpin + Send,
    {
        let (dir_path, name) = split_parent(path)?;
        let target = child_path(&dir_path, &name);
        let (dir, signer, side) = self.new_file_target(&View::default(), &dir_path).await?;
        let len = reader.seek(SeekFrom::End(0)).await.map_err(Error::Read)?;
        reader.seek(SeekFrom::Start(0)).await.map_err(Error::Read)?;
        let first = read_chunk(&mut reader).await?;
        if len <= CHUNK_SIZE {
            // One chunk, committed at once: nothing to resume, no record.
            return self.upload(path, first.as_slice(), options).await;
        }
        let first_hash = sha256(&first);
        let record = record_path(&target);

        let resumed = match self.load_record(&record).await? {
            Some(r)
                if r.path == target
                    && r.dir == dir.cap.label
                    && r.cap.writer == dir.cap.writer
                    && r.len == len
                    && r.first == first_hash =>
            {
                let fresh = Fresh {
                    cap: r.cap,
                    write: r.write,
                    second: r.second,
                    stream: r.stream,
                };
                // None: every chunk, the first included, is in place, so
                // that upload completed and this is a new one.
                self.first_missing_chunk(&fresh, len)
                    .await?
                    .map(|index| (fresh, index))
            }
            _ => None,
        };
        let (fresh, start) = match resumed {
            Some(found) => found,
            None => {
                let fresh = Fresh::new(dir.cap.owner, dir.cap.writer);
                self.save_record(
                    &record,
                    &UploadRecord {
                        path: target.clone(),
                        dir: dir.cap.label,
                        len,
                        first: first_hash,
                        cap: fresh.cap.clone(),
                        write: fresh.write.clone(),
                        second: fresh.second.clone(),
                        stream: fresh.stream,
                    },
                )
                .await?;
                (fresh, 1)
            }
        };

        let tx = self.blocks().start_transaction(&self.root.owner).await?;
        let outcome = async {
            let mut sink = FileSink::new(fresh, signer.clone(), tx);
            let more = first.len() as u64 == CHUNK_SIZE;
            sink.push(self, first).await?;
            if more {
                if start > 1 {
                    sink.skip_to(start, (start * CHUNK_SIZE).min(len));
                    reader
                        .seek(SeekFrom::Start(start * CHUNK_SIZE))
                        .await
                        .map_err(Error::Read)?;
                }
                // Chunk 0 is committed last, with the file; later ones are
                // committed as they are stored.
                let next = read_chunk(&mut reader).await?;
                if !next.is_empty() {
                    self.store_chunks(&mut reader, &mut sink, Some(next), true)
                        .await?;
                }
            }
            let size = sink.size();
            let (link, chunks) = sink.finish(self, &side, &name, &options).await?;
            self.link_file(tx, &dir_path, &name, &side, &signer, &link, &chunks)
                .await?;
            Ok::<_, Error>(size)
        }
        .await;
        let _ = self.blocks().close_transaction(&self.root.owner, &tx).await;
        let size = outcome?;
        match self.rm(&record).await {
            Ok(()) | Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        Ok(options.entry(name, size))
    }

    /// The upload record at `path`, if there is a readable one. A record
    /// that does not decode is treated as absent (it is replaced).
    async fn load_record(&self, path: &str) -> Result<Option<UploadRecord>> {
        let mut bytes = Vec::new();
        match self.download(path, &mut bytes).await {
            Ok(_) => Ok(peergos_ipld::cbor::from_slice(&bytes).ok()),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn save_record(&self, path: &str, record: &UploadRecord) -> Result<()> {
        let hidden = UploadOptions {
            hidden: true,
            ..UploadOptions::default()
        };
        match self.mkdir_with(&format!("/{UPLOADS_DIR}"), &hidden).await {
            Ok(_) | Err(Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
        let bytes = peergos_ipld::cbor::to_vec(record)?;
        self.upload(path, bytes.as_slice(), hidden).await?;
        Ok(())
    }

    /// The first chunk of a recorded upload that is not stored yet (chunks
    /// after the first are committed as they go; the first is committed
    /// last), or None if the whole file is there.
    async fn first_missing_chunk(&self, fresh: &Fresh, len: u64) -> Result<Option<u64>> {
        let view = View::default();
        let writer = fresh.cap.writer;
        let first_bat = fresh.bat();
        if self
            .fetch(&view, &writer, &fresh.cap.label, Some(&first_bat))
            .await?
            .is_some()
        {
            return Ok(None);
        }
        let mut label = fresh.cap.label;
        for index in 1..chunk_count(len) {
            let bat;
            (label, bat) = node::next_chunk(&fresh.stream, &label);
            if self
                .fetch(&view, &writer, &label, Some(&bat))
                .await?
                .is_none()
            {
                return Ok(Some(index));
            }
        }
        Ok(Some(chunk_count(len)))
    }
}
