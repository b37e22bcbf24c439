//! Helpers the server's integration tests share.

use std::sync::Arc;

use bytes::Bytes;
use peergos_api::SignupRequest;
use peergos_keys::{LoginParams, PublicKeyHash, SigningKeyPair};
use peergos_pki::{Claim, KeyChain};
use peergos_server::{Config, Server};

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A server with user `alice` whose identity key the test holds.
pub async fn server_with_alice(dir: &std::path::Path) -> (Arc<Server>, SigningKeyPair) {
    let server = Server::open(Config::new(dir)).await.unwrap();
    let identity = SigningKeyPair::random();
    let login = SigningKeyPair::random();
    let chain = KeyChain::new(
        Claim {
            username: "alice".into(),
            identity: PublicKeyHash::of(&identity.public()),
            expiry: now_ms() / 1000 + 3600,
            servers: vec![server.id().to_string()],
        },
        &identity,
    )
    .unwrap();
    server
        .signup(SignupRequest {
            username: "alice".into(),
            chain,
            login: LoginParams::new_random(),
            login_key: login.public(),
            data: Bytes::from_static(b"sealed static data"),
            token: None,
        })
        .await
        .unwrap();
    (server, identity)
}
