//! Enforcing block access tokens on reads.

use peergos_ipld::Cid;
use peergos_keys::{bat, BatProof};

use crate::{Error, Result};

/// A reader's claim to a block that lists access tokens: who is asking (the
/// peer id the transport authenticated) and a proof bound to that id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BlockAuth {
    /// The requesting peer's id, as bound into the proof.
    #[serde(rename = "r", with = "serde_bytes")]
    pub requester: Vec<u8>,
    /// The proof.
    #[serde(rename = "p")]
    pub proof: BatProof,
}

impl BlockAuth {
    /// A proof for `cid` by `requester` holding `bat`, made now.
    pub fn new(bat: &peergos_keys::Bat, cid: &Cid, requester: &[u8]) -> Self {
        BlockAuth {
            requester: requester.to_vec(),
            proof: bat.prove(cid, requester, crate::unix_now()),
        }
    }
}

/// Checks that `auth` may read the block `cid` with content `data`.
/// Checks that `auth` opens the block `cid` with bytes `data`: a block
/// that lists access tokens needs a valid proof for one of them, one that
/// lists none is open to anyone. Every store read runs this; a server
/// serving bytes it did not read from a store (fetched from another
/// server) runs it itself.
pub fn check(cid: &Cid, data: &[u8], auth: Option<&BlockAuth>) -> Result<()> {
    let ids = bat::block_bats(cid, data)?;
    if ids.is_empty() {
        return Ok(());
    }
    let auth = auth.ok_or(Error::ProofRequired { cid: *cid })?;
    auth.proof
        .verify(&ids, cid, &auth.requester, crate::unix_now())
        .map_err(|source| Error::AccessDenied {
            cid: *cid,
            source: Box::new(source),
        })
}
