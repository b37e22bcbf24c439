/// Everything that can go wrong with capabilities and writer state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A capability's text form is not one.
    #[error("not a capability link: {reason}")]
    BadCapabilityText {
        /// What was wrong.
        reason: String,
    },
    /// The text form's checksum does not match: a typo or a truncated link.
    #[error("capability link is damaged (checksum mismatch): check it was copied whole")]
    ChecksumMismatch,
    /// Other writers kept winning; the change was not applied.
    #[error("gave up after {attempts} attempts: the writer's pointer kept moving")]
    TooManyConflicts {
        /// How many times the change was tried.
        attempts: usize,
    },
    /// A writer's pointer names a block that is not in the store.
    #[error("writer data block {cid} is missing from the store")]
    MissingWriterData {
        /// The block.
        cid: peergos_ipld::Cid,
    },
    /// A block or structure failed to decode.
    #[error(transparent)]
    Encoding(#[from] peergos_ipld::Error),
    /// A key or signature problem.
    #[error(transparent)]
    Key(#[from] peergos_keys::Error),
    /// The block store failed.
    #[error(transparent)]
    Store(#[from] peergos_blockstore::Error),
    /// The pointer store refused or failed.
    #[error(transparent)]
    Pointer(#[from] peergos_pointers::Error),
    /// A CHAMP operation failed.
    #[error(transparent)]
    Champ(#[from] peergos_champ::Error),
}
