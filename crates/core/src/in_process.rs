//! A server in the same process as the client, behind the same trait as
//! one over HTTP.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use peergos_blockstore::{BlockAuth, PutBlocks, TransactionId};
use peergos_ipld::Cid;
use peergos_keys::{LoginParams, PublicKeyHash};
use peergos_pki::KeyChain;
use peergos_pointers::SignedPointer;
use peergos_server::api::{
    ChangeRequest, CreateLink, DataRequest, DeleteRequests, Info, LinkStatus, LoginRequest,
    OpenLink, OwnerRequest, PendingFollow, PkiAnswer, RevokeLink, SignupRequest, Space, UpdateLink,
};
use peergos_server::Server;

use crate::NetworkAccess;
use crate::Result;

/// A server in the same process: no sockets, same semantics.
#[derive(Clone)]
pub struct InProcess {
    server: Arc<Server>,
}

impl InProcess {
    /// Access to `server`.
    pub fn new(server: Arc<Server>) -> Self {
        InProcess { server }
    }
}

#[async_trait]
impl NetworkAccess for InProcess {
    fn address(&self) -> String {
        format!("in-process://{}", self.server.id())
    }

    async fn info(&self) -> Result<Info> {
        Ok(self.server.info())
    }

    async fn put(&self, request: &PutBlocks) -> Result<Vec<Cid>> {
        Ok(self.server.put(request.clone()).await?)
    }

    async fn get(
        &self,
        cid: &Cid,
        auth: Option<&BlockAuth>,
        owner: Option<&PublicKeyHash>,
    ) -> Result<Option<Bytes>> {
        Ok(self.server.get_routed(cid, auth, owner).await?)
    }

    async fn get_many(
        &self,
        requests: &[(Cid, Option<BlockAuth>)],
        owner: Option<&PublicKeyHash>,
    ) -> Result<Vec<Option<Bytes>>> {
        let requests: Vec<_> = requests
            .iter()
            .map(|(cid, auth)| (*cid, auth.clone(), owner.copied()))
            .collect();
        Ok(self.server.get_many_routed(&requests).await?)
    }

    async fn has(&self, cid: &Cid) -> Result<bool> {
        Ok(self.server.has(cid).await?)
    }

    async fn champ_lookup(&self, root: &Cid, key: [u8; 32]) -> Result<Vec<Bytes>> {
        Ok(self.server.champ_lookup(root, key).await?)
    }

    async fn start_transaction(&self, owner: &PublicKeyHash) -> Result<TransactionId> {
        Ok(self.server.start_transaction(owner).await?)
    }

    async fn close_transaction(&self, owner: &PublicKeyHash, id: &TransactionId) -> Result<()> {
        Ok(self.server.close_transaction(owner, id).await?)
    }

    async fn get_pointer(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
    ) -> Result<Option<SignedPointer>> {
        Ok(self.server.get_pointer(owner, writer).await?)
    }

    async fn set_pointer(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
        update: &SignedPointer,
    ) -> Result<()> {
        Ok(self
            .server
            .set_pointer(owner, writer, update.clone())
            .await?)
    }

    async fn pki_lookup(&self, username: &str) -> Result<PkiAnswer> {
        Ok(self.server.pki_lookup(username).await?)
    }

    async fn renew_name(&self, chain: &KeyChain) -> Result<()> {
        Ok(self.server.pki_renew(chain).await?)
    }

    async fn signup(&self, request: &SignupRequest) -> Result<()> {
        Ok(self.server.signup(request.clone()).await?)
    }

    async fn login_params(&self, username: &str) -> Result<LoginParams> {
        Ok(self.server.login_params(username).await?)
    }

    async fn login(&self, username: &str, request: &LoginRequest) -> Result<Bytes> {
        Ok(self.server.login(username, request).await?)
    }

    async fn update_data(&self, username: &str, request: &DataRequest) -> Result<()> {
        Ok(self.server.update_data(username, request).await?)
    }

    async fn change_password(&self, username: &str, request: &ChangeRequest) -> Result<()> {
        Ok(self.server.change_password(username, request).await?)
    }

    async fn space(&self, owner: &PublicKeyHash) -> Result<Space> {
        Ok(self.server.space(owner).await?)
    }

    async fn post_follow(&self, target: &str, sealed: &[u8]) -> Result<()> {
        Ok(self.server.post_follow(target, sealed).await?)
    }

    async fn follow_requests(
        &self,
        username: &str,
        request: &OwnerRequest,
    ) -> Result<Vec<PendingFollow>> {
        Ok(self.server.follow_requests(username, request).await?)
    }

    async fn delete_follow_requests(&self, username: &str, request: &DeleteRequests) -> Result<()> {
        Ok(self
            .server
            .delete_follow_requests(username, request)
            .await?)
    }

    async fn create_link(&self, username: &str, request: &CreateLink) -> Result<()> {
        Ok(self.server.create_link(username, request).await?)
    }

    async fn list_links(&self, username: &str, request: &OwnerRequest) -> Result<Vec<LinkStatus>> {
        Ok(self.server.list_links(username, request).await?)
    }

    async fn revoke_link(&self, username: &str, request: &RevokeLink) -> Result<()> {
        Ok(self.server.revoke_link(username, request).await?)
    }

    async fn update_link(&self, username: &str, request: &UpdateLink) -> Result<()> {
        Ok(self.server.update_link(username, request).await?)
    }

    async fn open_link(&self, request: &OpenLink) -> Result<Bytes> {
        Ok(self.server.open_link(request).await?)
    }
}
