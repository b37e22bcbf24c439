//! `WriterData`: the root block of one signing key's state, and the commit
//! path that moves the key's pointer to a new one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;

use peergos_blockstore::{BlockStore, PutBlocks, SignedBlock, TransactionId};
use peergos_ipld::{cbor, Block, Cid, Codec};
use peergos_keys::{LoginParams, PublicBoxingKey, PublicKeyHash, SigningKeyPair};
use peergos_pointers::{
    Error as PointerError, PointerCache, PointerStore, PointerUpdate, SignedPointer,
};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How many times [`Committer::commit`] tries a change before giving up.
pub const MAX_COMMIT_ATTEMPTS: usize = 16;

/// How long a writer's state this client read or wrote is taken as the
/// starting point of its next commit without reading the pointer again.
/// The pointer update is a compare-and-swap on the previous state, so a
/// state that went stale meanwhile costs one lost race, never a lost write.
pub const RECENT_STATE: std::time::Duration = std::time::Duration::from_secs(1);

/// The state of one writer key, stored as a dag-cbor block that the key's
/// pointer names.
///
/// CBOR:
/// ```text
/// {"tree": link | null,          root of the writer's filesystem CHAMP
///  "links": link | null,         root of the secret-link CHAMP
///  "login": LoginParams | null,  scrypt parameters (identity keys only)
///  "named": {text: link},        named owned keys (e.g. "pki")
///  "owned": [link, ...],         owned sub-writer keys, sorted
///  "boxing": bytes | null,       public boxing key for follow requests
///  "public": link | null,        root of the public-data CHAMP
///  "controller": link}           the key that controls this writer
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriterData {
    /// The key that controls this writer (the owner for a sub-writer).
    pub controller: PublicKeyHash,
    /// Root of the filesystem CHAMP (labels -> cryptree node blocks).
    pub tree: Option<Cid>,
    /// Sub-writer keys this writer owns (write access to subtrees).
    pub owned: BTreeSet<PublicKeyHash>,
    /// Owned keys with a well-known name.
    pub named: BTreeMap<String, PublicKeyHash>,
    /// Where follow requests to this user are sealed to.
    pub boxing: Option<PublicBoxingKey>,
    /// Root of the public-data CHAMP.
    pub public: Option<Cid>,
    /// Root of the secret-link CHAMP.
    pub links: Option<Cid>,
    /// The user's login parameters (on identity keys only).
    pub login: Option<LoginParams>,
}

impl WriterData {
    /// Empty state controlled by `controller`.
    pub fn new(controller: PublicKeyHash) -> Self {
        WriterData {
            controller,
            tree: None,
            owned: BTreeSet::new(),
            named: BTreeMap::new(),
            boxing: None,
            public: None,
            links: None,
            login: None,
        }
    }

    /// The canonical block.
    pub fn to_block(&self) -> Result<Block> {
        Ok(Block::encode(self)?)
    }

    /// Decodes (strictly) a block's bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Ok(cbor::from_slice(bytes)?)
    }
}

/// Waits a random time up to 2^attempt ms (capped at 256 ms) before retrying
/// a lost race, so writers contending for one pointer spread out instead of
/// colliding again in lock step.
async fn backoff(attempt: usize) {
    use rand_core::RngCore;
    let ceiling_ms = 1u64 << attempt.min(8);
    let wait_us = rand_core::OsRng.next_u64() % (ceiling_ms * 1000 + 1);
    tokio::time::sleep(std::time::Duration::from_micros(wait_us)).await;
}

/// A writer's turn to commit (see [`Committer::turn`]); released on drop.
pub struct Turn {
    writer: PublicKeyHash,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Turn {
    /// The writer whose turn this is.
    pub fn writer(&self) -> &PublicKeyHash {
        &self.writer
    }
}

/// A writer's state as this client last saw it: what its pointer named
/// (the decoded `WriterData` and its CID) at a sequence, and when.
#[derive(Clone)]
struct Known {
    state: Option<(WriterData, Cid)>,
    sequence: u64,
    at: std::time::Instant,
}

/// The outcome of a commit.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The new state.
    pub data: WriterData,
    /// Its block's CID, which the pointer now names.
    pub cid: Cid,
    /// The pointer's new sequence.
    pub sequence: u64,
    /// How many attempts lost a race before this one won.
    pub conflicts: usize,
}

/// Moves writers' pointers: reads the current state, applies a change,
/// stores the new `WriterData`, and compare-and-swaps the pointer. Every
/// pointer it reads is verified and checked against its [`PointerCache`],
/// so a server cannot roll it back.
pub struct Committer<B: BlockStore + ?Sized, P: PointerStore + ?Sized> {
    blocks: Arc<B>,
    pointers: Arc<P>,
    cache: PointerCache,
    /// The last state of each writer this committer read or wrote.
    states: std::sync::Mutex<HashMap<(PublicKeyHash, PublicKeyHash), Known>>,
    /// One lock per writer: this client's own commits to a pointer take
    /// turns instead of racing each other over the network.
    turns: std::sync::Mutex<HashMap<PublicKeyHash, Arc<tokio::sync::Mutex<()>>>>,
}

impl<B: BlockStore + ?Sized, P: PointerStore + ?Sized> Committer<B, P> {
    /// A committer over the given stores.
    pub fn new(blocks: Arc<B>, pointers: Arc<P>) -> Self {
        Committer {
            blocks,
            pointers,
            cache: PointerCache::new(),
            states: std::sync::Mutex::new(HashMap::new()),
            turns: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The block store.
    pub fn blocks(&self) -> &Arc<B> {
        &self.blocks
    }

    /// The pointer store.
    pub fn pointers(&self) -> &Arc<P> {
        &self.pointers
    }

    /// The current state of `writer` in `owner`'s space (None: never
    /// committed), with its CID and sequence, after verifying the pointer.
    pub async fn current(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
    ) -> Result<(Option<(WriterData, Cid)>, u64)> {
        // Compare the read with what was seen before it was issued: a
        // concurrent commit of ours may land while it is in flight.
        let seen_before = self.cache.newest(owner, writer);
        let signed = self.pointers.get(owner, writer).await?;
        self.cache
            .observe_read(owner, writer, signed.as_ref(), seen_before)?;
        let Some(signed) = signed else {
            return Ok((None, 0));
        };
        let sequence = signed.update.sequence;
        let Some(cid) = signed.update.current else {
            self.remember(owner, writer, None, sequence);
            return Ok((None, sequence));
        };
        // A block is named by its hash: the state decoded the last time
        // the pointer named this CID is the state now.
        let known = self
            .known(owner, writer)
            .and_then(|k| k.state)
            .filter(|(_, seen)| *seen == cid);
        let data = match known {
            Some((data, _)) => data,
            None => {
                let bytes = self
                    .blocks
                    .get(&cid, None)
                    .await?
                    .ok_or(Error::MissingWriterData { cid })?;
                cid.verify(&bytes)?;
                WriterData::from_bytes(&bytes)?
            }
        };
        self.remember(owner, writer, Some((data.clone(), cid)), sequence);
        Ok((Some((data, cid)), sequence))
    }

    fn states(&self) -> std::sync::MutexGuard<'_, HashMap<(PublicKeyHash, PublicKeyHash), Known>> {
        self.states.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn known(&self, owner: &PublicKeyHash, writer: &PublicKeyHash) -> Option<Known> {
        self.states().get(&(*owner, *writer)).cloned()
    }

    /// Records a state seen at `sequence`, unless a newer one is known
    /// (a read that was in flight while a commit of ours landed).
    fn remember(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
        state: Option<(WriterData, Cid)>,
        sequence: u64,
    ) {
        let mut states = self.states();
        let key = (*owner, *writer);
        if states
            .get(&key)
            .is_none_or(|known| known.sequence <= sequence)
        {
            let at = std::time::Instant::now();
            states.insert(
                key,
                Known {
                    state,
                    sequence,
                    at,
                },
            );
        }
    }

    /// Where a commit starts: on its first attempt the state this client
    /// saw less than [`RECENT_STATE`] ago (its own last commit, or the read
    /// that planned the change), otherwise a fresh read. Starting from a
    /// state that moved meanwhile loses the compare-and-swap, and the next
    /// attempt reads.
    async fn start_state(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
        attempt: usize,
    ) -> Result<(Option<(WriterData, Cid)>, u64)> {
        if attempt == 0 {
            if let Some(known) = self.known(owner, writer) {
                if known.at.elapsed() < RECENT_STATE {
                    return Ok((known.state, known.sequence));
                }
            }
        }
        self.current(owner, writer).await
    }

    /// Applies `change` to the current state of `writer` (in `owner`'s
    /// space) and commits the result. `change` gets the current state and
    /// an open transaction to write any new blocks in; it may run several
    /// times, each time on fresh state, if other writers commit first, so
    /// no one's change is lost. It must not have effects outside the
    /// returned state and the blocks it writes.
    ///
    /// After a lost race it waits a random, growing time (up to 256 ms)
    /// before retrying, and gives up with [`Error::TooManyConflicts`] after
    /// [`MAX_COMMIT_ATTEMPTS`]. Needs a Tokio runtime with timers.
    ///
    /// Not cancel-safe in the sense that a dropped future may still have
    /// committed; re-read with [`current`](Self::current) to find out.
    ///
    /// Commits to one writer through one `Committer` take turns (see
    /// [`turn`](Self::turn)), so `change` must not itself commit to the
    /// same writer through this `Committer`: it would wait for its own
    /// turn.
    pub async fn commit<F, Fut>(
        &self,
        owner: &PublicKeyHash,
        writer: &SigningKeyPair,
        change: F,
    ) -> Result<Committed>
    where
        F: FnMut(WriterData, TransactionId) -> Fut,
        Fut: Future<Output = Result<WriterData>>,
    {
        let writer_hash = PublicKeyHash::of(&writer.public());
        let turn = self.turn(&writer_hash).await;
        self.commit_in_turn(&turn, owner, writer, change).await
    }

    /// Waits until no other commit of this client to `writer` runs and
    /// holds that turn until dropped. Planning a change while holding the
    /// turn and committing it with [`commit_in_turn`](Self::commit_in_turn)
    /// means no commit of this client can invalidate the plan.
    pub async fn turn(&self, writer: &PublicKeyHash) -> Turn {
        let lock = {
            let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(turns.entry(*writer).or_default())
        };
        Turn {
            writer: *writer,
            _guard: lock.lock_owned().await,
        }
    }

    /// [`commit`](Self::commit) for a caller already holding `writer`'s
    /// turn.
    pub async fn commit_in_turn<F, Fut>(
        &self,
        turn: &Turn,
        owner: &PublicKeyHash,
        writer: &SigningKeyPair,
        change: F,
    ) -> Result<Committed>
    where
        F: FnMut(WriterData, TransactionId) -> Fut,
        Fut: Future<Output = Result<WriterData>>,
    {
        let mut change = change;
        // Boxed: the commit's state machine is large, and callers nest it
        // deep inside their own.
        Box::pin(
            self.commit_in_transaction(turn, owner, writer, None, |data, tx| {
                let changed = change(data, tx);
                async move { Ok((changed.await?, Vec::new())) }
            }),
        )
        .await
    }

    /// [`commit_in_turn`](Self::commit_in_turn), storing the new nodes in
    /// the caller's open transaction `tx` (which the caller closes after
    /// this returns) instead of one of its own: two round trips fewer.
    /// `change` also returns blocks (signed by `writer`) that the new state
    /// links to; they are stored in the same put as the new `WriterData`,
    /// so a commit costs one put.
    pub async fn commit_in_transaction<F, Fut>(
        &self,
        turn: &Turn,
        owner: &PublicKeyHash,
        writer: &SigningKeyPair,
        tx: Option<TransactionId>,
        mut change: F,
    ) -> Result<Committed>
    where
        F: FnMut(WriterData, TransactionId) -> Fut,
        Fut: Future<Output = Result<(WriterData, Vec<SignedBlock>)>>,
    {
        let writer_hash = PublicKeyHash::of(&writer.public());
        if turn.writer != writer_hash {
            return Err(Error::Task(format!(
                "committing as {writer_hash} while holding the turn of {}",
                turn.writer
            )));
        }
        // The sequence a refused attempt started from: once the server
        // said the pointer moved past it, a fresh read must show a newer
        // one. A server that keeps reading out the state its own
        // compare-and-swap refuses is replaying an old pointer.
        let mut refused_at: Option<u64> = None;
        let mut contradictions = 0;
        for attempt in 0..MAX_COMMIT_ATTEMPTS {
            let (current, sequence) = self.start_state(owner, &writer_hash, attempt).await?;
            if refused_at.is_some_and(|refused| sequence <= refused) {
                contradictions += 1;
                if contradictions >= 2 {
                    return Err(Error::PointerReplayed { sequence });
                }
            }
            let previous = current.as_ref().map(|(_, cid)| *cid);
            let state = current.map_or_else(|| WriterData::new(*owner), |(data, _)| data);
            let (tx, own) = match tx {
                Some(tx) => (tx, false),
                None => (self.blocks.start_transaction(owner).await?, true),
            };
            let outcome = self
                .try_commit(
                    owner,
                    writer,
                    &writer_hash,
                    &mut change,
                    state,
                    tx,
                    previous,
                    sequence,
                )
                .await;
            // The attempt's outcome is what the caller needs: reporting a
            // failed close after the pointer moved would invite applying the
            // change twice. A transaction left open only keeps its blocks
            // from GC until it times out.
            if own {
                let _ = self.blocks.close_transaction(owner, &tx).await;
            }
            match outcome {
                Ok((data, cid, sequence)) => {
                    return Ok(Committed {
                        data,
                        cid,
                        sequence,
                        conflicts: attempt,
                    })
                }
                Err(Error::Pointer(
                    PointerError::CasConflict(_) | PointerError::StaleSequence { .. },
                )) => {
                    refused_at = Some(sequence);
                    backoff(attempt).await
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::TooManyConflicts {
            attempts: MAX_COMMIT_ATTEMPTS,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn try_commit<F, Fut>(
        &self,
        owner: &PublicKeyHash,
        writer: &SigningKeyPair,
        writer_hash: &PublicKeyHash,
        change: &mut F,
        state: WriterData,
        tx: TransactionId,
        previous: Option<Cid>,
        sequence: u64,
    ) -> Result<(WriterData, Cid, u64)>
    where
        F: FnMut(WriterData, TransactionId) -> Fut,
        Fut: Future<Output = Result<(WriterData, Vec<SignedBlock>)>>,
    {
        let (data, mut blocks) = change(state, tx).await?;
        let block = data.to_block()?;
        let cid = *block.cid();
        blocks.push(SignedBlock::sign(writer, Codec::DagCbor, block.into_data()));
        self.blocks
            .put(PutBlocks {
                owner: *owner,
                writer: *writer_hash,
                transaction: tx,
                blocks,
            })
            .await?;
        let update = PointerUpdate {
            previous,
            current: Some(cid),
            sequence: sequence + 1,
        };
        let signed = SignedPointer::sign(writer, owner, update)?;
        self.pointers
            .set(owner, writer_hash, signed.clone())
            .await?;
        // Another task of ours may already have committed (and recorded)
        // a newer update on top of this one: record ours only if newest.
        self.cache
            .observe_read(owner, writer_hash, Some(&signed), None)?;
        self.remember(owner, writer_hash, Some((data.clone(), cid)), sequence + 1);
        Ok((data, cid, sequence + 1))
    }
}
