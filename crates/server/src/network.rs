//! The server as a [`NetworkAccess`] in the same process: tests and apps
//! that embed a server call it through the same trait as one over HTTP,
//! with refusals carried the same way (the [`ErrorBody`] an HTTP answer
//! would have).

use async_trait::async_trait;
use bytes::Bytes;
use peergos_api::{
    ChangeRequest, CreateLink, DataRequest, DeleteRequests, Info, LinkStatus, LoginRequest,
    NetworkAccess, OpenLink, OwnerRequest, PendingFollow, PkiAnswer, Result, RevokeLink,
    SignupRequest, Space, UpdateLink,
};
use peergos_blockstore::{BlockAuth, PutBlocks, TransactionId};
use peergos_ipld::Cid;
use peergos_keys::{LoginParams, PublicKeyHash};
use peergos_pki::KeyChain;
use peergos_pointers::SignedPointer;

use crate::{Error, Server};

/// A refusal as an HTTP client would see it.
fn refused(e: Error) -> peergos_api::Error {
    peergos_api::Error::Refused {
        status: e.status(),
        body: e.body(),
    }
}

#[async_trait]
impl NetworkAccess for Server {
    fn address(&self) -> String {
        format!("in-process://{}", self.id())
    }

    async fn info(&self) -> Result<Info> {
        Ok(Server::info(self))
    }

    async fn put(&self, request: &PutBlocks) -> Result<Vec<Cid>> {
        Server::put(self, request.clone()).await.map_err(refused)
    }

    async fn get(
        &self,
        cid: &Cid,
        auth: Option<&BlockAuth>,
        owner: Option<&PublicKeyHash>,
    ) -> Result<Option<Bytes>> {
        Server::get_routed(self, cid, auth, owner)
            .await
            .map_err(refused)
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
        Server::get_many_routed(self, &requests)
            .await
            .map_err(refused)
    }

    async fn has(&self, cid: &Cid) -> Result<bool> {
        Server::has(self, cid).await.map_err(refused)
    }

    async fn champ_lookup(&self, root: &Cid, key: [u8; 32]) -> Result<Vec<Bytes>> {
        Server::champ_lookup(self, root, key).await.map_err(refused)
    }

    async fn start_transaction(&self, owner: &PublicKeyHash) -> Result<TransactionId> {
        Server::start_transaction(self, owner)
            .await
            .map_err(refused)
    }

    async fn close_transaction(&self, owner: &PublicKeyHash, id: &TransactionId) -> Result<()> {
        Server::close_transaction(self, owner, id)
            .await
            .map_err(refused)
    }

    async fn get_pointer(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
    ) -> Result<Option<SignedPointer>> {
        Server::get_pointer(self, owner, writer)
            .await
            .map_err(refused)
    }

    async fn set_pointer(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
        update: &SignedPointer,
    ) -> Result<()> {
        Server::set_pointer(self, owner, writer, update.clone())
            .await
            .map_err(refused)
    }

    async fn pki_lookup(&self, username: &str) -> Result<PkiAnswer> {
        Server::pki_lookup(self, username).await.map_err(refused)
    }

    async fn renew_name(&self, chain: &KeyChain) -> Result<()> {
        Server::pki_renew(self, chain).await.map_err(refused)
    }

    async fn signup(&self, request: &SignupRequest) -> Result<()> {
        Server::signup(self, request.clone()).await.map_err(refused)
    }

    async fn login_params(&self, username: &str) -> Result<LoginParams> {
        Server::login_params(self, username).await.map_err(refused)
    }

    async fn login(&self, username: &str, request: &LoginRequest) -> Result<Bytes> {
        Server::login(self, username, request)
            .await
            .map_err(refused)
    }

    async fn update_data(&self, username: &str, request: &DataRequest) -> Result<()> {
        Server::update_data(self, username, request)
            .await
            .map_err(refused)
    }

    async fn change_password(&self, username: &str, request: &ChangeRequest) -> Result<()> {
        Server::change_password(self, username, request)
            .await
            .map_err(refused)
    }

    async fn space(&self, owner: &PublicKeyHash) -> Result<Space> {
        Server::space(self, owner).await.map_err(refused)
    }

    async fn post_follow(&self, target: &str, sealed: &[u8]) -> Result<()> {
        Server::post_follow(self, target, sealed)
            .await
            .map_err(refused)
    }

    async fn follow_requests(
        &self,
        username: &str,
        request: &OwnerRequest,
    ) -> Result<Vec<PendingFollow>> {
        Server::follow_requests(self, username, request)
            .await
            .map_err(refused)
    }

    async fn delete_follow_requests(&self, username: &str, request: &DeleteRequests) -> Result<()> {
        Server::delete_follow_requests(self, username, request)
            .await
            .map_err(refused)
    }

    async fn create_link(&self, username: &str, request: &CreateLink) -> Result<()> {
        Server::create_link(self, username, request)
            .await
            .map_err(refused)
    }

    async fn list_links(&self, username: &str, request: &OwnerRequest) -> Result<Vec<LinkStatus>> {
        Server::list_links(self, username, request)
            .await
            .map_err(refused)
    }

    async fn revoke_link(&self, username: &str, request: &RevokeLink) -> Result<()> {
        Server::revoke_link(self, username, request)
            .await
            .map_err(refused)
    }

    async fn update_link(&self, username: &str, request: &UpdateLink) -> Result<()> {
        Server::update_link(self, username, request)
            .await
            .map_err(refused)
    }

    async fn open_link(&self, request: &OpenLink) -> Result<Bytes> {
        Server::open_link(self, request).await.map_err(refused)
    }
}
