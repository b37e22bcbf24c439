//! Bytes written through an open file and not yet committed.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use peergos_cryptree::Patch;

/// Once an extent grows past this many bytes by appends, it is a file being
/// written front to back: room for [`STREAM_ROOM`] more is reserved at
/// once, so the extent is not copied each time it doubles.
const STREAM_FROM: usize = 1 << 20;

/// The room reserved for a streaming extent: more than the vfs gathers
/// before it commits (six 5 MiB chunks). Only the pages written are ever
/// touched, so the rest costs address space, not memory.
const STREAM_ROOM: usize = 32 << 20;

/// A file change waiting to be committed: first a cut or zero-extension of
/// the stored file to `size` (if set), then extents of new bytes over it,
/// zero-filling any gap. Extents never overlap or touch: a write next to or
/// over an extent merges into it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dirty {
    size: Option<u64>,
    extents: BTreeMap<u64, Vec<u8>>,
    bytes: usize,
    modified: Option<i64>,
    /// An emptied buffer from a committed change, for the next streaming
    /// extent: its pages are already the process's, so filling it again
    /// takes no page faults (a fresh buffer per commit took one per
    /// page written).
    spare: Vec<u8>,
}

/// A truncation that cannot be folded into the waiting change: commit the
/// change first, then truncate.
#[derive(Debug, PartialEq, Eq)]
pub struct CommitFirst;

impl Dirty {
    /// Nothing waits.
    pub fn is_empty(&self) -> bool {
        self.size.is_none() && self.extents.is_empty() && self.modified.is_none()
    }

    /// Bytes of data waiting.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The file's length once applied to a stored file of `stored` bytes.
    pub fn len(&self, stored: u64) -> u64 {
        let base = self.size.unwrap_or(stored);
        let end = self
            .extents
            .iter()
            .next_back()
            .map_or(0, |(at, data)| at + data.len() as u64);
        base.max(end)
    }

    /// Records bytes written at `offset`.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let end = offset + data.len() as u64;
        // The extent that starts at or before `offset` and reaches it
        // absorbs the write; so do all later extents it reaches.
        let mut start = offset;
        let mut merged = Vec::new();
        if let Some((&at, existing)) = self.extents.range(..=offset).next_back() {
            if at + existing.len() as u64 >= offset {
                start = at;
                let existing = self.extents.remove(&at).unwrap_or_default();
                self.bytes -= existing.len();
                merged = existing;
            }
        }
        if merged.is_empty() && self.spare.capacity() >= data.len() {
            merged = std::mem::take(&mut self.spare);
        }
        let from = (offset - start) as usize;
        if from == merged.len() {
            // The common case, an append: no zero-fill to overwrite.
            if merged.len() >= STREAM_FROM && merged.capacity() - merged.len() < data.len() {
                merged.reserve(STREAM_ROOM.max(data.len()));
            }
            merged.extend_from_slice(data);
        } else {
            if merged.len() < from + data.len() {
                merged.resize(from + data.len(), 0);
            }
            merged[from..from + data.len()].copy_from_slice(data);
        }
        let later: Vec<u64> = self
            .extents
            .range(offset..=end)
            .map(|(&at, _)| at)
            .collect();
        for at in later {
            let Some(next) = self.extents.remove(&at) else {
                continue;
            };
            self.bytes -= next.len();
            let next_end = at + next.len() as u64;
            if next_end > end {
                // Keep the part of the later extent past the write.
                let keep = (end - at) as usize;
                merged.extend_from_slice(&next[keep..]);
            }
        }
        self.bytes += merged.len();
        self.extents.insert(start, merged);
    }

    /// Takes the waiting change out, leaving nothing waiting (the spare
    /// buffer stays).
    pub fn take_change(&mut self) -> Dirty {
        let spare = std::mem::take(&mut self.spare);
        let change = std::mem::take(self);
        self.spare = spare;
        change
    }

    /// Takes the waiting change out up to the last multiple of `chunk` its
    /// bytes reach, leaving the bytes past it waiting: a background commit
    /// then stores whole chunks only, where a commit ending inside a chunk
    /// would make the next one read that chunk back and seal it again.
    /// Takes everything when a cut is pending (it must apply first) or no
    /// bytes lie past a multiple of `chunk`.
    pub fn take_whole_chunks(&mut self, chunk: u64) -> Dirty {
        let end = match self.extents.iter().next_back() {
            Some((&at, data)) => at + data.len() as u64,
            None => return self.take_change(),
        };
        let boundary = end / chunk * chunk;
        let below = self.extents.range(..boundary).next().is_some();
        if self.size.is_some() || end == boundary || !below {
            return self.take_change();
        }
        let mut past = self.extents.split_off(&boundary);
        if let Some((&at, data)) = self.extents.iter_mut().next_back() {
            let keep = (boundary - at) as usize;
            if data.len() > keep {
                // The spare buffer (a committed change's, so its pages are
                // the process's) takes the bytes past the boundary, and
                // later appends after them.
                let mut tail = std::mem::take(&mut self.spare);
                tail.clear();
                tail.extend_from_slice(&data[keep..]);
                data.truncate(keep);
                past.insert(boundary, tail);
            }
        }
        let past_bytes: usize = past.values().map(Vec::len).sum();
        let taken = Dirty {
            size: None,
            extents: std::mem::replace(&mut self.extents, past),
            bytes: self.bytes - past_bytes,
            modified: None,
            spare: Vec::new(),
        };
        self.bytes = past_bytes;
        taken
    }

    /// Keeps the largest buffer of `done`, a change that was committed, for
    /// the next streaming extent, unless something still shares it.
    pub fn recycle(&mut self, done: Arc<Dirty>) {
        let Ok(done) = Arc::try_unwrap(done) else {
            return;
        };
        let Some(mut buf) = done
            .extents
            .into_values()
            .chain([done.spare])
            .max_by_key(Vec::capacity)
        else {
            return;
        };
        if buf.capacity() >= STREAM_FROM && buf.capacity() > self.spare.capacity() {
            buf.clear();
            self.spare = buf;
        }
    }

    /// Records a cut or zero-extension to `size`. It folds in only when no
    /// bytes wait and it does not extend past an earlier cut (which would
    /// need the bytes between to read as zeros).
    pub fn truncate(&mut self, size: u64) -> Result<(), CommitFirst> {
        if !self.extents.is_empty() || self.size.is_some_and(|earlier| size > earlier) {
            return Err(CommitFirst);
        }
        self.size = Some(size);
        Ok(())
    }

    /// Records the modification time to commit (milliseconds).
    pub fn set_modified(&mut self, modified: i64) {
        self.modified = Some(modified);
    }

    /// The modification time to commit, if one was set.
    pub fn modified(&self) -> Option<i64> {
        self.modified
    }

    /// The whole content, when the change describes a file from nothing:
    /// no bytes kept from before and one run of bytes from offset 0 (or
    /// none). A new file can then be stored in one upload.
    pub fn from_empty(&self) -> Option<&[u8]> {
        if self.size.is_some_and(|s| s > 0) {
            return None;
        }
        match self.extents.len() {
            0 => Some(&[]),
            1 => self.extents.get(&0).map(Vec::as_slice),
            _ => None,
        }
    }

    /// The change as one [`Patch`]. Its writes share the extents' buffers
    /// (no copy), which are the change's again once the patch is dropped.
    pub fn patch(self: &Arc<Self>) -> Patch {
        Patch {
            size: self.size,
            writes: self
                .extents
                .keys()
                .map(|&at| {
                    let extent = Extent {
                        change: Arc::clone(self),
                        at,
                    };
                    (Some(at), Bytes::from_owner(extent))
                })
                .collect(),
            modified: self.modified,
        }
    }

    /// Turns `buf`, the file's bytes at `offset` before this change (a
    /// file of `stored` bytes; `buf` holds what of `offset..offset + want`
    /// exists), into the bytes after it: at most `want`, fewer at the new
    /// end.
    pub fn overlay(&self, stored: u64, offset: u64, want: usize, buf: &mut Vec<u8>) {
        let kept = self.size.map_or(stored, |s| s.min(stored));
        let new_len = self.len(stored);
        if kept < offset + buf.len() as u64 {
            buf.truncate(kept.saturating_sub(offset) as usize);
        }
        let visible = new_len.saturating_sub(offset).min(want as u64) as usize;
        buf.resize(visible, 0);
        let end = offset + visible as u64;
        // The extent that starts before `offset` may reach into the range.
        let first = self
            .extents
            .range(..=offset)
            .next_back()
            .map_or(offset, |(&at, _)| at);
        for (&at, data) in self.extents.range(first..end) {
            let a = at.max(offset);
            let b = (at + data.len() as u64).min(end);
            if a < b {
                buf[(a - offset) as usize..(b - offset) as usize]
                    .copy_from_slice(&data[(a - at) as usize..(b - at) as usize]);
            }
        }
    }
}

/// One extent of a shared change, as the owner of a write's [`Bytes`].
struct Extent {
    change: Arc<Dirty>,
    at: u64,
}

impl AsRef<[u8]> for Extent {
    fn as_ref(&self) -> &[u8] {
        self.change.extents.get(&self.at).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What committing a change does to a file (the cryptree's meaning
    /// of its patch).
    fn apply(base: &[u8], change: &Dirty) -> Vec<u8> {
        let patch = Arc::new(change.clone()).patch();
        let mut out = base.to_vec();
        if let Some(size) = patch.size {
            out.resize(size as usize, 0);
        }
        for (at, data) in &patch.writes {
            let at = at.map_or(out.len(), |a| a as usize);
            if out.len() < at + data.len() {
                out.resize(at + data.len(), 0);
            }
            out[at..at + data.len()].copy_from_slice(data);
        }
        out
    }

    /// The writes of a change's patch, owned.
    fn writes(change: &Dirty) -> Vec<(Option<u64>, Vec<u8>)> {
        Arc::new(change.clone())
            .patch()
            .writes
            .into_iter()
            .map(|(at, data)| (at, data.to_vec()))
            .collect()
    }

    #[derive(Clone, Debug)]
    enum Op {
        Write(u16, Vec<u8>),
        Truncate(u16),
        Commit,
        /// A background commit of whole chunks of this many bytes.
        CommitWhole(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..3000u16, proptest::collection::vec(any::<u8>(), 0..700))
                .prop_map(|(at, data)| Op::Write(at, data)),
            1 => (0..3000u16).prop_map(Op::Truncate),
            1 => Just(Op::Commit),
            1 => (1..1000u16).prop_map(Op::CommitWhole),
        ]
    }

    /// A committed change's buffer takes the next streaming extent, so a
    /// long write through a handle reuses two buffers, not one per commit.
    #[test]
    fn a_committed_change_lends_its_buffer_to_the_next() {
        let mut dirty = Dirty::default();
        let piece = vec![7u8; STREAM_FROM];
        for i in 0..3u64 {
            dirty.write(i * STREAM_FROM as u64, &piece);
        }
        let done = dirty.take_change();
        assert!(dirty.is_empty());
        let buffer = done.extents[&0].as_ptr();
        // A change a patch still shares is not taken apart.
        let done = Arc::new(done);
        let held = Arc::clone(&done);
        dirty.recycle(done);
        assert_eq!(dirty.spare.capacity(), 0);
        dirty.recycle(held);
        let at = 3 * STREAM_FROM as u64;
        dirty.write(at, b"next");
        assert_eq!(dirty.extents[&at].as_ptr(), buffer);
        assert_eq!(writes(&dirty), vec![(Some(at), b"next".to_vec())]);
        assert_eq!(dirty.bytes(), 4);
        // Taking the change keeps no spare in it: the next change's spare
        // is whatever this one's commit gives back.
        let change = dirty.take_change();
        assert_eq!(change.spare.capacity(), 0);
    }

    /// A patch's writes are the change's own buffers, which come back to
    /// it once the patch is gone (to be recycled).
    #[test]
    fn a_patch_shares_the_change_buffers() {
        let mut dirty = Dirty::default();
        dirty.write(10, &[5; 3000]);
        dirty.write(9000, &[6; 20]);
        let change = Arc::new(dirty.take_change());
        let patch = change.patch();
        assert_eq!(patch.writes.len(), 2);
        for ((at, data), (stored_at, stored)) in patch.writes.iter().zip(&change.extents) {
            assert_eq!(*at, Some(*stored_at));
            assert_eq!(data.as_ptr(), stored.as_ptr(), "not copied");
            assert_eq!(data.len(), stored.len());
        }
        let change = Arc::try_unwrap(change).expect_err("the patch still holds it");
        drop(patch);
        let done = Arc::try_unwrap(change).expect("the patch is gone");
        assert_eq!(done.bytes(), 3020);
    }

    /// A background commit takes whole chunks and leaves the bytes past the
    /// last boundary waiting, in the spare buffer a committed change lent.
    #[test]
    fn a_background_commit_takes_whole_chunks() {
        let mut dirty = Dirty::default();
        dirty.write(100, &[1; 400]);
        dirty.write(700, &[2; 1500]);
        // The previous commit settles, as it does before the next starts.
        dirty.recycle(Arc::new(Dirty {
            extents: BTreeMap::from([(0, Vec::with_capacity(4 * STREAM_FROM))]),
            ..Dirty::default()
        }));
        let spare = dirty.spare.as_ptr();
        let taken = dirty.take_whole_chunks(1000);
        assert_eq!(
            writes(&taken),
            vec![(Some(100), vec![1u8; 400]), (Some(700), vec![2u8; 1300])],
            "up to the boundary at 2000"
        );
        assert_eq!(writes(&dirty), vec![(Some(2000), vec![2u8; 200])]);
        assert_eq!((taken.bytes(), dirty.bytes()), (1700, 200));
        assert_eq!(dirty.extents[&2000].as_ptr(), spare);
        // Appends go on after the bytes left waiting.
        dirty.write(2200, &[3; 900]);
        let taken = dirty.take_whole_chunks(1000);
        assert_eq!(taken.bytes(), 1000);
        assert_eq!(writes(&dirty), vec![(Some(3000), vec![3u8; 100])]);
        // An extent starting at the last boundary stays whole.
        dirty.write(5000, &[4; 10]);
        let taken = dirty.take_whole_chunks(1000);
        assert_eq!(writes(&taken), vec![(Some(3000), vec![3u8; 100])]);
        assert_eq!(writes(&dirty), vec![(Some(5000), vec![4u8; 10])]);
        // Nothing below the last boundary: everything goes.
        let taken = dirty.take_whole_chunks(1000);
        assert_eq!(taken.bytes(), 10);
        assert!(dirty.is_empty());
        // A pending cut commits with everything after it.
        assert_eq!(dirty.truncate(10), Ok(()));
        dirty.write(900, &[4; 300]);
        dirty.take_whole_chunks(1000);
        assert!(dirty.is_empty());
    }

    proptest! {
        /// Whatever the writes and cuts, the waiting change reads like the
        /// model file, and committing it gives the model file.
        #[test]
        fn dirty_reads_and_commits_like_the_file(
            base in proptest::collection::vec(any::<u8>(), 0..3000),
            ops in proptest::collection::vec(op(), 0..40),
            reads in proptest::collection::vec((0..4000u64, 0..1500usize), 1..8),
        ) {
            let mut stored = base.clone();
            let mut model = base;
            let mut dirty = Dirty::default();
            for op in ops {
                match op {
                    Op::Write(at, data) => {
                        let at = usize::from(at);
                        // A write of nothing changes nothing, not even the size.
                        if !data.is_empty() {
                            if model.len() < at + data.len() {
                                model.resize(at + data.len(), 0);
                            }
                            model[at..at + data.len()].copy_from_slice(&data);
                        }
                        dirty.write(at as u64, &data);
                    }
                    Op::Truncate(size) => {
                        model.resize(usize::from(size), 0);
                        if dirty.truncate(u64::from(size)).is_err() {
                            stored = apply(&stored, &dirty);
                            dirty = Dirty::default();
                            prop_assert!(dirty.truncate(u64::from(size)).is_ok());
                        }
                    }
                    Op::Commit => {
                        stored = apply(&stored, &dirty);
                        dirty = Dirty::default();
                    }
                    Op::CommitWhole(chunk) => {
                        let chunk = u64::from(chunk);
                        let taken = dirty.take_whole_chunks(chunk);
                        let taken_end = taken.extents.iter().next_back()
                            .map(|(&at, d)| at + d.len() as u64);
                        if let (Some(end), Some((&next, _))) = (taken_end, dirty.extents.iter().next()) {
                            // A chunk boundary lies between what was taken
                            // and what stays.
                            prop_assert!(end <= next / chunk * chunk);
                            prop_assert!(taken.size.is_none() && dirty.size.is_none());
                        }
                        prop_assert_eq!(
                            taken.bytes(),
                            taken.extents.values().map(Vec::len).sum::<usize>()
                        );
                        stored = apply(&stored, &taken);
                    }
                }
                let total: usize = dirty.extents.values().map(Vec::len).sum();
                prop_assert_eq!(dirty.bytes(), total);
                // Extents never overlap or touch.
                let mut last_end = None;
                for (&at, data) in &dirty.extents {
                    prop_assert!(!data.is_empty());
                    if let Some(end) = last_end {
                        prop_assert!(at > end);
                    }
                    last_end = Some(at + data.len() as u64);
                }
            }
            prop_assert_eq!(dirty.len(stored.len() as u64), model.len() as u64);
            for (offset, want) in reads {
                let from = (offset as usize).min(stored.len());
                let to = (offset as usize + want).min(stored.len());
                let mut buf = stored[from..to].to_vec();
                dirty.overlay(stored.len() as u64, offset, want, &mut buf);
                let a = (offset as usize).min(model.len());
                let b = (offset as usize + want).min(model.len());
                prop_assert_eq!(&buf[..], &model[a..b]);
            }
            prop_assert_eq!(apply(&stored, &dirty), model);
        }
    }

    #[test]
    fn a_new_file_is_one_run_from_zero() {
        let mut dirty = Dirty::default();
        assert_eq!(dirty.from_empty(), Some(&[][..]));
        dirty.write(0, b"abc");
        dirty.write(3, b"def");
        assert_eq!(dirty.from_empty(), Some(&b"abcdef"[..]));
        dirty.write(10, b"x");
        assert_eq!(dirty.from_empty(), None, "a gap");
        let mut late = Dirty::default();
        late.write(5, b"x");
        assert_eq!(late.from_empty(), None, "not from zero");
        let mut sized = Dirty::default();
        assert_eq!(sized.truncate(9), Ok(()));
        assert_eq!(sized.from_empty(), None, "zeros to keep");
    }

    #[test]
    fn a_cut_past_an_earlier_cut_needs_a_commit() {
        let mut dirty = Dirty::default();
        assert_eq!(dirty.truncate(10), Ok(()));
        assert_eq!(dirty.truncate(5), Ok(()));
        assert_eq!(dirty.truncate(7), Err(CommitFirst));
        dirty.write(0, b"x");
        assert_eq!(dirty.truncate(1), Err(CommitFirst));
        assert!(!dirty.is_empty());
        assert!(Dirty::default().is_empty());
    }
}
