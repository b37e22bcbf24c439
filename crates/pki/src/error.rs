use peergos_ipld::Cid;

/// Everything that can go wrong with usernames, claims and the PKI.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A username that breaks the naming rules.
    #[error("invalid username {name:?}: {reason}")]
    BadUsername {
        /// The name (at most 64 characters of it).
        name: String,
        /// Which rule.
        reason: &'static str,
    },
    /// A claim or key chain that is not valid on its own.
    #[error("invalid key chain for {username:?}: {reason}")]
    BadChain {
        /// The username.
        username: String,
        /// What was wrong.
        reason: String,
    },
    /// The name is held by someone else, and not expired.
    #[error("username {username:?} is taken (held until {expiry})")]
    NameTaken {
        /// The username.
        username: String,
        /// When the holder's claim expires, in seconds since the Unix epoch.
        expiry: u64,
    },
    /// A PKI update that rewrites or drops history.
    #[error("PKI update for {username:?} is not append-only: {reason}")]
    NotAppendOnly {
        /// The username (or the key's hex, if no name could be read).
        username: String,
        /// What it did.
        reason: &'static str,
    },
    /// A PKI entry whose value is not a link to a key chain block.
    #[error("malformed PKI entry: {reason}")]
    MalformedEntry {
        /// What was wrong.
        reason: &'static str,
    },
    /// A chain block the PKI links to is missing.
    #[error("key chain block {cid} is missing from the store")]
    MissingChain {
        /// The block.
        cid: Cid,
    },
    /// A block or structure failed to decode.
    #[error(transparent)]
    Encoding(#[from] peergos_ipld::Error),
    /// A key or signature could not be read.
    #[error(transparent)]
    Key(#[from] peergos_keys::Error),
    /// The block store failed.
    #[error(transparent)]
    Store(#[from] peergos_blockstore::Error),
    /// A CHAMP operation failed.
    #[error(transparent)]
    Champ(#[from] peergos_champ::Error),
}
