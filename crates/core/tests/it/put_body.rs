//! What `HttpNetwork` puts on the wire for a put: the body is sent as a
//! list of buffers, and must still arrive as exactly the encoded put, with
//! a `Content-Length` (servers and proxies limit bodies by it).

use peergos_blockstore::{PutBlocks, SignedBlock, TransactionId};
use peergos_core::{HttpNetwork, NetworkAccess};
use peergos_ipld::{cbor, Codec};
use peergos_keys::{PublicKeyHash, SigningKeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Accepts one HTTP/1.1 request, answers it with `answer` (CBOR), and
/// returns its header lines (lowercased) and its body.
async fn capture_one(listener: tokio::net::TcpListener, answer: Vec<u8>) -> (String, Vec<u8>) {
    let (mut socket, _) = listener.accept().await.unwrap();
    let mut seen = Vec::new();
    let head_end = loop {
        let mut buf = [0u8; 64 * 1024];
        let n = socket.read(&mut buf).await.unwrap();
        assert!(n > 0, "the client closed before its headers ended");
        seen.extend_from_slice(&buf[..n]);
        if let Some(at) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&seen[..head_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no content-length in\n{head}"));
    let mut body = seen[head_end..].to_vec();
    while body.len() < length {
        let mut buf = vec![0u8; 1 << 20];
        let n = socket.read(&mut buf).await.unwrap();
        assert!(n > 0, "the body ended at {} of {length} bytes", body.len());
        body.extend_from_slice(&buf[..n]);
    }
    let reply = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/cbor\r\ncontent-length: {}\r\n\r\n",
        answer.len()
    );
    socket.write_all(reply.as_bytes()).await.unwrap();
    socket.write_all(&answer).await.unwrap();
    (head, body)
}

#[tokio::test]
async fn a_put_body_arrives_whole_with_its_length() {
    let key = SigningKeyPair::random();
    let owner = PublicKeyHash::of(&key.public());
    // An empty block, a small one and a fragment-sized one.
    let blocks: Vec<SignedBlock> = [0usize, 37, (1 << 20) + 21]
        .iter()
        .map(|&n| SignedBlock::sign(&key, Codec::Raw, vec![n as u8 ^ 0x5a; n]))
        .collect();
    let put = PutBlocks {
        owner,
        writer: owner,
        transaction: TransactionId::random(),
        blocks,
    };
    let cids: Vec<_> = put
        .blocks
        .iter()
        .map(|b| peergos_ipld::Cid::hash(b.codec, &b.data))
        .collect();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(capture_one(listener, cbor::to_vec(&cids).unwrap()));

    let network = HttpNetwork::new(&url).unwrap();
    let answered = network.put(&put).await.unwrap();
    let (head, body) = server.await.unwrap();

    assert_eq!(answered, cids);
    assert!(head.starts_with("post /v1/blocks/put "), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert_eq!(body, peergos_api::encode_put(&put));
    let decoded = peergos_api::decode_put(&body.into()).unwrap();
    let datas = |p: &PutBlocks| p.blocks.iter().map(|b| b.data.clone()).collect::<Vec<_>>();
    assert_eq!(datas(&decoded), datas(&put));
}
