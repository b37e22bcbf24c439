//! Block files written and read around the page cache (Linux `O_DIRECT`).
//!
//! A block is written once, read rarely and never changed, so copying it
//! into the kernel's page cache on the way to the disk buys little and
//! costs a copy of every byte (on virtual machines whose fresh memory is
//! expensive to touch, more than hashing it does). With direct I/O the
//! disk reads from and writes to our own buffers.
//!
//! Direct I/O wants the buffer, the file offset and the length aligned to
//! the device's block size. A block whose bytes already start at an
//! [`ALIGN`] boundary (a [`BlockBuf`], as the server decodes put bodies
//! into) is written from where it lies, all but its last partial 4 KiB,
//! which goes from a zero-padded copy; any other block is written from an
//! aligned, zero-padded copy. The file is then cut to its real length. A
//! read asks for the padded length into a [`BlockBuf`] and gets the real
//! length back. Filesystems that refuse `O_DIRECT` (`EINVAL`: tmpfs
//! before Linux 6.6, some network and FUSE filesystems) make the store
//! fall back to ordinary buffered I/O for the rest of its life; elsewhere
//! than Linux it is always buffered.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

use crate::buffer::{is_aligned, BlockBuf, ALIGN};

/// Whether a store uses direct I/O.
pub(crate) struct Direct {
    enabled: AtomicBool,
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
        // What can go from where it lies, and the rest, copied and padded.
        let whole = if is_aligned(data) {
            data.len() / ALIGN * ALIGN
        } else {
            0
        };
        let rest = &data[whole..];
        let mut copy = BlockBuf::new(rest.len());
        let padded = copy.padded_mut();
        padded[..rest.len()].copy_from_slice(rest);
        padded[rest.len()..].fill(0);
        let written = file
            .write_all(&data[..whole])
            .and_then(|()| file.write_all(padded));
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
        // Read straight into the buffer that is handed on: no copy after
        // the disk's.
        let mut buffer = BlockBuf::new(len);
        {
            let region = buffer.padded_mut();
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
        buffer.truncate(len);
        Ok(Outcome::Done(buffer.freeze()))
    }
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
    fn aligned_blocks_are_written_from_where_they_lie() {
        let dir = tempfile::tempdir().unwrap();
        let direct = Direct::new(true);
        for (i, size) in sizes().into_iter().enumerate() {
            let mut buf = BlockBuf::new(size);
            for (n, b) in buf.as_mut_slice().iter_mut().enumerate() {
                *b = (n * 13 + i) as u8;
            }
            let data = buf.freeze();
            assert!(is_aligned(&data));
            // Starting one byte in, the same bytes are not aligned.
            let mut shifted = vec![0u8; size + 1];
            shifted[1..].copy_from_slice(&data);
            for (name, bytes) in [("aligned", &data[..]), ("unaligned", &shifted[1..])] {
                let path = dir.path().join(format!("{name}{i}"));
                let Outcome::Done(()) = direct.write_new(&path, bytes, false).unwrap() else {
                    eprintln!("SKIPPED: {} refuses O_DIRECT", dir.path().display());
                    return;
                };
                assert_eq!(
                    std::fs::read(&path).unwrap(),
                    &data[..],
                    "{name}, {size} bytes"
                );
            }
        }
    }
}
