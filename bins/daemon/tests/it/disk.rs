//! A daemon whose data disk fills up: uploads are refused with "the
//! server's disk is full", while logins, reads, deletes and garbage
//! collection keep working and free the room again. The disk is a small
//! tmpfs mounted for the test (as root); elsewhere the test says SKIPPED.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use peergos_core::{HttpNetwork, NetworkAccess, UserContext};
use peergos_testkit::cryptree::data;
use peergos_testkit::daemon::TempDaemon;

const DAEMON: &str = env!("CARGO_BIN_EXE_peergos-daemon");

/// A tmpfs of `mib` MiB mounted on a fresh directory; unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mib: u64) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .output();
        match mounted {
            Ok(out) if out.status.success() => Some(SmallDisk { dir }),
            Ok(out) => {
                eprintln!(
                    "disk-full test: SKIPPED (cannot mount a tmpfs: {})",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("disk-full test: SKIPPED (no mount command: {e})");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn free(&self) -> u64 {
        let out = Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(self.path())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Writes a file of other data until `leave` bytes are free (or none).
    fn fill(&self, name: &str, leave: u64) {
        let free = self.free();
        let size = free.saturating_sub(leave);
        let mut file = std::fs::File::create(self.path().join(name)).unwrap();
        let chunk = vec![1u8; 1 << 20];
        let mut written = 0;
        use std::io::Write as _;
        while written < size {
            let n = chunk.len().min((size - written) as usize);
            if file.write_all(&chunk[..n]).is_err() {
                break;
            }
            written += n as u64;
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

async fn read_all(user: &UserContext, path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    user.fs().download(path, &mut out).await.unwrap();
    out
}

fn gc(dir: &Path) -> std::process::Output {
    Command::new(DAEMON)
        .arg("--data-dir")
        .arg(dir)
        .arg("gc")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_uploads_and_keeps_reads_deletes_and_gc_working() {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !is_root {
        eprintln!("disk-full test: SKIPPED (not root: cannot mount a small disk)");
        return;
    }
    let Some(disk) = SmallDisk::mount(192) else {
        return;
    };
    let data_dir = disk.path().join("data");
    let mut daemon = TempDaemon::start(
        DAEMON,
        &data_dir,
        &[
            "--direct-io",
            "false",
            "--disk-reserve-mib",
            "32",
            "--gc-interval-hours",
            "0",
        ],
    );
    let url = daemon.url().to_string();
    let net = || -> Arc<dyn NetworkAccess> { Arc::new(HttpNetwork::new(&url).unwrap()) };
    let alice = UserContext::signup(net(), "alice", "pw", None)
        .await
        .unwrap();
    let big = data(3, 40 << 20);
    alice.fs().write_file("/big", &big).await.unwrap();
    alice.fs().write_file("/note", b"small").await.unwrap();

    // Something else fills the disk to within the reserve.
    disk.fill("other-program.log", 20 << 20);
    let next = data(4, 4 << 20);
    let refused = alice.fs().write_file("/next", &next).await.unwrap_err();
    assert!(refused.to_string().contains("disk is full"), "{refused}");
    // Logins and reads work.
    let again = UserContext::login(net(), "alice", "pw").await.unwrap();
    assert!(read_all(&again, "/big").await == big);

    // Now it fills to the last byte: logins, reads, a delete and a
    // collection still work (the ballast makes room for the delete).
    disk.fill("more.log", 0);
    let full = UserContext::login(net(), "alice", "pw").await.unwrap();
    assert_eq!(read_all(&full, "/note").await, b"small");
    full.fs().rm("/big").await.unwrap();
    let out = gc(&data_dir);
    assert!(
        out.status.success(),
        "gc on a full disk: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 40 MiB freed, less the ballast put back for the next emergency.
    assert!(
        disk.free() >= 36 << 20,
        "gc freed too little: {}",
        disk.free()
    );
    // The room is back: the upload fits, and reads back.
    full.fs().write_file("/next", &next).await.unwrap();
    assert!(read_all(&full, "/next").await == next);
    assert!(daemon.is_running());
}
