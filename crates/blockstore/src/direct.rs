//! Block files written and read around the page cache (Linux `O_DIRECT`).
//!
//! A block is written once, read rarely and never changed, so copying it
//! into the kernel's page cache on the way to the disk buys little and
//! costs a copy of every byte (on virtual machines whose fresh memory is
//! expensive to touch, more than hashing it does). With direct I/O the
//! disk reads from and writes to our own buffers.
//!
//! Direct I/O wants the buffer, the file offset and the length aligned to
//! the device's block size. A block is written from an aligned copy padded
//! with zeros to [`ALIGN`], and the file is then cut to its real length; a
//! read asks for the padded length into an aligned buffer and gets the
//! real length back. Filesystems that refuse `O_DIRECT` (`EINVAL`: tmpfs
//! before Linux 6.6, some network and FUSE filesystems) make the store
//! fall back to ordinary buffered I/O for the rest of its life; elsewhere
//! than Linux it is always buffered.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use bytes::Bytes;

/// The alignment used for buffers, offsets and lengths: a multiple of every
/// logical block size in common use (512 and 4096 bytes).
pub const ALIGN: usize = 4096;

/// How many write buffers are kept for reuse (each a little over a block).
const POOL: usize = 16;

/// Whether a store uses direct I/O, and the aligned write buffers it
/// reuses (reused memory is already mapped; fresh memory is slow to touch).
pub(crate) struct Direct {
    enabled: AtomicBool,
    buffers: Mutex<Vec<Vec<u8>>>,
}

/// What a direct operation did: done, or the filesystem refused direct I/O
/// and the caller should do it the buffered way.
pub(crate) enum Outcome<T> {
    Done(T),
    Unsupported,
}

impl Direct {
    pub(crate) fn new(enabled: bool) -> Self {
        Direct {
            enabled: AtomicBool::new(enabled && cfg!(target_os = "linux")),
            buffers: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Tries direct I/O on the new scratch file `path` (on the filesystem
    /// the blocks go to), so a filesystem that refuses it is known before
    /// the first block.
    pub(crate) fn probe(&self, path: &Path) -> io::Result<()> {
        if let Outcome::Done(()) = self.write_new(path, &[0], false)? {
            std::fs::remove_file(path)?;
        }
        Ok(())
    }

    /// Opens `path` for direct I/O (creating it, which must be new, or
    /// reading it); None when direct I/O is off or the filesystem refused.
    fn open(&self, path: &Path, create: bool) -> io::Result<Option<File>> {
        if !self.enabled() {
            return Ok(None);
        }
        match open(path, create) {
            Ok(file) => Ok(Some(file)),
            Err(e) if refuses_direct(&e) => {
                self.refuse();
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Stops using direct I/O after the filesystem refused it.
    fn refuse(&self) {
        self.enabled.store(false, Ordering::Relaxed);
    }

    /// Writes `data` to the new file `path` (which must not exist), syncing
    /// it when `durable`. On `Unsupported` nothing is left at `path`.
    pub(crate) fn write_new(
        &self,
        path: &Path,
        data: &[u8],
        durable: bool,
    ) -> io::Result<Outcome<()>> {
        let Some(mut file) = self.open(path, true)? else {
            return Ok(Outcome::Unsupported);
        };
        let padded = data.len().next_multiple_of(ALIGN);
        let mut buffer = self.take();
        let start = align(&mut buffer, padded);
        let region = &mut buffer[start..start + padded];
        region[..data.len()].copy_from_slice(data);
        region[data.len()..].fill(0);
        let written = file.write_all(region);
        self.give_back(buffer);
        match written {
            Ok(()) => {}
            Err(e) if refuses_direct(&e) => {
                drop(file);
                std::fs::remove_file(path)?;
                self.refuse();
                return Ok(Outcome::Unsupported);
            }
            Err(e) => return Err(e),
        }
        file.set_len(data.len() as u64)?;
        if durable {
            file.sync_all()?;
        }
        Ok(Outcome::Done(()))
    }

    /// Reads the whole file at `path`; `NotFound` when there is none.
    pub(crate) fn read(&self, path: &Path) -> io::Result<Outcome<Bytes>> {
        let Some(mut file) = self.open(path, false)? else {
            return Ok(Outcome::Unsupported);
        };
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large"))?;
        let padded = len.next_multiple_of(ALIGN);
        // Read straight into the buffer that is handed on, then slice off
        // the alignment slack: no copy after the disk's.
        let mut buffer = Vec::new();
        let start = align(&mut buffer, padded);
        {
            let region = &mut buffer[start..start + padded];
            let mut filled = 0;
            while filled < padded {
                match file.read(&mut region[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if filled == 0 && refuses_direct(&e) => {
                        self.refuse();
                        return Ok(Outcome::Unsupported);
                    }
                    Err(e) => return Err(e),
                }
                // Only the last read of a file may end off the alignment.
                if filled % ALIGN != 0 {
                    break;
                }
            }
            if filled != len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("read {filled} bytes of a {len}-byte block file"),
                ));
            }
        }
        Ok(Outcome::Done(Bytes::from(buffer).slice(start..start + len)))
    }

    fn take(&self) -> Vec<u8> {
        self.buffers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop()
            .unwrap_or_default()
    }

    fn give_back(&self, buffer: Vec<u8>) {
        let mut buffers = self
            .buffers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buffers.len() < POOL {
            buffers.push(buffer);
        }
    }
}

/// Grows `buffer` (zero-filled) until it holds `len` bytes from an
/// [`ALIGN`] boundary, and returns where that boundary is.
fn align(buffer: &mut Vec<u8>, len: usize) -> usize {
    if buffer.len() < len + ALIGN {
        buffer.resize(len + ALIGN, 0);
    }
    buffer.as_ptr().align_offset(ALIGN)
}

/// `EINVAL` from `open` or I/O under `O_DIRECT` means the filesystem (or
/// its alignment rules) does not allow it.
fn refuses_direct(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidInput
}

#[cfg(target_os = "linux")]
fn open(path: &Path, create: bool) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    if create {
        options.write(true).create_new(true);
    } else {
        options.read(true);
    }
    options.custom_flags(libc::O_DIRECT).open(path)
}

#[cfg(not(target_os = "linux"))]
fn open(_path: &Path, _create: bool) -> io::Result<File> {
    Err(io::ErrorKind::InvalidInput.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes() -> Vec<usize> {
        vec![0, 1, ALIGN - 1, ALIGN, ALIGN + 1, (1 << 20) + 21, 3 * ALIGN]
    }

    #[test]
    fn what_is_written_reads_back_with_its_length() {
        let dir = tempfile::tempdir().unwrap();
        let direct = Direct::new(true);
        for (i, size) in sizes().into_iter().enumerate() {
            let data: Vec<u8> = (0..size).map(|b| (b * 7 + i) as u8).collect();
            let path = dir.path().join(format!("block{i}"));
            // Where the filesystem refuses direct I/O, this test cannot
            // show anything about it.
            let Outcome::Done(()) = direct.write_new(&path, &data, true).unwrap() else {
                eprintln!("SKIPPED: {} refuses O_DIRECT", dir.path().display());
                return;
            };
            assert_eq!(std::fs::metadata(&path).unwrap().len(), size as u64);
            assert_eq!(
                std::fs::read(&path).unwrap(),
                data,
                "buffered read, {size} bytes"
            );
            let Outcome::Done(read) = direct.read(&path).unwrap() else {
                panic!("a filesystem that took a direct write refused a direct read");
            };
            assert_eq!(&read[..], &data[..], "{size} bytes");
        }
    }

    #[test]
    fn a_missing_file_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let direct = Direct::new(true);
        let err = direct.read(&dir.path().join("none")).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn an_existing_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("block");
        std::fs::write(&path, b"first").unwrap();
        let direct = Direct::new(true);
        let err = direct.write_new(&path, b"second", true).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
    }

    #[test]
    fn turned_off_it_leaves_the_work_to_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let direct = Direct::new(false);
        let path = dir.path().join("block");
        assert!(matches!(
            direct.write_new(&path, b"x", true).unwrap(),
            Outcome::Unsupported
        ));
        assert!(!path.exists());
        assert!(matches!(direct.read(&path).unwrap(), Outcome::Unsupported));
    }

    #[test]
    fn aligned_regions_start_on_the_boundary() {
        let mut buffer = Vec::new();
        for len in [0, 1, ALIGN, 5 * ALIGN] {
            let start = align(&mut buffer, len);
            assert!(buffer.len() >= start + len);
            assert_eq!(buffer[start..].as_ptr() as usize % ALIGN, 0);
        }
    }
}
