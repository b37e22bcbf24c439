//! How much room the data directory's disk has left, and the ballast that
//! keeps some of it for deletes.
//!
//! Uploads stop at the disk reserve ([`crate::Config::disk_reserve`]), so
//! the server's own users never fill the disk. Something else may (logs,
//! another program): for that, the server keeps a ballast file of a
//! quarter of the reserve, allocated on the disk, and removes it the
//! first time a small write (a delete, a rename) finds no room, so deletes
//! and garbage collection can run and free space. It is put back once the
//! disk has room again.

use std::path::{Path, PathBuf};

/// Bytes an unprivileged writer may still use on the filesystem holding
/// `dir` (`statvfs`'s available blocks); None when it cannot be asked.
pub(crate) fn free_bytes(dir: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// The ballast file.
pub(crate) struct Ballast {
    path: PathBuf,
    size: u64,
}

impl Ballast {
    /// The ballast of `size` bytes at `path` (not yet made).
    pub(crate) fn new(path: PathBuf, size: u64) -> Self {
        Ballast { path, size }
    }

    /// Makes the ballast if it is missing and the disk has room for it
    /// and `reserve` besides.
    pub(crate) fn ensure(&self, reserve: u64) {
        if self.size == 0 || self.path.exists() {
            return;
        }
        let Some(dir) = self.path.parent() else {
            return;
        };
        if free_bytes(dir).is_none_or(|free| free < reserve + self.size) {
            return;
        }
        let made = std::fs::File::create(&self.path).and_then(|file| {
            rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, self.size)
                .map_err(std::io::Error::from)
        });
        if let Err(e) = made {
            tracing::warn!(path = %self.path.display(), "making the disk ballast failed: {e}");
            let _ = std::fs::remove_file(&self.path);
        }
    }

    /// Whether the ballast is on the disk.
    pub(crate) fn is_present(&self) -> bool {
        self.size > 0 && self.path.exists()
    }

    /// Removes the ballast; true if there was one.
    pub(crate) fn release(&self) -> bool {
        let removed = std::fs::remove_file(&self.path).is_ok();
        if removed {
            tracing::warn!(
                path = %self.path.display(),
                "the data disk is full: released the ballast so deletes and garbage collection can run"
            );
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_directory_has_some_room_and_a_missing_one_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).unwrap() > 0);
        assert!(free_bytes(&dir.path().join("missing")).is_none());
    }

    #[test]
    fn the_ballast_is_made_once_and_released_once() {
        let dir = tempfile::tempdir().unwrap();
        let ballast = Ballast::new(dir.path().join("ballast"), 1 << 20);
        ballast.ensure(0);
        assert_eq!(
            std::fs::metadata(dir.path().join("ballast")).unwrap().len(),
            1 << 20
        );
        assert!(ballast.release());
        assert!(!ballast.release());
        // No room for it besides an impossible reserve: not made.
        ballast.ensure(u64::MAX / 2);
        assert!(!dir.path().join("ballast").exists());
    }
}
