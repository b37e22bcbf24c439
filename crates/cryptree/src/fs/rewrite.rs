//! Changing a file in place: writes at an offset, appends and truncation,
//! rewriting only the chunks whose bytes or length change.

use bytes::Bytes;
use futures::{FutureExt as _, StreamExt as _};
use peergos_blockstore::BlockStore;
use peergos_keys::Bat;
use peergos_pointers::PointerStore;

use super::write::{now_ms, Content, Mutation, NodeSpec, Plan};
use super::{Entry, Filesystem, View};
use crate::node::{self, chunk_count, chunk_len, BasePart, ParentPart, CHUNK_SIZE};
use crate::{Error, Result};

/// Rewritten chunks being sealed and stored at once: both cores seal while
/// the server's write latency overlaps, and memory stays bounded (four
/// sealed chunks, 20 MiB). Four against three gave a mount's sequential
/// write about a tenth more (docs/BENCHMARKS.md, FUSE).
const PUTS_IN_FLIGHT: usize = 4;

/// A change to a file's bytes, applied in one commit: first a cut or
/// zero-extension to `size` (if set), then each write at its offset (None:
/// at the end), in order, growing the file with zeros where a write starts
/// past the end.
///
/// Writes are shared [`Bytes`]: a chunk one write covers whole (and that
/// needs no padding) is sealed straight from the caller's buffer, with no
/// copy.
#[derive(Clone, Debug, Default)]
pub struct Patch {
    /// The size to cut or extend to before the writes.
    pub size: Option<u64>,
    /// Bytes to write, each at an offset (None: at the current end).
    pub writes: Vec<(Option<u64>, Bytes)>,
    /// The modification time to record, milliseconds since the Unix epoch
    /// (default: now).
    pub modified: Option<i64>,
}

impl<B: BlockStore + ?Sized, P: PointerStore + ?Sized> Filesystem<B, P> {
    /// Writes `data` at `offset`, growing the file (zero-filled) if the
    /// offset is past its end. Only the chunks the write overlaps (and the
    /// first chunk, for the size) are rewritten.
    pub async fn write_at(&self, path: &str, offset: u64, data: &[u8]) -> Result<Entry> {
        self.patch(
            path,
            &Patch {
                writes: vec![(Some(offset), Bytes::copy_from_slice(data))],
                ..Patch::default()
            },
        )
        .await
    }

    /// Appends `data` to the end of the file.
    pub async fn append(&self, path: &str, data: &[u8]) -> Result<Entry> {
        self.patch(
            path,
            &Patch {
                writes: vec![(None, Bytes::copy_from_slice(data))],
                ..Patch::default()
            },
        )
        .await
    }

    /// Cuts the file to `size` bytes, or extends it with zeros.
    pub async fn truncate(&self, path: &str, size: u64) -> Result<Entry> {
        self.patch(
            path,
            &Patch {
                size: Some(size),
                ..Patch::default()
            },
        )
        .await
    }

    /// Sets the file's modification time without changing its bytes.
    pub async fn set_modified(&self, path: &str, modified: i64) -> Result<Entry> {
        self.patch(
            path,
            &Patch {
                modified: Some(modified),
                ..Patch::default()
            },
        )
        .await
    }

    /// Applies a [`Patch`] in one commit. Only the chunks whose bytes or
    /// length change (and the first chunk, for the size and time) are
    /// rewritten; a chunk the writes cover whole is not read first.
    pub async fn patch(&self, path: &str, change: &Patch) -> Result<Entry> {
        self.transact(|tx| {
            async move {
                let view = View::default();
                let file = self.resolve(&view, path).await?;
                file.require_file()?;
                let signer = file.signer()?;
                let old_size = file.props.size;
                // Where each write lands, and the sizes before and after.
                let base_size = change.size.unwrap_or(old_size);
                let mut new_size = base_size;
                let mut writes: Vec<(u64, &Bytes)> = Vec::with_capacity(change.writes.len());
                for (offset, data) in &change.writes {
                    let offset = offset.unwrap_or(new_size);
                    let end = offset
                        .checked_add(data.len() as u64)
                        .ok_or(Error::BadPath {
                            path: path.to_string(),
                            reason: "write past the largest file size",
                        })?;
                    new_size = new_size.max(end);
                    writes.push((offset, data));
                }
                let old_n = chunk_count(old_size);
                let new_n = chunk_count(new_size);
                let mut props = file.props.clone();
                props.size = new_size;
                props.modified = change.modified.unwrap_or_else(now_ms);
                let mut mutations = Vec::new();
                // Rewritten chunks are sealed and stored PUTS_IN_FLIGHT at a
                // time while the next is prepared; their links follow, in
                // order.
                let mut planned = Vec::new();
                let mut written = Vec::new();
                let mut puts = futures::stream::FuturesOrdered::new();
                let data_key = file.base.second.clone();
                // The chunk chain, long enough for the old and the new size.
                let mut chain = Vec::new();
                let (mut label, mut bat) = (
                    file.cap.label,
                    file.cap.bat.clone().unwrap_or_else(Bat::random),
                );
                for k in 0..old_n.max(new_n) {
                    if k > 0 {
                        (label, bat) = node::next_chunk(&props.stream, &label);
                    }
                    chain.push((k, label, bat.clone()));
                }
                for (k, label, bat) in chain {
                    if k >= new_n {
                        let (cid, _) = self.file_chunk(&view, &file, k, &label, &bat).await?;
                        mutations.push(Mutation {
                            label,
                            expected: Some(cid),
                            new: None,
                        });
                        continue;
                    }
                    let start = k * CHUNK_SIZE;
                    let old_len = if k < old_n { chunk_len(old_size, k) } else { 0 };
                    let new_len = chunk_len(new_size, k);
                    // Old bytes that survive the cut, and the parts of the
                    // writes inside this chunk: (offset in chunk, bytes).
                    let kept = (old_len as u64).min(base_size.saturating_sub(start)) as usize;
                    // (Shared slices of the writes, not copies.)
                    let pieces: Vec<(usize, Bytes)> = writes
                        .iter()
                        .filter_map(|&(offset, data)| {
                            let end = offset + data.len() as u64;
                            let a = offset.max(start);
                            let b = end.min(start + new_len as u64);
                            (a < b).then(|| {
                                let from = (a - offset) as usize;
                                let to = (b - offset) as usize;
                                ((a - start) as usize, data.slice(from..to))
                            })
                        })
                        .collect();
                    // The chunk's bytes as one shared slice, when the last
                    // piece (later writes win) covers it whole and it needs
                    // no padding: every chunk but a file's last, when the
                    // file is written front to back.
                    let whole = pieces
                        .last()
                        .filter(|(at, bytes)| *at == 0 && bytes.len() == new_len)
                        .filter(|_| node::padded_len(new_len) == new_len)
                        .map(|(_, bytes)| bytes.clone());
                    let content_same = old_len == new_len && kept == old_len && pieces.is_empty();
                    if content_same && k != 0 {
                        continue;
                    }
                    let old = if k < old_n {
                        Some(self.file_chunk(&view, &file, k, &label, &bat).await?)
                    } else {
                        None
                    };
                    let content = match (&old, content_same, whole) {
                        (Some((_, block)), true, _) => Content::Stored {
                            inline: block.inline.clone(),
                            fragments: block.fragments.clone(),
                        },
                        (_, false, Some(whole)) => Content::Plain {
                            key: data_key.clone(),
                            padded: whole,
                        },
                        _ => {
                            let mut data = match &old {
                                Some((_, block)) if kept > 0 && !covers(&pieces, new_len) => {
                                    let mut d = self
                                        .content_parts(&data_key, &label, Some(&bat), block)
                                        .await?
                                        .concat();
                                    d.truncate(kept);
                                    d
                                }
                                _ => Vec::new(),
                            };
                            data.truncate(kept);
                            data.reserve_exact(new_len + node::PAD_MULTIPLE - data.len());
                            // In order, so later writes win. A piece that
                            // continues the bytes so far (an append, the
                            // common case) is added at the end: nothing is
                            // zeroed only to be overwritten.
                            for &(at, ref bytes) in &pieces {
                                if at > data.len() {
                                    data.resize(at, 0);
                                }
                                let overlap = (data.len() - at).min(bytes.len());
                                data[at..at + overlap].copy_from_slice(&bytes[..overlap]);
                                data.extend_from_slice(&bytes[overlap..]);
                            }
                            data.resize(new_len, 0);
                            Content::Plain {
                                key: data_key.clone(),
                                padded: node::pad_data(data).into(),
                            }
                        }
                    };
                    let write_key = file.cap.write.as_ref().ok_or(Error::NotWritable)?;
                    let base = match &old {
                        Some((_, block)) => block.base.clone(),
                        None => BasePart {
                            dir: false,
                            second: data_key.clone(),
                            signer: Some(BasePart::seal_signer(write_key, &label, &signer)),
                        }
                        .seal(&file.cap.read, &label)?,
                    };
                    let parent = if k == 0 {
                        ParentPart {
                            parent: file.parent.parent.clone(),
                            props: Some(props.clone()),
                        }
                        .seal(&file.cap.read, &label)?
                    } else {
                        match &old {
                            Some((_, block)) => block.parent.clone(),
                            None => ParentPart {
                                parent: None,
                                props: None,
                            }
                            .seal(&file.cap.read, &label)?,
                        }
                    };
                    let spec = NodeSpec {
                        label,
                        bat,
                        base,
                        parent,
                        content,
                    };
                    planned.push((label, old.map(|(cid, _)| cid)));
                    puts.push_back(self.write_nodes(&signer, tx, vec![spec]));
                    // Start sealing it now, not when the pipeline is full:
                    // the next chunk is assembled meanwhile.
                    if let Some(Some(cids)) = puts.next().now_or_never() {
                        written.extend(cids?);
                    }
                    while puts.len() >= PUTS_IN_FLIGHT {
                        if let Some(cids) = puts.next().await {
                            written.extend(cids?);
                        }
                    }
                }
                while let Some(cids) = puts.next().await {
                    written.extend(cids?);
                }
                drop(puts);
                if written.len() != planned.len() {
                    return Err(Error::Task("a chunk write returned no node".into()));
                }
                for ((label, expected), cid) in planned.into_iter().zip(written) {
                    mutations.push(Mutation {
                        label,
                        expected,
                        new: Some(cid),
                    });
                }
                let mut entry = file.entry();
                entry.size = new_size;
                entry.modified = props.modified;
                Ok((Plan::new(signer, mutations), entry))
            }
        })
        .await
    }
}

/// Whether the pieces together cover `0..len`.
fn covers(pieces: &[(usize, Bytes)], len: usize) -> bool {
    let mut ranges: Vec<(usize, usize)> =
        pieces.iter().map(|(at, b)| (*at, at + b.len())).collect();
    ranges.sort_unstable();
    let mut reached = 0;
    for (a, b) in ranges {
        if a > reached {
            return false;
        }
        reached = reached.max(b);
    }
    reached >= len
}
