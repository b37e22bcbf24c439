//! Space accounting from CHAMP diffs: when a writer's pointer moves, the
//! owner's usage changes by the sizes of the tree values added minus those
//! removed, found by diffing the old and new filesystem CHAMPs (a walk of
//! the changed paths only, never a rescan).
//!
//! A value's size is its node block plus the node's fragment blocks. The
//! CHAMP's own index nodes and the `WriterData` block are not counted: they
//! are a small, bounded overhead of every change.

use futures::StreamExt as _;
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
    let (old_tree, new_tree) =
        futures::future::try_join(tree_of(store, old), tree_of(store, new)).await?;
    // (value added, value removed) pairs; their sizes are looked up a few
    // at a time, since each is a trip to the block store.
    let changes: Vec<(Option<Value>, Option<Value>)> = match (old_tree, new_tree) {
        (None, None) => Vec::new(),
        (None, Some(new)) => champ
            .entries(&new)
            .await?
            .into_iter()
            .map(|(_, value)| (Some(value), None))
            .collect(),
        (Some(old), None) => champ
            .entries(&old)
            .await?
            .into_iter()
            .map(|(_, value)| (None, Some(value)))
            .collect(),
        (Some(old), Some(new)) => champ
            .diff(&old, &new)
            .await?
            .into_iter()
            .map(|change| (change.new, change.old))
            .collect(),
    };
    let mut sizes = futures::stream::iter(changes.into_iter().map(|(added, removed)| async move {
        let mut delta = 0i64;
        if let Some(value) = &added {
            delta += value_size(store, value, true).await? as i64;
        }
        if let Some(value) = &removed {
            delta -= value_size(store, value, false).await? as i64;
        }
        Ok::<i64, Error>(delta)
    }))
    .buffered(SIZES_AT_ONCE);
    let mut delta: i64 = 0;
    while let Some(change) = sizes.next().await {
        delta += change?;
    }
    Ok(delta)
}

/// Values whose sizes are looked up at once.
const SIZES_AT_ONCE: usize = 8;
