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

    /// Runs `job` on the vfs (see [`spawn`](Self::spawn)) and answers the
    /// kernel with its value, or with the errno of its error.
    fn run<R, F, Fut>(&self, op: &'static str, reply: R, job: F)
    where
        R: Answer,
        F: FnOnce(RemoteVfs) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = peergos_vfs::Result<R::Value>>,
    {
        let (vfs, owner) = (self.vfs.clone(), (self.uid, self.gid));
        self.spawn(move || async move {
            match job(vfs).await {
                Ok(value) => reply.answer(value, owner),
                Err(e) => reply.fail(errno(op, &e)),
            }
        });
    }
}

/// A kind of FUSE reply, and the vfs value it carries.
trait Answer: Send + 'static {
    type Value;
    /// Replies with `value`; `owner` is the (uid, gid) files show.
    fn answer(self, value: Self::Value, owner: (u32, u32));
    /// Replies with an error.
    fn fail(self, errno: Errno);
}

impl Answer for ReplyEntry {
    type Value = Attr;
    fn answer(self, attr: Attr, (uid, gid): (u32, u32)) {
        self.entry(&TTL, &file_attr(&attr, uid, gid), Generation(0));
    }
    fn fail(self, errno: Errno) {
        self.error(errno);
    }
}

impl Answer for ReplyAttr {
    type Value = Attr;
    fn answer(self, attr: Attr, (uid, gid): (u32, u32)) {
        self.attr(&TTL, &file_attr(&attr, uid, gid));
    }
    fn fail(self, errno: Errno) {
        self.error(errno);
    }
}

impl Answer for ReplyEmpty {
    type Value = ();
    fn answer(self, (): (), _: (u32, u32)) {
        self.ok();
    }
    fn fail(self, errno: Errno) {
        self.error(errno);
    }
}

impl Answer for ReplyOpen {
    type Value = u64;
    fn answer(self, fh: u64, _: (u32, u32)) {
        self.opened(FileHandle(fh), FopenFlags::empty());
    }
    fn fail(self, errno: Errno) {
        self.error(errno);
    }
}

impl Answer for ReplyData {
    type Value = Vec<u8>;
    fn answer(self, data: Vec<u8>, _: (u32, u32)) {
        self.data(&data);
    }
    fn fail(self, errno: Errno) {
        self.error(errno);
    }
}

impl Answer for ReplyWrite {
    type Value = u32;
    fn answer(self, written: u32, _: (u32, u32)) {
        self.written(written);
    }
    fn fail(self, errno: Errno) {
        self.error(errno);
    }
}

impl Answer for ReplyCreate {
    type Value = (Attr, u64);
    fn answer(self, (attr, fh): (Attr, u64), (uid, gid): (u32, u32)) {
        self.created(
            &TTL,
            &file_attr(&attr, uid, gid),
            Generation(0),
            FileHandle(fh),
            FopenFlags::empty(),
        );
    }
    fn fail(self, errno: Errno) {
        self.error(errno);
    }
}

impl Answer for ReplyStatfs {
    type Value = peergos_vfs::StatFs;
    fn answer(self, s: peergos_vfs::StatFs, _: (u32, u32)) {
        self.statfs(
            s.blocks,
            s.free,
            s.free,
            0,
            0,
            s.block_size,
            s.name_max,
            s.block_size,
        );
    }
    fn fail(self, errno: Errno) {
        self.error(errno);
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
        let name = name.to_owned();
        self.run("lookup", reply, move |vfs| async move {
            vfs.lookup(parent.0, &name).await
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.vfs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.run("getattr", reply, move |vfs| async move {
            vfs.getattr(ino.0).await
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
        let modified = mtime.map(millis);
        self.run("setattr", reply, move |vfs| async move {
            vfs.setattr(ino.0, fh.map(|f| f.0), size, modified).await
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
        let name = name.to_owned();
        self.run("mkdir", reply, move |vfs| async move {
            vfs.mkdir(parent.0, &name).await
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.to_owned();
        self.run("unlink", reply, move |vfs| async move {
            vfs.unlink(parent.0, &name).await
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.to_owned();
        self.run("rmdir", reply, move |vfs| async move {
            vfs.rmdir(parent.0, &name).await
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
        let (name, newname) = (name.to_owned(), newname.to_owned());
        self.run("rename", reply, move |vfs| async move {
            vfs.rename(parent.0, &name, newparent.0, &newname, flags.bits())
                .await
        });
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let write = flags.acc_mode() != fuser::OpenAccMode::O_RDONLY;
        let truncate = flags.0 & libc::O_TRUNC != 0;
        self.run("open", reply, move |vfs| async move {
            vfs.open(ino.0, write, truncate).await
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
        self.run("read", reply, move |vfs| async move {
            vfs.read(fh.0, offset, size).await
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
        let data = data.to_vec();
        self.run("write", reply, move |vfs| async move {
            vfs.write(fh.0, offset, &data).await
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
        self.run(
            "flush",
            reply,
            move |vfs| async move { vfs.fsync(fh.0).await },
        );
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
        self.run("release", reply, move |vfs| async move {
            vfs.release(fh.0).await
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
        self.run(
            "fsync",
            reply,
            move |vfs| async move { vfs.fsync(fh.0).await },
        );
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.run("opendir", reply, move |vfs| async move {
            vfs.opendir(ino.0).await
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
        self.run(
            "statfs",
            reply,
            move |vfs| async move { vfs.statfs().await },
        );
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
        let name = name.to_owned();
        self.run("create", reply, move |vfs| async move {
            vfs.create(parent.0, &name).await
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
