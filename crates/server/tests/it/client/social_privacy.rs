//! What the server stores for social actions: follow requests that do not
//! say who sent them, shared folders that do not name the friend, and
//! link records that do not hold the capability. Every check reads the
//! server's own files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use peergos_core::{LinkOptions, NetworkAccess, UserContext};
use peergos_ipld::Cid;
use peergos_keys::BoxingKeyPair;
use peergos_server::{Config, Server};
use peergos_social::{FollowRequest, SEALED_SIZE};

const TARGET: &str = "alice-the-target";
const SENDER: &str = "bob-the-sender";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.len() <= haystack.len() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every file under `dir`.
fn files(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(path);
            }
        }
    }
    out
}

/// Every block the server under `dir` stores, with its bytes (small ones
/// are rows of a database, so its raw file is not enough).
fn stored(dir: &Path) -> BTreeMap<Cid, Bytes> {
    peergos_blockstore::file::stored_blocks(dir.join("blocks"))
        .unwrap()
        .into_iter()
        .collect()
}

fn follow_rows(dir: &Path) -> Vec<Vec<u8>> {
    let conn = rusqlite::Connection::open(dir.join("accounts.sqlite")).unwrap();
    let mut stmt = conn
        .prepare("SELECT sealed FROM follow_requests ORDER BY received")
        .unwrap();
    stmt.query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<Vec<Vec<u8>>, _>>()
        .unwrap()
}

fn link_rows(dir: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let conn = rusqlite::Connection::open(dir.join("accounts.sqlite")).unwrap();
    let mut stmt = conn.prepare("SELECT blob, token_hash FROM links").unwrap();
    stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// Everything that identifies `user` in a recoverable form: the name, the
/// identity key (raw, encoded, as a CID and as text).
fn identifiers(user: &UserContext) -> Vec<Vec<u8>> {
    let id = user.identity();
    let key = id.key().unwrap().to_bytes();
    vec![
        user.username().as_bytes().to_vec(),
        key.to_vec(),
        key[1..].to_vec(),
        id.cid().to_bytes(),
        id.to_string().into_bytes(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_cannot_see_who_follows_whom_or_what_is_shared() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::open(Config::new(dir.path())).await.unwrap();
    let server_id = *server.id();
    let net: Arc<dyn NetworkAccess> = server;
    let signup = |name: &'static str| {
        let net = Arc::clone(&net);
        async move { UserContext::signup(net, name, "pw", None).await.unwrap() }
    };
    let alice = signup(TARGET).await;
    let bob = signup(SENDER).await;
    let x = signup("x").await;
    let before = stored(dir.path());

    // Two pending requests from senders with names of different lengths.
    bob.follow(TARGET).await.unwrap();
    x.follow(TARGET).await.unwrap();
    let rows = follow_rows(dir.path());
    assert_eq!(rows.len(), 2);
    let mut hidden = identifiers(&bob);
    hidden.push(server_id.cid().to_bytes());
    hidden.push(server_id.to_string().into_bytes());
    for sealed in &rows {
        // One size for every request: the length says nothing either.
        assert_eq!(sealed.len(), SEALED_SIZE);
        for needle in &hidden {
            assert!(
                !contains(sealed, needle),
                "a stored request shows {needle:?}"
            );
        }
        // Only the target's key opens it.
        assert!(FollowRequest::open(sealed, &BoxingKeyPair::random()).is_err());
        assert!(FollowRequest::open(sealed, bob.boxing()).is_err());
        assert_eq!(
            FollowRequest::open(sealed, alice.boxing()).unwrap().body.to,
            TARGET
        );
    }
    // A second request from the same sender shares nothing with the first
    // (a fresh ephemeral key each time), so requests cannot be linked.
    bob.follow(TARGET).await.unwrap();
    let rows = follow_rows(dir.path());
    assert_eq!(rows.len(), 3);
    let (first, again) = (&rows[0], &rows[2]);
    assert_ne!(first[..33], again[..33]);
    assert!(!contains(again, &first[40..72]));

    // Alice accepts and shares a folder with bob: none of the blocks this
    // wrote names bob, alice or the folder.
    alice.accept(SENDER, true).await.unwrap();
    bob.follow_requests().await.unwrap();
    alice.fs().mkdir("/holiday-snaps").await.unwrap();
    alice
        .fs()
        .write_file("/holiday-snaps/beach.jpg", b"sand")
        .await
        .unwrap();
    alice
        .share(&format!("/{TARGET}/holiday-snaps"), &[SENDER], false)
        .await
        .unwrap();
    // Only x's request is left: answered ones are gone from the server.
    assert_eq!(follow_rows(dir.path()).len(), 1);
    let written: Vec<(Cid, Bytes)> = stored(dir.path())
        .into_iter()
        .filter(|(cid, _)| !before.contains_key(cid))
        .collect();
    assert!(written.len() > 10, "only {} blocks written", written.len());
    // (Keys do appear: each writer's signed WriterData names its owner,
    // which the server must know to check pointers. Names never do.)
    let names: Vec<Vec<u8>> = [SENDER, TARGET, "holiday-snaps", "beach.jpg"]
        .iter()
        .map(|n| n.as_bytes().to_vec())
        .collect();
    for (cid, block) in &written {
        for needle in &names {
            assert!(
                !contains(block, needle),
                "block {cid} shows {:?}",
                String::from_utf8_lossy(needle)
            );
        }
    }

    // A secret link's record holds neither the capability nor the secret.
    let link = alice
        .create_link(&format!("/{TARGET}/holiday-snaps"), LinkOptions::default())
        .await
        .unwrap();
    let url = link.to_url();
    let secret_text = url.split("#s=").nth(1).unwrap();
    let secret = data_encoding::BASE32_NOPAD
        .decode(secret_text.to_ascii_uppercase().as_bytes())
        .unwrap();
    let cap = alice
        .fs()
        .capability("/holiday-snaps")
        .await
        .unwrap()
        .read_only();
    let cap_cbor = peergos_ipld::cbor::to_vec(&cap).unwrap();
    let mut secrets: Vec<Vec<u8>> = vec![
        secret.clone(),
        secret_text.as_bytes().to_vec(),
        cap.read.as_bytes().to_vec(),
        cap.label.0.to_vec(),
        cap_cbor,
        cap.to_text().unwrap().into_bytes(),
    ];
    if let Some(bat) = &cap.bat {
        secrets.push(bat.as_bytes().to_vec());
    }
    let rows = link_rows(dir.path());
    assert_eq!(rows.len(), 1);
    for (blob, token_hash) in &rows {
        for needle in &secrets {
            assert!(!contains(blob, needle) && !contains(token_hash, needle));
        }
    }
    // Nor does any block or any file the server keeps hold the secret or
    // the read key. (The label does appear: it is the node's key in the
    // writer's CHAMP.)
    for (cid, block) in stored(dir.path()) {
        for needle in &secrets[..3] {
            assert!(
                !contains(&block, needle),
                "block {cid} holds a link secret or key"
            );
        }
    }
    for path in files(dir.path()) {
        let bytes = std::fs::read(&path).unwrap();
        for needle in &secrets[..3] {
            assert!(
                !contains(&bytes, needle),
                "{} holds a link secret or key",
                path.display()
            );
        }
    }
}
