//! The shell binary against a real HTTP server: the commands a user runs,
//! their JSON output, and their exit codes.

use std::path::Path;
use std::process::{Command, Output};

use peergos_testkit::cryptree::data;

const SHELL: &str = env!("CARGO_BIN_EXE_peergos-shell");

/// A server on a free port, running on its own thread for the test.
fn serve(dir: &Path) -> String {
    peergos_testkit::daemon::serve_in_thread(dir)
}

/// Where the shells of this test run keep their device record.
fn client_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("peergos-shell-tests-{}", std::process::id()))
}

fn shell(url: &str, password: &str, args: &[&str]) -> Output {
    Command::new(SHELL)
        .args(["--server", url])
        .args(args)
        .env("PEERGOS_PASSWORD", password)
        .env("PEERGOS_CLIENT_DIR", client_dir())
        .env_remove("PEERGOS_USERNAME")
        .output()
        .unwrap()
}

fn ok(output: Output) -> String {
    String::from_utf8(ok_bytes(output)).unwrap()
}

fn ok_bytes(output: Output) -> Vec<u8> {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A server under `dir` with the user alice (password "pw"), who has
/// uploaded `bytes` as `/alice/NAME`; its URL.
fn alice_with_file(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let url = serve(&dir.join("server"));
    let local = dir.join(name);
    std::fs::write(&local, bytes).unwrap();
    ok(shell(&url, "pw", &["signup", "alice"]));
    let remote = format!("/alice/{name}");
    ok(shell(
        &url,
        "pw",
        &["-u", "alice", "put", local.to_str().unwrap(), &remote],
    ));
    url
}

#[test]
fn a_user_session_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let url = serve(&dir.path().join("server"));
    let local = dir.path().join("local");
    std::fs::create_dir_all(local.join("photos/2026")).unwrap();
    for i in 0..30u8 {
        std::fs::write(
            local.join(format!("note{i}.txt")),
            data(i, 100 * i as usize),
        )
        .unwrap();
    }
    std::fs::write(local.join("photos/2026/big.raw"), data(99, 7 << 20)).unwrap();

    ok(shell(&url, "pw", &["signup", "alice"]));
    let put = ok(shell(
        &url,
        "pw",
        &[
            "-u",
            "alice",
            "--json",
            "put",
            local.to_str().unwrap(),
            "/alice",
        ],
    ));
    assert!(put.contains("\"files\":31"), "{put}");
    // Running it again sends nothing: every file is there, same size and time.
    let again = ok(shell(
        &url,
        "pw",
        &[
            "-u",
            "alice",
            "--json",
            "put",
            local.to_str().unwrap(),
            "/alice",
        ],
    ));
    assert!(
        again.contains("\"files\":0") && again.contains("\"skipped\":31"),
        "{again}"
    );
    // A changed file is sent again, alone.
    std::fs::write(local.join("note5.txt"), b"changed").unwrap();
    let changed = ok(shell(
        &url,
        "pw",
        &[
            "-u",
            "alice",
            "--json",
            "put",
            local.to_str().unwrap(),
            "/alice",
        ],
    ));
    assert!(changed.contains("\"files\":1"), "{changed}");
    let cat = shell(
        &url,
        "pw",
        &["-u", "alice", "cat", "/alice/local/note5.txt"],
    );
    assert_eq!(ok_bytes(cat), b"changed");
    std::fs::write(local.join("note5.txt"), data(5, 500)).unwrap();
    ok(shell(
        &url,
        "pw",
        &["-u", "alice", "put", local.to_str().unwrap(), "/alice"],
    ));
    let listing = ok(shell(
        &url,
        "pw",
        &["-u", "alice", "--json", "ls", "/alice/local"],
    ));
    assert_eq!(listing.matches("\"name\"").count(), 31, "{listing}");
    assert!(listing.contains("\"name\":\"photos\""), "{listing}");

    // Download the folder and compare byte for byte.
    let back = dir.path().join("back");
    ok(shell(
        &url,
        "pw",
        &[
            "-u",
            "alice",
            "get",
            "-r",
            "/alice/local",
            back.to_str().unwrap(),
        ],
    ));
    for i in 0..30u8 {
        let name = format!("note{i}.txt");
        assert_eq!(
            std::fs::read(back.join(&name)).unwrap(),
            data(i, 100 * i as usize),
            "{name}"
        );
    }
    assert_eq!(
        std::fs::read(back.join("photos/2026/big.raw")).unwrap(),
        data(99, 7 << 20)
    );

    let cat = shell(
        &url,
        "pw",
        &["-u", "alice", "cat", "/alice/local/note3.txt"],
    );
    assert_eq!(ok_bytes(cat), data(3, 300));
    ok(shell(
        &url,
        "pw",
        &["-u", "alice", "mkdir", "-p", "/alice/a/b/c"],
    ));
    ok(shell(
        &url,
        "pw",
        &["-u", "alice", "mv", "/alice/local/note1.txt", "/alice/a/b"],
    ));
    ok(shell(
        &url,
        "pw",
        &[
            "-u",
            "alice",
            "cp",
            "/alice/a/b/note1.txt",
            "/alice/copy.txt",
        ],
    ));
    let stat = ok(shell(
        &url,
        "pw",
        &["-u", "alice", "--json", "stat", "/alice/copy.txt"],
    ));
    assert!(stat.contains("\"size\":100"), "{stat}");
    ok(shell(
        &url,
        "pw",
        &["-u", "alice", "rm", "-r", "/alice/local"],
    ));
    let top = ok(shell(
        &url,
        "pw",
        &["-u", "alice", "--json", "ls", "/alice"],
    ));
    assert!(
        !top.contains("\"local\"") && top.contains("\"copy.txt\""),
        "{top}"
    );
    let space = ok(shell(&url, "pw", &["-u", "alice", "--json", "space"]));
    assert!(space.contains("\"quota\":"), "{space}");

    // Failures: non-zero exit and one line on stderr.
    for args in [
        &["-u", "alice", "cat", "/alice/missing"][..],
        &["-u", "alice", "ls", "/bob"][..],
        &["-u", "alice", "rm", "/alice/a"][..],
    ] {
        let failed = shell(&url, "pw", args);
        assert!(!failed.status.success(), "{args:?}");
        let stderr = String::from_utf8(failed.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
    }
    let wrong = shell(&url, "not it", &["-u", "alice", "ls"]);
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("wrong username or password"));

    // Password change from the shell.
    let changed = Command::new(SHELL)
        .args(["--server", &url, "-u", "alice", "passwd"])
        .env("PEERGOS_PASSWORD", "pw")
        .env("PEERGOS_NEW_PASSWORD", "pw2")
        .output()
        .unwrap();
    ok(changed);
    assert!(!shell(&url, "pw", &["-u", "alice", "ls"]).status.success());
    ok(shell(&url, "pw2", &["-u", "alice", "ls"]));
}

#[test]
fn get_writes_into_a_fifo_and_through_a_link_without_replacing_them() {
    use std::io::Read;
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    let bytes = data(7, 300_000);
    let url = alice_with_file(dir.path(), "x.bin", &bytes);

    // A FIFO (like /dev/null or /dev/stdout, not a regular file) is written
    // to, not replaced. Opened here for reading and writing, so neither
    // side's open waits for the other.
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let mut end = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    let expected = bytes.len();
    let reader = std::thread::spawn(move || {
        let mut got = vec![0u8; expected];
        end.read_exact(&mut got).unwrap();
        got
    });
    let target = fifo.to_str().unwrap();
    ok(shell(
        &url,
        "pw",
        &["-u", "alice", "get", "/alice/x.bin", target],
    ));
    // Checked first: had it been replaced, the reader would wait forever.
    let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
    assert!(kind.is_fifo(), "the FIFO was replaced: {kind:?}");
    assert_eq!(reader.join().unwrap(), bytes);

    // A symbolic link to a file: the file gets the bytes, the link stays.
    let file = dir.path().join("file.bin");
    std::fs::write(&file, b"old").unwrap();
    let link = dir.path().join("link.bin");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    let target = link.to_str().unwrap();
    ok(shell(
        &url,
        "pw",
        &["-u", "alice", "get", "/alice/x.bin", target],
    ));
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(&file).unwrap(), bytes);
}

/// Starts `get REMOTE TARGET` as alice through a hostile proxy and
/// interrupts it once its part file holds some bytes: the proxy stalls,
/// then the shell is killed. Returns how many bytes the part file kept.
fn interrupted_get(url: &str, remote: &str, target: &Path) -> u64 {
    use peergos_testkit::hostile::{HostileProxy, Mode};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let proxy = runtime.block_on(HostileProxy::start(url));
    let mut child = Command::new(SHELL)
        .args(["--server", proxy.url(), "-u", "alice", "get", remote])
        .arg(target)
        .env("PEERGOS_PASSWORD", "pw")
        .env("PEERGOS_CLIENT_DIR", client_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let part = Path::new(&format!("{}.peergos-part", target.display())).to_path_buf();
    let len = || std::fs::metadata(&part).map_or(0, |m| m.len());
    let started = std::time::Instant::now();
    while len() < 1 << 20 {
        assert!(
            started.elapsed().as_secs() < 120,
            "the download never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    proxy.set(Mode::Stall);
    // Chunks in flight still land; wait until the part stops growing.
    let mut last = len();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(500));
        if len() == last {
            break;
        }
        last = len();
    }
    child.kill().unwrap();
    child.wait().unwrap();
    drop(proxy);
    assert!(part.exists(), "no part file was left");
    last
}

/// An interrupted `get` leaves `NAME.peergos-part`; the next `get` keeps
/// its bytes and fetches only the rest. (The part's first bytes are
/// marked here, so a download that started over would show.)
#[test]
fn get_continues_from_a_part_file() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = data(5, 40 << 20);
    let url = alice_with_file(dir.path(), "big.bin", &bytes);
    let got = dir.path().join("got.bin");
    let kept = interrupted_get(&url, "/alice/big.bin", &got);
    assert!(kept > 0 && kept < bytes.len() as u64, "kept {kept}");
    let part_path = dir.path().join("got.bin.peergos-part");
    let mut part = std::fs::read(&part_path).unwrap();
    part[..4096].fill(0xAA);
    std::fs::write(&part_path, &part).unwrap();

    let target = got.to_str().unwrap();
    ok(shell(
        &url,
        "pw",
        &["-u", "alice", "get", "/alice/big.bin", target],
    ));
    part.extend_from_slice(&bytes[part.len()..]);
    assert!(
        std::fs::read(&got).unwrap() == part,
        "not resumed at byte {kept}"
    );
    assert!(!part_path.exists());
    assert!(!dir.path().join("got.bin.peergos-part.id").exists());

    // With no part file, the whole file.
    std::fs::remove_file(&got).unwrap();
    ok(shell(
        &url,
        "pw",
        &["-u", "alice", "get", "/alice/big.bin", target],
    ));
    assert!(std::fs::read(&got).unwrap() == bytes);
}

/// A part file is resumed only into the file and version it is part of:
/// getting another file, or this one after it was replaced by one of the
/// same size, starts over (they were spliced together).
#[test]
fn a_part_file_of_another_file_or_version_is_not_spliced_in() {
    let dir = tempfile::tempdir().unwrap();
    let a = data(1, 40 << 20);
    let b = data(2, 40 << 20);
    let url = alice_with_file(dir.path(), "a.bin", &a);
    let b_local = dir.path().join("b.bin");
    std::fs::write(&b_local, &b).unwrap();
    ok(shell(
        &url,
        "pw",
        &[
            "-u",
            "alice",
            "put",
            b_local.to_str().unwrap(),
            "/alice/b.bin",
        ],
    ));
    let out = dir.path().join("out.bin");
    let target = out.to_str().unwrap();

    // Another file into the same destination.
    interrupted_get(&url, "/alice/a.bin", &out);
    ok(shell(
        &url,
        "pw",
        &["-u", "alice", "get", "/alice/b.bin", target],
    ));
    assert!(
        std::fs::read(&out).unwrap() == b,
        "a's part was spliced into b"
    );
    std::fs::remove_file(&out).unwrap();

    // The same path, replaced by a file of the same size.
    interrupted_get(&url, "/alice/a.bin", &out);
    ok(shell(&url, "pw", &["-u", "alice", "rm", "/alice/a.bin"]));
    ok(shell(
        &url,
        "pw",
        &[
            "-u",
            "alice",
            "put",
            b_local.to_str().unwrap(),
            "/alice/a.bin",
        ],
    ));
    ok(shell(
        &url,
        "pw",
        &["-u", "alice", "get", "/alice/a.bin", target],
    ));
    assert!(
        std::fs::read(&out).unwrap() == b,
        "the old version's part was spliced into the new one"
    );
}

#[test]
fn an_unreachable_server_is_named_in_the_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let output = shell(&url, "pw", &["-u", "alice", "ls"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains(&url), "{stderr}");
}

#[test]
fn the_interactive_shell_reads_commands_from_its_input() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let url = serve(dir.path());
    let mut child = Command::new(SHELL)
        .args(["--server", &url])
        .env("PEERGOS_PASSWORD", "pw")
        .env("PEERGOS_NEW_PASSWORD", "pw2")
        .env("HOME", dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"signup carol\nmkdir docs\ncd docs\npwd\ncat missing\npasswd\nexit\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stdout.contains("/carol/docs"), "{stdout}");
    assert!(stdout.contains("password changed"), "{stdout}\n{stderr}");
    // A failed command reports and the session goes on.
    assert!(
        stderr.contains("error: /docs/missing: no such file"),
        "{stderr}"
    );
    ok(shell(&url, "pw2", &["-u", "carol", "ls", "/carol/docs"]));
}

/// `whoami` names the user and how long the name is held: a year from
/// signup, renewed automatically later.
#[test]
fn whoami_shows_the_name_and_its_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let url = serve(dir.path());
    ok(shell(&url, "pw", &["signup", "alice"]));
    let out = ok(shell(&url, "pw", &["-u", "alice", "--json", "whoami"]));
    let value: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(value["username"], "alice");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expires = value["name_expires"].as_u64().unwrap();
    let year = peergos_core::CLAIM_LIFETIME_SECS;
    assert!(
        expires > now + year - 3600 && expires <= now + year + 60,
        "{expires}"
    );
    let text = ok(shell(&url, "pw", &["-u", "alice", "whoami"]));
    assert!(text.contains("held for 36"), "{text}");
}
