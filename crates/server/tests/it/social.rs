//! The server's social rules, called directly: owner stamps must be
//! signed by the identity key, fresh and never replayed; follow requests
//! are bounded; link records are checked, counted and revoked exactly.

use peergos_api::*;
use peergos_keys::SigningKeyPair;
use peergos_server::Error;
use peergos_social::{LinkRecord, SecretLink};

use crate::common::{now_ms, server_with_alice};

fn stamp(key: &SigningKeyPair, action: &str, time_ms: u64, payload: &[u8]) -> Stamp {
    Stamp {
        time_ms,
        signature: key.sign(OWNER_AUTH, &auth_message(action, "alice", time_ms, payload)),
    }
}

#[tokio::test]
async fn owner_stamps_are_fresh_signed_and_used_once() {
    let dir = tempfile::tempdir().unwrap();
    let (server, identity) = server_with_alice(dir.path()).await;
    server.post_follow("alice", &[1u8; 3000]).await.unwrap();
    // The same request twice is stored once.
    server.post_follow("alice", &[1u8; 3000]).await.unwrap();
    server.post_follow("alice", &[2u8; 3000]).await.unwrap();

    let t = now_ms();
    let good = OwnerRequest {
        stamp: stamp(&identity, "requests", t, &[]),
    };
    let waiting = server.follow_requests("alice", &good).await.unwrap();
    assert_eq!(waiting.len(), 2);
    assert_eq!(waiting[0].id, peergos_keys::sha256(&[1u8; 3000]));
    // Replayed, older, too far from the clock, another action, another key.
    for (request, what) in [
        (good.clone(), "replay"),
        (
            OwnerRequest {
                stamp: stamp(&identity, "requests", t - 1, &[]),
            },
            "older",
        ),
        (
            OwnerRequest {
                stamp: stamp(&identity, "requests", t + 3_600_000, &[]),
            },
            "future",
        ),
        (
            OwnerRequest {
                stamp: stamp(&identity, "links", t + 10, &[]),
            },
            "action",
        ),
        (
            OwnerRequest {
                stamp: stamp(&SigningKeyPair::random(), "requests", t + 20, &[]),
            },
            "key",
        ),
    ] {
        let e = server.follow_requests("alice", &request).await.unwrap_err();
        assert!(
            matches!(e, Error::Stale(_) | Error::BadRequest(_)),
            "{what}: {e}"
        );
        assert!(e.status() == 403 || e.status() == 400, "{what}: {e}");
    }

    // Deleting needs the ids signed too.
    let ids = vec![serde_bytes::ByteBuf::from(waiting[0].id.to_vec())];
    let other = vec![serde_bytes::ByteBuf::from(waiting[1].id.to_vec())];
    let e = server
        .delete_follow_requests(
            "alice",
            &DeleteRequests {
                stamp: stamp(
                    &identity,
                    "delete-requests",
                    t + 30,
                    &DeleteRequests::payload(&other),
                ),
                ids: ids.clone(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), 400, "{e}");
    server
        .delete_follow_requests(
            "alice",
            &DeleteRequests {
                stamp: stamp(
                    &identity,
                    "delete-requests",
                    t + 40,
                    &DeleteRequests::payload(&ids),
                ),
                ids,
            },
        )
        .await
        .unwrap();
    let left = server
        .follow_requests(
            "alice",
            &OwnerRequest {
                stamp: stamp(&identity, "requests", t + 50, &[]),
            },
        )
        .await
        .unwrap();
    assert_eq!(left.len(), 1);

    // Bounds.
    assert_eq!(
        server
            .post_follow("alice", &[0u8; 5000])
            .await
            .unwrap_err()
            .status(),
        400
    );
    assert_eq!(
        server
            .post_follow("bob", &[0u8; 10])
            .await
            .unwrap_err()
            .status(),
        404
    );
    assert_eq!(
        server
            .post_follow("Bob!", &[0u8; 10])
            .await
            .unwrap_err()
            .status(),
        400
    );
}

#[tokio::test]
async fn link_records_are_checked_counted_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let (server, identity) = server_with_alice(dir.path()).await;
    let link = SecretLink::random("http://127.0.0.1:8000", "alice", false);
    let keys = link.keys(None).unwrap();
    let record = LinkRecord {
        id: link.id.clone(),
        blob: vec![9; 300],
        token_hash: keys.token_hash(),
        expiry: None,
        max_uses: Some(1),
    };
    let mut t = now_ms();
    let mut signed = |record: &LinkRecord| {
        t += 1;
        let payload = peergos_ipld::cbor::to_vec(record).unwrap();
        CreateLink {
            stamp: stamp(&identity, "link-create", t, &payload),
            record: record.clone(),
        }
    };
    let server = &server;
    let mut create = async |record: &LinkRecord| server.create_link("alice", &signed(record)).await;
    create(&record).await.unwrap();
    // The same id again, an expiry in the past, a zero use limit.
    assert!(create(&record).await.is_err());
    let past = LinkRecord {
        id: SecretLink::random("http://h", "alice", false).id,
        expiry: Some(1),
        ..record.clone()
    };
    assert!(create(&past)
        .await
        .unwrap_err()
        .to_string()
        .contains("past"));
    let zero = LinkRecord {
        id: SecretLink::random("http://h", "alice", false).id,
        max_uses: Some(0),
        ..record.clone()
    };
    assert_eq!(create(&zero).await.unwrap_err().status(), 400);

    // A wrong token does not count; the right one does, once.
    let wrong = OpenLink {
        id: link.id.clone(),
        owner: "alice".into(),
        token: [0; 32],
    };
    assert!(matches!(
        server.open_link(&wrong).await,
        Err(Error::LinkDenied)
    ));
    let right = OpenLink {
        id: link.id.clone(),
        owner: "alice".into(),
        token: keys.token(),
    };
    assert_eq!(
        server.open_link(&right).await.unwrap().as_ref(),
        &[9; 300][..]
    );
    assert!(matches!(
        server.open_link(&right).await,
        Err(Error::LinkUsedUp { max: 1 })
    ));
    let unknown = OpenLink {
        id: SecretLink::random("http://h", "alice", false).id,
        owner: "alice".into(),
        token: [0; 32],
    };
    assert!(matches!(
        server.open_link(&unknown).await,
        Err(Error::LinkNotFound(_))
    ));

    let listed = server
        .list_links(
            "alice",
            &OwnerRequest {
                stamp: stamp(&identity, "links", now_ms() + 100, &[]),
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].uses, listed[0].max_uses), (1, Some(1)));

    server
        .revoke_link(
            "alice",
            &RevokeLink {
                stamp: stamp(&identity, "link-revoke", now_ms() + 200, link.id.as_bytes()),
                id: link.id.clone(),
            },
        )
        .await
        .unwrap();
    assert!(matches!(
        server.open_link(&right).await,
        Err(Error::LinkRevoked)
    ));
    let e = server
        .revoke_link(
            "alice",
            &RevokeLink {
                stamp: stamp(
                    &identity,
                    "link-revoke",
                    now_ms() + 300,
                    unknown.id.as_bytes(),
                ),
                id: unknown.id.clone(),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::LinkNotFound(_)), "{e}");
}
