//! Space accounting from CHAMP diffs: when a writer's pointer moves, the
//! owner's usage changes by the sizes of the tree values added minus those
//! removed, found by diffing the old and new filesystem CHAMPs (a walk of
//! the changed paths only, never a rescan).
//!
//! A value's size is its node block plus the node's fragment blocks. The
//! CHAMP's own index nodes and the `WriterData` block are not counted: they
//! are a small, bounded overhead of every change.

use peergos_blockstore::BlockStore;
use peergos_champ::{Champ, Value};
use peergos_cryptree::node::NodeBlock;
use peergos_cryptree::WriterData;
use peergos_ipld::Cid;

use crate::{Error, Result};

/// The filesystem CHAMP root of the `WriterData` block `cid`.
async fn tree_of<S: BlockStore + ?Sized>(store: &S, cid: Option<Cid>) -> Result<Option<Cid>> {
    let Some(cid) = cid else {
        return Ok(None);
    };
    let bytes = store.get_trusted(&cid).await?.ok_or_else(|| {
        Error::BadRequest(format!(
            "pointer names writer data {cid}, which is not stored"
        ))
    })?;
    Ok(WriterData::from_bytes(&bytes)?.tree)
}

/// The bytes one CHAMP value accounts for.
async fn value_size<S: BlockStore + ?Sized>(store: &S, value: &Value, strict: bool) -> Result<u64> {
    let cid = match value {
        Value::Inline(bytes) => return Ok(bytes.len() as u64),
        Value::Link(cid) => cid,
    };
    let Some(bytes) = store.get_trusted(cid).await? else {
        if strict {
            return Err(Error::BadRequest(format!(
                "the new tree links block {cid}, which is not stored"
            )));
        }
        return Ok(0);
    };
    let mut size = bytes.len() as u64;
    // Node blocks name their fragments; other values are counted alone.
    if let Ok(node) = NodeBlock::decode(&bytes) {
        for fragment in &node.fragments {
            match store.size(fragment).await? {
                Some(n) => size += n,
                None if strict => {
                    return Err(Error::BadRequest(format!(
                        "the new tree links fragment {fragment}, which is not stored"
                    )))
                }
                None => {}
            }
        }
    }
    Ok(size)
}

/// The change in stored bytes when a writer's state moves from the
/// `WriterData` block `old` to `new`. Fails if the new state links blocks
/// the store does not have.
pub(crate) async fn delta<S: BlockStore + ?Sized>(
    champ: &Champ<S>,
    old: Option<Cid>,
    new: Option<Cid>,
) -> Result<i64> {
    let store = champ.store().as_ref();
    let (old_tree, new_tree) = (tree_of(store, old).await?, tree_of(store, new).await?);
    let mut delta: i64 = 0;
    match (old_tree, new_tree) {
        (None, None) => {}
        (None, Some(new)) => {
            for (_, value) in champ.entries(&new).await? {
                delta += value_size(store, &value, true).await? as i64;
            }
        }
        (Some(old), None) => {
            for (_, value) in champ.entries(&old).await? {
                delta -= value_size(store, &value, false).await? as i64;
            }
        }
        (Some(old), Some(new)) => {
            for change in champ.diff(&old, &new).await? {
                if let Some(value) = &change.new {
                    delta += value_size(store, value, true).await? as i64;
                }
                if let Some(value) = &change.old {
                    delta -= value_size(store, value, false).await? as i64;
                }
            }
        }
    }
    Ok(delta)
}
