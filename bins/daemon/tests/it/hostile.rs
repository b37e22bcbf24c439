//! A real daemon behind a hostile proxy (`peergos_testkit::hostile`):
//! every mode ends in correct data or a loud, specific error, never wrong
//! data and never a damaged account.

use peergos_core::ErrorCode;
use std::sync::Arc;
use std::time::Duration;

use peergos_core::{Device, Error, HttpNetwork, NetworkAccess, UserContext};
use peergos_testkit::cryptree::data;
use peergos_testkit::daemon::TempDaemon;
use peergos_testkit::hostile::{HostileProxy, Mode};

const DAEMON: &str = env!("CARGO_BIN_EXE_peergos-daemon");

fn http(url: &str) -> Arc<dyn NetworkAccess> {
    Arc::new(HttpNetwork::new(url).unwrap())
}

/// A real daemon with a hostile proxy in front of it.
struct Setup {
    proxy: HostileProxy,
    _daemon: TempDaemon,
    _dir: tempfile::TempDir,
}

impl Setup {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let daemon = TempDaemon::start(DAEMON, dir.path(), &[]);
        let proxy = HostileProxy::start(daemon.url()).await;
        Setup {
            proxy,
            _daemon: daemon,
            _dir: dir,
        }
    }
}

/// alice (password "pw") logging in through `proxy` on `device`.
async fn login_alice(proxy: &HostileProxy, device: &Device) -> peergos_core::Result<UserContext> {
    UserContext::login_with(http(proxy.url()), "alice", "pw", device).await
}

async fn read_all(user: &UserContext, path: &str) -> peergos_core::Result<Vec<u8>> {
    let mut out = Vec::new();
    user.fs().download(path, &mut out).await?;
    Ok(out)
}

/// Item 1 of the hostile-server issue: a server that answers a login with
/// the account as it was at signup (before a password change) cannot make
/// a client create a second home or lose the first: the home is named in
/// the login data from the start and never changes, and a device that saw
/// a newer version refuses the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_login_answer_never_creates_a_second_home() {
    let setup = Setup::start().await;
    let proxy = &setup.proxy;
    let state = tempfile::tempdir().unwrap();
    let device = Device::open(state.path()).unwrap();
    let alice = UserContext::signup_with(http(proxy.url()), "alice", "pw", None, &device)
        .await
        .unwrap();
    alice
        .fs()
        .write_file("/keep.txt", b"precious")
        .await
        .unwrap();
    drop(alice);
    // The proxy sees the parameters and the answer of a first login.
    let mut alice = login_alice(proxy, &device).await.unwrap();
    alice.change_password("pw", "new pw").await.unwrap();
    drop(alice);

    proxy.set(Mode::ReplayLogin);
    // A device that saw the newer version refuses the old one.
    let on_device = login_alice(proxy, &device).await;
    assert!(
        matches!(
            on_device,
            Err(Error::LoginRolledBack {
                seen: 2,
                offered: 1
            })
        ),
        "{on_device:?}"
    );
    // A brand-new device cannot tell, and opens the old version: it names
    // the same home, so it shows the real files and makes nothing.
    let fresh = UserContext::login(http(proxy.url()), "alice", "pw")
        .await
        .unwrap();
    assert_eq!(read_all(&fresh, "/keep.txt").await.unwrap(), b"precious");
    assert!(proxy.tampered() >= 4);

    // Honest again: the account and its files are as they were.
    proxy.set(Mode::Honest);
    let again = UserContext::login_with(http(proxy.url()), "alice", "new pw", &device)
        .await
        .unwrap();
    assert_eq!(read_all(&again, "/keep.txt").await.unwrap(), b"precious");
    assert_eq!(again.fs().ls("/").await.unwrap().len(), 2);
}

/// A signup that stopped before its home existed is finished by running
/// signup again, never by login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_signup_is_finished_by_signup_not_login() {
    let setup = Setup::start().await;
    let proxy = &setup.proxy;
    // Every pointer write is dropped: the account is claimed with its
    // version 1 login data, but the home never lands.
    proxy.set(Mode::DropPointerWrites);
    let _ = UserContext::signup(http(proxy.url()), "bob", "pw", None).await;
    proxy.set(Mode::Honest);
    // The server holds version 1 of the login data (no home) and the
    // identity has no filesystem: login says so and creates nothing.
    let login = UserContext::login(http(proxy.url()), "bob", "pw").await;
    assert!(
        matches!(&login, Err(Error::UnfinishedSignup(name)) if name == "bob"),
        "{login:?}"
    );
    // Someone else's password cannot take the half-made account over.
    let thief = UserContext::signup(http(proxy.url()), "bob", "other", None).await;
    assert!(
        thief
            .as_ref()
            .is_err_and(|e| e.code() == Some(ErrorCode::UsernameTaken)),
        "{thief:?}"
    );
    // The owner runs signup again: it finishes the home.
    let bob = UserContext::signup(http(proxy.url()), "bob", "pw", None)
        .await
        .unwrap();
    bob.fs().write_file("/x", b"x").await.unwrap();
    let again = UserContext::login(http(proxy.url()), "bob", "pw")
        .await
        .unwrap();
    assert_eq!(read_all(&again, "/x").await.unwrap(), b"x");
}

/// Item 2: a fresh process of the same device refuses a pointer older
/// than one an earlier process saw; a put against a replaying server says
/// "rollback", not "kept moving".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_process_refuses_a_pointer_older_than_the_device_saw() {
    let setup = Setup::start().await;
    let proxy = &setup.proxy;
    let state = tempfile::tempdir().unwrap();
    let device = Device::open(state.path()).unwrap();
    let alice = UserContext::signup_with(http(proxy.url()), "alice", "pw", None, &device)
        .await
        .unwrap();
    alice.fs().write_file("/v", b"version 1").await.unwrap();
    assert_eq!(read_all(&alice, "/v").await.unwrap(), b"version 1");
    alice.fs().write_file("/v", b"version 2").await.unwrap();
    drop(alice);

    // A new process (a new Device value on the same folder) of the device.
    proxy.set(Mode::ReplayPointers);
    let reopened = Device::open(state.path()).unwrap();
    let outcome = async {
        let user = login_alice(proxy, &reopened).await?;
        read_all(&user, "/v").await
    }
    .await;
    let err = outcome.expect_err("an old pointer must be refused");
    assert!(err.to_string().contains("rollback"), "{err}");

    // A brand-new device cannot know (docs/SECURITY.md says so) and reads
    // the old state; but a write there fails saying why.
    let fresh = UserContext::login(http(proxy.url()), "alice", "pw")
        .await
        .unwrap();
    let write = fresh.fs().write_file("/w", b"new").await;
    let err = write.expect_err("a write against a replayed pointer cannot land");
    assert!(
        err.to_string().contains("replaying an old pointer"),
        "{err}"
    );

    proxy.set(Mode::Honest);
    let honest = login_alice(proxy, &reopened).await.unwrap();
    assert_eq!(read_all(&honest, "/v").await.unwrap(), b"version 2");
}

/// Items 6 and 10: the server cannot choose a ruinous KDF cost, and a
/// corrupted login answer is called what it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_refuses_costly_parameters_and_names_a_corrupted_answer() {
    let setup = Setup::start().await;
    let proxy = &setup.proxy;
    UserContext::signup(http(proxy.url()), "alice", "pw", None)
        .await
        .unwrap();

    proxy.set(Mode::CostlyLoginParams);
    let started = std::time::Instant::now();
    let costly = UserContext::login(http(proxy.url()), "alice", "pw").await;
    match costly {
        Err(Error::KdfTooCostly { memory, limit }) => {
            assert_eq!(memory, 4 << 30);
            assert_eq!(limit, peergos_core::DEFAULT_MAX_KDF_MEMORY);
        }
        other => panic!("{other:?}"),
    }
    // Refused before scrypt ran (4 GiB would take many seconds).
    assert!(started.elapsed() < Duration::from_secs(30));

    proxy.set(Mode::CorruptLogin);
    let corrupt = UserContext::login(http(proxy.url()), "alice", "pw").await;
    assert!(
        matches!(corrupt, Err(Error::CorruptLoginData)),
        "{corrupt:?}"
    );

    // A wrong password is still just that.
    proxy.set(Mode::Honest);
    let wrong = UserContext::login(http(proxy.url()), "alice", "not pw").await;
    assert!(matches!(wrong, Err(Error::BadLogin)), "{wrong:?}");
}

/// Item 5, the client side: a server that stops answering ends in a clear
/// error instead of a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_ends_in_a_clear_error() {
    let setup = Setup::start().await;
    let proxy = &setup.proxy;
    let net: Arc<dyn NetworkAccess> =
        Arc::new(HttpNetwork::with_read_timeout(proxy.url(), Duration::from_secs(1)).unwrap());
    let alice = UserContext::signup(Arc::clone(&net), "alice", "pw", None)
        .await
        .unwrap();
    alice.fs().write_file("/a", b"a").await.unwrap();
    proxy.set(Mode::Stall);
    let err = tokio::time::timeout(Duration::from_secs(60), read_all(&alice, "/a"))
        .await
        .expect("the client must give up by itself")
        .expect_err("a stalled server cannot answer");
    assert!(err.to_string().contains("stopped answering"), "{err}");
}

/// Every tampering mode, on reads and on writes: each outcome is the right
/// bytes or an error, and once the server is honest again the account
/// reads back everything that was acknowledged (or, after a dropped write,
/// the device says the server rolled back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_ends_in_correct_data_or_a_loud_error() {
    let setup = Setup::start().await;
    let proxy = &setup.proxy;
    let big = data(9, 3 << 20);
    let setup = UserContext::signup(http(proxy.url()), "alice", "pw", None)
        .await
        .unwrap();
    setup.fs().write_file("/big", &big).await.unwrap();
    setup.fs().write_file("/small", b"small").await.unwrap();
    drop(setup);

    for mode in [
        Mode::FlipBlocks,
        Mode::TruncateBlocks,
        Mode::SwapBlocks,
        Mode::ReplayPointers,
        Mode::DropPointerWrites,
    ] {
        let state = tempfile::tempdir().unwrap();
        let device = Device::open(state.path()).unwrap();
        let user = login_alice(proxy, &device).await.unwrap();
        // Make the proxy see some block answers and a pointer move to
        // replay or swap.
        assert_eq!(
            read_all(&user, "/big")
                .await
                .unwrap_or_else(|e| panic!("{mode:?}: {e}")),
            big
        );
        let name = format!("/{mode:?}");
        user.fs().write_file(&name, b"before").await.unwrap();
        let tampered_before = proxy.tampered();

        proxy.set(mode);
        for (path, expected) in [("/big", &big[..]), ("/small", b"small")] {
            let fresh = login_alice(proxy, &device).await;
            if let Ok(fresh) = fresh {
                if let Ok(got) = read_all(&fresh, path).await {
                    assert_eq!(got, expected, "{mode:?}: wrong bytes for {path}");
                }
            }
        }
        let wrote = user.fs().write_file(&name, b"after").await;
        let read = read_all(&user, &name).await;
        if let Ok(got) = &read {
            assert!(
                got == b"after" || (wrote.is_err() && got == b"before"),
                "{mode:?}: read {:?}",
                String::from_utf8_lossy(got)
            );
        }
        assert!(
            proxy.tampered() > tampered_before,
            "{mode:?} tampered nothing"
        );

        proxy.set(Mode::Honest);
        let honest = async {
            let honest = login_alice(proxy, &device).await?;
            Ok::<_, Error>((
                read_all(&honest, "/big").await?,
                read_all(&honest, &name).await?,
            ))
        }
        .await;
        match (mode, honest) {
            (Mode::DropPointerWrites, outcome) => {
                // The server lost a write it acknowledged: this device
                // knows, and says so rather than showing the older state.
                let e = outcome.expect_err("a lost acknowledged write must not read as fine");
                assert!(e.to_string().contains("rollback"), "{mode:?}: {e}");
            }
            (_, Ok((got_big, got))) => {
                assert_eq!(got_big, big);
                if wrote.is_ok() {
                    assert_eq!(got, b"after", "{mode:?}: an acknowledged write was lost");
                }
            }
            (_, Err(e)) => panic!("{mode:?}: the honest server cannot be read: {e}"),
        }
        // Never a damaged account: a device that saw nothing logs in.
        let clean = UserContext::login(http(proxy.url()), "alice", "pw")
            .await
            .unwrap();
        assert_eq!(read_all(&clean, "/big").await.unwrap(), big);
    }
}
