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
    /// The server refused a commit because the pointer moved, yet keeps
    /// reading out the state it refused: it is replaying an old pointer.
    #[error(
        "the server keeps answering with a writer's state at sequence {sequence} while its \
         compare-and-swap says the pointer has moved on: it is replaying an old pointer \
         (rollback); nothing was changed"
    )]
    PointerReplayed {
        /// The sequence the server keeps reading out.
        sequence: u64,
    },
    /// A writer's pointer names a block that is not in the store.
    #[error("writer data block {cid} is missing from the store")]
    MissingWriterData {
        /// The block.
        cid: peergos_ipld::Cid,
    },
    /// A node block decoded but breaks the node format.
    #[error("malformed cryptree node: {reason}")]
    MalformedNode {
        /// What was wrong.
        reason: &'static str,
    },
    /// A part of a node did not decrypt: the wrong key, or tampering.
    #[error("cannot decrypt the {part} of a node: wrong key or tampered block")]
    Decrypt {
        /// Which part.
        part: &'static str,
    },
    /// A block a node links to is missing from the store.
    #[error("block {cid} is missing from the store")]
    MissingBlock {
        /// The block.
        cid: peergos_ipld::Cid,
    },
    /// A chunk the file's size says exists is missing from the tree.
    #[error("{path}: chunk {index} is missing (the tree is damaged or was rolled back)")]
    MissingChunk {
        /// The file.
        path: String,
        /// Which chunk.
        index: u64,
    },
    /// Nothing at this path.
    #[error("{path}: no such file or directory")]
    NotFound {
        /// The path.
        path: String,
    },
    /// Something already exists at this path.
    #[error("{path}: already exists")]
    AlreadyExists {
        /// The path.
        path: String,
    },
    /// A directory was needed.
    #[error("{path}: not a directory")]
    NotADirectory {
        /// The path.
        path: String,
    },
    /// A file was needed.
    #[error("{path}: is a directory")]
    IsADirectory {
        /// The path.
        path: String,
    },
    /// The node changed while a multi-step operation on it was under way;
    /// nothing was lost, retry the operation.
    #[error("{path}: changed during the operation; retry")]
    Conflict {
        /// The path.
        path: String,
    },
    /// A directory that must be empty is not.
    #[error("{path}: directory not empty")]
    DirectoryNotEmpty {
        /// The path.
        path: String,
    },
    /// The capability for this path cannot write.
    #[error("{path}: read-only (no write access)")]
    ReadOnly {
        /// The path.
        path: String,
    },
    /// A node has no link to its writer's signing key, or the key does not
    /// open it.
    #[error("this capability cannot write")]
    NotWritable,
    /// A name that cannot be used.
    #[error("invalid name {name:?}: {reason}")]
    BadName {
        /// The name (at most 64 characters of it).
        name: String,
        /// What was wrong.
        reason: &'static str,
    },
    /// A path that cannot be used.
    #[error("invalid path {path:?}: {reason}")]
    BadPath {
        /// The path.
        path: String,
        /// What was wrong.
        reason: &'static str,
    },
    /// A move that would put a directory inside itself, or other impossible
    /// moves.
    #[error("cannot move {from} to {to}: {reason}")]
    BadMove {
        /// Source.
        from: String,
        /// Destination.
        to: String,
        /// Why.
        reason: &'static str,
    },
    /// An operation that would span two writer keys, which cannot commit
    /// atomically.
    #[error("{path}: the operation spans two writers; copy, then delete instead")]
    CrossWriter {
        /// The path.
        path: String,
    },
    /// Reading the data to upload failed.
    #[error("reading upload data: {0}")]
    Read(#[source] std::io::Error),
    /// Writing downloaded data failed.
    #[error("writing downloaded data: {0}")]
    Write(#[source] std::io::Error),
    /// A background task stopped without an answer.
    #[error("background task failed: {0}")]
    Task(String),
    /// A background task panicked or was cancelled.
    #[error("a background task stopped: {0}")]
    Join(#[from] tokio::task::JoinError),
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
