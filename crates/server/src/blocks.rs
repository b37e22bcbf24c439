//! Blocks, pointers and space: puts admitted against the account, the
//! quota and the disk reserve; upload transactions; pointer moves with
//! their usage deltas.

use bytes::Bytes;
use peergos_blockstore::{BlockAuth, PutBlocks, TransactionId};
use peergos_champ::Key;
use peergos_ipld::Cid;
use peergos_keys::PublicKeyHash;
use peergos_pointers::{Ownership, SignedPointer};

use crate::{disk, now_ms, space, Error, Result, Server, QUOTA_SLACK, SMALL_PUT};
use peergos_api::Space;

impl Server {
    // ---- blocks ----

    /// Puts at or after this time keep an upload's bytes held against its
    /// owner's quota.
    pub(crate) fn lease_start(&self) -> u64 {
        now_ms().saturating_sub(self.config.upload_lease.as_millis() as u64)
    }

    /// Bytes of `owner`'s open uploads whose lease has not lapsed (on every
    /// replica: the record is shared).
    async fn pending_of(&self, owner: &PublicKeyHash) -> Result<u64> {
        self.stores
            .accounts
            .pending(owner, self.lease_start())
            .await
    }

    /// Stores blocks for a user with an account, if the writer is theirs
    /// and the blocks fit in their quota (plus [`QUOTA_SLACK`]).
    pub async fn put(&self, request: PutBlocks) -> Result<Vec<Cid>> {
        let requested: u64 = request.blocks.iter().map(|b| b.data.len() as u64).sum();
        self.admit_put(&request.owner, &request.writer, requested)
            .await?;
        // The guarded store records the blocks (and the bytes held against
        // the quota) in the shared upload record before it stores them.
        Ok(self.stores.blocks.put(request).await?)
    }

    /// The checks a put passes before its blocks are read: the owner has
    /// an account here, the writer is the owner or a key it owns, and
    /// `requested` more bytes fit in the owner's quota. The HTTP layer runs
    /// them on a put's header, so a put for nobody's space never gets
    /// memory for its blocks.
    pub async fn admit_put(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
        requested: u64,
    ) -> Result<()> {
        let (used, quota) = self.used_and_quota(owner).await?;
        if !self.stores.ownership.owns(owner, writer).await? {
            return Err(peergos_pointers::Error::NotOwned {
                owner: *owner,
                writer: *writer,
            }
            .into());
        }
        let in_use = used + self.pending_of(owner).await?;
        if in_use + requested > quota.saturating_add(QUOTA_SLACK) {
            return Err(peergos_blockstore::Error::QuotaExceeded {
                used: in_use,
                quota,
                requested,
            }
            .into());
        }
        self.check_disk(requested)
    }

    /// Refuses a put of `requested` bytes that would eat into the disk
    /// reserve, unless it is small and a quarter of the reserve is left.
    /// Blocks kept in S3 do not use the local disk.
    fn check_disk(&self, requested: u64) -> Result<()> {
        let reserve = self.config.disk_reserve;
        if reserve == 0 || self.config.s3.is_some() {
            return Ok(());
        }
        let small = requested <= SMALL_PUT;
        let enough = |free: u64| {
            if small {
                free >= reserve / 4 + requested
            } else {
                free >= reserve + requested
            }
        };
        let Some(free) = disk::free_bytes(&self.config.data_dir) else {
            return Ok(());
        };
        if enough(free) {
            return Ok(());
        }
        // Something else filled the disk: a delete still gets the room the
        // ballast held (released now, or earlier in this emergency), less
        // a little for the databases.
        if small {
            self.make_room();
            if !self.upkeep.ballast.is_present() {
                let free = disk::free_bytes(&self.config.data_dir).unwrap_or(0);
                if free >= requested + SMALL_PUT {
                    return Ok(());
                }
            }
        }
        Err(Error::DiskFull { free, reserve })
    }

    /// Before a small write of metadata (an upload record, a pointer):
    /// when the disk is nearly full, releases the ballast so the write
    /// (a delete's, say) can land. True if it released it.
    fn make_room(&self) -> bool {
        let reserve = self.config.disk_reserve;
        if reserve == 0 || self.config.s3.is_some() {
            return false;
        }
        match disk::free_bytes(&self.config.data_dir) {
            Some(free) if free < reserve / 4 => self.upkeep.ballast.release(),
            _ => false,
        }
    }

    /// A block, after its access check.
    pub async fn get(&self, cid: &Cid, auth: Option<&BlockAuth>) -> Result<Option<Bytes>> {
        Ok(self.stores.blocks.get(cid, auth).await?)
    }

    /// Whether a block is stored.
    pub async fn has(&self, cid: &Cid) -> Result<bool> {
        Ok(self.stores.blocks.has(cid).await?)
    }

    /// The CHAMP blocks from `root` to `key` (CHAMP nodes carry no access
    /// tokens; the client verifies the path).
    pub async fn champ_lookup(&self, root: &Cid, key: [u8; 32]) -> Result<Vec<Bytes>> {
        let blocks = self.stores.champ.proof(root, &Key(key)).await?;
        Ok(blocks.into_iter().map(|b| b.into_data()).collect())
    }

    /// Opens a transaction for a user with an account.
    pub async fn start_transaction(&self, owner: &PublicKeyHash) -> Result<TransactionId> {
        self.make_room();
        self.used_and_quota(owner).await?;
        // The guarded store records it for every replica.
        Ok(self.stores.blocks.start_transaction(owner).await?)
    }

    /// Closes a transaction (opened on this replica or another); its
    /// blocks stop counting as pending.
    pub async fn close_transaction(&self, owner: &PublicKeyHash, id: &TransactionId) -> Result<()> {
        Ok(self.stores.blocks.close_transaction(owner, id).await?)
    }

    // ---- pointers ----

    /// The current signed update of a pointer.
    pub async fn get_pointer(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
    ) -> Result<Option<SignedPointer>> {
        Ok(self.stores.pointers.get(owner, writer).await?)
    }

    /// Moves a pointer (compare-and-swap) and updates the owner's usage by
    /// the CHAMP diff. A move that grows usage past the quota is refused;
    /// one that shrinks it (a delete, a truncate) is always accepted.
    pub async fn set_pointer(
        &self,
        owner: &PublicKeyHash,
        writer: &PublicKeyHash,
        update: SignedPointer,
    ) -> Result<()> {
        let (used, quota) = self.used_and_quota(owner).await?;
        // Check the signature before doing any work for the request.
        update.verify(owner, writer)?;
        let delta = space::delta(
            &self.stores.champ,
            update.update.previous,
            update.update.current,
        )
        .await?;
        if delta > 0 && used + delta as u64 > quota {
            return Err(peergos_blockstore::Error::QuotaExceeded {
                used,
                quota,
                requested: delta as u64,
            }
            .into());
        }
        self.stores.pointers.set(owner, writer, update).await?;
        if delta != 0 {
            self.stores.accounts.add_usage(owner, delta).await?;
        }
        Ok(())
    }

    /// The owner's bytes used and quota; `UnknownOwner` for someone with no
    /// account here.
    async fn used_and_quota(&self, owner: &PublicKeyHash) -> Result<(u64, u64)> {
        self.stores
            .accounts
            .space(owner)
            .await?
            .ok_or(Error::UnknownOwner(*owner))
    }

    /// Space used and allowed.
    pub async fn space(&self, owner: &PublicKeyHash) -> Result<Space> {
        let (used, quota) = self.used_and_quota(owner).await?;
        Ok(Space {
            used,
            quota,
            pending: self.pending_of(owner).await?,
        })
    }
}
