//! The client speaks TLS and checks certificates: a server whose
//! certificate no trusted root signed is refused before any request, with
//! an error that says so.

use std::sync::Arc;

use peergos_api::Error;
use peergos_core::{HttpNetwork, NetworkAccess};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_refused() {
    peergos_core::init_tls();
    // A TLS server on loopback with a self-signed certificate.
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let chain = vec![cert.cert.der().clone()];
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = Arc::clone(&handshakes);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            // The client gives up during the handshake.
            let _ = acceptor.accept(stream).await;
        }
    });

    let net = HttpNetwork::new(&format!("https://localhost:{port}")).unwrap();
    let err = net.info().await.unwrap_err();
    assert!(
        handshakes.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "the client never connected"
    );
    match &err {
        Error::Unreachable { address, reason } => {
            assert!(address.contains(&port.to_string()), "{err}");
            // rustls says "invalid peer certificate: UnknownIssuer".
            assert!(reason.contains("invalid peer certificate"), "{err}");
        }
        other => panic!("expected an unreachable server, got {other}"),
    }
}
