//! Aligned buffers for block bytes, reused across blocks.
//!
//! A block that arrives in a put body, or is read from its file, lands in a
//! [`BlockBuf`]: memory aligned to [`ALIGN`], so the file store can hand it
//! to the disk with direct I/O without copying it again, and taken from a
//! small pool, so the pages are already mapped (touching fresh memory costs
//! a page fault and a zeroed page per 4 KiB, more than copying it on the
//! virtual machines servers run on). A buffer goes back to the pool when
//! the last [`Bytes`] made from it is dropped.

use std::sync::Mutex;

use bytes::Bytes;

/// The alignment of every buffer: a multiple of every logical block size
/// in common use (512 and 4096 bytes).
pub const ALIGN: usize = 4096;

/// How many buffers the pool keeps.
const POOL: usize = 24;

/// Buffers larger than this are freed rather than kept (a block is at most
/// a little over 1 MiB in practice; a rare huge one should not pin memory).
const POOLED_MAX: usize = (2 << 20) + 2 * ALIGN;

static FREE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// `len` bytes at an [`ALIGN`] boundary, with room after them up to the
/// next boundary. The bytes start out with unspecified (but initialised)
/// contents: fill them before reading.
pub struct BlockBuf {
    memory: Vec<u8>,
    start: usize,
    len: usize,
}

impl BlockBuf {
    /// A buffer of `len` bytes, from the pool when it has one.
    pub fn new(len: usize) -> Self {
        let mut memory = FREE
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop()
            .unwrap_or_default();
        let padded = len.next_multiple_of(ALIGN);
        if memory.len() < padded + ALIGN {
            memory.resize(padded + ALIGN, 0);
        }
        let start = memory.as_ptr().align_offset(ALIGN);
        BlockBuf { memory, start, len }
    }

    /// The bytes.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.memory[self.start..self.start + self.len]
    }

    /// The bytes and the room after them, up to the next [`ALIGN`]
    /// boundary: what a direct read fills.
    pub(crate) fn padded_mut(&mut self) -> &mut [u8] {
        let padded = self.len.next_multiple_of(ALIGN);
        &mut self.memory[self.start..self.start + padded]
    }

    /// Keeps only the first `len` bytes.
    pub(crate) fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// The bytes as [`Bytes`]; the buffer returns to the pool when the last
    /// of them (and of their slices) is dropped.
    pub fn freeze(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for BlockBuf {
    fn as_ref(&self) -> &[u8] {
        &self.memory[self.start..self.start + self.len]
    }
}

impl Drop for BlockBuf {
    fn drop(&mut self) {
        if self.memory.len() > POOLED_MAX {
            return;
        }
        let mut free = FREE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if free.len() < POOL {
            free.push(std::mem::take(&mut self.memory));
        }
    }
}

/// Whether `data` starts at an [`ALIGN`] boundary, so direct I/O can use
/// it where it lies.
pub(crate) fn is_aligned(data: &[u8]) -> bool {
    data.as_ptr().align_offset(ALIGN) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_hold_what_was_written() {
        for len in [0, 1, ALIGN - 1, ALIGN, ALIGN + 1, (1 << 20) + 37, 3 << 20] {
            let mut buf = BlockBuf::new(len);
            assert!(is_aligned(buf.as_mut_slice()), "{len}");
            assert_eq!(buf.padded_mut().len(), len.next_multiple_of(ALIGN));
            for (i, b) in buf.as_mut_slice().iter_mut().enumerate() {
                *b = (i % 251) as u8;
            }
            let bytes = buf.freeze();
            assert_eq!(bytes.len(), len);
            assert!(bytes.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
            // A slice keeps the buffer alive after the whole is dropped.
            let tail = bytes.slice(len / 2..);
            drop(bytes);
            assert!(tail
                .iter()
                .enumerate()
                .all(|(i, &b)| b == ((i + len / 2) % 251) as u8));
        }
    }

    #[test]
    fn truncating_keeps_the_front() {
        let mut buf = BlockBuf::new(10_000);
        buf.as_mut_slice().fill(7);
        buf.truncate(123);
        assert_eq!(buf.freeze(), Bytes::from(vec![7u8; 123]));
    }

    proptest::proptest! {
        /// Buffers reused from the pool, in any order of sizes, give each
        /// user exactly its own bytes.
        #[test]
        fn prop_reused_buffers_hold_their_own_bytes(
            sizes in proptest::collection::vec(0usize..(POOLED_MAX + 2 * ALIGN), 1..12),
        ) {
            let held: Vec<Bytes> = sizes
                .iter()
                .enumerate()
                .map(|(n, &len)| {
                    let mut buf = BlockBuf::new(len);
                    buf.as_mut_slice().fill(n as u8);
                    buf.freeze()
                })
                .collect();
            for (n, (bytes, &len)) in held.iter().zip(&sizes).enumerate() {
                proptest::prop_assert_eq!(bytes.len(), len);
                proptest::prop_assert!(bytes.iter().all(|&b| b == n as u8));
            }
        }
    }
}
