//! What a user knows about their social graph, and the list of what they
//! shared with one friend. Both live only in the user's own encrypted
//! space, as ordinary (hidden) cryptree files, so the server stores them
//! as opaque blocks like any other file.
//!
//! Social state (the hidden file `/.social` in the home directory):
//!
//! ```text
//! {"v": 1,
//!  "following": {name: {"cap": AbsoluteCapability, "id": link}},  whose shares I receive
//!  "followers": {name: {"id": link}},                             who receives mine
//!  "sent":      {name: u64 ms},                                   my requests not yet answered
//!  "shares":    {path: {name: bool writable}},                    what I shared, with whom
//!  "links":     {id: LinkInfo}}                                   secret links I made (with the record's key)
//! ```
//!
//! Share list (the hidden file `capabilities` in `/me/shared/friend`,
//! which the friend reads through the capability they were given):
//!
//! ```text
//! {"v": 1, "items": [{"cap": AbsoluteCapability, "path": text}]}
//! ```

use std::collections::BTreeMap;

use peergos_cryptree::AbsoluteCapability;
use peergos_ipld::cbor;
use peergos_keys::{PublicKeyHash, SymmetricKey};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The file, in the home directory, that holds the social state.
pub const STATE_FILE: &str = ".social";

/// The file, in each per-friend shared folder, that lists what was shared.
pub const SHARE_LIST_FILE: &str = "capabilities";

/// Someone whose shares this user receives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Following {
    /// Read capability to the folder they keep for this user.
    pub cap: AbsoluteCapability,
    /// Their identity key hash.
    pub id: PublicKeyHash,
}

/// Someone who receives this user's shares.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Follower {
    /// Their identity key hash.
    pub id: PublicKeyHash,
}

/// A secret link this user made. The secret is kept so the owner can show
/// the link again; it never leaves the owner's encrypted space except in
/// the link itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkInfo {
    /// The path it opens (absolute, `/me/...`).
    pub path: String,
    /// The whole link.
    pub url: String,
    /// Whether it gives write access.
    pub writable: bool,
    /// When it stops working, in milliseconds since the Unix epoch.
    pub expiry: Option<u64>,
    /// How many times it may be opened.
    pub max_uses: Option<u64>,
    /// Whether it needs a password too.
    pub password: bool,
    /// When it was made, in milliseconds since the Unix epoch.
    pub created: u64,
    /// The key its record's capability is encrypted under, so the owner
    /// can re-point the link after the target's keys change.
    pub key: SymmetricKey,
}

/// A user's social graph, as only they see it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocialState {
    /// Format version (1).
    pub v: u64,
    /// Users whose shares this user receives, by name.
    pub following: BTreeMap<String, Following>,
    /// Users who receive this user's shares, by name.
    pub followers: BTreeMap<String, Follower>,
    /// Follow requests sent and not answered yet: name to time sent.
    pub sent: BTreeMap<String, u64>,
    /// What this user shared: path to (friend to writable).
    pub shares: BTreeMap<String, BTreeMap<String, bool>>,
    /// Secret links this user made, by link id.
    pub links: BTreeMap<String, LinkInfo>,
}

impl SocialState {
    /// An empty state.
    pub fn new() -> Self {
        SocialState {
            v: 1,
            ..Default::default()
        }
    }

    /// The canonical encoding.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(cbor::to_vec(self)?)
    }

    /// Decodes (strictly) a stored state.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let what = "social state";
        cbor::from_slice_versioned(bytes, what, 1).map_err(|source| Error::Decode { what, source })
    }

    /// Whether `name` follows this user and this user follows them.
    pub fn is_mutual(&self, name: &str) -> bool {
        self.following.contains_key(name) && self.followers.contains_key(name)
    }

    /// Users who follow this user and whom this user follows.
    pub fn friends(&self) -> Vec<String> {
        self.following
            .keys()
            .filter(|name| self.is_mutual(name))
            .cloned()
            .collect()
    }

    /// The shares at `path` or below it: (path, friend, writable).
    pub fn shares_within(&self, path: &str) -> Vec<(String, String, bool)> {
        self.shares
            .iter()
            .filter(|(shared, _)| is_within(shared, path))
            .flat_map(|(shared, friends)| {
                friends
                    .iter()
                    .map(move |(friend, writable)| (shared.clone(), friend.clone(), *writable))
            })
            .collect()
    }

    /// The paths shared with `friend`, with whether each is writable.
    pub fn shared_with(&self, friend: &str) -> Vec<(String, bool)> {
        self.shares
            .iter()
            .filter_map(|(path, friends)| friends.get(friend).map(|w| (path.clone(), *w)))
            .collect()
    }
}

/// True if `path` is `root` or below it (`/a/b` is within `/a`, `/ab` is not).
pub fn is_within(path: &str, root: &str) -> bool {
    let root = root.trim_end_matches('/');
    path == root
        || path
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// One item shared with a friend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareItem {
    /// Where it is in the sharer's space (`/alice/photos`).
    pub path: String,
    /// The capability (read-only, or writable).
    pub cap: AbsoluteCapability,
}

/// Everything one user shared with one friend.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareList {
    /// Format version (1).
    pub v: u64,
    /// The items.
    pub items: Vec<ShareItem>,
}

impl ShareList {
    /// An empty list.
    pub fn new() -> Self {
        ShareList {
            v: 1,
            items: Vec::new(),
        }
    }

    /// The canonical encoding.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(cbor::to_vec(self)?)
    }

    /// Decodes (strictly) a share list read from a friend's folder, and
    /// checks that every path is an absolute path in the sharer's space.
    pub fn from_bytes(bytes: &[u8], sharer: &str) -> Result<Self> {
        let bad = |reason: String| Error::BadState {
            what: "share list",
            reason,
        };
        let what = "share list";
        let list: ShareList = cbor::from_slice_versioned(bytes, what, 1)
            .map_err(|source| Error::Decode { what, source })?;
        let home = format!("/{sharer}");
        for item in &list.items {
            if !is_within(&item.path, &home) || item.path.split('/').any(|p| p == "..") {
                return Err(bad(format!("'{}' is not a path under {home}", item.path)));
            }
        }
        Ok(list)
    }

    /// Adds `item`, replacing an item with the same path.
    pub fn put(&mut self, item: ShareItem) {
        self.items.retain(|i| i.path != item.path);
        self.items.push(item);
        self.items.sort_by(|a, b| a.path.cmp(&b.path));
    }

    /// Removes the item at `path`; true if there was one.
    pub fn remove(&mut self, path: &str) -> bool {
        let before = self.items.len();
        self.items.retain(|i| i.path != path);
        self.items.len() != before
    }
}
