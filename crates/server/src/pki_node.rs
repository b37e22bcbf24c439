//! The server as the PKI node (or its mirror): the PKI root, claims
//! applied under the PKI lock and retried on a lost race between
//! replicas, renewals, and lookups with their proofs.

use peergos_champ::{Config as ChampConfig, Writer};
use peergos_ipld::Cid;
use peergos_pki::KeyChain;
use peergos_pointers::{PointerUpdate, SignedPointer};

use peergos_api as api;
use peergos_api::PkiAnswer;

use crate::{now_ms, peers, pki_answer, Error, PeerId, Result, Server, PKI_ATTEMPTS};

impl Server {
    // ---- PKI ----

    /// The current PKI root, creating an empty PKI on first run.
    pub(crate) async fn pki_root(&self) -> Result<(Cid, u64)> {
        if let Some(signed) = self
            .stores
            .pointers
            .get(&self.identity.id, &self.identity.id)
            .await?
        {
            signed.verify(&self.identity.id, &self.identity.id)?;
            if let Some(root) = signed.update.current {
                return Ok((root, signed.update.sequence));
            }
        }
        let _guard = self.pki.lock.lock().await;
        let writer = self.pki_writer().await?;
        let root = self
            .stores
            .champ
            .empty(&writer, ChampConfig::default())
            .await?;
        let update = PointerUpdate {
            previous: None,
            current: Some(root),
            sequence: 1,
        };
        let signed = SignedPointer::sign(&self.identity.key, &self.identity.id, update)?;
        let outcome = self
            .stores
            .pointers
            .set(&self.identity.id, &self.identity.id, signed)
            .await;
        self.stores
            .blocks
            .close_transaction(&self.identity.id, &writer.transaction)
            .await?;
        match outcome {
            Ok(()) => Ok((root, 1)),
            // Another task created it first.
            Err(peergos_pointers::Error::CasConflict(_)) => {
                drop(_guard);
                Box::pin(self.pki_root()).await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Adds or extends a name's chain in the PKI (first come, first served,
    /// extensions only).
    pub(crate) async fn pki_apply(&self, chain: &KeyChain) -> Result<()> {
        if self.pki.mirror.is_some() {
            return self.pki_claim_remote(chain).await;
        }
        let _guard = self.pki.lock.lock().await;
        // The lock orders this process's claims; replicas sharing the
        // database race on the PKI pointer instead, and the loser applies
        // its claim again on the winner's root.
        let mut attempt = 0;
        loop {
            match self.pki_apply_once(chain).await {
                Err(Error::Pointer(
                    peergos_pointers::Error::CasConflict(_)
                    | peergos_pointers::Error::StaleSequence { .. },
                )) if attempt < PKI_ATTEMPTS => {
                    attempt += 1;
                    let wait = 5 * (1u64 << attempt.min(6))
                        + u64::from(rand_core::RngCore::next_u32(&mut rand_core::OsRng) % 20);
                    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                }
                outcome => {
                    if outcome.is_ok() {
                        self.index_chain(chain);
                    }
                    return outcome;
                }
            }
        }
    }

    /// The PKI's writer (this server's key) in a fresh upload transaction.
    async fn pki_writer(&self) -> Result<Writer> {
        let transaction = self
            .stores
            .blocks
            .start_transaction(&self.identity.id)
            .await?;
        Ok(Writer {
            owner: self.identity.id,
            keys: self.identity.key.clone(),
            transaction,
        })
    }

    async fn pki_apply_once(&self, chain: &KeyChain) -> Result<()> {
        let (root, sequence) = self.pki_root().await?;
        let writer = self.pki_writer().await?;
        let outcome = async {
            let (new_root, _) = self
                .pki
                .tree
                .apply(&writer, &root, chain, now_ms() / 1000)
                .await?;
            let update = PointerUpdate {
                previous: Some(root),
                current: Some(new_root),
                sequence: sequence + 1,
            };
            let signed = SignedPointer::sign(&self.identity.key, &self.identity.id, update)?;
            self.stores
                .pointers
                .set(&self.identity.id, &self.identity.id, signed)
                .await?;
            Ok::<(), Error>(())
        }
        .await;
        self.stores
            .blocks
            .close_transaction(&self.identity.id, &writer.transaction)
            .await?;
        outcome
    }

    /// Claims a name (or extends its chain) at the PKI node, for a user
    /// signing up on this mirror, then follows the new root.
    async fn pki_claim_remote(&self, chain: &KeyChain) -> Result<()> {
        let answer = self
            .forward(
                self.pki.peer,
                &peers::TunnelRequest {
                    method: api::endpoint::PKI_CLAIM.method.as_str().into(),
                    path: api::endpoint::PKI_CLAIM.path.into(),
                    content_type: Some(api::CBOR.into()),
                    body: chain.to_bytes()?,
                },
            )
            .await?;
        if answer.status != 200 {
            let body: api::ErrorBody =
                peergos_ipld::cbor::from_slice(&answer.body).map_err(|_| {
                    Error::Peer(format!(
                        "the PKI node refused the claim with status {} and no message",
                        answer.status
                    ))
                })?;
            if answer.status == 409 {
                return Err(Error::UsernameTaken(chain.username().to_string()));
            }
            return Err(Error::Remote {
                status: answer.status,
                body,
            });
        }
        self.sync_pki().await?;
        Ok(())
    }

    /// Applies a claim that another server sends for a user signing up
    /// there (this server being the PKI node). The chain must name the
    /// sending server as the user's home.
    pub async fn pki_claim(&self, from: &PeerId, chain: &KeyChain) -> Result<()> {
        if self.pki.mirror.is_some() {
            return Err(Error::NotPki(format!(
                "this server is not the PKI node (that is {})",
                self.pki.peer
            )));
        }
        chain.verify()?;
        let named = chain
            .current()
            .servers
            .first()
            .and_then(|s| peers::parse_home(s));
        if named != Some(*from) {
            return Err(Error::NotPki(format!(
                "the claim for '{}' does not name the sending server {from} as its home",
                chain.username()
            )));
        }
        self.pki_apply(chain).await?;
        tracing::info!(username = chain.username(), home = %from, "claimed through another server");
        Ok(())
    }

    /// Renews (or otherwise extends) the name of a user homed here: the
    /// chain must extend the name's current one, so only its identity key
    /// can have signed the new claim, and must still name this server as
    /// the home. Applied here on the PKI node, forwarded to it otherwise.
    pub async fn pki_renew(&self, chain: &KeyChain) -> Result<()> {
        chain.verify()?;
        let username = chain.username().to_string();
        let current = self
            .pki_chain(&username)
            .await?
            .ok_or_else(|| Error::BadRequest(format!("'{username}' is not claimed")))?;
        if !chain.extends(&current) {
            return Err(Error::BadRequest(format!(
                "the chain does not extend the current one of '{username}'"
            )));
        }
        if !chain
            .current()
            .servers
            .first()
            .is_some_and(|s| self.is_me(s))
        {
            return Err(Error::BadRequest(format!(
                "the renewed claim of '{username}' does not name this server ({}) as its home",
                self.net.peer_id
            )));
        }
        self.pki_apply(chain).await?;
        tracing::info!(username, expiry = chain.current().expiry, "name renewed");
        Ok(())
    }

    /// A name's chain with everything a client needs to check it.
    pub async fn pki_lookup(&self, username: &str) -> Result<PkiAnswer> {
        peergos_pki::check_username(username)?;
        match &self.pki.mirror {
            Some(mirror) => {
                if self.pki_chain(username).await?.is_none() {
                    // Perhaps just claimed: ask the PKI node (at most once
                    // a second).
                    self.home_of_name(username).await?;
                }
                pki_answer(mirror.pointer(), mirror.pki.champ(), username).await
            }
            None => {
                let pointer = self
                    .stores
                    .pointers
                    .get(&self.identity.id, &self.identity.id)
                    .await?;
                pki_answer(pointer, &self.stores.champ, username).await
            }
        }
    }
}
