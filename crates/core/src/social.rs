//! Following and sharing for a logged-in user, and finding a path in what
//! friends shared (secret links are in `links.rs`).
//!
//! Everything a user knows about their social graph is in their own
//! encrypted space ([`SocialState`] in the hidden file `/.social`). The
//! server holds only sealed follow requests until their target reads them,
//! and encrypted link records.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use peergos_api::{auth_message, DeleteRequests, OwnerRequest, Stamp, UpdateLink, OWNER_AUTH};
use peergos_cryptree::{AbsoluteCapability, Committer, Entry, Filesystem, Kind, UploadOptions};
use peergos_keys::{PublicBoxingKey, PublicKeyHash};
use peergos_social::{
    is_within, FollowBody, FollowRequest, Follower, Following, ShareItem, ShareList, SocialState,
    SHARE_LIST_FILE, STATE_FILE,
};

use crate::user::{pki_chain, SHARED_DIR};
use crate::{Error, RemoteFs, Result, UserContext};

/// A follow request waiting for this user's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingRequest {
    /// Who sent it (checked against the PKI).
    pub from: String,
    /// When the server received it, in milliseconds since the Unix epoch.
    pub received: u64,
}

/// What `ls`, `stat` and transfers work on: a path in a filesystem (the
/// user's own or one a friend shared), or a directory made only of names
/// (the top level `/`, or a friend's tree above the things they shared).
pub enum Place {
    /// `path` inside `fs`.
    Fs {
        /// The filesystem.
        fs: Arc<RemoteFs>,
        /// The path inside it.
        path: String,
    },
    /// A listing with nothing stored behind it.
    Virtual {
        /// Its entries.
        entries: Vec<Entry>,
    },
}

fn dir_entry(name: &str) -> Entry {
    Entry {
        name: name.to_string(),
        kind: Kind::Dir,
        size: 0,
        modified: 0,
        mime: String::new(),
        hidden: false,
        writable: false,
    }
}

fn hidden() -> UploadOptions {
    UploadOptions {
        hidden: true,
        ..UploadOptions::default()
    }
}

fn not_found(e: &Error) -> bool {
    matches!(e, Error::Fs(peergos_cryptree::Error::NotFound { .. }))
}

impl UserContext {
    /// A stamp signed by the identity key, for the owner-only social
    /// routes.
    pub(crate) fn owner_stamp(&self, action: &str, payload: &[u8]) -> Stamp {
        let time_ms = self.next_time();
        Stamp {
            time_ms,
            signature: self.identity.sign(
                OWNER_AUTH,
                &auth_message(action, &self.username, time_ms, payload),
            ),
        }
    }

    /// The social state (empty if there is none yet).
    pub async fn social(&self) -> Result<SocialState> {
        match read_all(&self.fs, &format!("/{STATE_FILE}")).await {
            Ok(bytes) => Ok(SocialState::from_bytes(&bytes)?),
            Err(e) if not_found(&e) => Ok(SocialState::new()),
            Err(e) => Err(e),
        }
    }

    async fn save_social(&self, state: &SocialState) -> Result<()> {
        let bytes = state.to_bytes()?;
        self.fs
            .upload(&format!("/{STATE_FILE}"), &bytes[..], hidden())
            .await?;
        Ok(())
    }

    /// Runs `change` on the social state and saves it, one change at a
    /// time for this context.
    pub(crate) async fn update_social<T>(
        &self,
        change: impl FnOnce(&mut SocialState) -> Result<T>,
    ) -> Result<T> {
        let _guard = self.social_lock.lock().await;
        let mut state = self.social().await?;
        let out = change(&mut state)?;
        self.save_social(&state).await?;
        Ok(out)
    }

    /// A user's identity key, from the PKI (checked against the PKI
    /// node's signature). Users on other servers are reached through this
    /// user's server, which forwards to theirs.
    async fn lookup(&self, username: &str) -> Result<PublicKeyHash> {
        peergos_pki::check_username(username)?;
        let chain = pki_chain(self.net.as_ref(), &self.info.pki, username)
            .await?
            .ok_or_else(|| Error::UnknownUser(username.to_string()))?;
        Ok(chain.current().identity)
    }

    /// A user's public boxing key, from their identity's signed
    /// `WriterData`.
    async fn boxing_key_of(&self, identity: &PublicKeyHash) -> Result<PublicBoxingKey> {
        let remote = self.remote_for(*identity);
        let committer = Committer::new(Arc::clone(&remote), remote);
        let (current, _) = committer.current(identity, identity).await?;
        current
            .and_then(|(data, _)| data.boxing)
            .ok_or_else(|| Error::Invalid("the user has no boxing key".into()))
    }

    /// Makes `/me/shared/name` if it is missing and returns a read-only
    /// capability for it.
    async fn friend_folder(&self, name: &str) -> Result<AbsoluteCapability> {
        let path = format!("/{SHARED_DIR}/{name}");
        match self.fs.mkdir(&path).await {
            Ok(_) | Err(peergos_cryptree::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(self.fs.capability(&path).await?.read_only())
    }

    /// Seals `body` to `to` (whose identity key is `identity`) and
    /// delivers it.
    async fn send(&self, to: &str, identity: &PublicKeyHash, body: FollowBody) -> Result<()> {
        let boxing = self.boxing_key_of(identity).await?;
        let sealed = FollowRequest::sign(body, &self.identity)?.seal(&boxing)?;
        Ok(self.net.post_follow(to, &sealed).await?)
    }

    fn body(
        &self,
        to: &str,
        cap: Option<AbsoluteCapability>,
        reply: bool,
        back: bool,
    ) -> FollowBody {
        FollowBody {
            v: 1,
            from: self.username.clone(),
            id: self.identity(),
            to: to.to_string(),
            cap,
            reply,
            back,
            t: self.next_time(),
        }
    }

    /// Asks `target` to let this user follow them: makes
    /// `/me/shared/target` and sends a read capability for it, sealed to
    /// the target's boxing key, to the target's server.
    pub async fn follow(&self, target: &str) -> Result<()> {
        if target == self.username {
            return Err(Error::Usage("you cannot follow yourself".into()));
        }
        let identity = self.lookup(target).await?;
        let cap = self.friend_folder(target).await?;
        self.send(
            target,
            &identity,
            self.body(target, Some(cap), false, false),
        )
        .await?;
        let now = self.next_time();
        self.update_social(|state| {
            state.sent.insert(target.to_string(), now);
            Ok(())
        })
        .await
    }

    /// Reads the waiting follow requests. Answers to this user's own
    /// requests are applied at once (the sender now follows them, and
    /// maybe back) and deleted from the server, as are requests that do
    /// not open or verify; new requests are returned and stay on the
    /// server until [`accept`](Self::accept) or [`deny`](Self::deny).
    pub async fn follow_requests(&self) -> Result<Vec<PendingRequest>> {
        Ok(self
            .inbox()
            .await?
            .into_iter()
            .map(|(_, request, received)| PendingRequest {
                from: request.body.from,
                received,
            })
            .collect())
    }

    /// The new requests in the inbox, after handling the rest.
    async fn inbox(&self) -> Result<Vec<([u8; 32], FollowRequest, u64)>> {
        let stamp = self.owner_stamp("requests", &[]);
        let waiting = self
            .net
            .follow_requests(&self.username, &OwnerRequest { stamp })
            .await?;
        let mut done = Vec::new();
        let mut replies = Vec::new();
        let mut new = Vec::new();
        for pending in waiting {
            let checked = match FollowRequest::open(&pending.sealed, self.boxing()) {
                Ok(request) if request.body.to == self.username => {
                    self.check_sender(&request).await.map(|()| request)
                }
                Ok(_) => Err(Error::Invalid("a follow request for someone else".into())),
                Err(e) => Err(e.into()),
            };
            match checked {
                Ok(request) if request.body.reply => {
                    done.push(pending.id);
                    replies.push(request);
                }
                Ok(request) => new.push((pending.id, request, pending.received)),
                // A request that is itself bad is dropped.
                Err(
                    e @ (Error::Social(_)
                    | Error::Key(_)
                    | Error::Invalid(_)
                    | Error::UnknownUser(_)
                    | Error::Pki(_)),
                ) => {
                    tracing::warn!(error = %e, "dropping a follow request that does not check out");
                    done.push(pending.id);
                }
                // Anything else (the server unreachable, say) says nothing
                // about the request: stop, and delete nothing.
                Err(e) => return Err(e),
            }
        }
        if !replies.is_empty() {
            self.update_social(|state| {
                for reply in &replies {
                    let from = &reply.body.from;
                    // Only answers to requests this user sent count.
                    if state.sent.remove(from).is_none() {
                        continue;
                    }
                    if let Some(cap) = &reply.body.cap {
                        state.following.insert(
                            from.clone(),
                            Following {
                                cap: cap.clone(),
                                id: reply.body.id,
                            },
                        );
                        if reply.body.back {
                            state
                                .followers
                                .insert(from.clone(), Follower { id: reply.body.id });
                        }
                    }
                }
                Ok(())
            })
            .await?;
        }
        if !done.is_empty() {
            self.delete_requests(&done).await?;
        }
        Ok(new)
    }

    /// Checks the PKI says the request's sender has the key that signed it.
    async fn check_sender(&self, request: &FollowRequest) -> Result<()> {
        let identity = self.lookup(&request.body.from).await?;
        if identity != request.body.id {
            return Err(Error::Invalid(format!(
                "a follow request claims to be from '{}' but is signed by another key",
                request.body.from
            )));
        }
        Ok(())
    }

    async fn delete_requests(&self, ids: &[[u8; 32]]) -> Result<()> {
        let ids: Vec<serde_bytes::ByteBuf> = ids
            .iter()
            .map(|id| serde_bytes::ByteBuf::from(id.to_vec()))
            .collect();
        let stamp = self.owner_stamp("delete-requests", &DeleteRequests::payload(&ids));
        Ok(self
            .net
            .delete_follow_requests(&self.username, &DeleteRequests { stamp, ids })
            .await?)
    }

    /// Accepts `from`'s follow request: they become a follower (they get a
    /// read capability to `/me/shared/from`, where shares with them go).
    /// With `reciprocate`, this user also follows them, through the
    /// capability their request carried.
    pub async fn accept(&self, from: &str, reciprocate: bool) -> Result<()> {
        let requests = self.inbox().await?;
        let (ids, found): (Vec<_>, Vec<_>) = requests
            .into_iter()
            .filter(|(_, r, _)| r.body.from == from)
            .map(|(id, r, _)| (id, r))
            .unzip();
        let request = found
            .into_iter()
            .last()
            .ok_or_else(|| Error::NoRequest(from.to_string()))?;
        let cap = self.friend_folder(from).await?;
        // The inbox checked the sender's key against the PKI.
        let identity = request.body.id;
        self.send(
            from,
            &identity,
            self.body(from, Some(cap), true, reciprocate),
        )
        .await?;
        self.update_social(|state| {
            state.followers.insert(
                from.to_string(),
                Follower {
                    id: request.body.id,
                },
            );
            if reciprocate {
                if let Some(cap) = request.body.cap.clone() {
                    state.following.insert(
                        from.to_string(),
                        Following {
                            cap,
                            id: request.body.id,
                        },
                    );
                }
            }
            Ok(())
        })
        .await?;
        self.delete_requests(&ids).await
    }

    /// Denies `from`'s follow request: it is deleted and nothing is sent.
    pub async fn deny(&self, from: &str) -> Result<()> {
        let ids: Vec<[u8; 32]> = self
            .inbox()
            .await?
            .into_iter()
            .filter(|(_, r, _)| r.body.from == from)
            .map(|(id, _, _)| id)
            .collect();
        if ids.is_empty() {
            return Err(Error::NoRequest(from.to_string()));
        }
        self.delete_requests(&ids).await
    }

    /// Stops following `name`: their capability is forgotten.
    pub async fn unfollow(&self, name: &str) -> Result<()> {
        self.update_social(|state| {
            state
                .following
                .remove(name)
                .map(|_| ())
                .ok_or_else(|| Error::NotFollowing(name.to_string()))
        })
        .await?;
        if let Ok(mut shared) = self.shared.lock() {
            shared.clear();
        }
        Ok(())
    }

    /// Removes a follower: everything shared with them is unshared (keys
    /// rotated) and their folder is deleted.
    pub async fn remove_follower(&self, name: &str) -> Result<()> {
        let state = self.social().await?;
        if !state.followers.contains_key(name) {
            return Err(Error::NotFollower(name.to_string()));
        }
        for (path, _) in state.shared_with(name) {
            Box::pin(self.unshare(&path, &[name])).await?;
        }
        match self.fs.rm(&format!("/{SHARED_DIR}/{name}")).await {
            Ok(()) | Err(peergos_cryptree::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.update_social(|state| {
            state.followers.remove(name);
            Ok(())
        })
        .await
    }

    /// Rewrites the list of what is shared with `friend`.
    async fn edit_share_list(&self, friend: &str, edit: impl FnOnce(&mut ShareList)) -> Result<()> {
        let path = format!("/{SHARED_DIR}/{friend}/{SHARE_LIST_FILE}");
        let mut list = match read_all(&self.fs, &path).await {
            Ok(bytes) => ShareList::from_bytes(&bytes, &self.username)?,
            Err(e) if not_found(&e) => ShareList::new(),
            Err(e) => return Err(e),
        };
        edit(&mut list);
        let bytes = list.to_bytes()?;
        self.fs.upload(&path, &bytes[..], hidden()).await?;
        Ok(())
    }

    /// Shares a file or folder of this user's with followers, read-only or
    /// writable. A writable share first moves the item under a writer key
    /// of its own, so what the friends sign can only change that subtree.
    pub async fn share(&self, path: &str, friends: &[&str], writable: bool) -> Result<()> {
        let relative = self.path(path)?;
        if relative == "/" {
            return Err(Error::Usage(
                "share a folder inside your home, not the home itself".into(),
            ));
        }
        let absolute = format!("/{}{}", self.username, relative);
        let state = self.social().await?;
        for friend in friends {
            if !state.followers.contains_key(*friend) {
                return Err(Error::NotFollower(friend.to_string()));
            }
        }
        let cap = if writable {
            let cap = Box::pin(self.fs.grant_write(&relative)).await?;
            // The item moved to a writer of its own: what was shared of
            // it before points at the old place.
            Box::pin(self.refresh_within(&state, &absolute)).await?;
            cap
        } else {
            self.fs.capability(&relative).await?.read_only()
        };
        for friend in friends {
            let item = ShareItem {
                path: absolute.clone(),
                cap: cap.clone(),
            };
            self.edit_share_list(friend, |list| list.put(item)).await?;
        }
        self.update_social(|state| {
            let entry = state.shares.entry(absolute.clone()).or_default();
            for friend in friends {
                entry.insert(friend.to_string(), writable);
            }
            Ok(())
        })
        .await
    }

    /// Stops sharing `path` with `friends`. The item's keys are rotated,
    /// so the removed friends cannot read anything new or changed; every
    /// other share of it (or of anything inside it) gets the new
    /// capability, so the others keep access without doing anything.
    pub async fn unshare(&self, path: &str, friends: &[&str]) -> Result<()> {
        let relative = self.path(path)?;
        let absolute = format!("/{}{}", self.username, relative);
        let state = self.social().await?;
        let shared = state
            .shares
            .get(&absolute)
            .ok_or_else(|| Error::NotShared(absolute.clone()))?;
        for friend in friends {
            if !shared.contains_key(*friend) {
                return Err(Error::NotShared(format!("{absolute} (with {friend})")));
            }
        }
        for friend in friends {
            self.edit_share_list(friend, |list| {
                list.remove(&absolute);
            })
            .await?;
        }
        Box::pin(self.fs.rotate(&relative)).await?;
        let state = self
            .update_social(|state| {
                if let Some(entry) = state.shares.get_mut(&absolute) {
                    for friend in friends {
                        entry.remove(*friend);
                    }
                    if entry.is_empty() {
                        state.shares.remove(&absolute);
                    }
                }
                Ok(state.clone())
            })
            .await?;
        Box::pin(self.refresh_within(&state, &absolute)).await
    }

    /// After the keys or the writer of the subtree at `absolute` changed
    /// (a rotation, or a move under a writer of its own): every share and
    /// every live link of something in it gets the new capability, so
    /// those who had access keep it without doing anything.
    pub(crate) async fn refresh_within(&self, state: &SocialState, absolute: &str) -> Result<()> {
        for (shared_path, friend, writable) in state.shares_within(absolute) {
            let inner = self.path(&shared_path)?;
            let cap = self.fs.capability(&inner).await?;
            let cap = if writable { cap } else { cap.read_only() };
            let item = ShareItem {
                path: shared_path,
                cap,
            };
            self.edit_share_list(&friend, |list| list.put(item)).await?;
        }
        for (id, info) in state
            .links
            .iter()
            .filter(|(_, info)| is_within(&info.path, absolute))
        {
            let cap = self.fs.capability(&self.path(&info.path)?).await?;
            let cap = if info.writable { cap } else { cap.read_only() };
            let blob = peergos_social::seal_capability(&info.key, id, &cap)?;
            let payload = UpdateLink::payload(id, &blob);
            let stamp = self.owner_stamp("link-update", &payload);
            let request = UpdateLink {
                stamp,
                id: id.clone(),
                blob: Bytes::from(blob),
            };
            match self.net.update_link(&self.username, &request).await {
                // A revoked link stays revoked.
                Err(e) if e.code() == Some(crate::ErrorCode::LinkNotFound) => {}
                outcome => outcome?,
            }
        }
        Ok(())
    }

    /// What `owner` shared with this user (this user must follow them).
    pub async fn shared_with_me(&self, owner: &str) -> Result<Vec<ShareItem>> {
        let mut state = self.social().await?;
        if !state.following.contains_key(owner) && state.sent.contains_key(owner) {
            // They may have accepted since: pick up the answer.
            self.inbox().await?;
            state = self.social().await?;
        }
        let following = state
            .following
            .get(owner)
            .ok_or_else(|| Error::NotFollowing(owner.to_string()))?;
        let folder = self.open_shared(&following.cap);
        match read_all(&folder, &format!("/{SHARE_LIST_FILE}")).await {
            Ok(bytes) => Ok(ShareList::from_bytes(&bytes, owner)?.items),
            Err(e) if not_found(&e) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// A filesystem on a capability someone shared, reused across calls.
    fn open_shared(&self, cap: &AbsoluteCapability) -> Arc<RemoteFs> {
        let key = cap.to_text().unwrap_or_default();
        let mut shared = match self.shared.lock() {
            Ok(shared) => shared,
            Err(poisoned) => poisoned.into_inner(),
        };
        if shared.len() > 256 {
            shared.clear();
        }
        Arc::clone(shared.entry(key).or_insert_with(|| {
            let remote = self.remote_for(cap.owner);
            Arc::new(Filesystem::open(Arc::clone(&remote), remote, cap.clone()))
        }))
    }

    /// Where an absolute path is: in this user's home, in something a
    /// friend shared (`/alice/photos/...`), or a directory of names (`/`,
    /// or `/alice` above what she shared).
    pub async fn locate(&self, path: &str) -> Result<Place> {
        let trimmed = path.trim_matches('/');
        if trimmed.is_empty() {
            let state = self.social().await?;
            let entries = std::iter::once(self.username.as_str())
                .chain(state.following.keys().map(String::as_str))
                .map(dir_entry)
                .collect();
            return Ok(Place::Virtual { entries });
        }
        let (first, _) = trimmed.split_once('/').unwrap_or((trimmed, ""));
        if first == self.username {
            return Ok(Place::Fs {
                fs: Arc::clone(&self.fs),
                path: self.path(path)?,
            });
        }
        let absolute = format!("/{trimmed}");
        let items = self.shared_with_me(first).await?;
        // The deepest shared item that holds the path.
        if let Some(item) = items
            .iter()
            .filter(|item| is_within(&absolute, &item.path))
            .max_by_key(|item| item.path.len())
        {
            let inner = &absolute[item.path.len()..];
            return Ok(Place::Fs {
                fs: self.open_shared(&item.cap),
                path: if inner.is_empty() {
                    "/".to_string()
                } else {
                    inner.to_string()
                },
            });
        }
        let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
        for item in items.iter().filter(|i| is_within(&i.path, &absolute)) {
            let below = &item.path[absolute.len() + 1..];
            let (next, deeper) = below.split_once('/').unwrap_or((below, ""));
            let entry = if deeper.is_empty() {
                match self.open_shared(&item.cap).stat("/").await {
                    Ok(entry) => entry,
                    Err(e) => {
                        tracing::warn!(path = %item.path, error = %e, "a shared item does not open");
                        continue;
                    }
                }
            } else {
                dir_entry(next)
            };
            entries.entry(next.to_string()).or_insert(entry);
        }
        if entries.is_empty() && absolute != format!("/{first}") {
            return Err(peergos_cryptree::Error::NotFound { path: absolute }.into());
        }
        Ok(Place::Virtual {
            entries: entries.into_values().collect(),
        })
    }
}

/// A whole (small) file read into memory.
async fn read_all(fs: &RemoteFs, path: &str) -> Result<Bytes> {
    let mut out = Vec::new();
    fs.download(path, &mut out).await?;
    Ok(Bytes::from(out))
}
