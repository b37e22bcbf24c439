use crate::cid::Cid;

/// Checks a structure's format version: `found` must be from 1 to
/// `supported`; a newer one is [`Error::NewerFormat`] (upgrade), 0 is
/// malformed.
pub fn check_version(what: &'static str, found: u64, supported: u64) -> Result<(), Error> {
    if found == 0 {
        return Err(Error::MalformedCbor {
            reason: format!("{what} with format version 0"),
        });
    }
    if found > supported {
        return Err(Error::NewerFormat {
            what,
            found,
            supported,
        });
    }
    Ok(())
}

/// Everything that can go wrong turning bytes into blocks and values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A block (or a value about to become one) is over the size limit.
    #[error("block of {size} bytes is larger than the {max} byte limit")]
    BlockTooLarge {
        /// The size that was offered.
        size: usize,
        /// The limit it broke.
        max: usize,
    },
    /// Bytes do not hash to the CID that is supposed to name them.
    #[error("block content does not match its CID {cid}")]
    HashMismatch {
        /// The CID the bytes were expected to have.
        cid: Cid,
    },
    /// A CID in binary or text form could not be parsed.
    #[error("invalid CID: {reason}")]
    InvalidCid {
        /// What was wrong with it.
        reason: String,
    },
    /// A CID uses a codec or hash this system does not accept.
    #[error("unsupported CID: {reason}")]
    UnsupportedCid {
        /// What was unsupported.
        reason: String,
    },
    /// The input is not well-formed CBOR, or not the DAG-CBOR data model.
    #[error("malformed DAG-CBOR: {reason}")]
    MalformedCbor {
        /// What was wrong with it.
        reason: String,
    },
    /// Well-formed CBOR that is not in canonical form (unsorted or duplicate
    /// map keys, non-shortest integers, indefinite lengths, trailing bytes).
    #[error("non-canonical DAG-CBOR: {reason}")]
    NonCanonical {
        /// Which canonical rule was broken.
        reason: &'static str,
    },
    /// Nesting deeper than the decoder accepts.
    #[error("DAG-CBOR nested deeper than {max} levels")]
    TooDeep {
        /// The depth limit.
        max: usize,
    },
    /// A structure carries a format version newer than this build reads
    /// (PROTOCOL.md, "Formats that grow"): not damage, a newer writer.
    #[error(
        "this {what} was written by a newer version of Peergos (format {found}; this build \
         reads up to {supported}): upgrade to read it"
    )]
    NewerFormat {
        /// Which structure.
        what: &'static str,
        /// The version it carries.
        found: u64,
        /// The newest this build reads.
        supported: u64,
    },
    /// The value could not be converted to or from the requested Rust type.
    #[error("DAG-CBOR value does not fit the expected type: {reason}")]
    Type {
        /// The serde error message.
        reason: String,
    },
}
