//! What a client keeps on its device between runs, and the limits it holds
//! servers to.
//!
//! A server can answer with an old pointer or old login data. A running
//! session refuses anything older than what it saw; a [`Device`] opened on
//! a folder lets every later process of the same device refuse it too:
//! each `(server, owner, writer)` pointer and each `(server, user)` login
//! data version seen is recorded in `seen.sqlite` there
//! ([`peergos_pointers::SeenStore`]). What a brand-new device cannot
//! detect is docs/SECURITY.md's to say.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use peergos_pointers::{PointerCache, SeenStore};

use crate::{Error, Result};

/// The most memory a login's scrypt may take unless the user allows more:
/// twice what new accounts use (128 · r · N = 128 MiB at log2 N = 17,
/// r = 8). A server choosing the parameters cannot make a client spend
/// gigabytes and minutes on a login.
pub const DEFAULT_MAX_KDF_MEMORY: u64 = 256 << 20;

/// The device a client runs on: where it records what it has seen, and
/// the login cost it accepts.
#[derive(Clone, Debug)]
pub struct Device {
    seen: Option<Arc<SeenStore>>,
    max_kdf_memory: u64,
}

impl Default for Device {
    fn default() -> Self {
        Self::ephemeral()
    }
}

impl Device {
    /// A device that keeps nothing past the process: rollback is detected
    /// within a session only.
    pub fn ephemeral() -> Self {
        Device {
            seen: None,
            max_kdf_memory: DEFAULT_MAX_KDF_MEMORY,
        }
    }

    /// A device whose record lives in `dir` (created if missing).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let path = dir.as_ref().join("seen.sqlite");
        let seen = SeenStore::open(&path)?;
        Ok(Device {
            seen: Some(Arc::new(seen)),
            max_kdf_memory: DEFAULT_MAX_KDF_MEMORY,
        })
    }

    /// The folder the shell and the mount keep device state in:
    /// `$PEERGOS_CLIENT_DIR`, else `~/.peergos/client`.
    pub fn default_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("PEERGOS_CLIENT_DIR") {
            return Some(PathBuf::from(dir));
        }
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".peergos").join("client"))
    }

    /// Allows logins whose scrypt takes up to `bytes` of memory.
    pub fn with_max_kdf_memory(mut self, bytes: u64) -> Self {
        self.max_kdf_memory = bytes;
        self
    }

    /// The most memory a login's scrypt may take.
    pub fn max_kdf_memory(&self) -> u64 {
        self.max_kdf_memory
    }

    /// The record, when this device keeps one.
    pub fn seen(&self) -> Option<&Arc<SeenStore>> {
        self.seen.as_ref()
    }

    /// The pointer cache for one server (`scope`: its id): backed by the
    /// record when there is one.
    pub(crate) fn pointer_cache(&self, scope: &str) -> PointerCache {
        match &self.seen {
            Some(store) => PointerCache::persistent(Arc::clone(store), scope),
            None => PointerCache::new(),
        }
    }

    /// Refuses scrypt parameters that cost more memory than allowed.
    pub(crate) fn check_kdf(&self, params: &peergos_keys::LoginParams) -> Result<()> {
        let memory = 128u64
            .saturating_mul(u64::from(params.r))
            .saturating_mul(1u64 << params.log_n.min(63));
        if memory > self.max_kdf_memory {
            return Err(Error::KdfTooCostly {
                memory,
                limit: self.max_kdf_memory,
            });
        }
        Ok(())
    }

    /// The newest login data version this device saw for `username` on
    /// the server `scope`.
    pub(crate) fn login_version(&self, scope: &str, username: &str) -> Result<Option<u64>> {
        let Some(store) = &self.seen else {
            return Ok(None);
        };
        Ok(store
            .counter(scope, &login_counter(username))?
            .map(|(seq, _)| seq))
    }

    /// Records that login data version `seq` of `username` was seen.
    pub(crate) fn saw_login_version(&self, scope: &str, username: &str, seq: u64) -> Result<()> {
        if let Some(store) = &self.seen {
            store.record_counter(scope, &login_counter(username), seq, &[])?;
        }
        Ok(())
    }
}

fn login_counter(username: &str) -> String {
    format!("login/{username}")
}
