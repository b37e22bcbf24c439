//! Real programs on a mount: `cp`, `diff`, `rsync`, `tar`, `git`,
//! `sqlite3` and a gibibyte through `dd`, checked against local copies.

use crate::harness::*;

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
