//! The PKI: a CHAMP from name keys to key chain blocks, and the rules for
//! changing it.

use std::sync::Arc;

use peergos_blockstore::{BlockStore, PutBlocks, SignedBlock};
use peergos_champ::{Champ, Key, Value, Writer};
use peergos_ipld::{Cid, Codec};
use peergos_keys::sha256;

use crate::{check_username, Error, KeyChain, Result};

const NAME_DOMAIN: &[u8] = b"peergos/pki-name/v1";

/// The CHAMP key of a username.
pub fn name_key(username: &str) -> Key {
    let mut input = NAME_DOMAIN.to_vec();
    input.extend_from_slice(username.as_bytes());
    Key(sha256(&input))
}

/// One accepted change of a PKI update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    /// A new name.
    New(String),
    /// A chain extended (renewal, server or key change).
    Extended(String),
    /// An expired name taken by a new holder.
    Reclaimed(String),
}

/// How long after its claim expires a name still belongs to its holder:
/// only the holder can renew it meanwhile. 30 days, so a user away for a
/// while (or whose clients could not renew) does not lose the name the
/// moment it lapses.
pub const RECLAIM_GRACE_SECS: u64 = 30 * 24 * 60 * 60;

/// The PKI over a block store: lookups, claims, and the append-only check
/// mirrors run on every new root.
pub struct Pki<S: BlockStore + ?Sized> {
    champ: Champ<S>,
}

impl<S: BlockStore + ?Sized> Pki<S> {
    /// A PKI reading and writing through `store`.
    pub fn new(store: Arc<S>) -> Self {
        Pki {
            champ: Champ::new(store),
        }
    }

    /// The CHAMP the PKI lives in.
    pub fn champ(&self) -> &Champ<S> {
        &self.champ
    }

    /// The rule for one name: `new` may replace `old` at time `now`
    /// (seconds since the Unix epoch) if it is a valid chain whose newest
    /// claim has not expired, and either the name was free, or `new`
    /// extends `old` (a renewal signed by the current key, accepted even
    /// after `old` expired, until someone reclaims it), or `old` expired
    /// more than [`RECLAIM_GRACE_SECS`] ago (the name is reclaimed).
    pub fn check_transition(old: Option<&KeyChain>, new: &KeyChain, now: u64) -> Result<Update> {
        new.verify()?;
        let username = new.username().to_string();
        if new.current().expiry <= now {
            return Err(Error::BadChain {
                username,
                reason: "its newest claim has expired".into(),
            });
        }
        let Some(old) = old else {
            return Ok(Update::New(username));
        };
        if old.username() != new.username() {
            return Err(Error::NotAppendOnly {
                username,
                reason: "the entry changed to another name",
            });
        }
        if new.extends(old) {
            return Ok(Update::Extended(username));
        }
        if old.current().expiry.saturating_add(RECLAIM_GRACE_SECS) <= now {
            return Ok(Update::Reclaimed(username));
        }
        if new == old {
            return Err(Error::NotAppendOnly {
                username,
                reason: "nothing changed",
            });
        }
        Err(Error::NameTaken {
            username,
            expiry: old.current().expiry,
        })
    }

    /// The key chain of `username` in the PKI at `root`, verified.
    pub async fn lookup(&self, root: &Cid, username: &str) -> Result<Option<KeyChain>> {
        check_username(username)?;
        match self.champ.get(root, &name_key(username)).await? {
            None => Ok(None),
            Some(value) => {
                let chain = self.chain(&value).await?;
                if chain.username() != username {
                    return Err(Error::MalformedEntry {
                        reason: "an entry holds another name's chain",
                    });
                }
                Ok(Some(chain))
            }
        }
    }

    async fn chain(&self, value: &Value) -> Result<KeyChain> {
        let Value::Link(cid) = value else {
            return Err(Error::MalformedEntry {
                reason: "an entry holds inline bytes, not a chain link",
            });
        };
        let bytes = self
            .champ
            .store()
            .get(cid, None)
            .await?
            .ok_or(Error::MissingChain { cid: *cid })?;
        cid.verify(&bytes)?;
        KeyChain::from_bytes(&bytes)
    }

    /// Sets the chain of a name in the PKI at `root` (the PKI node's
    /// write), if [`check_transition`](Self::check_transition) allows it;
    /// returns the new root. `writer` signs the new blocks.
    pub async fn apply(
        &self,
        writer: &Writer,
        root: &Cid,
        chain: &KeyChain,
        now: u64,
    ) -> Result<(Cid, Update)> {
        let key = name_key(chain.username());
        let old_value = self.champ.get(root, &key).await?;
        let old = match &old_value {
            Some(value) => Some(self.chain(value).await?),
            None => None,
        };
        let update = Self::check_transition(old.as_ref(), chain, now)?;
        let block = SignedBlock::sign(&writer.keys, Codec::DagCbor, chain.to_bytes()?);
        let cid = self
            .champ
            .store()
            .put(PutBlocks {
                owner: writer.owner,
                writer: peergos_keys::PublicKeyHash::of(&writer.keys.public()),
                transaction: writer.transaction,
                blocks: vec![block],
            })
            .await?[0];
        let root = self
            .champ
            .put(writer, root, &key, old_value.as_ref(), Value::Link(cid))
            .await?;
        Ok((root, update))
    }

    /// Checks that the PKI at `new` is an append-only extension of the PKI
    /// at `old` at time `now`: every name that differs passes
    /// [`check_transition`](Self::check_transition), sits under its own
    /// name key, and none was removed. Returns what changed. This is what
    /// a mirror runs before accepting a new PKI root.
    pub async fn check_update(&self, old: &Cid, new: &Cid, now: u64) -> Result<Vec<Update>> {
        let mut updates = Vec::new();
        for change in self.champ.diff(old, new).await? {
            let old_chain = match &change.old {
                Some(value) => Some(self.chain(value).await?),
                None => None,
            };
            let Some(new_value) = &change.new else {
                return Err(Error::NotAppendOnly {
                    username: old_chain
                        .map_or_else(|| change.key.to_string(), |c| c.username().to_string()),
                    reason: "a name was removed",
                });
            };
            let new_chain = self.chain(new_value).await?;
            if name_key(new_chain.username()) != change.key {
                return Err(Error::MalformedEntry {
                    reason: "a chain is stored under another name's key",
                });
            }
            updates.push(Self::check_transition(old_chain.as_ref(), &new_chain, now)?);
        }
        Ok(updates)
    }
}
