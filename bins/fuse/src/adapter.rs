//! The kernel's FUSE requests, answered by [`Vfs`]: each request becomes a
//! task on the runtime, which replies when it is done.

use std::ffi::OsStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};
use peergos_core::{Kind, Remote};
use peergos_vfs::{Attr, Error, Vfs};

/// How long the kernel may keep attributes and names before asking again
/// (it then asks the vfs cache, not the server).
const TTL: Duration = Duration::from_secs(1);
/// The I/O size programs are told to use: bigger requests, fewer trips.
const BLOCK_SIZE: u32 = 1 << 20;

type RemoteVfs = Vfs<Remote, Remote>;

/// The FUSE side of a mount.
pub struct FuseFs {
    vfs: RemoteVfs,
    runtime: tokio::runtime::Handle,
    uid: u32,
    gid: u32,
}

impl FuseFs {
    pub fn new(vfs: RemoteVfs, runtime: tokio::runtime::Handle, uid: u32, gid: u32) -> Self {
        FuseFs {
            vfs,
            runtime,
            uid,
            gid,
        }
    }

    /// Runs `job` on a thread of the runtime's blocking pool, so requests
    /// are served concurrently and the FUSE thread goes back to reading
    /// the next one. (The filesystem's futures hold borrows across awaits
    /// that keep them from being `Send`; a blocking-pool thread drives
    /// each one to completion where it was made.)
    fn spawn<F, Fut>(&self, job: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        let runtime = self.runtime.clone();
        self.runtime.spawn_blocking(move || runtime.block_on(job()));
    }
}

fn file_attr(attr: &Attr, uid: u32, gid: u32) -> FileAttr {
    let modified = UNIX_EPOCH + Duration::from_millis(attr.modified.max(0) as u64);
    let (kind, perm, nlink) = match (attr.kind, attr.writable) {
        (Kind::Dir, true) => (FileType::Directory, 0o755, 2),
        (Kind::Dir, false) => (FileType::Directory, 0o555, 2),
        (Kind::File, true) => (FileType::RegularFile, 0o644, 1),
        (Kind::File, false) => (FileType::RegularFile, 0o444, 1),
    };
    FileAttr {
        ino: INodeNo(attr.ino),
        size: attr.size,
        blocks: attr.size.div_ceil(512),
        atime: modified,
        mtime: modified,
        ctime: modified,
        crtime: modified,
        kind,
        perm,
        nlink,
        uid,
        gid,
        rdev: 0,
        blksize: BLOCK_SIZE,
        flags: 0,
    }
}

/// The errno for an error. Failures a program cannot explain from the
/// errno alone (a full quota, an unreachable server, a damaged block) are
/// logged with their reason; answers like "no such file" are not.
fn errno(op: &str, e: &Error) -> Errno {
    let code = e.errno();
    if matches!(code, libc::EIO | libc::ENOSPC | libc::EAGAIN) {
        tracing::warn!("{op}: {e}");
    } else {
        tracing::debug!("{op}: {e}");
    }
    Errno::from_i32(code)
}

fn millis(time: TimeOrNow) -> i64 {
    let at = match time {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    };
    match at.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(before) => -(before.duration().as_millis() as i64),
    }
}

impl fuser::Filesystem for FuseFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // An open with O_TRUNC empties the file in the handle's first
        // commit instead of a separate truncate.
        let _ = config.add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC);
        let _ = config.set_max_readahead(BLOCK_SIZE);
        let _ = config.set_max_background(32);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let (vfs, name, uid, gid) = (self.vfs.clone(), name.to_owned(), self.uid, self.gid);
        self.spawn(move || async move {
            match vfs.lookup(parent.0, &name).await {
                Ok(attr) => reply.entry(&TTL, &file_attr(&attr, uid, gid), Generation(0)),
                Err(e) => reply.error(errno("lookup", &e)),
            }
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.vfs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let (vfs, uid, gid) = (self.vfs.clone(), self.uid, self.gid);
        self.spawn(move || async move {
            match vfs.getattr(ino.0).await {
                Ok(attr) => reply.attr(&TTL, &file_attr(&attr, uid, gid)),
                Err(e) => reply.error(errno("getattr", &e)),
            }
        });
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // Permissions and owners are not stored (access is by capability),
        // so chmod and chown succeed without effect.
        let (vfs, uid, gid) = (self.vfs.clone(), self.uid, self.gid);
        let modified = mtime.map(millis);
        self.spawn(move || async move {
            match vfs.setattr(ino.0, fh.map(|f| f.0), size, modified).await {
                Ok(attr) => reply.attr(&TTL, &file_attr(&attr, uid, gid)),
                Err(e) => reply.error(errno("setattr", &e)),
            }
        });
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let (vfs, name, uid, gid) = (self.vfs.clone(), name.to_owned(), self.uid, self.gid);
        self.spawn(move || async move {
            match vfs.mkdir(parent.0, &name).await {
                Ok(attr) => reply.entry(&TTL, &file_attr(&attr, uid, gid), Generation(0)),
                Err(e) => reply.error(errno("mkdir", &e)),
            }
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let (vfs, name) = (self.vfs.clone(), name.to_owned());
        self.spawn(move || async move {
            match vfs.unlink(parent.0, &name).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("unlink", &e)),
            }
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let (vfs, name) = (self.vfs.clone(), name.to_owned());
        self.spawn(move || async move {
            match vfs.rmdir(parent.0, &name).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("rmdir", &e)),
            }
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (vfs, name, newname) = (self.vfs.clone(), name.to_owned(), newname.to_owned());
        self.spawn(move || async move {
            match vfs
                .rename(parent.0, &name, newparent.0, &newname, flags.bits())
                .await
            {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("rename", &e)),
            }
        });
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let vfs = self.vfs.clone();
        let write = flags.acc_mode() != fuser::OpenAccMode::O_RDONLY;
        let truncate = flags.0 & libc::O_TRUNC != 0;
        self.spawn(move || async move {
            match vfs.open(ino.0, write, truncate).await {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(errno("open", &e)),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let vfs = self.vfs.clone();
        self.spawn(move || async move {
            match vfs.read(fh.0, offset, size).await {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(errno("read", &e)),
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let (vfs, data) = (self.vfs.clone(), data.to_vec());
        self.spawn(move || async move {
            match vfs.write(fh.0, offset, &data).await {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(errno("write", &e)),
            }
        });
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let vfs = self.vfs.clone();
        self.spawn(move || async move {
            match vfs.fsync(fh.0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("flush", &e)),
            }
        });
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let vfs = self.vfs.clone();
        self.spawn(move || async move {
            match vfs.release(fh.0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("release", &e)),
            }
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let vfs = self.vfs.clone();
        self.spawn(move || async move {
            match vfs.fsync(fh.0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("fsync", &e)),
            }
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let vfs = self.vfs.clone();
        self.spawn(move || async move {
            match vfs.opendir(ino.0).await {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(errno("opendir", &e)),
            }
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self.vfs.readdir(fh.0, offset) {
            Ok(entries) => {
                for (i, entry) in entries.iter().enumerate() {
                    let kind = match entry.kind {
                        Kind::Dir => FileType::Directory,
                        Kind::File => FileType::RegularFile,
                    };
                    let next = offset + i as u64 + 1;
                    if reply.add(INodeNo(entry.ino), next, kind, &entry.name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(errno("readdir", &e)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.vfs.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Directory changes are committed when they are made.
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let vfs = self.vfs.clone();
        self.spawn(move || async move {
            match vfs.statfs().await {
                Ok(s) => reply.statfs(
                    s.blocks,
                    s.free,
                    s.free,
                    0,
                    0,
                    s.block_size,
                    s.name_max,
                    s.block_size,
                ),
                Err(e) => reply.error(errno("statfs", &e)),
            }
        });
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let (vfs, name) = (self.vfs.clone(), name.to_owned());
        let this = (self.uid, self.gid);
        self.spawn(move || async move {
            match vfs.create(parent.0, &name).await {
                Ok((attr, fh)) => reply.created(
                    &TTL,
                    &file_attr(&attr, this.0, this.1),
                    Generation(0),
                    FileHandle(fh),
                    FopenFlags::empty(),
                ),
                Err(e) => reply.error(errno("create", &e)),
            }
        });
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        // No hard links: a node has one parent. Programs (git) fall back
        // to copying or renaming.
        reply.error(Errno::EPERM);
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        // Regular files come through `create`; devices and pipes are not
        // stored.
        reply.error(Errno::EPERM);
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: fuser::ReplyXattr,
    ) {
        // No extended attributes; ENOSYS tells the kernel not to ask again.
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: fuser::ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::ENOSYS);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // The kernel checks the mode bits (default_permissions).
        reply.ok();
    }
}
