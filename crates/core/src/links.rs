//! Secret links: making, listing and revoking them (the owner's side),
//! and opening one, which needs no account ([`open_link`]).

use std::sync::Arc;

use peergos_api::{CreateLink, LinkStatus, OpenLink, OwnerRequest, RevokeLink};
use peergos_cryptree::{AbsoluteCapability, Entry, Filesystem};
use peergos_social::{LinkInfo, LinkRecord, SecretLink};

use crate::social::Place;
use crate::{Error, NetworkAccess, Remote, RemoteFs, Result, UserContext};

/// Options for a new secret link.
#[derive(Clone, Debug, Default)]
pub struct LinkOptions {
    /// Whether the link lets its holder write (the target moves under a
    /// writer key of its own first).
    pub writable: bool,
    /// When it stops working, in milliseconds since the Unix epoch.
    pub expiry: Option<u64>,
    /// How many times it may be opened.
    pub max_uses: Option<u64>,
    /// A password needed besides the link.
    pub password: Option<String>,
}

/// A link the user made, with the server's count of its uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkListing {
    /// The link id.
    pub id: String,
    /// What the user recorded when making it.
    pub info: LinkInfo,
    /// The server's view (None: the server has no record).
    pub status: Option<LinkStatus>,
}

/// What a secret link (or any capability) opens: one file or folder,
/// shown as the only entry of `/`.
pub struct SharedView {
    fs: Arc<RemoteFs>,
    entry: Entry,
}

impl SharedView {
    /// A view of what `cap` points at.
    pub async fn open(net: Arc<dyn NetworkAccess>, cap: AbsoluteCapability) -> Result<Self> {
        let remote = Arc::new(Remote::for_owner(net, cap.owner));
        let fs = Arc::new(Filesystem::open(Arc::clone(&remote), remote, cap));
        let entry = fs.stat("/").await?;
        Ok(SharedView { fs, entry })
    }

    /// The file or folder itself.
    pub fn entry(&self) -> &Entry {
        &self.entry
    }

    /// The filesystem rooted at it.
    pub fn fs(&self) -> &Arc<RemoteFs> {
        &self.fs
    }

    /// Where an absolute path (`/name/...`) is.
    pub fn locate(&self, path: &str) -> Result<Place> {
        let trimmed = path.trim_matches('/');
        if trimmed.is_empty() {
            return Ok(Place::Virtual {
                entries: vec![self.entry.clone()],
            });
        }
        let (first, rest) = trimmed.split_once('/').unwrap_or((trimmed, ""));
        if first != self.entry.name {
            return Err(peergos_cryptree::Error::NotFound {
                path: path.to_string(),
            }
            .into());
        }
        Ok(Place::Fs {
            fs: Arc::clone(&self.fs),
            path: format!("/{rest}"),
        })
    }
}

/// Opens a secret link: derives the token and key from its secret (and
/// password), asks the owner's server for the record (which counts one
/// use), and decrypts the capability. Needs no account.
pub async fn open_link(
    net: Arc<dyn NetworkAccess>,
    link: &SecretLink,
    password: Option<&str>,
) -> Result<SharedView> {
    let keys = {
        let (link, password) = (link.clone(), password.map(str::to_string));
        tokio::task::spawn_blocking(move || link.keys(password.as_deref())).await??
    };
    let blob = net
        .open_link(&OpenLink {
            id: link.id.clone(),
            owner: link.owner.clone(),
            token: keys.token(),
        })
        .await?;
    let cap = keys.open(&blob)?;
    SharedView::open(net, cap).await
}

impl UserContext {
    /// Makes a secret link to a file or folder of this user's. The
    /// returned link holds the secret: whoever has it (and the password,
    /// if one was set) can open it until it expires, is used up or is
    /// revoked.
    pub async fn create_link(&self, path: &str, options: LinkOptions) -> Result<SecretLink> {
        let relative = self.path(path)?;
        let absolute = format!("/{}{}", self.username, relative);
        let cap = if options.writable {
            if relative == "/" {
                return Err(Error::Usage(
                    "a writable link must be to something inside your home".into(),
                ));
            }
            let cap = Box::pin(self.fs.grant_write(&relative)).await?;
            let state = self.social().await?;
            Box::pin(self.refresh_within(&state, &absolute)).await?;
            cap
        } else {
            self.fs.capability(&relative).await?.read_only()
        };
        let link = SecretLink::random(
            &self.net.address(),
            &self.username,
            options.password.is_some(),
        );
        let keys = {
            let (link, password) = (link.clone(), options.password.clone());
            tokio::task::spawn_blocking(move || link.keys(password.as_deref())).await??
        };
        let record = LinkRecord {
            id: link.id.clone(),
            blob: keys.seal(&cap)?,
            token_hash: keys.token_hash(),
            expiry: options.expiry,
            max_uses: options.max_uses,
        };
        let payload = peergos_ipld::cbor::to_vec(&record)?;
        let stamp = self.owner_stamp("link-create", &payload);
        self.net
            .create_link(&self.username, &CreateLink { stamp, record })
            .await?;
        let info = LinkInfo {
            path: absolute,
            url: link.to_url(),
            writable: options.writable,
            expiry: options.expiry,
            max_uses: options.max_uses,
            password: options.password.is_some(),
            created: self.next_time(),
            key: keys.key().clone(),
        };
        self.update_social(|state| {
            state.links.insert(link.id.clone(), info);
            Ok(())
        })
        .await?;
        Ok(link)
    }

    /// The secret links this user made, with the server's use counts.
    pub async fn links(&self) -> Result<Vec<LinkListing>> {
        let state = self.social().await?;
        let stamp = self.owner_stamp("links", &[]);
        let statuses = self
            .net
            .list_links(&self.username, &OwnerRequest { stamp })
            .await?;
        Ok(state
            .links
            .into_iter()
            .map(|(id, info)| LinkListing {
                status: statuses.iter().find(|s| s.id == id).cloned(),
                id,
                info,
            })
            .collect())
    }

    /// Revokes a secret link on the server: it no longer opens. (Someone
    /// who opened it before keeps the capability they got; `unshare`-style
    /// rotation of the target takes that away too.)
    pub async fn revoke_link(&self, id: &str) -> Result<()> {
        peergos_social::check_id(id)?;
        let state = self.social().await?;
        if !state.links.contains_key(id) {
            return Err(Error::UnknownLink(id.to_string()));
        }
        let stamp = self.owner_stamp("link-revoke", id.as_bytes());
        Ok(self
            .net
            .revoke_link(
                &self.username,
                &RevokeLink {
                    stamp,
                    id: id.to_string(),
                },
            )
            .await?)
    }
}
