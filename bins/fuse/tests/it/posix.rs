//! POSIX behaviour and errors on a mount, and changes by another client
//! showing up.

use crate::harness::*;

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
