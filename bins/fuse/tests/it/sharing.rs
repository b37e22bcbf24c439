//! Mounting what others gave: secret links and read-only shares refuse
//! writes.

use crate::harness::*;

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
