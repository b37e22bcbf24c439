//! Which server is a user's home: from the PKI, by name and by identity
//! key (an index kept current on every new PKI root).

use super::*;

impl Server {
    /// The home server of the user whose identity is `owner`, if it is
    /// another server (None: here, or unknown).
    pub async fn home_of_owner(&self, owner: &PublicKeyHash) -> Result<Option<PeerId>> {
        if owner == &self.identity.id || self.stores.accounts.space(owner).await?.is_some() {
            return Ok(None);
        }
        if owner == &self.pki.key {
            return Ok(Some(self.pki.peer).filter(|p| *p != self.net.peer_id));
        }
        let known = self
            .pki
            .homes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(owner)
            .copied();
        let home = match known {
            Some(home) => Some(home),
            None if self.pki.mirror.is_some() => {
                self.sync_on_miss().await;
                self.pki
                    .homes
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(owner)
                    .copied()
            }
            None => None,
        };
        Ok(home.filter(|p| *p != self.net.peer_id))
    }

    /// The home server of `username`, if it is another server (None: the
    /// user is here, or unknown).
    pub async fn home_of_name(&self, username: &str) -> Result<Option<PeerId>> {
        if peergos_pki::check_username(username).is_err()
            || self.stores.accounts.user(username).await?.is_some()
        {
            return Ok(None);
        }
        let mut chain = self.pki_chain(username).await?;
        if chain.is_none() && self.pki.mirror.is_some() {
            self.sync_on_miss().await;
            chain = self.pki_chain(username).await?;
        }
        let Some(chain) = chain else { return Ok(None) };
        let home = chain.current().servers.first().and_then(|s| parse_home(s));
        Ok(home.filter(|p| *p != self.net.peer_id))
    }

    pub(crate) async fn pki_chain(&self, username: &str) -> Result<Option<KeyChain>> {
        let chain = match &self.pki.mirror {
            Some(mirror) => match mirror.pointer().and_then(|p| p.update.current) {
                Some(root) => mirror.pki.lookup(&root, username).await?,
                None => None,
            },
            None => {
                let (root, _) = self.pki_root().await?;
                self.pki.tree.lookup(&root, username).await?
            }
        };
        Ok(chain)
    }

    /// Remembers the homes of the identities in `chains`.
    pub(super) fn index(&self, chains: &[KeyChain]) {
        let mut owners = self.pki.homes.write().unwrap_or_else(|p| p.into_inner());
        for chain in chains {
            let claim = chain.current();
            if let Some(home) = claim.servers.first().and_then(|s| parse_home(s)) {
                owners.insert(claim.identity, home);
            }
        }
    }

    /// Indexes every name of the PKI at `root` (at start, and on a
    /// mirror's first root).
    pub(crate) async fn index_all<S: BlockStore + ?Sized>(
        &self,
        pki: &Pki<S>,
        root: &Cid,
    ) -> Result<()> {
        let mut chains = Vec::new();
        for (_, value) in pki.champ().entries(root).await? {
            if let Value::Link(cid) = value {
                if let Some(bytes) = pki.champ().store().get_trusted(&cid).await? {
                    chains.push(KeyChain::from_bytes(&bytes)?);
                }
            }
        }
        self.index(&chains);
        Ok(())
    }

    pub(crate) fn index_chain(&self, chain: &KeyChain) {
        self.index(std::slice::from_ref(chain));
    }

    // ---- the PKI mirror ----
}
