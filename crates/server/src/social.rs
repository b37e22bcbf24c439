//! The server's part in the social layer: it keeps sealed follow requests
//! for their targets and secret-link records for their owners, and
//! enforces link expiry, use limits and revocation. It can read neither:
//! requests are sealed boxes, records hold an encrypted capability and a
//! hash of the access token.

use bytes::Bytes;
use peergos_social::{LinkRecord, MAX_SEALED_SIZE};
use rusqlite::{params, OptionalExtension};

use crate::api::{
    CreateLink, DeleteRequests, LinkStatus, OpenLink, OwnerRequest, PendingFollow, RevokeLink,
    UpdateLink,
};
use crate::{now_ms, Accounts, Error, Result, Server};

/// Follow requests a user may have waiting; more are refused until the
/// user reads and answers some.
pub const MAX_PENDING_FOLLOWS: u64 = 1000;

/// Secret links one user may have on this server.
pub const MAX_LINKS: u64 = 10_000;

/// Why a link cannot be opened, as the database saw it.
enum Refusal {
    Revoked,
    Expired,
    UsedUp(u64),
    Denied,
}

impl Accounts {
    fn add_follow_request(&self, target: &str, id: &[u8; 32], sealed: &[u8]) -> Result<bool> {
        self.with(|conn| {
            let pending: i64 = conn.query_row(
                "SELECT COUNT(*) FROM follow_requests WHERE target = ?1",
                [target],
                |row| row.get(0),
            )?;
            if pending as u64 >= MAX_PENDING_FOLLOWS {
                return Ok(false);
            }
            conn.execute(
                "INSERT OR IGNORE INTO follow_requests (id, target, sealed, received)
                 VALUES (?1, ?2, ?3, ?4)",
                params![id.as_slice(), target, sealed, now_ms() as i64],
            )?;
            Ok(true)
        })
    }

    fn follow_requests(&self, target: &str) -> Result<Vec<PendingFollow>> {
        let rows = self.with(|conn| {
            let mut stmt = conn.prepare(
                "SELECT id, sealed, received FROM follow_requests WHERE target = ?1
                 ORDER BY received, id",
            )?;
            let rows = stmt.query_map([target], |row| {
                Ok((
                    row.get::<_, Vec<u8>>(0)?,
                    row.get::<_, Vec<u8>>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter()
            .map(|(id, sealed, received)| {
                Ok(PendingFollow {
                    id: id.as_slice().try_into().map_err(|_| {
                        Error::Internal("a stored follow request id is not 32 bytes".into())
                    })?,
                    sealed: Bytes::from(sealed),
                    received: received.max(0) as u64,
                })
            })
            .collect()
    }

    fn delete_follow_requests(&self, target: &str, ids: &[serde_bytes::ByteBuf]) -> Result<()> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            for id in ids {
                tx.execute(
                    "DELETE FROM follow_requests WHERE target = ?1 AND id = ?2",
                    params![target, id.as_slice()],
                )?;
            }
            tx.commit()
        })
    }

    fn create_link(
        &self,
        owner: &str,
        record: &LinkRecord,
    ) -> Result<std::result::Result<(), Error>> {
        self.with(|conn| {
            let count: i64 = conn.query_row(
                "SELECT COUNT(*) FROM links WHERE owner = ?1 AND revoked = 0",
                [owner],
                |row| row.get(0),
            )?;
            if count as u64 >= MAX_LINKS {
                return Ok(Err(Error::TooMany(format!(
                    "{owner} already has {MAX_LINKS} secret links; revoke some first"
                ))));
            }
            let inserted = conn.execute(
                "INSERT OR IGNORE INTO links (id, owner, blob, token_hash, expiry, max_uses, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    record.id,
                    owner,
                    record.blob,
                    record.token_hash.as_slice(),
                    record.expiry.map(|e| e as i64),
                    record.max_uses.map(|m| m as i64),
                    now_ms() as i64
                ],
            )?;
            if inserted == 0 {
                return Ok(Err(Error::BadRequest(format!(
                    "a secret link with id {} already exists",
                    record.id
                ))));
            }
            Ok(Ok(()))
        })
    }

    fn links(&self, owner: &str) -> Result<Vec<LinkStatus>> {
        self.with(|conn| {
            let mut stmt = conn.prepare(
                "SELECT id, uses, expiry, max_uses, revoked FROM links WHERE owner = ?1 ORDER BY created, id",
            )?;
            let rows = stmt.query_map([owner], |row| {
                Ok(LinkStatus {
                    id: row.get(0)?,
                    uses: row.get::<_, i64>(1)?.max(0) as u64,
                    expiry: row.get::<_, Option<i64>>(2)?.map(|e| e.max(0) as u64),
                    max_uses: row.get::<_, Option<i64>>(3)?.map(|m| m.max(0) as u64),
                    revoked: row.get::<_, i64>(4)? != 0,
                })
            })?;
            rows.collect()
        })
    }

    fn update_link(&self, owner: &str, id: &str, blob: &[u8]) -> Result<bool> {
        self.with(|conn| {
            Ok(conn.execute(
                "UPDATE links SET blob = ?3 WHERE owner = ?1 AND id = ?2 AND revoked = 0",
                params![owner, id, blob],
            )? == 1)
        })
    }

    fn revoke_link(&self, owner: &str, id: &str) -> Result<bool> {
        self.with(|conn| {
            Ok(conn.execute(
                "UPDATE links SET revoked = 1 WHERE owner = ?1 AND id = ?2",
                params![owner, id],
            )? == 1)
        })
    }

    /// Checks the token and the limits and counts one use, atomically (the
    /// connection is held throughout, and the update re-checks the count).
    fn use_link(
        &self,
        id: &str,
        token_hash: &[u8; 32],
    ) -> Result<Option<std::result::Result<Vec<u8>, Refusal>>> {
        let now = now_ms() as i64;
        self.with(|conn| {
            let tx = conn.transaction()?;
            let row = tx
                .query_row(
                    "SELECT blob, token_hash, expiry, max_uses, uses, revoked FROM links WHERE id = ?1",
                    [id],
                    |row| {
                        Ok((
                            row.get::<_, Vec<u8>>(0)?,
                            row.get::<_, Vec<u8>>(1)?,
                            row.get::<_, Option<i64>>(2)?,
                            row.get::<_, Option<i64>>(3)?,
                            row.get::<_, i64>(4)?,
                            row.get::<_, i64>(5)?,
                        ))
                    },
                )
                .optional()?;
            let Some((blob, stored_hash, expiry, max_uses, uses, revoked)) = row else {
                return Ok(None);
            };
            let refusal = if revoked != 0 {
                Some(Refusal::Revoked)
            } else if stored_hash.as_slice() != token_hash.as_slice() {
                Some(Refusal::Denied)
            } else if expiry.is_some_and(|e| e <= now) {
                Some(Refusal::Expired)
            } else {
                max_uses
                    .filter(|&max| uses >= max)
                    .map(|max| Refusal::UsedUp(max.max(0) as u64))
            };
            if let Some(refusal) = refusal {
                return Ok(Some(Err(refusal)));
            }
            tx.execute(
                "UPDATE links SET uses = uses + 1 WHERE id = ?1 AND uses = ?2",
                params![id, uses],
            )?;
            tx.commit()?;
            Ok(Some(Ok(blob)))
        })
    }
}

impl Server {
    /// Stores a sealed follow request for `target`. Anyone may send one:
    /// the box does not say who sent it, and the server does not ask.
    pub fn post_follow(&self, target: &str, sealed: &[u8]) -> Result<()> {
        peergos_pki::check_username(target)?;
        if sealed.len() > MAX_SEALED_SIZE {
            return Err(Error::BadRequest(format!(
                "a sealed follow request is at most {MAX_SEALED_SIZE} bytes, not {}",
                sealed.len()
            )));
        }
        if self.accounts.user(target)?.is_none() {
            return Err(Error::UnknownUser(target.to_string()));
        }
        let id = peergos_keys::sha256(sealed);
        if !self.accounts.add_follow_request(target, &id, sealed)? {
            return Err(Error::TooMany(format!(
                "{target} has {MAX_PENDING_FOLLOWS} follow requests waiting; try again later"
            )));
        }
        Ok(())
    }

    /// The follow requests waiting for `username`, for a fresh signature
    /// by their identity key.
    pub fn follow_requests(
        &self,
        username: &str,
        request: &OwnerRequest,
    ) -> Result<Vec<PendingFollow>> {
        self.check_owner_stamp(username, "requests", &[], &request.stamp)?;
        self.accounts.follow_requests(username)
    }

    /// Deletes answered follow requests.
    pub fn delete_follow_requests(&self, username: &str, request: &DeleteRequests) -> Result<()> {
        if request.ids.len() > MAX_PENDING_FOLLOWS as usize {
            return Err(Error::BadRequest(format!(
                "at most {MAX_PENDING_FOLLOWS} ids per request"
            )));
        }
        let payload = DeleteRequests::payload(&request.ids);
        self.check_owner_stamp(username, "delete-requests", &payload, &request.stamp)?;
        self.accounts.delete_follow_requests(username, &request.ids)
    }

    /// Stores a new secret-link record for its owner.
    pub fn create_link(&self, username: &str, request: &CreateLink) -> Result<()> {
        request.record.validate()?;
        if request.record.expiry.is_some_and(|e| e <= now_ms()) {
            return Err(Error::BadRequest(
                "the link's expiry is already in the past".into(),
            ));
        }
        let payload = peergos_ipld::cbor::to_vec(&request.record)?;
        self.check_owner_stamp(username, "link-create", &payload, &request.stamp)?;
        self.accounts.create_link(username, &request.record)?
    }

    /// The owner's links with their use counts.
    pub fn list_links(&self, username: &str, request: &OwnerRequest) -> Result<Vec<LinkStatus>> {
        self.check_owner_stamp(username, "links", &[], &request.stamp)?;
        self.accounts.links(username)
    }

    /// Points a live link at a new encrypted capability.
    pub fn update_link(&self, username: &str, request: &UpdateLink) -> Result<()> {
        peergos_social::check_id(&request.id)?;
        if request.blob.len() > peergos_social::MAX_BLOB_SIZE {
            return Err(Error::BadRequest(format!(
                "a secret link's capability is at most {} bytes",
                peergos_social::MAX_BLOB_SIZE
            )));
        }
        let payload = UpdateLink::payload(&request.id, &request.blob);
        self.check_owner_stamp(username, "link-update", &payload, &request.stamp)?;
        if !self
            .accounts
            .update_link(username, &request.id, &request.blob)?
        {
            return Err(Error::LinkNotFound(request.id.clone()));
        }
        Ok(())
    }

    /// Revokes a link: nobody can open it from now on.
    pub fn revoke_link(&self, username: &str, request: &RevokeLink) -> Result<()> {
        peergos_social::check_id(&request.id)?;
        self.check_owner_stamp(
            username,
            "link-revoke",
            request.id.as_bytes(),
            &request.stamp,
        )?;
        if !self.accounts.revoke_link(username, &request.id)? {
            return Err(Error::LinkNotFound(request.id.clone()));
        }
        tracing::info!(username, "secret link revoked");
        Ok(())
    }

    /// Opens a link: checks the token, the revocation, the expiry and the
    /// use limit, counts a use and answers the encrypted capability.
    pub fn open_link(&self, request: &OpenLink) -> Result<Bytes> {
        peergos_social::check_id(&request.id)?;
        let hash = peergos_keys::sha256(&request.token);
        match self.accounts.use_link(&request.id, &hash)? {
            None => Err(Error::LinkNotFound(request.id.clone())),
            Some(Ok(blob)) => Ok(Bytes::from(blob)),
            Some(Err(Refusal::Revoked)) => Err(Error::LinkRevoked),
            Some(Err(Refusal::Expired)) => Err(Error::LinkExpired),
            Some(Err(Refusal::UsedUp(max))) => Err(Error::LinkUsedUp { max }),
            Some(Err(Refusal::Denied)) => Err(Error::LinkDenied),
        }
    }
}
