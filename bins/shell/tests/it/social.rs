//! The social commands of the shell against a real HTTP server: follow,
//! accept, share, write into a share, unshare, and secret links opened
//! without an account.

use std::path::Path;
use std::process::{Command, Output};

const SHELL: &str = env!("CARGO_BIN_EXE_peergos-shell");

/// A server on a free port, running on its own thread for the test.
fn serve(dir: &Path) -> String {
    peergos_testkit::daemon::serve_in_thread(dir)
}

/// Runs the shell as `user` (password "NAME pw").
fn run(url: &str, user: &str, args: &[&str]) -> Output {
    Command::new(SHELL)
        .args(["--server", url, "-u", user])
        .args(args)
        .env("PEERGOS_PASSWORD", format!("{user} pw"))
        .env_remove("PEERGOS_LINK")
        .output()
        .unwrap()
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The one-line error of a failed command.
fn fails(output: Output) -> String {
    assert!(!output.status.success(), "succeeded: {output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr
}

/// Runs the shell on a secret link, with no account.
fn on_link(link: &str, password: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(SHELL);
    command
        .args(["--link", link])
        .args(args)
        .env_remove("PEERGOS_PASSWORD")
        .env_remove("PEERGOS_USERNAME");
    match password {
        Some(pw) => command.env("PEERGOS_LINK_PASSWORD", pw),
        None => command.env_remove("PEERGOS_LINK_PASSWORD"),
    };
    command.output().unwrap()
}

#[test]
fn following_sharing_and_links_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let url = serve(&dir.path().join("server"));
    for name in ["alice", "bob"] {
        let signup = Command::new(SHELL)
            .args(["--server", &url, "signup", name])
            .env("PEERGOS_PASSWORD", format!("{name} pw"))
            .output()
            .unwrap();
        ok(signup);
    }
    let local = dir.path().join("photo.jpg");
    std::fs::write(&local, b"a photo").unwrap();

    // bob follows alice; alice sees the request and accepts it.
    ok(run(&url, "bob", &["follow", "alice"]));
    let friends = ok(run(&url, "bob", &["--json", "friends"]));
    assert!(friends.contains("\"pending\":[\"alice\"]"), "{friends}");
    let requests = ok(run(&url, "alice", &["--json", "requests"]));
    assert!(requests.contains("\"from\":\"bob\""), "{requests}");
    ok(run(&url, "alice", &["accept", "bob"]));
    assert!(ok(run(&url, "alice", &["requests"])).contains("no follow requests"));
    assert_eq!(ok(run(&url, "alice", &["followers"])).trim(), "bob");

    // alice shares one folder read-only and one writable.
    ok(run(&url, "alice", &["mkdir", "/alice/photos"]));
    ok(run(
        &url,
        "alice",
        &["put", local.to_str().unwrap(), "/alice/photos"],
    ));
    ok(run(&url, "alice", &["mkdir", "/alice/inbox"]));
    ok(run(&url, "alice", &["share", "/alice/photos", "bob"]));
    ok(run(&url, "alice", &["share", "-w", "/alice/inbox", "bob"]));
    let shared = ok(run(&url, "alice", &["shared"]));
    assert!(shared.contains("/alice/inbox: bob (rw)"), "{shared}");
    assert!(shared.contains("/alice/photos: bob (r)"), "{shared}");

    // bob browses them under /alice (his client picks up alice's answer on
    // the way), reads one and writes into the other.
    let top = ok(run(&url, "bob", &["ls", "/alice"]));
    assert!(top.contains("photos/") && top.contains("inbox/"), "{top}");
    assert_eq!(
        ok(run(&url, "bob", &["cat", "/alice/photos/photo.jpg"])),
        "a photo"
    );
    let refused = fails(run(
        &url,
        "bob",
        &["put", local.to_str().unwrap(), "/alice/photos/copy.jpg"],
    ));
    assert!(refused.contains("read-only"), "{refused}");
    ok(run(
        &url,
        "bob",
        &["put", local.to_str().unwrap(), "/alice/inbox/from-bob.jpg"],
    ));
    assert_eq!(
        ok(run(&url, "alice", &["cat", "/alice/inbox/from-bob.jpg"])),
        "a photo"
    );

    // alice unshares the photos: bob no longer sees them.
    ok(run(&url, "alice", &["unshare", "/alice/photos", "bob"]));
    let top = ok(run(&url, "bob", &["ls", "/alice"]));
    assert!(!top.contains("photos") && top.contains("inbox/"), "{top}");
    fails(run(&url, "bob", &["cat", "/alice/photos/photo.jpg"]));
    assert_eq!(ok(run(&url, "bob", &["friends"])).trim(), "alice");
    let nothing = fails(run(&url, "alice", &["unshare", "/alice/photos", "bob"]));
    assert!(nothing.contains("nothing is shared"), "{nothing}");

    // A password-protected link that opens twice.
    let protected = Command::new(SHELL)
        .args([
            "--server",
            &url,
            "-u",
            "alice",
            "link",
            "create",
            "/alice/photos",
        ])
        .args(["--uses", "2", "--password"])
        .env("PEERGOS_PASSWORD", "alice pw")
        .env("PEERGOS_LINK_PASSWORD", "two words")
        .output()
        .unwrap();
    let protected = ok(protected);
    let protected = protected.trim();
    assert!(
        protected.starts_with(&format!("{url}/link/")),
        "{protected}"
    );
    let wrong = fails(on_link(protected, Some("wrong"), &["ls"]));
    assert!(wrong.contains("wrong password"), "{wrong}");
    let listing = ok(on_link(protected, Some("two words"), &["ls", "/"]));
    assert!(listing.contains("photos/"), "{listing}");
    let got = dir.path().join("got.jpg");
    ok(on_link(
        protected,
        Some("two words"),
        &["get", "/photos/photo.jpg", got.to_str().unwrap()],
    ));
    assert_eq!(std::fs::read(&got).unwrap(), b"a photo");
    let used_up = fails(on_link(protected, Some("two words"), &["ls"]));
    assert!(used_up.contains("already opened the 2 time"), "{used_up}");

    // Expired, revoked and listed links.
    let expiring = ok(run(
        &url,
        "alice",
        &[
            "link",
            "create",
            "/alice/photos/photo.jpg",
            "--expires",
            "1s",
        ],
    ));
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let expired = fails(on_link(expiring.trim(), None, &["ls"]));
    assert!(expired.contains("expired"), "{expired}");
    let plain = ok(run(&url, "alice", &["link", "create", "/alice/photos"]));
    let plain = plain.trim();
    assert!(ok(on_link(plain, None, &["cat", "/photos/photo.jpg"])) == "a photo");
    ok(run(&url, "alice", &["link", "revoke", plain]));
    let revoked = fails(on_link(plain, None, &["ls"]));
    assert!(revoked.contains("revoked"), "{revoked}");
    let listed = ok(run(&url, "alice", &["link", "list"]));
    assert_eq!(listed.lines().count(), 3, "{listed}");
    assert!(
        listed.contains("revoked") && listed.contains("opened 2/2"),
        "{listed}"
    );

    // A writable link lets its holder upload.
    let writable = ok(run(
        &url,
        "alice",
        &["link", "create", "-w", "/alice/inbox"],
    ));
    ok(on_link(
        writable.trim(),
        None,
        &["put", local.to_str().unwrap(), "/inbox/via-link.jpg"],
    ));
    assert_eq!(
        ok(run(&url, "alice", &["cat", "/alice/inbox/via-link.jpg"])),
        "a photo"
    );
    let bad = fails(on_link("http://127.0.0.1:1/link/nope", None, &["ls"]));
    assert!(bad.contains("invalid secret link"), "{bad}");

    // bob unfollows; alice removes him as a follower.
    ok(run(&url, "bob", &["unfollow", "alice"]));
    fails(run(&url, "bob", &["ls", "/alice"]));
    ok(run(&url, "alice", &["remove-follower", "bob"]));
    assert!(ok(run(&url, "alice", &["followers"])).contains("nobody follows you"));
}

#[test]
fn deny_and_interactive_open_link() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let url = serve(&dir.path().join("server"));
    for name in ["dave", "erin"] {
        let signup = Command::new(SHELL)
            .args(["--server", &url, "signup", name])
            .env("PEERGOS_PASSWORD", format!("{name} pw"))
            .output()
            .unwrap();
        ok(signup);
    }
    ok(run(&url, "erin", &["follow", "dave"]));
    ok(run(&url, "dave", &["deny", "erin"]));
    assert!(ok(run(&url, "dave", &["requests"])).contains("no follow requests"));
    let e = fails(run(&url, "dave", &["accept", "erin"]));
    assert!(e.contains("no follow request from 'erin'"), "{e}");
    let e = fails(run(&url, "dave", &["share", "/dave/shared", "erin"]));
    assert!(e.contains("'erin' does not follow you"), "{e}");

    ok(run(&url, "dave", &["mkdir", "/dave/docs"]));
    let link = ok(run(&url, "dave", &["link", "create", "/dave/docs"]));
    // An interactive session with no account opens the link and browses it.
    let mut child = Command::new(SHELL)
        .args(["--server", &url])
        .env("HOME", dir.path())
        .env_remove("PEERGOS_PASSWORD")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("open-link {}\npwd\nls /\nmkdir sub\nexit\n", link.trim()).as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout.contains("opened the link: it is /docs here"),
        "{stdout}"
    );
    assert!(stdout.contains("\n/docs\n"), "{stdout}");
    // Read-only: the mkdir fails and says so; the session goes on.
    assert!(stderr.contains("read-only"), "{stderr}");
}
