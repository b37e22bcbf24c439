//! What can go wrong in the vfs layer, and the errno each case means.

/// Everything a vfs operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The filesystem underneath refused or failed.
    #[error(transparent)]
    Fs(#[from] peergos_cryptree::Error),
    /// The inode number is not (or no longer) known.
    #[error("inode {0} is not known (it was removed or forgotten)")]
    UnknownInode(u64),
    /// The file handle is not open.
    #[error("file handle {0} is not open")]
    UnknownHandle(u64),
    /// A write through a handle opened for reading only.
    #[error("file handle {0} was not opened for writing")]
    NotOpenForWriting(u64),
    /// A name that is not UTF-8 text.
    #[error("file names must be UTF-8 text")]
    NotUtf8,
    /// The whole mount is read-only (a read-only secret link).
    #[error("this mount is read-only")]
    ReadOnlyMount,
    /// Something already exists where a new entry was asked for.
    #[error("{0}: already exists")]
    Exists(String),
    /// A rename the mount does not offer (exchange, whiteout).
    #[error("rename flags {0:#x} are not supported")]
    RenameFlags(u32),
    /// Space usage could not be read.
    #[error("space usage: {0}")]
    Space(String),
}

impl Error {
    /// The errno that tells a program what went wrong.
    pub fn errno(&self) -> i32 {
        use peergos_cryptree::Error as F;
        match self {
            Error::Fs(e) => match e {
                F::NotFound { .. } => libc::ENOENT,
                F::AlreadyExists { .. } => libc::EEXIST,
                F::NotADirectory { .. } => libc::ENOTDIR,
                F::IsADirectory { .. } => libc::EISDIR,
                F::DirectoryNotEmpty { .. } => libc::ENOTEMPTY,
                F::ReadOnly { .. } | F::NotWritable => libc::EACCES,
                F::BadName { reason, .. } if reason.contains("longer") => libc::ENAMETOOLONG,
                F::BadName { .. } | F::BadPath { .. } => libc::EINVAL,
                F::BadMove { .. } => libc::EINVAL,
                F::CrossWriter { .. } => libc::EXDEV,
                F::Conflict { .. } | F::TooManyConflicts { .. } => libc::EAGAIN,
                F::Store(peergos_blockstore::Error::QuotaExceeded { .. })
                | F::Store(peergos_blockstore::Error::Refused { status: 507, .. }) => libc::ENOSPC,
                F::Store(peergos_blockstore::Error::Unreachable { .. })
                | F::Pointer(peergos_pointers::Error::Unreachable { .. }) => libc::EIO,
                _ => libc::EIO,
            },
            Error::UnknownInode(_) => libc::ENOENT,
            Error::UnknownHandle(_) | Error::NotOpenForWriting(_) => libc::EBADF,
            Error::NotUtf8 => libc::EINVAL,
            Error::ReadOnlyMount => libc::EROFS,
            Error::Exists(_) => libc::EEXIST,
            Error::RenameFlags(_) => libc::EINVAL,
            Error::Space(_) => libc::EIO,
        }
    }
}
