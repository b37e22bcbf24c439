//! The social journey against the real daemon process over HTTP: follow,
//! accept, share read-only and writable, unshare, and secret links with a
//! password, a use limit, an expiry and revocation, across a restart.

use peergos_core::ErrorCode;
use std::sync::Arc;
use std::time::Duration;

use peergos_core::{
    open_link, HttpNetwork, LinkOptions, NetworkAccess, Place, SharedView, UserContext,
};
use peergos_testkit::daemon::TempDaemon;

const DAEMON: &str = env!("CARGO_BIN_EXE_peergos-daemon");

fn http(url: &str) -> Arc<dyn NetworkAccess> {
    Arc::new(HttpNetwork::new(url).unwrap())
}

async fn fs_of(user: &UserContext, path: &str) -> (Arc<peergos_core::RemoteFs>, String) {
    match user.locate(path).await.unwrap() {
        Place::Fs { fs, path } => (fs, path),
        Place::Virtual { .. } => panic!("{path} is not in a shared tree"),
    }
}

async fn read(fs: &peergos_core::RemoteFs, path: &str) -> Result<Vec<u8>, peergos_core::Error> {
    let mut out = Vec::new();
    fs.download(path, &mut out).await?;
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_share_unshare_and_links() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = TempDaemon::start(DAEMON, dir.path(), &[]);
    let alice = UserContext::signup(http(daemon.url()), "alice", "alice pw", None)
        .await
        .unwrap();
    let bob = UserContext::signup(http(daemon.url()), "bob", "bob pw", None)
        .await
        .unwrap();

    // bob follows alice; the request waits on the server across a restart.
    bob.follow("alice").await.unwrap();
    drop((alice, bob));
    daemon.restart();
    let alice = UserContext::login(http(daemon.url()), "alice", "alice pw")
        .await
        .unwrap();
    let bob = UserContext::login(http(daemon.url()), "bob", "bob pw")
        .await
        .unwrap();
    let pending = alice.follow_requests().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].from, "bob");
    alice.accept("bob", false).await.unwrap();
    bob.follow_requests().await.unwrap();
    assert!(bob.social().await.unwrap().following.contains_key("alice"));

    // One folder read-only, one writable.
    alice.fs().mkdir("/read").await.unwrap();
    alice
        .fs()
        .write_file("/read/plan.txt", b"the plan")
        .await
        .unwrap();
    alice.fs().mkdir("/write").await.unwrap();
    alice.share("/alice/read", &["bob"], false).await.unwrap();
    alice.share("/alice/write", &["bob"], true).await.unwrap();

    let (shared, path) = fs_of(&bob, "/alice/read/plan.txt").await;
    assert_eq!(read(&shared, &path).await.unwrap(), b"the plan");
    let kept = shared.root().clone();
    let (writable, path) = fs_of(&bob, "/alice/write").await;
    writable
        .write_file(&format!("{path}/reply.txt"), b"from bob")
        .await
        .unwrap();
    assert_eq!(
        read(alice.fs(), "/write/reply.txt").await.unwrap(),
        b"from bob"
    );

    // Unshared: bob reads none of alice's new writes, not even with the
    // capability he kept.
    alice.unshare("/alice/read", &["bob"]).await.unwrap();
    alice
        .fs()
        .write_file("/read/plan.txt", b"the new plan")
        .await
        .unwrap();
    alice
        .fs()
        .write_file("/read/more.txt", b"more")
        .await
        .unwrap();
    assert!(bob.locate("/alice/read/plan.txt").await.is_err());
    if let Ok(view) = SharedView::open(http(daemon.url()), kept).await {
        assert!(read(view.fs(), "/plan.txt").await.is_err());
        assert!(read(view.fs(), "/more.txt").await.is_err());
    }

    // carol, with no account, opens a password-protected two-use link.
    let link = alice
        .create_link(
            "/alice/read",
            LinkOptions {
                max_uses: Some(2),
                password: Some("carol's secret".into()),
                ..LinkOptions::default()
            },
        )
        .await
        .unwrap();
    let url = link.to_url();
    daemon.restart();
    // The daemon's address changed; the link names the old one.
    let link = peergos_core::SecretLink::parse(&url).unwrap();
    let carol = http(daemon.url());
    for _ in 0..2 {
        let view = open_link(Arc::clone(&carol), &link, Some("carol's secret"))
            .await
            .unwrap();
        assert_eq!(read(view.fs(), "/plan.txt").await.unwrap(), b"the new plan");
    }
    let third = open_link(Arc::clone(&carol), &link, Some("carol's secret"))
        .await
        .err()
        .unwrap();
    assert_eq!(third.code(), Some(ErrorCode::LinkUsedUp), "{third}");

    // An expired link and a revoked link are refused.
    let alice = UserContext::login(http(daemon.url()), "alice", "alice pw")
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let expiring = alice
        .create_link(
            "/alice/read/more.txt",
            LinkOptions {
                expiry: Some(now + 1000),
                ..LinkOptions::default()
            },
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let e = open_link(Arc::clone(&carol), &expiring, None)
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), Some(ErrorCode::LinkExpired), "{e}");
    let revoked = alice
        .create_link("/alice/read", LinkOptions::default())
        .await
        .unwrap();
    open_link(Arc::clone(&carol), &revoked, None).await.unwrap();
    alice.revoke_link(&revoked.id).await.unwrap();
    let e = open_link(Arc::clone(&carol), &revoked, None)
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), Some(ErrorCode::LinkRevoked), "{e}");
    assert!(daemon.is_running());
}
