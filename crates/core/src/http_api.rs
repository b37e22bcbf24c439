//! [`NetworkAccess`] over HTTP: each method is one route of the table in
//! [`peergos_api::endpoint`].

use async_trait::async_trait;
use bytes::Bytes;
use peergos_api::endpoint::{self as ep};
use peergos_api::{
    ChampLookup, ChangeRequest, CreateLink, DataRequest, DeleteRequests, Error as ApiError,
    FollowPost, GetManyRequest, GetRequest, Info, LinkStatus, LoginRequest, NetworkAccess,
    OpenLink, OwnerRequest, PendingFollow, PkiAnswer, Result, RevokeLink, SignupRequest, Space,
    TxRequest, UpdateLink, MAX_GET_MANY, PUT_CONTENT_TYPE,
};
use peergos_blockstore::{BlockAuth, PutBlocks, TransactionId};
use peergos_ipld::Cid;
use peergos_keys::{LoginParams, PublicKeyHash};
use peergos_pki::{check_username, KeyChain};
use peergos_pointers::SignedPointer;

use crate::network::{decode, HttpNetwork, Parts};

#[async_trait]
impl NetworkAccess for HttpNetwork {
    fn address(&self) -> String {
        self.base().to_string()
    }

    async fn info(&self) -> Result<Info> {
        self.call(&ep::INFO, &[], None).await
    }

    async fn put(&self, request: &PutBlocks) -> Result<Vec<Cid>> {
        let body = Parts::new(peergos_api::encode_put_parts(request));
        let bytes = self
            .call_raw(&ep::PUT, PUT_CONTENT_TYPE, reqwest::Body::wrap(body))
            .await?
            .ok_or_else(|| ApiError::WrongAnswer {
                route: ep::PUT.name,
                reason: "404 not found".into(),
            })?;
        decode(&ep::PUT, &bytes)
    }

    async fn get(
        &self,
        cid: &Cid,
        auth: Option<&BlockAuth>,
        owner: Option<&PublicKeyHash>,
    ) -> Result<Option<Bytes>> {
        let request = GetRequest {
            cid: *cid,
            auth: auth.cloned(),
            owner: owner.copied(),
        };
        self.fetch(&ep::GET, &[], Some(&request)).await
    }

    async fn get_many(
        &self,
        requests: &[(Cid, Option<BlockAuth>)],
        owner: Option<&PublicKeyHash>,
    ) -> Result<Vec<Option<Bytes>>> {
        let requests = &requests[..requests.len().min(MAX_GET_MANY)];
        let body: GetManyRequest = requests
            .iter()
            .map(|(cid, auth)| GetRequest {
                cid: *cid,
                auth: auth.clone(),
                owner: owner.copied(),
            })
            .collect();
        let answer = self.call(&ep::GET_MANY, &[], Some(&body)).await?;
        if answer.is_empty() != requests.is_empty() || answer.len() > requests.len() {
            return Err(ApiError::WrongAnswer {
                route: ep::GET_MANY.name,
                reason: format!(
                    "{} blocks for a request of {}",
                    answer.len(),
                    requests.len()
                ),
            });
        }
        Ok(answer
            .into_iter()
            .map(|b| b.map(|b| Bytes::from(b.into_vec())))
            .collect())
    }

    async fn has(&self, cid: &Cid) -> Result<bool> {
        self.call(&ep::HAS, &[&cid.to_string()], None).await
    }

    async fn champ_lookup(&self, root: &Cid, key: [u8; 32]) -> Result<Vec<Bytes>> {
        let request = ChampLookup { root: *root, key };
        let blocks = self.call(&ep::CHAMP_LOOKUP, &[], Some(&request)).await?;
        Ok(blocks
            .into_iter()
            .map(|b| Bytes::from(b.into_vec()))
            .collect())
    }

    async fn start_transaction(&self, owner: &PublicKeyHash) -> Result<TransactionId> {
        let request = TxRequest {
            owner: *owner,
            transaction: None,
        };
        let id = self.call(&ep::TX_START, &[], Some(&request)).await?;
        let id: [u8; 16] = id
            .as_slice()
            .try_into()
            .map_err(|_| ApiError::WrongAnswer {
                route: ep::TX_START.name,
                reason: format!("a transaction id of {} bytes, not 16", id.len()),
            })?;
        Ok(TransactionId::from_bytes(id))
    }

    async fn close_transaction(&self, owner: &PublicKeyHash, id: &TransactionId) -> Result<()> {
        let request = TxRequest {
            owner: *owner,
            transaction: Some(id.to_bytes()),
        };
        self.call(&ep::TX_CLOSE, &[], Some(&request)).await
    }

    async fn get_pointer(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
    ) -> Result<Option<SignedPointer>> {
        let params = [owner.to_string(), writer.to_string()];
        self.call(&ep::GET_POINTER, &[&params[0], &params[1]], None)
            .await
    }

    async fn set_pointer(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
        update: &SignedPointer,
    ) -> Result<()> {
        let params = [owner.to_string(), writer.to_string()];
        self.call(&ep::SET_POINTER, &[&params[0], &params[1]], Some(update))
            .await
    }

    async fn pki_lookup(&self, username: &str) -> Result<PkiAnswer> {
        check_username(username)?;
        self.call(&ep::PKI_LOOKUP, &[username], None).await
    }

    async fn renew_name(&self, chain: &KeyChain) -> Result<()> {
        self.fetch(&ep::PKI_RENEW, &[], Some(chain)).await?;
        Ok(())
    }

    async fn signup(&self, request: &SignupRequest) -> Result<()> {
        self.call(&ep::SIGNUP, &[], Some(request)).await
    }

    async fn login_params(&self, username: &str) -> Result<LoginParams> {
        check_username(username)?;
        self.call(&ep::LOGIN_PARAMS, &[username], None).await
    }

    async fn login(&self, username: &str, request: &LoginRequest) -> Result<Bytes> {
        let data = self.call(&ep::LOGIN, &[username], Some(request)).await?;
        Ok(Bytes::from(data.into_vec()))
    }

    async fn update_data(&self, username: &str, request: &DataRequest) -> Result<()> {
        self.call(&ep::UPDATE_DATA, &[username], Some(request))
            .await
    }

    async fn change_password(&self, username: &str, request: &ChangeRequest) -> Result<()> {
        self.call(&ep::CHANGE_PASSWORD, &[username], Some(request))
            .await
    }

    async fn space(&self, owner: &PublicKeyHash) -> Result<Space> {
        self.call(&ep::SPACE, &[&owner.to_string()], None).await
    }

    async fn post_follow(&self, target: &str, sealed: &[u8]) -> Result<()> {
        check_username(target)?;
        let request = FollowPost {
            sealed: Bytes::copy_from_slice(sealed),
        };
        self.call(&ep::POST_FOLLOW, &[target], Some(&request)).await
    }

    async fn follow_requests(
        &self,
        username: &str,
        request: &OwnerRequest,
    ) -> Result<Vec<PendingFollow>> {
        check_username(username)?;
        self.call(&ep::FOLLOW_REQUESTS, &[username], Some(request))
            .await
    }

    async fn delete_follow_requests(&self, username: &str, request: &DeleteRequests) -> Result<()> {
        check_username(username)?;
        self.call(&ep::DELETE_REQUESTS, &[username], Some(request))
            .await
    }

    async fn create_link(&self, username: &str, request: &CreateLink) -> Result<()> {
        check_username(username)?;
        self.call(&ep::CREATE_LINK, &[username], Some(request))
            .await
    }

    async fn list_links(&self, username: &str, request: &OwnerRequest) -> Result<Vec<LinkStatus>> {
        check_username(username)?;
        self.call(&ep::LIST_LINKS, &[username], Some(request)).await
    }

    async fn revoke_link(&self, username: &str, request: &RevokeLink) -> Result<()> {
        check_username(username)?;
        self.call(&ep::REVOKE_LINK, &[username], Some(request))
            .await
    }

    async fn update_link(&self, username: &str, request: &UpdateLink) -> Result<()> {
        check_username(username)?;
        self.call(&ep::UPDATE_LINK, &[username], Some(request))
            .await
    }

    async fn open_link(&self, request: &OpenLink) -> Result<Bytes> {
        let blob = self.call(&ep::OPEN_LINK, &[], Some(request)).await?;
        Ok(Bytes::from(blob.into_vec()))
    }
}
