//! The server's part in the social layer: it keeps sealed follow requests
//! for their targets and secret-link records for their owners, and
//! enforces link expiry, use limits and revocation. It can read neither:
//! requests are sealed boxes, records hold an encrypted capability and a
//! hash of the access token.

use bytes::Bytes;
use peergos_social::MAX_SEALED_SIZE;

use crate::accounts::LinkRefusal;
use crate::{now_ms, Error, Result, Server};
use peergos_api::{
    CreateLink, DeleteRequests, LinkStatus, OpenLink, OwnerRequest, PendingFollow, RevokeLink,
    UpdateLink,
};

/// Follow requests a user may have waiting; more are refused until the
/// user reads and answers some.
pub const MAX_PENDING_FOLLOWS: u64 = 1000;

/// Secret links one user may have on this server.
pub const MAX_LINKS: u64 = 10_000;

impl Server {
    /// Stores a sealed follow request for `target`. Anyone may send one:
    /// the box does not say who sent it, and the server does not ask.
    pub async fn post_follow(&self, target: &str, sealed: &[u8]) -> Result<()> {
        peergos_pki::check_username(target)?;
        if sealed.len() > MAX_SEALED_SIZE {
            return Err(Error::BadRequest(format!(
                "a sealed follow request is at most {MAX_SEALED_SIZE} bytes, not {}",
                sealed.len()
            )));
        }
        if self.stores.accounts.user(target).await?.is_none() {
            return Err(Error::UnknownUser(target.to_string()));
        }
        let id = peergos_keys::sha256(sealed);
        if !self
            .stores
            .accounts
            .add_follow_request(target, &id, sealed)
            .await?
        {
            return Err(Error::TooMany(format!(
                "{target} has {MAX_PENDING_FOLLOWS} follow requests waiting; try again later"
            )));
        }
        Ok(())
    }

    /// The follow requests waiting for `username`, for a fresh signature
    /// by their identity key.
    pub async fn follow_requests(
        &self,
        username: &str,
        request: &OwnerRequest,
    ) -> Result<Vec<PendingFollow>> {
        self.check_owner_stamp(username, "requests", &[], &request.stamp)
            .await?;
        self.stores.accounts.follow_requests(username).await
    }

    /// Deletes answered follow requests.
    pub async fn delete_follow_requests(
        &self,
        username: &str,
        request: &DeleteRequests,
    ) -> Result<()> {
        if request.ids.len() > MAX_PENDING_FOLLOWS as usize {
            return Err(Error::BadRequest(format!(
                "at most {MAX_PENDING_FOLLOWS} ids per request"
            )));
        }
        let payload = DeleteRequests::payload(&request.ids);
        self.check_owner_stamp(username, "delete-requests", &payload, &request.stamp)
            .await?;
        self.stores
            .accounts
            .delete_follow_requests(username, &request.ids)
            .await
    }

    /// Stores a new secret-link record for its owner.
    pub async fn create_link(&self, username: &str, request: &CreateLink) -> Result<()> {
        request.record.validate()?;
        if request.record.expiry.is_some_and(|e| e <= now_ms()) {
            return Err(Error::BadRequest(
                "the link's expiry is already in the past".into(),
            ));
        }
        let payload = peergos_ipld::cbor::to_vec(&request.record)?;
        self.check_owner_stamp(username, "link-create", &payload, &request.stamp)
            .await?;
        self.stores
            .accounts
            .create_link(username, &request.record)
            .await
    }

    /// The owner's links with their use counts.
    pub async fn list_links(
        &self,
        username: &str,
        request: &OwnerRequest,
    ) -> Result<Vec<LinkStatus>> {
        self.check_owner_stamp(username, "links", &[], &request.stamp)
            .await?;
        self.stores.accounts.links(username).await
    }

    /// Points a live link at a new encrypted capability.
    pub async fn update_link(&self, username: &str, request: &UpdateLink) -> Result<()> {
        peergos_social::check_id(&request.id)?;
        if request.blob.len() > peergos_social::MAX_BLOB_SIZE {
            return Err(Error::BadRequest(format!(
                "a secret link's capability is at most {} bytes",
                peergos_social::MAX_BLOB_SIZE
            )));
        }
        let payload = UpdateLink::payload(&request.id, &request.blob);
        self.check_owner_stamp(username, "link-update", &payload, &request.stamp)
            .await?;
        if !self
            .stores
            .accounts
            .update_link(username, &request.id, &request.blob)
            .await?
        {
            return Err(Error::LinkNotFound(request.id.clone()));
        }
        Ok(())
    }

    /// Revokes a link: nobody can open it from now on.
    pub async fn revoke_link(&self, username: &str, request: &RevokeLink) -> Result<()> {
        peergos_social::check_id(&request.id)?;
        self.check_owner_stamp(
            username,
            "link-revoke",
            request.id.as_bytes(),
            &request.stamp,
        )
        .await?;
        if !self
            .stores
            .accounts
            .revoke_link(username, &request.id)
            .await?
        {
            return Err(Error::LinkNotFound(request.id.clone()));
        }
        tracing::info!(username, "secret link revoked");
        Ok(())
    }

    /// Opens a link: checks the token, the revocation, the expiry and the
    /// use limit, counts a use and answers the encrypted capability.
    pub async fn open_link(&self, request: &OpenLink) -> Result<Bytes> {
        peergos_social::check_id(&request.id)?;
        let hash = peergos_keys::sha256(&request.token);
        match self
            .stores
            .accounts
            .use_link(&request.id, &hash, now_ms())
            .await?
        {
            None => Err(Error::LinkNotFound(request.id.clone())),
            Some(Ok(blob)) => Ok(blob),
            Some(Err(LinkRefusal::Revoked)) => Err(Error::LinkRevoked),
            Some(Err(LinkRefusal::Expired)) => Err(Error::LinkExpired),
            Some(Err(LinkRefusal::UsedUp(max))) => Err(Error::LinkUsedUp { max }),
            Some(Err(LinkRefusal::Denied)) => Err(Error::LinkDenied),
        }
    }
}
