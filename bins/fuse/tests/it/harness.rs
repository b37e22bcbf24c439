//! What the mount tests share: a real daemon, the real `peergos-fuse`
//! binary mounted and unmounted, shell scripts run on the mount, and a
//! SKIPPED (or, with `PEERGOS_REQUIRE_FUSE=1`, a failure) when FUSE is
//! missing.

pub(crate) use std::os::unix::fs::MetadataExt;
pub(crate) use std::path::{Path, PathBuf};
pub(crate) use std::process::{Child, Command, Stdio};
pub(crate) use std::sync::Arc;
pub(crate) use std::time::{Duration, Instant};

pub(crate) use peergos_core::{
    HttpNetwork, LinkOptions, NetworkAccess, UploadOptions, UserContext,
};
pub(crate) use peergos_testkit::cryptree::data;

pub(crate) const FUSE: &str = env!("CARGO_BIN_EXE_peergos-fuse");

/// Whether mounts can be made here; says why not (or fails, if required).
pub(crate) fn fuse_ready() -> bool {
    let missing = if !Path::new("/dev/fuse").exists() {
        Some("/dev/fuse does not exist")
    } else if !has_program("fusermount3") {
        Some("fusermount3 is not installed (apt-get install fuse3)")
    } else {
        None
    };
    match missing {
        None => true,
        Some(why) => {
            assert!(
                std::env::var_os("PEERGOS_REQUIRE_FUSE").is_none(),
                "FUSE is required here but {why}"
            );
            eprintln!("SKIPPED: {why}");
            false
        }
    }
}

pub(crate) fn has_program(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Programs a test needs; without one the test says SKIPPED (or fails,
/// if FUSE tests are required).
pub(crate) fn programs(names: &[&str]) -> bool {
    for name in names {
        if !has_program(name) {
            assert!(
                std::env::var_os("PEERGOS_REQUIRE_FUSE").is_none(),
                "{name} is required for this test but is not installed"
            );
            eprintln!("SKIPPED: {name} is not installed");
            return false;
        }
    }
    true
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub(crate) fn net(url: &str) -> Arc<dyn NetworkAccess> {
    Arc::new(HttpNetwork::new(url).unwrap())
}

/// A running `peergos-fuse`; unmounted (and checked to exit cleanly) by
/// [`Mount::stop`], or forcibly when dropped.
pub(crate) struct Mount {
    child: Option<Child>,
    dir: PathBuf,
}

impl Mount {
    pub(crate) fn start(dir: &Path, password: &str, args: &[&str]) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        let before = std::fs::metadata(dir).unwrap().dev();
        let child = Command::new(FUSE)
            .args(args)
            .arg(dir)
            .env("PEERGOS_PASSWORD", password)
            .env("PEERGOS_LINK_PASSWORD", password)
            .env(
                "PEERGOS_LOG",
                std::env::var("PEERGOS_TEST_FUSE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut mount = Mount {
            child: Some(child),
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = mount.child.as_mut().unwrap().try_wait().unwrap() {
                let out = mount.child.take().unwrap().wait_with_output().unwrap();
                panic!(
                    "peergos-fuse exited ({status}) before mounting: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            if std::fs::metadata(dir).unwrap().dev() != before {
                return mount;
            }
            assert!(Instant::now() < deadline, "the mount did not appear");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `user`'s home from the server at `url`, mounted on `dir`.
    pub(crate) fn home(dir: &Path, url: &str, user: &str) -> Mount {
        Mount::start(dir, &password(user), &["--server", url, "--username", user])
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// SIGTERM, as an init system or Ctrl-C would: the process commits,
    /// unmounts and exits 0.
    pub(crate) fn stop(mut self) -> String {
        let mut child = self.child.take().unwrap();
        signal(&child, "TERM");
        let out = wait_for(&mut child, Duration::from_secs(60));
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "peergos-fuse failed: {stderr}");
        assert!(stderr.contains("unmounted"), "{stderr}");
        assert!(!is_mounted(&self.dir), "still mounted after exit");
        stderr
    }

    /// SIGKILL: a crash, with nothing committed on the way out.
    pub(crate) fn crash(mut self) {
        let mut child = self.child.take().unwrap();
        signal(&child, "KILL");
        let out = wait_for(&mut child, Duration::from_secs(30));
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        unmount(&self.dir);
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "KILL");
            let _ = child.wait();
            unmount(&self.dir);
        }
    }
}

pub(crate) fn signal(child: &Child, name: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status();
}

pub(crate) fn wait_for(child: &mut Child, limit: Duration) -> std::process::Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            signal(child, "KILL");
            panic!("peergos-fuse did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut stderr = Vec::new();
    if let Some(mut pipe) = child.stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_end(&mut stderr);
    }
    std::process::Output {
        status: child.wait().unwrap(),
        stdout: Vec::new(),
        stderr,
    }
}

pub(crate) fn is_mounted(dir: &Path) -> bool {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(dir.to_str().unwrap_or("")))
}

pub(crate) fn unmount(dir: &Path) {
    if is_mounted(dir) {
        let _ = Command::new("fusermount3").arg("-uz").arg(dir).status();
    }
}

/// Runs a shell command in `dir`; fails the test with its output unless
/// it succeeds. Returns stdout.
pub(crate) fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`{script}` failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A server on a free port and a signed-up user.
pub(crate) fn server_with(dir: &Path, users: &[&str]) -> String {
    let url = peergos_testkit::daemon::serve_in_thread(&dir.join("server"));
    let rt = runtime();
    for user in users {
        rt.block_on(UserContext::signup(net(&url), user, &password(user), None))
            .unwrap();
    }
    url
}

/// A second client of `user`'s space, beside the mount.
pub(crate) fn login(rt: &tokio::runtime::Runtime, url: &str, user: &str) -> UserContext {
    rt.block_on(UserContext::login(net(url), user, &password(user)))
        .unwrap()
}

pub(crate) fn password(user: &str) -> String {
    format!("{user}-password")
}

/// A local tree of 500 files in nested folders, of assorted sizes.
pub(crate) fn make_tree(root: &Path) {
    for d in 0..5u8 {
        let sub = root.join(format!("dir{d}/nested"));
        std::fs::create_dir_all(&sub).unwrap();
        for i in 0..50u8 {
            let size = (usize::from(i) * 997 + usize::from(d) * 13) % 40_000;
            std::fs::write(root.join(format!("dir{d}/file{i}.bin")), data(i ^ d, size)).unwrap();
            std::fs::write(sub.join(format!("note{i}.txt")), format!("note {d}/{i}\n")).unwrap();
        }
    }
}
