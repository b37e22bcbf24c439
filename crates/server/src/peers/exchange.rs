//! Block exchange between servers (`/peergos/blocks/2`): the answer's
//! framing, asking a peer for blocks, answering one, and serving a
//! client's block from the store, the cache or the owner's home.

use super::*;

/// One block asked for in an exchange request (a request is a list of
/// these).
///
/// CBOR: `{"c": link, "a": BlockAuth | null}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Want {
    /// The block.
    #[serde(rename = "c")]
    pub cid: Cid,
    /// The access proof the client gave, passed on.
    #[serde(rename = "a")]
    pub auth: Option<BlockAuth>,
}

/// The answer for one [`Want`] (an answer is a list of these, in order,
/// possibly shorter than the request): the block, a refusal, or (both
/// None) not stored there. On the wire see [`encode_answer`].
#[derive(Clone, Debug, PartialEq)]
pub struct Have {
    /// The block's bytes.
    pub block: Option<Bytes>,
    /// Why it was refused.
    pub refused: Option<ErrorBody>,
}

/// What an exchange answer's header says about one [`Have`].
///
/// CBOR: `{"n": u64 | null, "e": ErrorBody | null}`: `n` is the length of
/// the block's bytes, which follow the header.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HaveHeader {
    /// The block's length in bytes, if the block is in the answer.
    #[serde(rename = "n")]
    pub len: Option<u64>,
    /// Why it was refused.
    #[serde(rename = "e")]
    pub refused: Option<ErrorBody>,
}

/// The largest CBOR header of an exchange answer.
pub const MAX_ANSWER_HEADER: usize = 1 << 20;

/// The header of an exchange answer: `u32 BE header length ‖ CBOR
/// [HaveHeader]`. The blocks' bytes follow it, in order, and are not
/// CBOR, so megabytes of ciphertext cross without being re-encoded or
/// copied: the answering server writes them straight from its store, the
/// asker slices them out of the frame.
pub fn answer_header(haves: &[Have]) -> Vec<u8> {
    let headers: Vec<HaveHeader> = haves
        .iter()
        .map(|h| HaveHeader {
            len: h.block.as_ref().map(|b| b.len() as u64),
            refused: h.refused.clone(),
        })
        .collect();
    // Plain fields and error bodies always encode.
    peergos_api::framing::prefixed(&cbor::to_vec(&headers).unwrap_or_default(), 0)
}

/// A whole exchange answer in one buffer ([`answer_header`], then the
/// blocks).
pub fn encode_answer(haves: &[Have]) -> Vec<u8> {
    let mut out = answer_header(haves);
    for block in haves.iter().filter_map(|h| h.block.as_ref()) {
        out.extend_from_slice(block);
    }
    out
}

/// Parses an exchange answer ([`encode_answer`]) without copying the
/// blocks: the header must be canonical CBOR, a block and a refusal
/// exclude each other, and the lengths must add up to exactly the rest
/// of the frame.
pub fn decode_answer(frame: &Bytes) -> std::result::Result<Vec<Have>, String> {
    let (header, mut bytes) =
        peergos_api::framing::Blocks::open(frame, MAX_ANSWER_HEADER, "exchange answer")?;
    let headers: Vec<HaveHeader> = decode_frame(header, MAX_ANSWER_HEADER)
        .map_err(|e| format!("exchange answer header: {e}"))?;
    if headers.len() > MAX_EXCHANGE {
        return Err(format!(
            "an exchange answer of {} blocks (at most {MAX_EXCHANGE})",
            headers.len()
        ));
    }
    let mut haves = Vec::with_capacity(headers.len());
    for h in headers {
        let block = match (h.len, &h.refused) {
            (Some(_), Some(_)) => {
                return Err("an exchange answer both sends and refuses a block".into())
            }
            (Some(len), None) => Some(bytes.take(len)?),
            (None, _) => None,
        };
        haves.push(Have {
            block,
            refused: h.refused,
        });
    }
    bytes.finish()?;
    Ok(haves)
}

impl Server {
    /// Asks `peer` for blocks (in batches of at most [`MAX_EXCHANGE`]):
    /// for each, the block (hash and form checked), None if `peer` does
    /// not have it, or its refusal.
    pub async fn exchange(
        &self,
        peer: PeerId,
        wants: &[Want],
    ) -> Result<Vec<std::result::Result<Option<Block>, ErrorBody>>> {
        self.exchange_until(peer, wants, usize::MAX).await
    }

    /// [`exchange`](Self::exchange), asking no more once the blocks
    /// received add up to `budget` bytes: the answers may then cover only
    /// the first of `wants`.
    pub async fn exchange_until(
        &self,
        peer: PeerId,
        wants: &[Want],
        budget: usize,
    ) -> Result<Vec<std::result::Result<Option<Block>, ErrorBody>>> {
        let node = self.require_node()?;
        let unreachable = |e: peergos_p2p::Error| {
            Error::Peer(format!("cannot fetch blocks from {peer} over p2p: {e}"))
        };
        let mut out = Vec::with_capacity(wants.len());
        let mut rest = wants;
        let mut received = 0usize;
        while !rest.is_empty() && received < budget {
            let batch = &rest[..rest.len().min(MAX_EXCHANGE)];
            let answer = node
                .request(
                    peer,
                    BLOCKS_PROTOCOL,
                    &cbor::to_vec(&batch)?,
                    EXCHANGE_FRAME,
                )
                .await
                .map_err(unreachable)?;
            let haves = decode_answer(&Bytes::from(answer)).map_err(|e| {
                Error::Peer(format!("{peer} answered a malformed block exchange: {e}"))
            })?;
            if haves.is_empty() || haves.len() > batch.len() {
                return Err(Error::Peer(format!(
                    "{peer} answered {} blocks for a request of {}",
                    haves.len(),
                    batch.len()
                )));
            }
            let answered = haves.len();
            let pairs: Vec<(Cid, Have)> = batch.iter().map(|w| w.cid).zip(haves).collect();
            // Hashing megabytes is blocking work: off the async threads.
            let checked = tokio::task::spawn_blocking(move || {
                pairs
                    .into_iter()
                    .map(|(cid, have)| match have {
                        Have {
                            block: Some(bytes), ..
                        } => Block::verified(cid, bytes)
                            .map(|block| Ok(Some(block)))
                            .map_err(|_| cid),
                        Have {
                            refused: Some(refusal),
                            ..
                        } => Ok(Err(refusal)),
                        Have { .. } => Ok(Ok(None)),
                    })
                    .collect::<Vec<_>>()
            })
            .await?;
            for have in checked {
                let have = have.map_err(|cid| {
                    Error::Peer(format!("{peer} sent bytes that are not block {cid}"))
                })?;
                if let Ok(Some(block)) = &have {
                    received += block.data().len();
                }
                out.push(have);
            }
            rest = &rest[answered..];
        }
        Ok(out)
    }

    /// Answers one exchange request: each block from the store or the
    /// cache, under its access check, until the answer is full.
    pub(super) async fn answer_exchange(&self, wants: Vec<Want>) -> Vec<Have> {
        let mut haves = Vec::with_capacity(wants.len());
        let mut size = 0usize;
        for want in wants.into_iter().take(MAX_EXCHANGE) {
            let found = match self.stores.blocks.get(&want.cid, want.auth.as_ref()).await {
                Ok(None) => self.net.cache.get(&want.cid, want.auth.as_ref()).await,
                other => other,
            };
            let have = match found {
                Ok(Some(bytes)) => {
                    if size > 0 && size + bytes.len() > EXCHANGE_BUDGET {
                        break;
                    }
                    size += bytes.len();
                    Have {
                        block: Some(bytes),
                        refused: None,
                    }
                }
                Ok(None) => Have {
                    block: None,
                    refused: None,
                },
                Err(e) => Have {
                    block: None,
                    refused: Some(Error::from(e).body()),
                },
            };
            haves.push(have);
        }
        haves
    }

    /// A block for a client: from the store, else the cache, else (when
    /// the client named the owner and the owner lives elsewhere) fetched
    /// from the owner's home and cached. Access rules are the same in all
    /// three cases: the tokens are inside the block.
    pub async fn get_routed(
        &self,
        cid: &Cid,
        auth: Option<&BlockAuth>,
        owner: Option<&PublicKeyHash>,
    ) -> Result<Option<Bytes>> {
        if let Some(bytes) = self.stores.blocks.get(cid, auth).await? {
            return Ok(Some(bytes));
        }
        if let Some(bytes) = self.net.cache.get(cid, auth).await? {
            return Ok(Some(bytes));
        }
        match owner {
            // Boxed: the remote path is rare, and its future is large.
            Some(owner) => Box::pin(self.fetch_for(owner, cid, auth)).await,
            None => Ok(None),
        }
    }

    /// A block of `owner`'s that this server lacks, from the owner's home
    /// (if that is another server), through the cache.
    pub(super) async fn fetch_for(
        &self,
        owner: &PublicKeyHash,
        cid: &Cid,
        auth: Option<&BlockAuth>,
    ) -> Result<Option<Bytes>> {
        let Some(home) = self.home_of_owner(owner).await? else {
            return Ok(None);
        };
        let want = Want {
            cid: *cid,
            auth: auth.cloned(),
        };
        let mut answers = self.exchange(home, std::slice::from_ref(&want)).await?;
        match answers.pop() {
            Some(Ok(Some(block))) => {
                // The same access check a store read runs.
                peergos_blockstore::check_access(cid, block.data(), auth)?;
                let bytes = block.data().clone();
                self.keep_in_cache(vec![block]);
                Ok(Some(bytes))
            }
            Some(Ok(None)) | None => Ok(None),
            Some(Err(body)) => Err(Error::Remote { status: 403, body }),
        }
    }

    /// The blocks of the first of `requests`, each as
    /// [`get_routed`](Self::get_routed) would answer, with the misses of
    /// each remote owner fetched in one exchange. The answer stops before
    /// the block that would take the bytes held here past
    /// [`GET_MANY_BUDGET`] (it always holds at least one answer), so it
    /// may be shorter than the request: the caller asks again for the
    /// rest.
    pub async fn get_many_routed(
        &self,
        requests: &[(Cid, Option<BlockAuth>, Option<PublicKeyHash>)],
    ) -> Result<Vec<Option<Bytes>>> {
        let mut found: Vec<Option<Bytes>> = Vec::with_capacity(requests.len());
        let mut size = 0usize;
        // Read from the store a few dozen at a time (one blocking task
        // each for the file store), so a long request of large blocks
        // holds little more than the budget.
        'answer: for part in requests.chunks(32) {
            let plain: Vec<(Cid, Option<BlockAuth>)> =
                part.iter().map(|(c, a, _)| (*c, a.clone())).collect();
            let mut stored = self.stores.blocks.get_many(&plain).await?;
            if stored.len() != part.len() {
                return Err(Error::Internal(format!(
                    "the block store answered {} of {} reads",
                    stored.len(),
                    part.len()
                )));
            }
            // What the store lacks, from the cache in one batch too.
            let absent: Vec<usize> = (0..stored.len()).filter(|&i| stored[i].is_none()).collect();
            if !absent.is_empty() {
                let wanted: Vec<_> = absent.iter().map(|&i| plain[i].clone()).collect();
                for (i, bytes) in absent
                    .into_iter()
                    .zip(self.net.cache.get_many(&wanted).await?)
                {
                    stored[i] = bytes;
                }
            }
            for bytes in stored {
                if let Some(bytes) = &bytes {
                    if size > 0 && size + bytes.len() > GET_MANY_BUDGET {
                        break 'answer;
                    }
                    size += bytes.len();
                }
                found.push(bytes);
            }
        }
        let requests = &requests[..found.len()];
        // Where the answer ends: before the first miss a home server left
        // for another exchange.
        let mut cut = found.len();
        let mut misses: HashMap<PeerId, Vec<usize>> = HashMap::new();
        for (i, (_, _, owner)) in requests.iter().enumerate() {
            if found[i].is_some() {
                continue;
            }
            if let Some(owner) = owner {
                if let Some(home) = self.home_of_owner(owner).await? {
                    misses.entry(home).or_default().push(i);
                }
            }
        }
        for (home, indices) in misses {
            let wants: Vec<Want> = indices
                .iter()
                .map(|&i| Want {
                    cid: requests[i].0,
                    auth: requests[i].1.clone(),
                })
                .collect();
            let answers = self.exchange_until(home, &wants, GET_MANY_BUDGET).await?;
            if let Some(&first_unanswered) = indices.get(answers.len()) {
                cut = cut.min(first_unanswered);
            }
            let mut fetched = Vec::new();
            for (&i, answer) in indices.iter().zip(answers) {
                match answer {
                    Ok(Some(block)) => {
                        let (cid, auth, _) = &requests[i];
                        peergos_blockstore::check_access(cid, block.data(), auth.as_ref())?;
                        found[i] = Some(block.data().clone());
                        fetched.push(block);
                    }
                    Ok(None) => {}
                    Err(body) => return Err(Error::Remote { status: 403, body }),
                }
            }
            self.keep_in_cache(fetched);
        }
        found.truncate(cut);
        Ok(found)
    }

    /// Writes fetched blocks to the cache in the background: the answer
    /// does not wait for the disk, and a failed write only costs a later
    /// fetch.
    pub(super) fn keep_in_cache(&self, blocks: Vec<Block>) {
        if blocks.is_empty() {
            return;
        }
        let cache = self.net.cache.clone();
        tokio::spawn(async move {
            if let Err(e) = cache.put_verified(blocks).await {
                tracing::warn!(error = %e, "caching fetched blocks failed");
            }
        });
    }

    // ---- homes ----
}
