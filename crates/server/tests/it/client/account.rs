//! Accounts end to end against an in-process server: signup, login,
//! password change, wrong credentials, quotas.

use std::sync::Arc;

use peergos_core::{Error, ErrorCode, NetworkAccess, UserContext};
use peergos_server::{Config, Server, SignupPolicy};
use peergos_testkit::cryptree::data;

async fn server(dir: &std::path::Path) -> Arc<dyn NetworkAccess> {
    let server = Server::open(Config::new(dir)).await.unwrap();
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signup_login_and_password_change() {
    let dir = tempfile::tempdir().unwrap();
    let net = server(dir.path()).await;
    let alice = UserContext::signup(Arc::clone(&net), "alice", "pw-one", None)
        .await
        .unwrap();
    let names: Vec<String> = alice
        .fs()
        .ls("/")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec!["shared".to_string()]);
    alice
        .fs()
        .write_file("/hello.txt", b"hello world")
        .await
        .unwrap();

    // A second client logs in and sees the file.
    let mut again = UserContext::login(Arc::clone(&net), "alice", "pw-one")
        .await
        .unwrap();
    let mut out = Vec::new();
    again.fs().download("/hello.txt", &mut out).await.unwrap();
    assert_eq!(out, b"hello world");
    assert_eq!(again.identity(), alice.identity());

    // Wrong password and unknown user give the same error.
    let wrong = UserContext::login(Arc::clone(&net), "alice", "nope").await;
    assert!(matches!(wrong, Err(Error::BadLogin)), "{wrong:?}");
    let unknown = UserContext::login(Arc::clone(&net), "nobody", "pw").await;
    assert!(matches!(unknown, Err(Error::BadLogin)), "{unknown:?}");
    // The login parameters do not tell whether a name exists: an unknown
    // name gets stable parameters of the same shape.
    let p1 = net.login_params("nobody").await.unwrap();
    let p2 = net.login_params("nobody").await.unwrap();
    assert!(p1 == p2 && p1.validate().is_ok());

    // Password change: the old one stops working, the data stays.
    let mistaken = again.change_password("not-the-old-one", "pw-two").await;
    assert!(matches!(mistaken, Err(Error::BadLogin)), "{mistaken:?}");
    again.change_password("pw-one", "pw-two").await.unwrap();
    let old = UserContext::login(Arc::clone(&net), "alice", "pw-one").await;
    assert!(matches!(old, Err(Error::BadLogin)), "{old:?}");
    let new = UserContext::login(Arc::clone(&net), "alice", "pw-two")
        .await
        .unwrap();
    let mut out = Vec::new();
    new.fs().download("/hello.txt", &mut out).await.unwrap();
    assert_eq!(out, b"hello world");

    // Names are first come, first served.
    let taken = UserContext::signup(Arc::clone(&net), "alice", "other", None).await;
    assert_eq!(
        taken.as_ref().err().and_then(Error::code),
        Some(ErrorCode::UsernameTaken),
        "{taken:?}"
    );
    // Bad names are refused before anything is sent.
    assert!(UserContext::signup(Arc::clone(&net), "Alice!", "pw", None)
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signup_tokens_are_single_use() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.signup = SignupPolicy::Token;
    let server = Server::open(config).await.unwrap();
    let token = server.new_signup_token().await.unwrap();
    let net: Arc<dyn NetworkAccess> = server;

    let none = UserContext::signup(Arc::clone(&net), "bob", "pw", None).await;
    assert_eq!(
        none.err().as_ref().and_then(Error::code),
        Some(ErrorCode::TokenRequired)
    );
    let forged = UserContext::signup(Arc::clone(&net), "bob", "pw", Some("00")).await;
    assert_eq!(
        forged.err().as_ref().and_then(Error::code),
        Some(ErrorCode::TokenRequired)
    );
    UserContext::signup(Arc::clone(&net), "bob", "pw", Some(&token))
        .await
        .unwrap();
    let reused = UserContext::signup(Arc::clone(&net), "carol", "pw", Some(&token)).await;
    assert_eq!(
        reused.err().as_ref().and_then(Error::code),
        Some(ErrorCode::TokenRequired)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_refuses_growth_and_allows_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.default_quota = 12 << 20;
    let server = Server::open(config).await.unwrap();
    let net: Arc<dyn NetworkAccess> = server.clone();
    let alice = UserContext::signup(Arc::clone(&net), "alice", "pw", None)
        .await
        .unwrap();
    let fs = alice.fs();

    // Usage follows the data exactly (node blocks and fragments).
    let before = alice.space().await.unwrap().used;
    fs.write_file("/a", &data(1, 6 << 20)).await.unwrap();
    let after_a = alice.space().await.unwrap().used;
    assert!(after_a - before >= 6 << 20, "{before} -> {after_a}");
    assert!(
        after_a - before < (6 << 20) + (64 << 10),
        "{before} -> {after_a}"
    );

    // A file that does not fit is refused with the figures.
    let err = fs.write_file("/b", &data(2, 8 << 20)).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains("quota exceeded"), "{message}");
    assert!(message.contains(&(12u64 << 20).to_string()), "{message}");
    assert!(fs.stat("/b").await.is_err());

    // Fill up to the limit with a file the slack lets through, then check
    // that truncating and deleting still work over quota.
    server.accounts().set_quota("alice", after_a).await.unwrap();
    let err = fs.write_file("/c", b"small").await.unwrap_err();
    assert!(err.to_string().contains("quota exceeded"), "{err}");
    fs.truncate("/a", 1 << 20).await.unwrap();
    let truncated = alice.space().await.unwrap().used;
    assert!(truncated < after_a - (4 << 20), "{after_a} -> {truncated}");
    fs.rm("/a").await.unwrap();
    let empty = alice.space().await.unwrap().used;
    assert!(empty <= before, "{before} -> {empty}");
}
