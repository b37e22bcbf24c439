//! Upload transactions outlive a restart of the server: their blocks stay
//! protected from garbage collection, and the upload carries on in the
//! same transaction, until it is closed.

use peergos_blockstore::{PutBlocks, SignedBlock};
use peergos_ipld::Codec;
use peergos_keys::PublicKeyHash;
use peergos_server::{Config, Server};

use crate::common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_transaction_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (server, identity) = common::server_with_alice(dir.path()).await;
    // What signing up left unreachable (the PKI's old root) goes first.
    server.collect_garbage().await.unwrap();
    let owner = PublicKeyHash::of(&identity.public());
    let block = |i: u8| SignedBlock::sign(&identity, Codec::Raw, vec![i; 4096]);
    let put = |tx, blocks| PutBlocks {
        owner,
        writer: owner,
        transaction: tx,
        blocks,
    };
    let tx = server.start_transaction(&owner).await.unwrap();
    let first = server.put(put(tx, vec![block(1)])).await.unwrap();
    drop(server);

    // Restarted: the upload goes on in the same transaction, and a
    // collection spares both blocks although no pointer reaches them.
    let server = Server::open(Config::new(dir.path())).await.unwrap();
    let second = server.put(put(tx, vec![block(2)])).await.unwrap();
    let report = server.collect_garbage().await.unwrap();
    assert_eq!(report.deleted, 0, "{report:?}");
    for cid in first.iter().chain(&second) {
        assert!(server.has(cid).await.unwrap(), "{cid} was collected");
    }

    // Closed, restarted again: nothing protects them any more.
    server.close_transaction(&owner, &tx).await.unwrap();
    drop(server);
    let server = Server::open(Config::new(dir.path())).await.unwrap();
    let e = server.put(put(tx, vec![block(3)])).await.unwrap_err();
    assert!(e.to_string().contains("transaction"), "{e}");
    let report = server.collect_garbage().await.unwrap();
    assert_eq!(
        (report.deleted, report.freed_bytes),
        (2, 2 * 4096),
        "{report:?}"
    );
    for cid in first.iter().chain(&second) {
        assert!(!server.has(cid).await.unwrap());
    }
}
