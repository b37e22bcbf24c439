//! Following, sharing, unsharing and secret links end to end against an
//! in-process server.

use peergos_core::ErrorCode;
use std::sync::Arc;

use peergos_api::{auth_message, OwnerRequest, Stamp, OWNER_AUTH};
use peergos_core::{open_link, Error, LinkOptions, NetworkAccess, Place, SecretLink, UserContext};
use peergos_server::{Config, Server};

async fn server(dir: &std::path::Path) -> Arc<dyn NetworkAccess> {
    let server = Server::open(Config::new(dir)).await.unwrap();
    server
}

async fn user(net: &Arc<dyn NetworkAccess>, name: &str) -> UserContext {
    UserContext::signup(Arc::clone(net), name, &format!("{name} password"), None)
        .await
        .unwrap()
}

/// Reads a file through `locate`, as a client browsing `/owner/...` does.
async fn read(user: &UserContext, path: &str) -> Result<Vec<u8>, Error> {
    match user.locate(path).await? {
        Place::Fs { fs, path } => {
            let mut out = Vec::new();
            fs.download(&path, &mut out).await?;
            Ok(out)
        }
        Place::Virtual { .. } => panic!("{path} is a virtual directory"),
    }
}

async fn write(user: &UserContext, path: &str, data: &[u8]) -> Result<(), Error> {
    match user.locate(path).await? {
        Place::Fs { fs, path } => {
            fs.write_file(&path, data).await?;
            Ok(())
        }
        Place::Virtual { .. } => panic!("{path} is a virtual directory"),
    }
}

async fn names(user: &UserContext, path: &str) -> Vec<String> {
    let mut names: Vec<String> = match user.locate(path).await.unwrap() {
        Place::Fs { fs, path } => fs.ls(&path).await.unwrap(),
        Place::Virtual { entries } => entries,
    }
    .into_iter()
    .map(|e| e.name)
    .collect();
    names.sort();
    names
}

/// `follower` asks to follow `target`, who accepts; the follower's client
/// then picks up the answer.
async fn befriend(follower: &UserContext, target: &UserContext, reciprocate: bool) {
    follower.follow(target.username()).await.unwrap();
    let pending = target.follow_requests().await.unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].from, follower.username());
    target
        .accept(follower.username(), reciprocate)
        .await
        .unwrap();
    assert!(target.follow_requests().await.unwrap().is_empty());
    assert!(follower.follow_requests().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_share_write_and_unshare() {
    let dir = tempfile::tempdir().unwrap();
    let net = server(dir.path()).await;
    let alice = user(&net, "alice").await;
    let bob = user(&net, "bob").await;
    let carol = user(&net, "carol").await;

    // Bob follows alice; carol follows alice and alice follows her back.
    befriend(&bob, &alice, false).await;
    befriend(&carol, &alice, true).await;
    let state = alice.social().await.unwrap();
    assert_eq!(
        state.followers.keys().collect::<Vec<_>>(),
        vec!["bob", "carol"]
    );
    assert_eq!(state.following.keys().collect::<Vec<_>>(), vec!["carol"]);
    assert_eq!(state.friends(), vec!["carol".to_string()]);
    let bobs = bob.social().await.unwrap();
    assert!(bobs.following.contains_key("alice") && bobs.sent.is_empty());
    assert!(bobs.followers.is_empty());
    let carols = carol.social().await.unwrap();
    assert!(carols.following.contains_key("alice") && carols.followers.contains_key("alice"));

    // Alice shares one folder read-only and one writable.
    alice.fs().mkdir("/ro").await.unwrap();
    alice
        .fs()
        .write_file("/ro/a.txt", b"version 1")
        .await
        .unwrap();
    alice.fs().mkdir("/rw").await.unwrap();
    alice
        .share("/alice/ro", &["bob", "carol"], false)
        .await
        .unwrap();
    alice.share("/alice/rw", &["bob"], true).await.unwrap();

    // Before sharing anything, a stranger's follower sees nothing; now bob
    // sees both folders under /alice and reads the read-only one.
    assert_eq!(names(&bob, "/").await, vec!["alice", "bob"]);
    assert_eq!(names(&bob, "/alice").await, vec!["ro", "rw"]);
    assert_eq!(read(&bob, "/alice/ro/a.txt").await.unwrap(), b"version 1");
    assert_eq!(names(&carol, "/alice").await, vec!["ro"]);
    let refused = write(&bob, "/alice/ro/b.txt", b"nope").await;
    assert!(
        matches!(
            refused,
            Err(Error::Fs(peergos_cryptree::Error::ReadOnly { .. }))
        ),
        "{refused:?}"
    );

    // Bob writes into the writable folder; alice sees it.
    write(&bob, "/alice/rw/from-bob.txt", b"hello alice")
        .await
        .unwrap();
    let mut out = Vec::new();
    alice
        .fs()
        .download("/rw/from-bob.txt", &mut out)
        .await
        .unwrap();
    assert_eq!(out, b"hello alice");

    // What alice shared, with whom.
    let state = alice.social().await.unwrap();
    assert_eq!(state.shared_with("bob").len(), 2);
    assert!(state.shares["/alice/rw"]["bob"]);

    // Bob keeps the capability he had, as a client that cached it would.
    let old = match bob.locate("/alice/ro").await.unwrap() {
        Place::Fs { fs, .. } => fs.root().clone(),
        Place::Virtual { .. } => panic!("a shared folder"),
    };

    // Alice unshares the read-only folder from bob and changes it.
    alice.unshare("/alice/ro", &["bob"]).await.unwrap();
    alice
        .fs()
        .write_file("/ro/a.txt", b"version 2")
        .await
        .unwrap();
    alice
        .fs()
        .write_file("/ro/new.txt", b"after")
        .await
        .unwrap();
    assert_eq!(names(&bob, "/alice").await, vec!["rw"]);
    assert!(read(&bob, "/alice/ro/a.txt").await.is_err());
    // The old capability reads nothing new.
    let stale = peergos_core::SharedView::open(Arc::clone(&net), old).await;
    assert!(stale.is_err(), "the old capability still opens the folder");
    // Carol keeps access without doing anything, and sees the new content.
    assert_eq!(read(&carol, "/alice/ro/a.txt").await.unwrap(), b"version 2");
    assert_eq!(read(&carol, "/alice/ro/new.txt").await.unwrap(), b"after");
    // Bob's writable share still works.
    assert_eq!(
        read(&bob, "/alice/rw/from-bob.txt").await.unwrap(),
        b"hello alice"
    );

    // A single file can be shared too; it shows up as a file.
    alice.fs().mkdir("/docs").await.unwrap();
    alice
        .fs()
        .write_file("/docs/note.txt", b"just this")
        .await
        .unwrap();
    alice
        .share("/alice/docs/note.txt", &["carol"], false)
        .await
        .unwrap();
    assert_eq!(names(&carol, "/alice").await, vec!["docs", "ro"]);
    match carol.locate("/alice/docs").await.unwrap() {
        Place::Virtual { entries } => {
            assert_eq!(entries.len(), 1);
            assert_eq!(entries[0].name, "note.txt");
            assert_eq!(entries[0].kind, peergos_core::Kind::File);
            assert_eq!(entries[0].size, 9);
        }
        Place::Fs { .. } => panic!("carol sees only the file, not the folder"),
    }
    assert_eq!(
        read(&carol, "/alice/docs/note.txt").await.unwrap(),
        b"just this"
    );
    assert!(carol.locate("/alice/docs/other.txt").await.is_err());

    // Unsharing what was not shared is a clear error.
    let e = alice.unshare("/alice/ro", &["bob"]).await.unwrap_err();
    assert!(matches!(e, Error::NotShared(_)), "{e}");
    let e = alice
        .share("/alice/ro", &["nobody"], false)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFollower(_)), "{e}");

    // Removing bob as a follower takes the writable folder away too.
    let old_rw = match bob.locate("/alice/rw").await.unwrap() {
        Place::Fs { fs, .. } => fs.root().clone(),
        Place::Virtual { .. } => panic!("a shared folder"),
    };
    alice.remove_follower("bob").await.unwrap();
    assert!(bob.locate("/alice/rw").await.is_err());
    // The old writable capability neither reads nor writes any more.
    match peergos_core::SharedView::open(Arc::clone(&net), old_rw).await {
        Err(_) => {}
        Ok(view) => assert!(view.fs().write_file("/x", b"x").await.is_err()),
    }
    assert!(!alice.social().await.unwrap().followers.contains_key("bob"));

    // Carol unfollows alice: alice's tree disappears from her view.
    carol.unfollow("alice").await.unwrap();
    assert_eq!(names(&carol, "/").await, vec!["carol"]);
    let e = carol.locate("/alice/ro").await.err().unwrap();
    assert!(matches!(e, Error::NotFollowing(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_and_forged_requests() {
    let dir = tempfile::tempdir().unwrap();
    let net = server(dir.path()).await;
    let alice = user(&net, "alice").await;
    let bob = user(&net, "bob").await;

    bob.follow("alice").await.unwrap();
    alice.deny("bob").await.unwrap();
    assert!(alice.follow_requests().await.unwrap().is_empty());
    assert!(alice.social().await.unwrap().followers.is_empty());
    // Nothing came back to bob; his request stays unanswered.
    assert!(bob.follow_requests().await.unwrap().is_empty());
    assert!(bob.social().await.unwrap().sent.contains_key("alice"));
    let e = alice.accept("bob", false).await.unwrap_err();
    assert!(matches!(e, Error::NoRequest(_)), "{e}");

    // Garbage in alice's inbox is dropped, not shown.
    net.post_follow("alice", &[7u8; 3209]).await.unwrap();
    assert!(alice.follow_requests().await.unwrap().is_empty());
    // Oversized requests and unknown targets are refused by the server.
    let e = net.post_follow("alice", &[7u8; 5000]).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadRequest), "{e}");
    let e = net.post_follow("nobody", &[7u8; 100]).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::UnknownUser), "{e}");
    let e = alice.follow("nobody").await.unwrap_err();
    assert!(matches!(e, Error::UnknownUser(_)), "{e}");

    // Reading someone's requests needs a signature by their identity key;
    // another key's is refused (freshness: crates/server/tests/social.rs).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 60_000;
    let stamp = |key: &peergos_keys::SigningKeyPair, time_ms: u64| Stamp {
        time_ms,
        signature: key.sign(OWNER_AUTH, &auth_message("requests", "alice", time_ms, &[])),
    };
    let mallory = peergos_keys::SigningKeyPair::random();
    let e = net
        .follow_requests(
            "alice",
            &OwnerRequest {
                stamp: stamp(&mallory, now),
            },
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("identity key"), "{e}");
    let e = net
        .follow_requests(
            "alice",
            &OwnerRequest {
                stamp: stamp(&mallory, 1),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadRequest), "{e}");
    let e = net
        .list_links(
            "nobody",
            &OwnerRequest {
                stamp: stamp(&mallory, now),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::UnknownUser), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_links() {
    let dir = tempfile::tempdir().unwrap();
    let net = server(dir.path()).await;
    let alice = user(&net, "alice").await;
    alice.fs().mkdir("/album").await.unwrap();
    alice
        .fs()
        .write_file("/album/cat.jpg", b"meow")
        .await
        .unwrap();
    alice.fs().write_file("/note.txt", b"a note").await.unwrap();

    // A password-protected link that opens twice.
    let link = alice
        .create_link(
            "/alice/album",
            LinkOptions {
                max_uses: Some(2),
                password: Some("open sesame".into()),
                ..LinkOptions::default()
            },
        )
        .await
        .unwrap();
    let url = link.to_url();
    let parsed = SecretLink::parse(&url).unwrap();
    assert!(parsed.password);
    // A wrong password is refused and does not use the link up.
    let e = open_link(Arc::clone(&net), &parsed, Some("wrong"))
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), Some(ErrorCode::LinkDenied), "{e}");
    for _ in 0..2 {
        let view = open_link(Arc::clone(&net), &parsed, Some("open sesame"))
            .await
            .unwrap();
        assert_eq!(view.entry().name, "album");
        let mut out = Vec::new();
        view.fs().download("/cat.jpg", &mut out).await.unwrap();
        assert_eq!(out, b"meow");
        assert!(view.fs().write_file("/x", b"x").await.is_err());
    }
    let e = open_link(Arc::clone(&net), &parsed, Some("open sesame"))
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), Some(ErrorCode::LinkUsedUp), "{e}");

    // A link to a file; then revoked.
    let file_link = alice
        .create_link("/alice/note.txt", LinkOptions::default())
        .await
        .unwrap();
    let view = open_link(Arc::clone(&net), &file_link, None).await.unwrap();
    assert_eq!(view.entry().name, "note.txt");
    let mut out = Vec::new();
    view.fs().download("/", &mut out).await.unwrap();
    assert_eq!(out, b"a note");
    alice.revoke_link(&file_link.id).await.unwrap();
    let e = open_link(Arc::clone(&net), &file_link, None)
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), Some(ErrorCode::LinkRevoked), "{e}");

    // An expiring link works until it expires.
    let soon = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 1500;
    let expiring = alice
        .create_link(
            "/alice/note.txt",
            LinkOptions {
                expiry: Some(soon),
                ..LinkOptions::default()
            },
        )
        .await
        .unwrap();
    open_link(Arc::clone(&net), &expiring, None).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    let e = open_link(Arc::clone(&net), &expiring, None)
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), Some(ErrorCode::LinkExpired), "{e}");

    // A writable link lets its holder write into the folder.
    let writable = alice
        .create_link(
            "/alice/album",
            LinkOptions {
                writable: true,
                ..LinkOptions::default()
            },
        )
        .await
        .unwrap();
    let view = open_link(Arc::clone(&net), &writable, None).await.unwrap();
    view.fs().write_file("/dog.jpg", b"woof").await.unwrap();
    let mut out = Vec::new();
    alice
        .fs()
        .download("/album/dog.jpg", &mut out)
        .await
        .unwrap();
    assert_eq!(out, b"woof");

    // The owner lists them with the server's counts.
    let links = alice.links().await.unwrap();
    assert_eq!(links.len(), 4);
    let first = links.iter().find(|l| l.id == link.id).unwrap();
    assert_eq!(first.status.as_ref().unwrap().uses, 2);
    assert!(first.info.password);
    let revoked = links.iter().find(|l| l.id == file_link.id).unwrap();
    assert!(revoked.status.as_ref().unwrap().revoked);

    // Links that were never made, and malformed ones.
    let e = alice
        .revoke_link(&SecretLink::random("http://x", "alice", false).id)
        .await;
    assert!(matches!(e, Err(Error::UnknownLink(_))), "{e:?}");
    assert!(SecretLink::parse("http://h/link/alice/abc#s=xyz").is_err());
    assert!(SecretLink::parse(&url.replace('#', "?")).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_and_links_follow_rotations_and_new_writers() {
    let dir = tempfile::tempdir().unwrap();
    let net = server(dir.path()).await;
    let alice = user(&net, "alice").await;
    let bob = user(&net, "bob").await;
    let carol = user(&net, "carol").await;
    befriend(&bob, &alice, false).await;
    befriend(&carol, &alice, false).await;
    alice.fs().mkdir("/album").await.unwrap();
    alice
        .fs()
        .write_file("/album/a.jpg", b"first")
        .await
        .unwrap();
    alice
        .share("/alice/album", &["carol"], false)
        .await
        .unwrap();
    let plain = alice
        .create_link("/alice/album", LinkOptions::default())
        .await
        .unwrap();
    let protected = alice
        .create_link(
            "/alice/album/a.jpg",
            LinkOptions {
                password: Some("pw".into()),
                ..LinkOptions::default()
            },
        )
        .await
        .unwrap();
    let check = |expected: &'static [u8]| {
        let (net, carol) = (Arc::clone(&net), &carol);
        let (plain, protected) = (plain.clone(), protected.clone());
        async move {
            assert_eq!(read(carol, "/alice/album/a.jpg").await.unwrap(), expected);
            let view = open_link(Arc::clone(&net), &plain, None).await.unwrap();
            let mut out = Vec::new();
            view.fs().download("/a.jpg", &mut out).await.unwrap();
            assert_eq!(out, expected);
            let view = open_link(net, &protected, Some("pw")).await.unwrap();
            let mut out = Vec::new();
            view.fs().download("/", &mut out).await.unwrap();
            assert_eq!(out, expected);
        }
    };
    check(b"first").await;

    // Sharing it writable moves it under a writer of its own; carol's
    // read-only share and both links follow.
    alice.share("/alice/album", &["bob"], true).await.unwrap();
    write(&bob, "/alice/album/b.jpg", b"from bob")
        .await
        .unwrap();
    check(b"first").await;

    // Unsharing from bob rotates every key; the others still follow.
    alice.unshare("/alice/album", &["bob"]).await.unwrap();
    // (An edit in place: a new upload of the name would be a new file,
    // which a link to the old one does not follow.)
    alice
        .fs()
        .write_at("/album/a.jpg", 0, b"second")
        .await
        .unwrap();
    check(b"second").await;
    assert!(read(&bob, "/alice/album/a.jpg").await.is_err());
    // A revoked link stays revoked through a later rotation.
    alice.revoke_link(&plain.id).await.unwrap();
    alice.unshare("/alice/album", &["carol"]).await.unwrap();
    let e = open_link(Arc::clone(&net), &plain, None)
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), Some(ErrorCode::LinkRevoked), "{e}");
    let view = open_link(Arc::clone(&net), &protected, Some("pw"))
        .await
        .unwrap();
    let mut out = Vec::new();
    view.fs().download("/", &mut out).await.unwrap();
    assert_eq!(out, b"second");
}
