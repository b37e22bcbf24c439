//! Real encodings for the `follow_request` and `secret_link` fuzz targets:
//! they pass through the fuzz bodies, and the committed `valid-*` seeds
//! keep decoding.

use peergos_cryptree::AbsoluteCapability;
use peergos_ipld::cbor;
use peergos_keys::{pad, BoxingKeyPair, PublicKeyHash, SigningKeyPair};
use peergos_social::{
    FollowBody, FollowRequest, LinkRecord, SecretLink, ShareItem, ShareList, SocialState,
    PADDED_SIZE,
};

fn cap(owner: &SigningKeyPair, writable: bool) -> AbsoluteCapability {
    peergos_testkit::cryptree::random_cap(owner, writable)
}

fn follow_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let bob = SigningKeyPair::random();
    let request = FollowRequest::sign(
        FollowBody {
            v: 1,
            from: "bob".into(),
            id: PublicKeyHash::of(&bob.public()),
            to: "alice".into(),
            cap: Some(cap(&bob, false)),
            reply: true,
            back: true,
            t: 1_700_000_000_000,
        },
        &bob,
    )
    .unwrap();
    let bare = cbor::to_vec(&request).unwrap();
    let mut padded = bare.clone();
    pad(&mut padded, PADDED_SIZE);
    let sealed = request.seal(BoxingKeyPair::random().public()).unwrap();
    let mut state = SocialState::new();
    state.sent.insert("carol".into(), 7);
    state
        .shares
        .entry("/alice/x".into())
        .or_default()
        .insert("bob".into(), false);
    let mut list = ShareList::new();
    list.put(ShareItem {
        path: "/alice/x".into(),
        cap: cap(&bob, false),
    });
    vec![
        ("request", bare),
        ("padded", padded),
        ("sealed", sealed),
        ("state", state.to_bytes().unwrap()),
        ("share-list", list.to_bytes().unwrap()),
    ]
}

fn link_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let link = SecretLink::random("http://127.0.0.1:8000", "alice", false);
    let keys = link.keys(None).unwrap();
    let record = LinkRecord {
        id: link.id.clone(),
        blob: keys.seal(&cap(&SigningKeyPair::random(), false)).unwrap(),
        token_hash: keys.token_hash(),
        expiry: Some(1_800_000_000_000),
        max_uses: Some(3),
    };
    let open = LinkRecord {
        expiry: None,
        max_uses: None,
        ..record.clone()
    };
    vec![
        ("record", cbor::to_vec(&record).unwrap()),
        ("record-unlimited", cbor::to_vec(&open).unwrap()),
        ("url", link.to_url().into_bytes()),
        (
            "url-password",
            SecretLink::random("https://peergos.example", "alice", true)
                .to_url()
                .into_bytes(),
        ),
        ("blob", record.blob.clone()),
    ]
}

fn write(target: &str, seeds: &[(&str, Vec<u8>)]) {
    if let Some(dir) = peergos_testkit::fuzz::seed_dir() {
        let dir = dir.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds {
            std::fs::write(dir.join(format!("valid-{name}")), bytes).unwrap();
        }
    }
}

#[test]
fn real_encodings_pass_the_fuzz_bodies_and_seed_them() {
    let follow = follow_seeds();
    for (_, bytes) in &follow {
        peergos_testkit::fuzz::follow_request(bytes);
    }
    write("follow_request", &follow);
    let links = link_seeds();
    for (_, bytes) in &links {
        peergos_testkit::fuzz::secret_link(bytes);
    }
    write("secret_link", &links);
}

#[test]
fn committed_seeds_still_decode() {
    let follow = peergos_testkit::fuzz::valid_seeds("follow_request");
    assert!(follow.len() >= 5, "only {} follow seeds", follow.len());
    let decodes = |data: &[u8]| {
        FollowRequest::decode(data).is_ok()
            || cbor::from_slice::<FollowRequest>(data).is_ok()
            || SocialState::from_bytes(data).is_ok()
            || ShareList::from_bytes(data, "alice").is_ok()
            || data.len() == peergos_social::SEALED_SIZE
    };
    for seed in &follow {
        assert!(decodes(seed), "a follow seed no longer decodes");
    }
    let links = peergos_testkit::fuzz::valid_seeds("secret_link");
    assert!(links.len() >= 5, "only {} link seeds", links.len());
    for seed in &links {
        let ok = cbor::from_slice::<LinkRecord>(seed).is_ok()
            || std::str::from_utf8(seed).is_ok_and(|t| SecretLink::parse(t).is_ok())
            || seed.len() % 256 == 40;
        assert!(ok, "a link seed no longer decodes");
    }
}
