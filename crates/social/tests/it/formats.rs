//! The social formats: follow requests seal, open and verify only as they
//! should; state and share lists round-trip canonically; links parse,
//! derive and open exactly.

use peergos_cryptree::AbsoluteCapability;
use peergos_ipld::cbor;
use peergos_keys::{BoxingKeyPair, PublicKeyHash, SigningKeyPair, SymmetricKey};
use peergos_social::{
    is_within, Error, FollowBody, FollowRequest, Follower, Following, LinkInfo, LinkRecord,
    SecretLink, ShareItem, ShareList, SocialState, PADDED_SIZE, SEALED_SIZE,
};
use proptest::prelude::*;

fn cap(owner: &SigningKeyPair, writable: bool) -> AbsoluteCapability {
    peergos_testkit::cryptree::random_cap(owner, writable)
}

fn body(from: &str, to: &str, identity: &SigningKeyPair) -> FollowBody {
    FollowBody {
        v: 1,
        from: from.into(),
        id: PublicKeyHash::of(&identity.public()),
        to: to.into(),
        cap: Some(cap(identity, false)),
        reply: false,
        back: false,
        t: 1_700_000_000_000,
    }
}

#[test]
fn follow_requests_open_only_for_the_target_and_verify() {
    let bob = SigningKeyPair::random();
    let alice_box = BoxingKeyPair::random();
    let request = FollowRequest::sign(body("bob", "alice", &bob), &bob).unwrap();
    let sealed = request.seal(alice_box.public()).unwrap();
    assert_eq!(sealed.len(), SEALED_SIZE);
    assert_eq!(FollowRequest::open(&sealed, &alice_box).unwrap(), request);
    assert!(FollowRequest::open(&sealed, &BoxingKeyPair::random()).is_err());

    // Any flipped byte fails the box.
    for i in [0, 40, 1200, sealed.len() - 1] {
        let mut bad = sealed.clone();
        bad[i] ^= 1;
        assert!(FollowRequest::open(&bad, &alice_box).is_err(), "byte {i}");
    }
    // Oversized input is refused before any work.
    let e = FollowRequest::open(&vec![2u8; 5000], &alice_box).unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
}

#[test]
fn forged_or_odd_requests_are_refused() {
    let bob = SigningKeyPair::random();
    let mallory = SigningKeyPair::random();
    // Signing with a key other than the one named.
    assert!(FollowRequest::sign(body("bob", "alice", &bob), &mallory).is_err());
    // A request whose body was changed after signing.
    let mut request = FollowRequest::sign(body("bob", "alice", &bob), &bob).unwrap();
    request.body.from = "carol".into();
    let e = request.verify().unwrap_err();
    assert!(e.to_string().contains("signature"), "{e}");
    // A capability in someone else's space, or a writable one.
    let mut other = body("bob", "alice", &bob);
    other.cap = Some(cap(&mallory, false));
    let e = FollowRequest::sign(other, &bob)
        .unwrap()
        .verify()
        .unwrap_err();
    assert!(e.to_string().contains("sender's own space"), "{e}");
    let mut writable = body("bob", "alice", &bob);
    writable.cap = Some(cap(&bob, true));
    assert!(FollowRequest::sign(writable, &bob)
        .unwrap()
        .verify()
        .is_err());
    // Bad names.
    assert!(FollowRequest::sign(body("Bob", "alice", &bob), &bob).is_err());
    // Padding that is not the ISO form.
    let plain =
        cbor::to_vec(&FollowRequest::sign(body("bob", "alice", &bob), &bob).unwrap()).unwrap();
    let mut unpadded = plain.clone();
    unpadded.resize(PADDED_SIZE, 0);
    assert!(FollowRequest::decode(&unpadded).is_err());
}

#[test]
fn state_and_share_lists_round_trip() {
    let bob = SigningKeyPair::random();
    let mut state = SocialState::new();
    state.following.insert(
        "bob".into(),
        Following {
            cap: cap(&bob, false),
            id: PublicKeyHash::of(&bob.public()),
        },
    );
    state.followers.insert(
        "bob".into(),
        Follower {
            id: PublicKeyHash::of(&bob.public()),
        },
    );
    state.followers.insert(
        "carol".into(),
        Follower {
            id: PublicKeyHash::of(&bob.public()),
        },
    );
    state.sent.insert("dave".into(), 5);
    state
        .shares
        .entry("/alice/a".into())
        .or_default()
        .insert("bob".into(), true);
    state
        .shares
        .entry("/alice/a/b".into())
        .or_default()
        .insert("carol".into(), false);
    state
        .shares
        .entry("/alice/ab".into())
        .or_default()
        .insert("carol".into(), false);
    state.links.insert(
        "id".into(),
        LinkInfo {
            path: "/alice/a".into(),
            url: "http://h/link/x#s=y".into(),
            writable: false,
            expiry: Some(9),
            max_uses: None,
            password: true,
            created: 3,
            key: SymmetricKey::random(),
        },
    );
    let bytes = state.to_bytes().unwrap();
    assert_eq!(SocialState::from_bytes(&bytes).unwrap(), state);
    assert_eq!(state.friends(), vec!["bob".to_string()]);
    assert_eq!(state.shares_within("/alice/a").len(), 2);
    assert_eq!(
        state.shared_with("carol"),
        vec![
            ("/alice/a/b".to_string(), false),
            ("/alice/ab".to_string(), false)
        ]
    );
    assert!(SocialState::from_bytes(&bytes[..bytes.len() - 1]).is_err());

    let mut list = ShareList::new();
    list.put(ShareItem {
        path: "/alice/z".into(),
        cap: cap(&bob, false),
    });
    list.put(ShareItem {
        path: "/alice/a".into(),
        cap: cap(&bob, true),
    });
    list.put(ShareItem {
        path: "/alice/z".into(),
        cap: cap(&bob, true),
    });
    assert_eq!(list.items.len(), 2);
    assert_eq!(list.items[0].path, "/alice/a");
    let bytes = list.to_bytes().unwrap();
    assert_eq!(ShareList::from_bytes(&bytes, "alice").unwrap(), list);
    // A list naming paths outside the sharer's home is refused.
    assert!(ShareList::from_bytes(&bytes, "bob").is_err());
    assert!(list.remove("/alice/z") && !list.remove("/alice/z"));
    let mut sneaky = ShareList::new();
    sneaky.put(ShareItem {
        path: "/alice/../bob".into(),
        cap: cap(&bob, false),
    });
    assert!(ShareList::from_bytes(&sneaky.to_bytes().unwrap(), "alice").is_err());
}

#[test]
fn within() {
    assert!(is_within("/a", "/a"));
    assert!(is_within("/a/b", "/a"));
    assert!(is_within("/a/b", "/a/"));
    assert!(!is_within("/ab", "/a"));
    assert!(!is_within("/a", "/a/b"));
}

#[test]
fn links_parse_exactly_and_open_with_the_right_keys() {
    let link = SecretLink::random("http://127.0.0.1:8000/", "alice", false);
    let url = link.to_url();
    assert!(
        url.starts_with("http://127.0.0.1:8000/link/alice/"),
        "{url}"
    );
    assert_eq!(SecretLink::parse(&url).unwrap(), link);
    for bad in [
        url.replace('#', ""),
        url.replace("/link/", "/links/"),
        url.replace("/link/alice/", "/link/"),
        url.replace("/alice/", "/Alice!/"),
        url.replace("http://", "ftp//"),
        url.to_ascii_uppercase(),
        format!("{url}&x=1"),
        url.replace("#s=", "#t="),
        url[..url.len() - 2].to_string(),
    ] {
        assert!(SecretLink::parse(&bad).is_err(), "{bad}");
    }

    let owner = SigningKeyPair::random();
    let capability = cap(&owner, false);
    let keys = link.keys(None).unwrap();
    let blob = keys.seal(&capability).unwrap();
    assert_eq!(blob.len() % 256, 40, "padded to 256 plus the AEAD overhead");
    assert_eq!(keys.open(&blob).unwrap(), capability);
    // Another link's keys do not open it.
    let other = SecretLink::random("http://127.0.0.1:8000", "alice", false);
    assert!(matches!(
        other.keys(None).unwrap().open(&blob),
        Err(Error::LinkDoesNotOpen)
    ));
    let mut tampered = blob.clone();
    tampered[30] ^= 1;
    assert!(keys.open(&tampered).is_err());

    // With a password: the token depends on it, and it is required.
    let protected = SecretLink::random("https://example.org", "alice", true);
    assert!(protected.keys(None).is_err());
    let right = protected.keys(Some("pw")).unwrap();
    let wrong = protected.keys(Some("pW")).unwrap();
    assert_ne!(right.token(), wrong.token());
    assert_eq!(right.token_hash(), peergos_keys::sha256(&right.token()));
    let blob = right.seal(&capability).unwrap();
    assert!(wrong.open(&blob).is_err());
    assert_eq!(right.open(&blob).unwrap(), capability);
}

#[test]
fn link_records_validate() {
    let link = SecretLink::random("http://h", "alice", false);
    let record = LinkRecord {
        id: link.id.clone(),
        blob: vec![1; 100],
        token_hash: [2; 32],
        expiry: None,
        max_uses: Some(2),
    };
    record.validate().unwrap();
    let bytes = cbor::to_vec(&record).unwrap();
    assert_eq!(cbor::from_slice::<LinkRecord>(&bytes).unwrap(), record);
    for bad in [
        LinkRecord {
            id: "short".into(),
            ..record.clone()
        },
        LinkRecord {
            blob: vec![0; 5000],
            ..record.clone()
        },
        LinkRecord {
            max_uses: Some(0),
            ..record.clone()
        },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
}

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9_-]{1,32}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Every request has the same sealed size whatever its names.
    #[test]
    fn sealed_size_is_fixed(from in name(), to in name(), back: bool, reply: bool, t: u64) {
        let key = SigningKeyPair::random();
        let mut b = body(&from, &to, &key);
        b.back = back;
        b.reply = reply;
        b.t = t;
        let request = FollowRequest::sign(b, &key).unwrap();
        let target = BoxingKeyPair::random();
        let sealed = request.seal(target.public()).unwrap();
        prop_assert_eq!(sealed.len(), SEALED_SIZE);
        prop_assert_eq!(FollowRequest::open(&sealed, &target).unwrap(), request);
    }

    /// Social state round-trips canonically.
    #[test]
    fn state_round_trips(
        sent in proptest::collection::btree_map(name(), any::<u64>(), 0..8),
        shares in proptest::collection::btree_map(
            "/alice(/[a-z]{1,8}){0,3}",
            proptest::collection::btree_map(name(), any::<bool>(), 0..4),
            0..6,
        ),
    ) {
        let state = SocialState { sent, shares, ..SocialState::new() };
        let bytes = state.to_bytes().unwrap();
        let back = SocialState::from_bytes(&bytes).unwrap();
        prop_assert_eq!(back.to_bytes().unwrap(), bytes);
        prop_assert_eq!(back, state);
    }

    /// Links survive their text form; the text is never accepted with a
    /// character changed in the secret.
    #[test]
    fn link_text_round_trips(port in 1u16.., password: bool, flip in 0usize..52) {
        let link = SecretLink::random(&format!("http://127.0.0.1:{port}"), "alice", password);
        let url = link.to_url();
        prop_assert_eq!(SecretLink::parse(&url).unwrap(), link.clone());
        let start = url.find("#s=").unwrap() + 3;
        let mut bytes = url.into_bytes();
        let c = &mut bytes[start + flip];
        *c = if *c == b'a' { b'b' } else { b'a' };
        let changed = String::from_utf8(bytes).unwrap();
        if let Ok(other) = SecretLink::parse(&changed) {
            prop_assert_ne!(other, link);
        }
    }
}
