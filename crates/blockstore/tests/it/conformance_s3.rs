//! The shared conformance suite against the S3 store, on a real
//! S3-compatible server (moto, started by the test; SKIPPED without it).

use peergos_blockstore::{S3Config, S3Store};
use peergos_testkit::s3;

fn store() -> Option<S3Store> {
    let endpoint = s3::endpoint()?;
    let config = S3Config {
        bucket: s3::bucket(&endpoint),
        endpoint,
        region: "us-east-1".into(),
        access_key: s3::ACCESS_KEY.into(),
        secret_key: s3::SECRET_KEY.into(),
        prefix: "peergos/".into(),
    };
    Some(S3Store::open(&config).unwrap())
}

macro_rules! conformance {
    ($($check:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let Some(store) = store() else { return };
                store.check().await.unwrap();
                peergos_testkit::blockstore::$check(std::sync::Arc::new(store)).await;
            }
        )*
    };
}

conformance!(
    put_get_round_trip,
    identity_cids_need_no_storage,
    both_hashes_name_blocks,
    bad_puts_are_refused,
    access_tokens_are_enforced,
    transactions_protect_blocks,
    delete_removes_blocks,
    concurrent_writers_and_readers,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_bucket_is_reported_at_startup() {
    let Some(endpoint) = s3::endpoint() else {
        return;
    };
    let config = S3Config {
        endpoint: endpoint.clone(),
        bucket: "no-such-bucket-here".into(),
        region: "us-east-1".into(),
        access_key: s3::ACCESS_KEY.into(),
        secret_key: s3::SECRET_KEY.into(),
        prefix: String::new(),
    };
    let err = S3Store::open(&config).unwrap().check().await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&endpoint) && text.contains("listing the bucket"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_server_is_a_clear_error() {
    let config = S3Config {
        endpoint: "http://127.0.0.1:9".into(),
        bucket: "b".into(),
        region: "us-east-1".into(),
        access_key: "k".into(),
        secret_key: "s".into(),
        prefix: String::new(),
    };
    let store = S3Store::open(&config).unwrap();
    let cid = peergos_ipld::Cid::hash(peergos_ipld::Codec::Raw, b"x");
    use peergos_blockstore::BlockStore;
    let err = store.get_trusted(&cid).await.unwrap_err();
    assert!(
        matches!(err, peergos_blockstore::Error::Unreachable { .. }),
        "{err}"
    );
}
