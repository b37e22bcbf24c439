//! A block store in S3-compatible object storage (AWS S3, MinIO, Garage,
//! SeaweedFS, Ceph RGW), over `object_store`.
//!
//! Each block is one object, `{prefix}blocks/{cid}`, written with a single
//! PUT: object storage makes an object visible only whole, so no reader
//! ever sees part of a block. Reads check the hash like the file store, and
//! access tokens are enforced the same way. Open transactions live in
//! memory, as with the file store.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use peergos_ipld::Cid;
use peergos_keys::PublicKeyHash;

use crate::transactions::Transactions;
use crate::{
    access, BlockAuth, BlockStore, Error, LocalBlockStore, PutBlocks, Result, TransactionId,
};

/// Where an [`S3Store`] keeps its blocks.
#[derive(Clone, Debug)]
pub struct S3Config {
    /// The service's URL (`http://127.0.0.1:9000` for a local MinIO,
    /// `https://s3.eu-west-1.amazonaws.com` for AWS).
    pub endpoint: String,
    /// The bucket; it must exist.
    pub bucket: String,
    /// The region (`us-east-1` when the service does not care).
    pub region: String,
    /// The access key id.
    pub access_key: String,
    /// The secret access key.
    pub secret_key: String,
    /// A prefix for every object name (`""`, or say `"peergos/"`), so one
    /// bucket can hold other things too.
    pub prefix: String,
}

/// Blocks in an S3 bucket.
#[derive(Clone)]
pub struct S3Store {
    store: Arc<AmazonS3>,
    prefix: String,
    where_: String,
    transactions: Arc<Transactions>,
}

fn s3_error<'a>(
    action: &'static str,
    place: &'a str,
) -> impl Fn(object_store::Error) -> Error + 'a {
    move |e| Error::Unreachable {
        address: place.to_string(),
        reason: format!("{action}: {e}"),
    }
}

impl S3Store {
    /// A store on `config`'s bucket. Nothing is contacted until the first
    /// request; [`check`](Self::check) tries the bucket at once.
    pub fn open(config: &S3Config) -> Result<Self> {
        // rustls needs a process-wide provider; ring's is enough for S3.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let store = AmazonS3Builder::new()
            .with_endpoint(&config.endpoint)
            .with_allow_http(config.endpoint.starts_with("http://"))
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key)
            .with_secret_access_key(&config.secret_key)
            .with_virtual_hosted_style_request(false)
            .build()
            .map_err(|e| Error::Unreachable {
                address: config.endpoint.clone(),
                reason: format!("configuring the S3 client: {e}"),
            })?;
        Ok(S3Store {
            store: Arc::new(store),
            prefix: config.prefix.clone(),
            where_: format!(
                "{}/{}/{}",
                config.endpoint.trim_end_matches('/'),
                config.bucket,
                config.prefix
            ),
            transactions: Arc::new(Transactions::default()),
        })
    }

    /// Lists a page of the bucket, so a wrong endpoint, bucket or key is
    /// reported at startup rather than at the first upload.
    pub async fn check(&self) -> Result<()> {
        let prefix = self.blocks_prefix();
        let mut listing = self.store.list(Some(&prefix));
        if let Some(first) = listing.next().await {
            first.map_err(s3_error("listing the bucket", &self.where_))?;
        }
        Ok(())
    }

    fn blocks_prefix(&self) -> Path {
        Path::from(format!("{}blocks", self.prefix))
    }

    fn path_of(&self, cid: &Cid) -> Path {
        Path::from(format!("{}blocks/{cid}", self.prefix))
    }

    async fn read(&self, cid: &Cid) -> Result<Option<Bytes>> {
        if cid.is_identity() {
            return Ok(Some(Bytes::copy_from_slice(cid.digest())));
        }
        let path = self.path_of(cid);
        let data = match self.store.get(&path).await {
            Ok(got) => got
                .bytes()
                .await
                .map_err(s3_error("reading a block", &self.where_))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(s3_error("reading a block", &self.where_)(e)),
        };
        cid.verify(&data).map_err(|_| Error::Corrupt {
            cid: *cid,
            path: format!("s3:{}", path).into(),
        })?;
        Ok(Some(data))
    }
}

#[async_trait]
impl BlockStore for S3Store {
    async fn put(&self, request: PutBlocks) -> Result<Vec<Cid>> {
        self.transactions
            .check(&request.owner, &request.transaction)?;
        let blocks = {
            let request = request.clone();
            tokio::task::spawn_blocking(move || request.check()).await??
        };
        let cids: Vec<Cid> = blocks.iter().map(|b| *b.cid()).collect();
        // Recorded before they are stored, as in the file store.
        self.transactions
            .record(&request.owner, &request.transaction, cids.iter().copied())?;
        futures::stream::iter(blocks.into_iter().filter(|b| !b.cid().is_identity()))
            .map(|block| async move {
                self.store
                    .put(
                        &self.path_of(block.cid()),
                        PutPayload::from(block.data().clone()),
                    )
                    .await
                    .map(|_| ())
                    .map_err(s3_error("storing a block", &self.where_))
            })
            .buffer_unordered(8)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(cids)
    }

    async fn get(&self, cid: &Cid, auth: Option<&BlockAuth>) -> Result<Option<Bytes>> {
        let Some(data) = self.read(cid).await? else {
            return Ok(None);
        };
        access::check(cid, &data, auth)?;
        Ok(Some(data))
    }

    async fn get_trusted(&self, cid: &Cid) -> Result<Option<Bytes>> {
        self.read(cid).await
    }

    async fn check(&self, cid: &Cid) -> Result<Option<u64>> {
        // Every read is hashed.
        Ok(self.read(cid).await?.map(|b| b.len() as u64))
    }

    async fn has(&self, cid: &Cid) -> Result<bool> {
        Ok(self.size(cid).await?.is_some())
    }

    async fn size(&self, cid: &Cid) -> Result<Option<u64>> {
        if cid.is_identity() {
            return Ok(Some(cid.digest().len() as u64));
        }
        match self.store.head(&self.path_of(cid)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(s3_error("looking up a block", &self.where_)(e)),
        }
    }

    async fn start_transaction(&self, owner: &PublicKeyHash) -> Result<TransactionId> {
        Ok(self.transactions.start(owner))
    }

    async fn close_transaction(&self, owner: &PublicKeyHash, id: &TransactionId) -> Result<()> {
        self.transactions.close(owner, id)
    }
}

#[async_trait]
impl LocalBlockStore for S3Store {
    async fn resume_transaction(
        &self,
        owner: &PublicKeyHash,
        id: TransactionId,
        age: std::time::Duration,
        blocks: Vec<Cid>,
    ) -> Result<()> {
        self.transactions.resume(owner, id, age, blocks);
        Ok(())
    }

    async fn protected(&self) -> Result<BTreeSet<Cid>> {
        Ok(self.transactions.protected())
    }

    fn list(&self) -> BoxStream<'_, Result<Cid>> {
        let prefix = self.blocks_prefix();
        self.store
            .list(Some(&prefix))
            .filter_map(move |meta| async move {
                match meta {
                    // Names that are not CIDs are not ours; leave them alone.
                    Ok(meta) => meta
                        .location
                        .filename()
                        .and_then(|n| n.parse().ok())
                        .map(Ok),
                    Err(e) => Some(Err(s3_error("listing blocks", &self.where_)(e))),
                }
            })
            .boxed()
    }

    async fn delete(&self, cid: &Cid) -> Result<()> {
        match self.store.delete(&self.path_of(cid)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(s3_error("deleting a block", &self.where_)(e)),
        }
    }
}
