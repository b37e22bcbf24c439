//! The PKI mirror: following the PKI node's pointer, copying new PKI
//! blocks, and accepting a new root only as an append-only extension.

use super::*;

/// Where the mirror stands, for `/metrics` and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MirrorStatus {
    /// The PKI root accepted last.
    pub root: Option<Cid>,
    /// Its sequence number.
    pub sequence: u64,
    /// Why the last new root was refused, if it was.
    pub rejected: Option<String>,
    /// New roots accepted since start.
    pub accepted: u64,
}

/// A copy of the PKI node's PKI.
pub(crate) struct Mirror {
    store: Arc<FileStore>,
    pub(crate) pki: Pki<FileStore>,
    current: RwLock<Option<SignedPointer>>,
    status: Mutex<MirrorStatus>,
    sync_lock: tokio::sync::Mutex<()>,
    last_sync: Mutex<Option<Instant>>,
}

impl Mirror {
    /// Opens the mirror's block store in `dir`, with the accepted pointer
    /// from the account store. (Before accounts kept it, it was the file
    /// `pointer.cbor` in `dir`: one found there is moved in.)
    pub(crate) async fn open(dir: PathBuf, accounts: &dyn AccountStore) -> Result<Mirror> {
        let store = Arc::new(FileStore::open(&dir)?);
        let mut stored = accounts.mirror_pointer().await?;
        let legacy = dir.join("pointer.cbor");
        if stored.is_none() {
            match std::fs::read(&legacy) {
                Ok(bytes) => {
                    accounts.set_mirror_pointer(&bytes).await?;
                    stored = Some(bytes);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(crate::io_err("read", &legacy)(e)),
            }
        }
        if stored.is_some() && legacy.exists() {
            std::fs::remove_file(&legacy).map_err(crate::io_err("remove", &legacy))?;
        }
        let current = stored
            .map(|bytes| cbor::from_slice::<SignedPointer>(&bytes))
            .transpose()?;
        let status = MirrorStatus {
            root: current.as_ref().and_then(|p| p.update.current),
            sequence: current.as_ref().map_or(0, |p| p.update.sequence),
            ..MirrorStatus::default()
        };
        Ok(Mirror {
            pki: Pki::new(Arc::clone(&store)),
            store,
            current: RwLock::new(current),
            status: Mutex::new(status),
            sync_lock: tokio::sync::Mutex::new(()),
            last_sync: Mutex::new(None),
        })
    }

    pub(crate) fn store(&self) -> &Arc<FileStore> {
        &self.store
    }

    pub(crate) fn pointer(&self) -> Option<SignedPointer> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn status(&self) -> MirrorStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Server {
    /// Asks the PKI node for news after a lookup missed: at once if the
    /// last sync is [`SYNC_ON_MISS`] old, else once that much time has
    /// passed (so a name claimed a moment ago is found, and misses cannot
    /// make the mirror hammer the PKI node).
    pub(super) async fn sync_on_miss(&self) {
        let Some(mirror) = &self.pki.mirror else {
            return;
        };
        let last = *lock(&mirror.last_sync);
        if let Some(wait) = last.and_then(|t| SYNC_ON_MISS.checked_sub(t.elapsed())) {
            tokio::time::sleep(wait).await;
        }
        if *lock(&mirror.last_sync) != last {
            // Another lookup synced meanwhile.
            return;
        }
        if let Err(e) = self.sync_pki().await {
            tracing::warn!(error = %e, "PKI mirror sync failed");
        }
    }

    /// Brings the mirror up to the PKI node's current root, if that root
    /// is an append-only extension of the one accepted last. Returns
    /// whether the root moved. A root that rewrites history is refused
    /// (and reported by [`mirror_status`](Self::mirror_status)); the
    /// mirror keeps serving the old one.
    pub async fn sync_pki(&self) -> Result<bool> {
        let Some(mirror) = &self.pki.mirror else {
            return Ok(false);
        };
        let _guard = mirror.sync_lock.lock().await;
        *lock(&mirror.last_sync) = Some(Instant::now());
        let pki = self.pki.key.to_string();
        let answer = self
            .forward(
                self.pki.peer,
                &TunnelRequest {
                    method: GET_POINTER.method.as_str().into(),
                    path: GET_POINTER.path_with(&[&pki, &pki]),
                    content_type: None,
                    body: Vec::new(),
                },
            )
            .await?;
        if answer.status == 404 {
            return Ok(false);
        }
        if answer.status != 200 {
            return Err(Error::Peer(format!(
                "the PKI node answered its pointer with status {}",
                answer.status
            )));
        }
        let signed: Option<SignedPointer> = cbor::from_slice(&answer.body)?;
        let Some(signed) = signed else {
            return Ok(false);
        };
        signed.verify(&self.pki.key, &self.pki.key)?;
        let current = mirror.pointer();
        if let Some(current) = &current {
            if signed.update.sequence <= current.update.sequence {
                if signed.update.sequence == current.update.sequence
                    && signed.update.current != current.update.current
                {
                    return Err(self.reject(
                        mirror,
                        format!(
                            "the PKI node signed two different roots with sequence {}",
                            signed.update.sequence
                        ),
                    ));
                }
                return Ok(false);
            }
        }
        let root = signed
            .update
            .current
            .ok_or_else(|| self.reject(mirror, "the PKI node emptied its PKI".into()))?;
        self.copy_dag(self.pki.peer, mirror.store(), &root).await?;
        let now = now_ms() / 1000;
        match current.as_ref().and_then(|c| c.update.current) {
            Some(old) => match mirror.pki.check_update(&old, &root, now).await {
                Ok(updates) => {
                    let mut chains = Vec::new();
                    for update in updates {
                        let (peergos_pki::Update::New(name)
                        | peergos_pki::Update::Extended(name)
                        | peergos_pki::Update::Reclaimed(name)) = update;
                        if let Some(chain) = mirror.pki.lookup(&root, &name).await? {
                            chains.push(chain);
                        }
                    }
                    self.index(&chains);
                }
                Err(e) => {
                    return Err(self.reject(
                        mirror,
                        format!("the PKI node's new root {root} is not an append-only extension of {old}: {e}"),
                    ))
                }
            },
            None => {
                // The first root is taken on trust (as a certificate
                // transparency client takes its first tree head), after
                // checking every chain in it.
                for (_, value) in mirror.pki.champ().entries(&root).await? {
                    if let Value::Link(cid) = value {
                        let bytes = mirror.store.get_trusted(&cid).await?.ok_or_else(|| {
                            Error::Peer(format!("the PKI lacks the chain block {cid}"))
                        })?;
                        KeyChain::from_bytes(&bytes)?.verify()?;
                    }
                }
                self.index_all(&mirror.pki, &root).await?;
            }
        }
        self.stores
            .accounts
            .set_mirror_pointer(&cbor::to_vec(&signed)?)
            .await?;
        let sequence = signed.update.sequence;
        *mirror.current.write().unwrap_or_else(|p| p.into_inner()) = Some(signed);
        let mut status = lock(&mirror.status);
        status.root = Some(root);
        status.sequence = sequence;
        status.accepted += 1;
        status.rejected = None;
        tracing::debug!(%root, sequence, "PKI mirror advanced");
        Ok(true)
    }

    pub(super) fn reject(&self, mirror: &Mirror, reason: String) -> Error {
        tracing::error!(%reason, "refusing the PKI node's new root");
        lock(&mirror.status).rejected = Some(reason.clone());
        Error::Peer(format!("refusing the PKI node's new root: {reason}"))
    }

    /// Copies every block reachable from `root` that `store` lacks from
    /// `peer`, checking each hash.
    pub(super) async fn copy_dag(
        &self,
        peer: PeerId,
        store: &FileStore,
        root: &Cid,
    ) -> Result<usize> {
        let mut queue = VecDeque::from([*root]);
        let mut seen = HashSet::new();
        let mut copied = 0;
        while !queue.is_empty() {
            let mut wants = Vec::new();
            while let Some(cid) = queue.pop_front() {
                if cid.is_identity() || !seen.insert(cid) || store.has(&cid).await? {
                    continue;
                }
                wants.push(Want { cid, auth: None });
                if wants.len() == MAX_EXCHANGE {
                    break;
                }
            }
            if wants.is_empty() {
                continue;
            }
            let answers = self.exchange(peer, &wants).await?;
            let mut blocks = Vec::with_capacity(wants.len());
            for (want, answer) in wants.iter().zip(answers) {
                let block = match answer {
                    Ok(Some(block)) => block,
                    Ok(None) => {
                        return Err(Error::Peer(format!(
                            "{peer} does not have block {} of the tree it points to",
                            want.cid
                        )))
                    }
                    Err(body) => return Err(Error::Remote { status: 403, body }),
                };
                if block.cid().codec() == Some(Codec::DagCbor) {
                    let value = cbor::decode_value(block.data())?;
                    let mut links = Vec::new();
                    cbor::links(&value, &mut links)?;
                    queue.extend(links);
                }
                blocks.push(block);
            }
            copied += blocks.len();
            store.put_verified(blocks).await?;
        }
        Ok(copied)
    }
}
