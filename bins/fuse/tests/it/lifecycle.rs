//! A mount's life: a `kill -9` never corrupts a committed file, and
//! background mode detaches and unmounts from outside.

use crate::harness::*;

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
