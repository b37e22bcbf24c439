//! [`NetworkAccess`]: the server API as a client sees it, one method per
//! route of [`crate::endpoint`]. `peergos-core` implements it over HTTP;
//! `peergos-server`'s `Server` implements it in the same process, so
//! tests and apps that embed a server use the server itself, not a copy
//! of the API.
//!
//! Nothing here trusts the server: callers check every hash, signature
//! and proof.

use async_trait::async_trait;
use bytes::Bytes;
use peergos_blockstore::{BlockAuth, PutBlocks, TransactionId};
use peergos_ipld::Cid;
use peergos_keys::{LoginParams, PublicKeyHash};
use peergos_pki::KeyChain;
use peergos_pointers::SignedPointer;

use crate::{
    ChangeRequest, CreateLink, DataRequest, DeleteRequests, Info, LinkStatus, LoginRequest,
    OpenLink, OwnerRequest, PendingFollow, PkiAnswer, Result, RevokeLink, SignupRequest, Space,
    UpdateLink,
};

/// The server API as a client sees it.
#[async_trait]
pub trait NetworkAccess: Send + Sync + 'static {
    /// Where requests go (for messages).
    fn address(&self) -> String;
    /// The server's id, PKI key and signup policy.
    async fn info(&self) -> Result<Info>;
    /// Stores blocks.
    async fn put(&self, request: &PutBlocks) -> Result<Vec<Cid>>;
    /// A block (None if the server does not have it). `owner`, whose
    /// space the block is in, lets a server that does not hold the block
    /// fetch it from the owner's home server.
    async fn get(
        &self,
        cid: &Cid,
        auth: Option<&BlockAuth>,
        owner: Option<&PublicKeyHash>,
    ) -> Result<Option<Bytes>>;
    /// Many blocks in one round trip, in request order (None for a block
    /// the server does not have). The answer may cover only the first of
    /// `requests` (the server bounds each answer's bytes): ask again for
    /// the rest. `owner` is as for [`get`](Self::get).
    async fn get_many(
        &self,
        requests: &[(Cid, Option<BlockAuth>)],
        owner: Option<&PublicKeyHash>,
    ) -> Result<Vec<Option<Bytes>>>;
    /// Whether the server has a block.
    async fn has(&self, cid: &Cid) -> Result<bool>;
    /// The CHAMP blocks from `root` to `key`.
    async fn champ_lookup(&self, root: &Cid, key: [u8; 32]) -> Result<Vec<Bytes>>;
    /// Opens a transaction.
    async fn start_transaction(&self, owner: &PublicKeyHash) -> Result<TransactionId>;
    /// Closes a transaction.
    async fn close_transaction(&self, owner: &PublicKeyHash, id: &TransactionId) -> Result<()>;
    /// A pointer's current signed update.
    async fn get_pointer(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
    ) -> Result<Option<SignedPointer>>;
    /// Moves a pointer.
    async fn set_pointer(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
        update: &SignedPointer,
    ) -> Result<()>;
    /// A name's PKI entry with its proof.
    async fn pki_lookup(&self, username: &str) -> Result<PkiAnswer>;
    /// Extends the caller's own name's chain (a renewal).
    async fn renew_name(&self, chain: &KeyChain) -> Result<()>;
    /// Creates an account.
    async fn signup(&self, request: &SignupRequest) -> Result<()>;
    /// A user's login parameters.
    async fn login_params(&self, username: &str) -> Result<LoginParams>;
    /// A user's encrypted static data.
    async fn login(&self, username: &str, request: &LoginRequest) -> Result<Bytes>;
    /// Replaces a user's static data.
    async fn update_data(&self, username: &str, request: &DataRequest) -> Result<()>;
    /// Changes a user's login key.
    async fn change_password(&self, username: &str, request: &ChangeRequest) -> Result<()>;
    /// Space used and allowed.
    async fn space(&self, owner: &PublicKeyHash) -> Result<Space>;
    /// Delivers a sealed follow request to `target`.
    async fn post_follow(&self, target: &str, sealed: &[u8]) -> Result<()>;
    /// The follow requests waiting for `username`.
    async fn follow_requests(
        &self,
        username: &str,
        request: &OwnerRequest,
    ) -> Result<Vec<PendingFollow>>;
    /// Deletes answered follow requests.
    async fn delete_follow_requests(&self, username: &str, request: &DeleteRequests) -> Result<()>;
    /// Stores a secret-link record.
    async fn create_link(&self, username: &str, request: &CreateLink) -> Result<()>;
    /// The owner's secret links and their use counts.
    async fn list_links(&self, username: &str, request: &OwnerRequest) -> Result<Vec<LinkStatus>>;
    /// Revokes a secret link.
    async fn revoke_link(&self, username: &str, request: &RevokeLink) -> Result<()>;
    /// Points a secret link at a new encrypted capability.
    async fn update_link(&self, username: &str, request: &UpdateLink) -> Result<()>;
    /// Opens a secret link (counts a use): the encrypted capability.
    async fn open_link(&self, request: &OpenLink) -> Result<Bytes>;
}
