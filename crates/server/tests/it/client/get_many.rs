//! Batched block reads: a server answers a `get-many` up to a byte budget
//! (a prefix of the request), and the client's store asks again for the
//! rest, so a caller gets every block, in order, whatever the batch's size.

use std::sync::Arc;

use peergos_blockstore::{BlockAuth, BlockStore, PutBlocks, SignedBlock};
use peergos_core::{HttpNetwork, NetworkAccess, Remote};
use peergos_ipld::{Cid, Codec};
use peergos_keys::PublicKeyHash;
use peergos_server::peers::GET_MANY_BUDGET;

use crate::common;

const MIB: usize = 1 << 20;

/// A server holding 20 blocks of 1 MiB for alice, and the requests for
/// them with an unknown CID at index 3.
async fn twenty_blocks(
    dir: &std::path::Path,
) -> (
    Arc<peergos_server::Server>,
    Vec<Vec<u8>>,
    Vec<(Cid, Option<BlockAuth>)>,
) {
    let (server, identity) = common::server_with_alice(dir).await;
    let owner = PublicKeyHash::of(&identity.public());
    let contents: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; MIB]).collect();
    let tx = server.start_transaction(&owner).await.unwrap();
    let cids = server
        .put(PutBlocks {
            owner,
            writer: owner,
            transaction: tx,
            blocks: contents
                .iter()
                .map(|c| SignedBlock::sign(&identity, Codec::Raw, c.clone()))
                .collect(),
        })
        .await
        .unwrap();
    let mut requests: Vec<(Cid, Option<BlockAuth>)> =
        cids.into_iter().map(|cid| (cid, None)).collect();
    requests.insert(3, (Cid::hash(Codec::Raw, b"nobody stored this"), None));
    (server, contents, requests)
}

fn expected(contents: &[Vec<u8>]) -> Vec<Option<Vec<u8>>> {
    let mut all: Vec<Option<Vec<u8>>> = contents.iter().cloned().map(Some).collect();
    all.insert(3, None);
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_answers_a_prefix_within_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (server, contents, requests) = twenty_blocks(dir.path()).await;
    let routed: Vec<_> = requests
        .iter()
        .map(|(cid, auth)| (*cid, auth.clone(), None))
        .collect();
    let answer = server.get_many_routed(&routed).await.unwrap();
    let held = GET_MANY_BUDGET / MIB;
    // The budget's worth of blocks, and the missing one among them.
    assert_eq!(answer.len(), held + 1, "{} answers", answer.len());
    let answer: Vec<Option<Vec<u8>>> = answer.into_iter().map(|b| b.map(|b| b.to_vec())).collect();
    assert_eq!(answer, expected(&contents)[..held + 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_store_gets_every_block_in_order_over_several_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (server, contents, requests) = twenty_blocks(dir.path()).await;
    let in_process: Arc<dyn NetworkAccess> = server.clone();
    let url = peergos_testkit::daemon::serve_on_loopback(Arc::clone(&server)).await;
    let over_http: Arc<dyn NetworkAccess> = Arc::new(HttpNetwork::new(&url).unwrap());
    for net in [in_process, over_http] {
        // One answer does not hold them all...
        let first = net.get_many(&requests, None).await.unwrap();
        assert!(first.len() < requests.len(), "{}", net.address());
        // ...but the store asks until it has every one.
        let all = Remote::new(net).get_many(&requests).await.unwrap();
        let all: Vec<Option<Vec<u8>>> = all.into_iter().map(|b| b.map(|b| b.to_vec())).collect();
        assert_eq!(all, expected(&contents));
    }
}
