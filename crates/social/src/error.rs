/// Everything the social formats can refuse.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A follow request that does not open, decode or verify.
    #[error("invalid follow request: {reason}")]
    BadFollowRequest {
        /// What was wrong.
        reason: String,
    },
    /// A secret link that cannot be parsed.
    #[error("invalid secret link: {reason}")]
    BadLink {
        /// What was wrong.
        reason: String,
    },
    /// A secret-link record that does not decrypt: wrong secret or
    /// password, or a record that was tampered with.
    #[error("the secret link does not open (wrong password, or the link is damaged)")]
    LinkDoesNotOpen,
    /// A stored social structure that does not decode (or was written
    /// by a newer version: the cause says which).
    #[error("{what}: {source}")]
    Decode {
        /// Which structure.
        what: &'static str,
        /// Why.
        #[source]
        source: peergos_ipld::Error,
    },
    /// A stored social structure that decodes but breaks a rule.
    #[error("invalid {what}: {reason}")]
    BadState {
        /// Which structure.
        what: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A plaintext too large for its fixed-size envelope.
    #[error("{what} is {size} bytes, more than the {max} its envelope holds")]
    TooLarge {
        /// Which structure.
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A username that breaks the naming rules.
    #[error(transparent)]
    Pki(#[from] peergos_pki::Error),
    /// A key, box or signature failure.
    #[error(transparent)]
    Key(#[from] peergos_keys::Error),
    /// An encoding failure.
    #[error(transparent)]
    Encoding(#[from] peergos_ipld::Error),
    /// A capability failure.
    #[error(transparent)]
    Cryptree(#[from] peergos_cryptree::Error),
}
