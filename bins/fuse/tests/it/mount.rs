//! Real programs on a real mount: the `peergos-fuse` binary mounts a
//! user's space from a real HTTP server, and `cp`, `diff`, `rsync`, `tar`,
//! `git`, `sqlite3`, `dd` and `sha256sum` work on it as on a local disk.
//!
//! Needs `/dev/fuse` and `fusermount3` (the `fuse3` package, which
//! `cargo xtask ci` installs). Without them each test says SKIPPED and
//! passes, unless `PEERGOS_REQUIRE_FUSE=1` (set by `cargo xtask ci` when it
//! could install them), which makes a missing FUSE a failure.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use peergos_core::{HttpNetwork, LinkOptions, NetworkAccess, UploadOptions, UserContext};
use peergos_testkit::cryptree::data;

const FUSE: &str = env!("CARGO_BIN_EXE_peergos-fuse");

/// Whether mounts can be made here; says why not (or fails, if required).
fn fuse_ready() -> bool {
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

fn has_program(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Programs a test needs; without one the test says SKIPPED (or fails,
/// if FUSE tests are required).
fn programs(names: &[&str]) -> bool {
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

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn net(url: &str) -> Arc<dyn NetworkAccess> {
    Arc::new(HttpNetwork::new(url).unwrap())
}

/// A running `peergos-fuse`; unmounted (and checked to exit cleanly) by
/// [`Mount::stop`], or forcibly when dropped.
struct Mount {
    child: Option<Child>,
    dir: PathBuf,
}

impl Mount {
    fn start(dir: &Path, password: &str, args: &[&str]) -> Mount {
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
    fn home(dir: &Path, url: &str, user: &str) -> Mount {
        Mount::start(dir, &password(user), &["--server", url, "--username", user])
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// SIGTERM, as an init system or Ctrl-C would: the process commits,
    /// unmounts and exits 0.
    fn stop(mut self) -> String {
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
    fn crash(mut self) {
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

fn signal(child: &Child, name: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status();
}

fn wait_for(child: &mut Child, limit: Duration) -> std::process::Output {
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

fn is_mounted(dir: &Path) -> bool {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(dir.to_str().unwrap_or("")))
}

fn unmount(dir: &Path) {
    if is_mounted(dir) {
        let _ = Command::new("fusermount3").arg("-uz").arg(dir).status();
    }
}

/// Runs a shell command in `dir`; fails the test with its output unless
/// it succeeds. Returns stdout.
fn sh(dir: &Path, script: &str) -> String {
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
fn server_with(dir: &Path, users: &[&str]) -> String {
    let url = peergos_testkit::daemon::serve_in_thread(&dir.join("server"));
    let rt = runtime();
    for user in users {
        rt.block_on(UserContext::signup(net(&url), user, &password(user), None))
            .unwrap();
    }
    url
}

/// A second client of `user`'s space, beside the mount.
fn login(rt: &tokio::runtime::Runtime, url: &str, user: &str) -> UserContext {
    rt.block_on(UserContext::login(net(url), user, &password(user)))
        .unwrap()
}

fn password(user: &str) -> String {
    format!("{user}-password")
}

/// A local tree of 500 files in nested folders, of assorted sizes.
fn make_tree(root: &Path) {
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

#[test]
fn cp_diff_rsync_and_tar_on_a_mount() {
    if !fuse_ready() || !programs(&["rsync", "tar", "diff", "cp"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let url = server_with(tmp.path(), &["alice"]);
    let local = tmp.path().join("local");
    make_tree(&local);
    let mount = Mount::home(&tmp.path().join("mnt"), &url, "alice");
    let work = tmp.path();

    // cp -r in, diff -r back.
    sh(work, "cp -r local mnt/copy");
    assert_eq!(sh(work, "find mnt/copy -type f | wc -l").trim(), "500");
    sh(work, "diff -r local mnt/copy");

    // rsync -a twice: the second run finds nothing to send.
    sh(work, "rsync -a local/ mnt/synced/");
    sh(work, "diff -r local mnt/synced");
    let second = sh(work, "rsync -a --stats local/ mnt/synced/");
    assert!(
        second.contains("Number of regular files transferred: 0"),
        "the second rsync sent files again:\n{second}"
    );
    // rsync -a keeps modification times.
    let local_time = std::fs::metadata(local.join("dir3/file7.bin"))
        .unwrap()
        .mtime();
    let mounted_time = std::fs::metadata(mount.path("synced/dir3/file7.bin"))
        .unwrap()
        .mtime();
    assert_eq!(local_time, mounted_time);

    // tar: extract onto the mount, re-create from it, compare.
    sh(work, "tar cf tree.tar local");
    sh(
        work,
        "mkdir mnt/untarred && tar xf tree.tar -C mnt/untarred",
    );
    sh(work, "diff -r local mnt/untarred/local");
    sh(work, "tar cf again.tar -C mnt/untarred local");
    sh(
        work,
        "mkdir back && tar xf again.tar -C back && diff -r local back/local",
    );

    // Everything survives an unmount and a fresh mount.
    mount.stop();
    let mount = Mount::home(&tmp.path().join("mnt"), &url, "alice");
    sh(work, "diff -r local mnt/copy && diff -r local mnt/synced");
    mount.stop();
}

#[test]
fn git_and_sqlite_work_on_a_mount() {
    if !fuse_ready() || !programs(&["git", "sqlite3"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let url = server_with(tmp.path(), &["alice"]);
    let mount = Mount::home(&tmp.path().join("mnt"), &url, "alice");
    let work = tmp.path();

    // git: init, commit twice, clone from the mount, and check out.
    sh(work, "mkdir mnt/repo");
    let git = "git -c user.name=t -c user.email=t@example.org -c init.defaultBranch=main";
    sh(
        &mount.path("repo"),
        &format!(
            "{git} init -q . && mkdir src && for i in $(seq 1 40); do echo line $i > src/f$i.txt; done \
             && {git} add . && {git} commit -qm first \
             && echo changed > src/f1.txt && {git} commit -qam second"
        ),
    );
    sh(work, "git clone -q mnt/repo clone");
    assert_eq!(
        std::fs::read_to_string(work.join("clone/src/f1.txt")).unwrap(),
        "changed\n"
    );
    assert_eq!(
        std::fs::read_to_string(work.join("clone/src/f40.txt")).unwrap(),
        "line 40\n"
    );
    let log = sh(&work.join("clone"), "git log --format=%s");
    assert_eq!(log, "second\nfirst\n");
    sh(&mount.path("repo"), "git fsck --no-progress");

    // sqlite3: a database on the mount, 10,000 rows, queried back.
    sh(
        work,
        "sqlite3 mnt/app.db \"create table t(id integer primary key, v text); \
         with recursive c(x) as (select 1 union all select x+1 from c where x<10000) \
         insert into t(v) select 'row-' || x from c;\"",
    );
    let counted = sh(
        work,
        "sqlite3 mnt/app.db \"select count(*), sum(length(v)) from t; \
         update t set v='changed' where id % 100 = 0; select count(*) from t where v='changed'; \
         pragma integrity_check;\"",
    );
    assert_eq!(counted, "10000|78894\n100\nok\n");
    mount.stop();
    // A fresh mount reads the same database.
    let mount = Mount::home(&tmp.path().join("mnt"), &url, "alice");
    assert_eq!(
        sh(
            work,
            "sqlite3 mnt/app.db \"select v from t where id in (5, 200) order by id;\""
        ),
        "row-5\nchanged\n"
    );
    mount.stop();
}

#[test]
fn a_gibibyte_written_with_dd_reads_back_the_same() {
    if !fuse_ready() || !programs(&["dd", "sha256sum"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let url = server_with(tmp.path(), &["alice"]);
    let mount = Mount::home(&tmp.path().join("mnt"), &url, "alice");
    let work = tmp.path();
    // A repeatable 1 GiB stream: 64 copies of a 16 MiB random file.
    sh(work, "head -c 16777216 /dev/urandom > piece");
    let expected = sh(
        work,
        "for i in $(seq 64); do cat piece; done | sha256sum | cut -d' ' -f1",
    );
    sh(
        work,
        "for i in $(seq 64); do cat piece; done | dd of=mnt/big bs=1M iflag=fullblock conv=fsync status=none",
    );
    assert_eq!(std::fs::metadata(mount.path("big")).unwrap().len(), 1 << 30);
    let got = sh(work, "sha256sum mnt/big | cut -d' ' -f1");
    assert_eq!(got, expected);
    mount.stop();
}

#[test]
fn posix_behaviour_and_errors() {
    if !fuse_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let url = server_with(tmp.path(), &["alice"]);
    let rt = runtime();
    let alice = login(&rt, &url, "alice");
    // A large directory, written in one commit from another client.
    let many: Vec<(String, Vec<u8>, UploadOptions)> = (0..700)
        .map(|i| {
            (
                format!("f{i:04}"),
                format!("{i}").into_bytes(),
                UploadOptions::default(),
            )
        })
        .collect();
    rt.block_on(alice.fs().mkdir("/many")).unwrap();
    rt.block_on(alice.fs().write_files("/many", many)).unwrap();
    // A hidden file, as the account keeps its social state in.
    let hidden = UploadOptions {
        hidden: true,
        ..UploadOptions::default()
    };
    rt.block_on(alice.fs().upload("/.private", &b"state"[..], hidden))
        .unwrap();

    let mount = Mount::home(&tmp.path().join("mnt"), &url, "alice");
    let m = |p: &str| mount.path(p);
    let errno = |r: std::io::Result<()>| r.unwrap_err().raw_os_error().unwrap();

    // readdir across several calls (offsets): every name, once, in order.
    let mut names: Vec<String> = std::fs::read_dir(m("many"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 700);
    assert_eq!(names[699], "f0699");
    assert_eq!(std::fs::read(m("many/f0123")).unwrap(), b"123");

    // Writes at offsets, appends, overwrites in the middle, truncation.
    use std::io::{Seek, SeekFrom, Write};
    std::fs::write(m("f.txt"), b"hello world").unwrap();
    {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(m("f.txt"))
            .unwrap();
        f.write_all(b"!!").unwrap();
    }
    assert_eq!(std::fs::read(m("f.txt")).unwrap(), b"hello world!!");
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(m("f.txt"))
            .unwrap();
        f.seek(SeekFrom::Start(6)).unwrap();
        f.write_all(b"WORLD").unwrap();
        f.seek(SeekFrom::Start(20)).unwrap();
        f.write_all(b"end").unwrap();
        f.sync_all().unwrap();
        assert_eq!(f.metadata().unwrap().len(), 23);
    }
    let mut expect = b"hello WORLD!!".to_vec();
    expect.resize(20, 0);
    expect.extend_from_slice(b"end");
    assert_eq!(std::fs::read(m("f.txt")).unwrap(), expect);
    std::fs::OpenOptions::new()
        .write(true)
        .open(m("f.txt"))
        .unwrap()
        .set_len(5)
        .unwrap();
    assert_eq!(std::fs::read(m("f.txt")).unwrap(), b"hello");
    // Read and write on one handle: reads see the bytes not yet committed.
    {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(m("f.txt"))
            .unwrap();
        f.seek(SeekFrom::End(0)).unwrap();
        f.write_all(b" there").unwrap();
        let mut back = String::new();
        use std::io::Read;
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_string(&mut back).unwrap();
        assert_eq!(back, "hello there");
    }
    // O_TRUNC on open.
    std::fs::write(m("f.txt"), b"new").unwrap();
    assert_eq!(std::fs::read(m("f.txt")).unwrap(), b"new");
    // Modification times set explicitly (touch -d) are kept.
    sh(tmp.path(), "touch -d '2001-02-03 04:05:06 UTC' mnt/f.txt");
    assert_eq!(std::fs::metadata(m("f.txt")).unwrap().mtime(), 981_173_106);

    // Renames: within a folder, across folders, replacing a file, folders.
    std::fs::create_dir(m("a")).unwrap();
    std::fs::create_dir(m("b")).unwrap();
    std::fs::write(m("a/one"), b"1").unwrap();
    std::fs::write(m("b/two"), b"2").unwrap();
    std::fs::rename(m("a/one"), m("a/uno")).unwrap();
    std::fs::rename(m("a/uno"), m("b/two")).unwrap();
    assert_eq!(std::fs::read(m("b/two")).unwrap(), b"1");
    assert!(!m("a/uno").exists());
    std::fs::rename(m("b"), m("a/b")).unwrap();
    assert_eq!(std::fs::read(m("a/b/two")).unwrap(), b"1");

    // The errors programs rely on.
    assert_eq!(errno(std::fs::read(m("nope")).map(drop)), libc::ENOENT);
    assert_eq!(errno(std::fs::create_dir(m("a"))), libc::EEXIST);
    assert_eq!(errno(std::fs::remove_file(m("a"))), libc::EISDIR);
    assert_eq!(errno(std::fs::read(m("f.txt/x")).map(drop)), libc::ENOTDIR);
    assert_eq!(errno(std::fs::remove_dir(m("a"))), libc::ENOTEMPTY);
    assert_eq!(
        errno(
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(m("f.txt"))
                .map(drop)
        ),
        libc::EEXIST
    );
    assert_eq!(errno(std::fs::rename(m("a"), m("f.txt"))), libc::ENOTDIR);
    std::fs::remove_file(m("a/b/two")).unwrap();
    std::fs::remove_dir(m("a/b")).unwrap();
    std::fs::remove_dir(m("a")).unwrap();
    assert!(!m("a").exists());
    // Hidden files of the account (the social state) are not shown, and
    // their names cannot be taken over.
    let top: Vec<String> = std::fs::read_dir(m(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!top.contains(&".private".to_string()), "{top:?}");
    assert_eq!(errno(std::fs::read(m(".private")).map(drop)), libc::ENOENT);
    assert_eq!(errno(std::fs::write(m(".private"), b"x")), libc::EEXIST);
    assert_eq!(errno(std::fs::create_dir(m(".private"))), libc::EEXIST);
    assert_eq!(
        rt.block_on(alice.fs().read("/.private", 0, 10)).unwrap(),
        b"state"
    );

    // statfs reports the quota.
    let stat = sh(tmp.path(), "stat -f -c '%S %b %a' mnt");
    let fields: Vec<u64> = stat
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    let space = rt.block_on(alice.space()).unwrap();
    assert_eq!(fields[0] * fields[1], space.quota / 4096 * 4096);
    assert!(fields[2] <= fields[1]);

    mount.stop();
}

#[test]
fn changes_from_another_client_show_up_within_seconds() {
    if !fuse_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let url = server_with(tmp.path(), &["alice"]);
    let rt = runtime();
    let alice = login(&rt, &url, "alice");
    rt.block_on(alice.fs().write_file("/doc.txt", b"first"))
        .unwrap();
    let mount = Mount::start(
        &tmp.path().join("mnt"),
        &password("alice"),
        &[
            "--server",
            &url,
            "--username",
            "alice",
            "--refresh-secs",
            "1",
        ],
    );
    assert_eq!(std::fs::read(mount.path("doc.txt")).unwrap(), b"first");

    // Another client changes the file and adds one.
    rt.block_on(alice.fs().write_file("/doc.txt", b"second version"))
        .unwrap();
    rt.block_on(alice.fs().write_file("/added.txt", b"new"))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let doc = std::fs::read(mount.path("doc.txt")).unwrap_or_default();
        let added = std::fs::read(mount.path("added.txt")).unwrap_or_default();
        if doc == b"second version" && added == b"new" {
            break;
        }
        assert!(Instant::now() < deadline, "changes not visible after 10 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    // And a removal.
    rt.block_on(alice.fs().rm("/added.txt")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while mount.path("added.txt").exists() {
        assert!(Instant::now() < deadline, "removal not visible after 10 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    mount.stop();
}

#[test]
fn a_crash_never_corrupts_a_committed_file() {
    // The writer must be a process that keeps the file open and starts no
    // other: every close of a descriptor (even the copy a child closes on
    // exec) is a FUSE flush, which commits.
    if !fuse_ready() || !programs(&["python3"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let url = server_with(tmp.path(), &["alice"]);
    let args = ["--server", url.as_str(), "--username", "alice"];
    let chunk = 5 << 20;
    let original = data(1, 3 << 20);
    let new = data(2, 12 << 20);
    std::fs::write(tmp.path().join("new.bin"), &new).unwrap();
    let mount = Mount::start(&tmp.path().join("mnt"), &password("alice"), &args);
    std::fs::write(mount.path("kept.bin"), &original).unwrap();

    // Overwrite it with 12 MiB and crash with the file still open: two
    // whole chunks may have been committed in the background, the last
    // 2 MiB were not.
    let mut writer = Command::new("python3")
        .args([
            "-c",
            "import sys, time\n\
             f = open(sys.argv[1], 'r+b')\n\
             f.write(open(sys.argv[2], 'rb').read())\n\
             f.flush()\n\
             print('written', flush=True)\n\
             time.sleep(120)\n",
        ])
        .arg(mount.path("kept.bin"))
        .arg(tmp.path().join("new.bin"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(writer.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "written");
    mount.crash();
    signal(&writer, "KILL");
    let _ = writer.wait();

    let rt = runtime();
    let alice = login(&rt, &url, "alice");
    let stored = rt
        .block_on(alice.fs().read("/kept.bin", 0, 16 << 20))
        .unwrap();
    let states = [
        original.clone(),
        new[..chunk].to_vec(),
        new[..2 * chunk].to_vec(),
    ];
    assert!(
        states.contains(&stored),
        "after a crash the file is {} bytes, none of the committed states",
        stored.len()
    );

    // After a clean close the whole change is there.
    let mount = Mount::start(&tmp.path().join("mnt"), &password("alice"), &args);
    std::fs::write(mount.path("kept.bin"), &new).unwrap();
    mount.stop();
    assert!(
        rt.block_on(alice.fs().read("/kept.bin", 0, 16 << 20))
            .unwrap()
            == new
    );
}

#[test]
fn links_and_read_only_shares_refuse_writes() {
    if !fuse_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let url = server_with(tmp.path(), &["alice", "bob"]);
    let rt = runtime();
    let alice = login(&rt, &url, "alice");
    let bob = login(&rt, &url, "bob");
    rt.block_on(async {
        alice.fs().mkdir("/photos").await.unwrap();
        alice
            .fs()
            .write_file("/photos/cat.jpg", b"meow")
            .await
            .unwrap();
        alice.fs().mkdir("/inbox").await.unwrap();
        alice
            .fs()
            .write_file("/readme.txt", b"read me")
            .await
            .unwrap();
        bob.follow("alice").await.unwrap();
        alice.follow_requests().await.unwrap();
        alice.accept("bob", false).await.unwrap();
        alice.share("/alice/photos", &["bob"], false).await.unwrap();
        alice.share("/alice/inbox", &["bob"], true).await.unwrap();
    });

    // Bob mounts alice's read-only share: reads work, writes get EACCES.
    let ro = Mount::start(
        &tmp.path().join("ro"),
        &password("bob"),
        &[
            "--server",
            &url,
            "--username",
            "bob",
            "--path",
            "/alice/photos",
        ],
    );
    assert_eq!(std::fs::read(ro.path("cat.jpg")).unwrap(), b"meow");
    let errno = |r: std::io::Result<()>| r.unwrap_err().raw_os_error().unwrap();
    assert_eq!(
        errno(std::fs::write(ro.path("cat.jpg"), b"woof")),
        libc::EACCES
    );
    assert_eq!(
        errno(std::fs::write(ro.path("new.jpg"), b"x")),
        libc::EACCES
    );
    assert_eq!(
        errno(std::fs::remove_file(ro.path("cat.jpg"))),
        libc::EACCES
    );
    ro.stop();

    // The writable share takes bob's file, and alice sees it.
    let rw = Mount::start(
        &tmp.path().join("rw"),
        &password("bob"),
        &[
            "--server",
            &url,
            "--username",
            "bob",
            "--path",
            "/alice/inbox",
        ],
    );
    std::fs::write(rw.path("from-bob.txt"), b"hi alice").unwrap();
    rw.stop();
    assert_eq!(
        rt.block_on(alice.fs().read("/inbox/from-bob.txt", 0, 100))
            .unwrap(),
        b"hi alice"
    );

    // A read-only secret link to a folder: EROFS for every change.
    let link = rt
        .block_on(alice.create_link("/alice/photos", LinkOptions::default()))
        .unwrap();
    let link_text = link.to_url();
    let mounted = Mount::start(&tmp.path().join("link"), "", &["--link", &link_text]);
    assert_eq!(std::fs::read(mounted.path("cat.jpg")).unwrap(), b"meow");
    assert_eq!(errno(std::fs::write(mounted.path("x"), b"x")), libc::EROFS);
    assert_eq!(errno(std::fs::create_dir(mounted.path("d"))), libc::EROFS);
    assert_eq!(
        errno(std::fs::remove_file(mounted.path("cat.jpg"))),
        libc::EROFS
    );
    mounted.stop();

    // A writable link to a file: one file at the mount's root, writable.
    let file_link = rt
        .block_on(alice.create_link(
            "/alice/readme.txt",
            LinkOptions {
                writable: true,
                ..LinkOptions::default()
            },
        ))
        .unwrap();
    let file_text = file_link.to_url();
    let single = Mount::start(&tmp.path().join("file"), "", &["--link", &file_text]);
    let listed: Vec<String> = std::fs::read_dir(single.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(listed, vec!["readme.txt".to_string()]);
    std::fs::write(single.path("readme.txt"), b"edited through the link").unwrap();
    single.stop();
    assert_eq!(
        rt.block_on(alice.fs().read("/readme.txt", 0, 100)).unwrap(),
        b"edited through the link"
    );
}

#[test]
fn background_mode_detaches_and_unmounts_from_outside() {
    if !fuse_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let url = server_with(tmp.path(), &["alice"]);
    let dir = tmp.path().join("mnt");
    std::fs::create_dir_all(&dir).unwrap();
    let log = tmp.path().join("fuse.log");
    // The starting process returns once the mount is up.
    let out = Command::new(FUSE)
        .args([
            "--server",
            &url,
            "--username",
            "alice",
            "--background",
            "--log-file",
        ])
        .arg(&log)
        .arg(&dir)
        .env("PEERGOS_PASSWORD", password("alice"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains("mounted"), "{said}");
    assert!(is_mounted(&dir));
    std::fs::write(dir.join("bg.txt"), b"from the background").unwrap();

    // Unmounting from outside ends the detached process, which commits
    // and exits.
    let status = Command::new("fusermount3")
        .arg("-u")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("unmounted")
    {
        assert!(
            Instant::now() < deadline,
            "the background process did not finish"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let rt = runtime();
    let alice = login(&rt, &url, "alice");
    assert_eq!(
        rt.block_on(alice.fs().read("/bg.txt", 0, 100)).unwrap(),
        b"from the background"
    );

    // A wrong password fails in the starting process, with the reason.
    let out = Command::new(FUSE)
        .args([
            "--server",
            &url,
            "--username",
            "alice",
            "--background",
            "--log-file",
        ])
        .arg(&log)
        .arg(&dir)
        .env("PEERGOS_PASSWORD", "wrong")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(said.contains("before mounting"), "{said}");
    assert!(!is_mounted(&dir));
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("wrong username or password"),
        "the log says why"
    );
}
