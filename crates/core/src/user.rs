//! Accounts: signup, login and password change, and the logged-in
//! [`UserContext`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use peergos_api::{
    auth_message, ChangeRequest, Info, LoginRequest, SignupRequest, Space, Stamp, LOGIN_AUTH,
};
use peergos_champ::Value;
use peergos_cryptree::{AbsoluteCapability, Committer, Filesystem};
use peergos_ipld::{cbor, Block, Cid};
use peergos_keys::{BoxingKeyPair, LoginKeys, LoginParams, PublicKeyHash, SigningKeyPair};
use peergos_pki::{name_key, Claim, KeyChain};
use peergos_pointers::{PointerCache, PointerStore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{Device, Error, NetworkAccess, Remote, Result};

/// How long a new PKI claim lasts: one year.
pub const CLAIM_LIFETIME_SECS: u64 = 365 * 24 * 60 * 60;

/// A name is renewed (at login, and by long-running clients once a day)
/// once fewer than this many seconds of its claim remain: 180 days, so a
/// user who logs in twice a year never comes near the expiry.
pub const RENEW_WITHIN_SECS: u64 = 180 * 24 * 60 * 60;

/// The name of the folder under the home directory where per-friend
/// shares live.
pub const SHARED_DIR: &str = "shared";

/// The user's secrets, encrypted under the login root key and stored on
/// the home server.
///
/// CBOR: `{"v": 2, "seq": u64, "identity": bytes(32), "boxing": bytes,
/// "writer": bytes(32), "root": AbsoluteCapability | null}`. `seq` is the
/// version of this blob (1 at signup, one more at each password change):
/// it is inside the encryption, so a server cannot change it, and a device
/// refuses a version older than one it saw. `root` is chosen at signup,
/// before the home exists, and never changes. Version 1 blobs (no `seq`,
/// and `root` null until the home existed) read as version 0.
#[derive(Serialize, Deserialize)]
struct StaticData {
    v: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    #[serde(with = "serde_bytes")]
    identity: [u8; 32],
    #[serde(with = "serde_bytes")]
    boxing: Vec<u8>,
    #[serde(with = "serde_bytes")]
    writer: [u8; 32],
    root: Option<AbsoluteCapability>,
}

impl StaticData {
    fn version(&self) -> u64 {
        self.seq.unwrap_or(0)
    }
}

impl Drop for StaticData {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.identity.zeroize();
        self.boxing.zeroize();
        self.writer.zeroize();
    }
}

fn static_aad(username: &str) -> Vec<u8> {
    [b"peergos/static-data/v1 ".as_slice(), username.as_bytes()].concat()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs scrypt off the async threads.
async fn derive(params: LoginParams, username: &str, password: &str) -> Result<LoginKeys> {
    let (username, password) = (username.to_string(), Zeroizing::new(password.to_string()));
    tokio::task::spawn_blocking(move || params.derive(&username, &password))
        .await?
        .map_err(Error::from)
}

/// The filesystem type a client works on.
pub type RemoteFs = Filesystem<Remote, Remote>;

/// A logged-in user: their keys, their filesystem, and their account on
/// the home server.
pub struct UserContext {
    pub(crate) net: Arc<dyn NetworkAccess>,
    pub(crate) username: String,
    login: LoginKeys,
    /// The version of the static data this context holds.
    login_version: u64,
    pub(crate) identity: SigningKeyPair,
    boxing: BoxingKeyPair,
    writer: SigningKeyPair,
    pub(crate) fs: Arc<RemoteFs>,
    last_stamp: AtomicU64,
    /// The server's id and its PKI key.
    pub(crate) info: Info,
    /// Where this client records what it has seen.
    device: Device,
    /// The user's name's key chain, as the PKI holds it.
    name: std::sync::Mutex<KeyChain>,
    /// Every pointer read from this server is checked here (and recorded
    /// on the device, when it keeps a record).
    pointers: Arc<PointerCache>,
    /// Held while the social state is read, changed and written back.
    pub(crate) social_lock: tokio::sync::Mutex<()>,
    /// Filesystems opened on capabilities friends shared, by capability
    /// text, so their caches stay warm across calls.
    pub(crate) shared: std::sync::Mutex<std::collections::HashMap<String, Arc<RemoteFs>>>,
}

impl std::fmt::Debug for UserContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserContext")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// An account whose login data opened: what login and a resumed signup
/// build on.
struct Opened {
    info: Info,
    login: LoginKeys,
    data: StaticData,
    chain: Option<KeyChain>,
    time_ms: u64,
}

/// The keys the static data holds, and the device's checked view of the
/// identity's space.
struct Keys {
    identity: SigningKeyPair,
    boxing: BoxingKeyPair,
    writer: SigningKeyPair,
    pointers: Arc<PointerCache>,
    remote: Arc<Remote>,
}

impl UserContext {
    /// Creates an account on the server behind `net` and logs in, keeping
    /// nothing on the device ([`signup_with`](Self::signup_with)).
    pub async fn signup(
        net: Arc<dyn NetworkAccess>,
        username: &str,
        password: &str,
        token: Option<&str>,
    ) -> Result<Self> {
        Self::signup_with(net, username, password, token, &Device::ephemeral()).await
    }

    /// Creates an account on the server behind `net` and logs in.
    ///
    /// Derives the login keys from the password (scrypt), makes fresh
    /// identity, boxing and root-writer keys and the home's capability,
    /// claims the name in the PKI with the encrypted static data (which
    /// names the home from the start), then commits the identity's
    /// `WriterData` and creates `/username` and `/username/shared`. Signup
    /// is the only path that creates a home: run again with the same name
    /// and password after it stopped half-way, it finishes that home (and
    /// for a finished account, just logs in).
    pub async fn signup_with(
        net: Arc<dyn NetworkAccess>,
        username: &str,
        password: &str,
        token: Option<&str>,
        device: &Device,
    ) -> Result<Self> {
        peergos_pki::check_username(username)?;
        let info = net.info().await?;
        let params = LoginParams::new_random();
        let login = derive(params.clone(), username, password).await?;
        let identity = SigningKeyPair::random();
        let boxing = BoxingKeyPair::random();
        let writer = SigningKeyPair::random();
        let chain = KeyChain::new(
            Claim {
                username: username.to_string(),
                identity: PublicKeyHash::of(&identity.public()),
                expiry: now_ms() / 1000 + CLAIM_LIFETIME_SECS,
                servers: vec![info.peer.clone()],
            },
            &identity,
        )?;
        // The home's capability is chosen now and stored with the keys, so
        // the login data never lacks it: finishing an interrupted signup
        // makes this very home, and no answer can make a client make
        // another.
        let root = RemoteFs::new_root(
            PublicKeyHash::of(&identity.public()),
            PublicKeyHash::of(&writer.public()),
        );
        let data = StaticData {
            v: 2,
            seq: Some(1),
            identity: *identity.seed(),
            boxing: boxing.to_secret_bytes().to_vec(),
            writer: *writer.seed(),
            root: Some(root),
        };
        let sealed = seal_static(&login, username, &data)?;
        let signed_up = net
            .signup(&SignupRequest {
                username: username.to_string(),
                chain,
                login: params,
                login_key: login.signing.public(),
                data: Bytes::from(sealed),
                token: token.map(str::to_string),
            })
            .await
            .map_err(Error::from);
        let opened = match signed_up {
            Ok(()) => {
                let chain = pki_chain(net.as_ref(), &info.pki, username).await?;
                Opened {
                    info,
                    login,
                    data,
                    chain,
                    time_ms: 0,
                }
            }
            Err(taken) if taken.code() == Some(crate::ErrorCode::UsernameTaken) => {
                // Ours, half made? Only the right password opens it.
                match Self::open_account(&net, username, password, device).await {
                    Ok(opened) => opened,
                    Err(_) => return Err(taken),
                }
            }
            Err(e) => return Err(e),
        };
        let keys = Self::keys(&net, username, &opened, device)?;
        let Some(root) = opened.data.root.clone() else {
            // Login data of an older build, without a home: see login.
            return Err(Self::homeless(&keys, username).await);
        };
        finish_home(
            &keys.remote,
            username,
            &opened.login,
            &keys.identity,
            &keys.boxing,
            &keys.writer,
            &root,
        )
        .await?;
        Self::finish(net, username, opened, keys, device)
    }

    /// Logs in, keeping nothing on the device ([`login_with`](Self::login_with)).
    pub async fn login(
        net: Arc<dyn NetworkAccess>,
        username: &str,
        password: &str,
    ) -> Result<Self> {
        Self::login_with(net, username, password, &Device::ephemeral()).await
    }

    /// Logs in: fetches the login parameters (refusing ones costlier than
    /// the device allows), runs scrypt, fetches the encrypted static data
    /// with a fresh signature, decrypts it, refuses a version older than
    /// one the device saw, and checks the identity against the PKI. Login
    /// never creates a home: static data without one is an unfinished
    /// signup or a replayed answer, and says which.
    pub async fn login_with(
        net: Arc<dyn NetworkAccess>,
        username: &str,
        password: &str,
        device: &Device,
    ) -> Result<Self> {
        let opened = Self::open_account(&net, username, password, device).await?;
        let keys = Self::keys(&net, username, &opened, device)?;
        if opened.data.root.is_none() {
            return Err(Self::homeless(&keys, username).await);
        }
        let time_ms = opened.time_ms;
        let context = Self::finish(net, username, opened, keys, device)?;
        // A home that was never made: signup stopped half-way. (What this
        // reads stays in the filesystem's cache for what comes next.)
        match context.fs.stat("/").await {
            Ok(_) => {}
            Err(peergos_cryptree::Error::NotFound { .. }) => {
                return Err(Error::UnfinishedSignup(username.to_string()))
            }
            Err(e) => return Err(e.into()),
        }
        context.last_stamp.store(time_ms, Ordering::Relaxed);
        // A renewal that fails (the server busy, say) is tried again at the
        // next login; the name has months left when it first comes due.
        if let Err(e) = context.renew_name_if_due().await {
            tracing::warn!(username, "renewing the name failed: {e}");
        }
        Ok(context)
    }

    /// Why login data of an older build (which named the home only once
    /// it existed) has none: an unfinished signup, or an old answer
    /// replayed (the identity has a filesystem already). No client makes
    /// a home for it.
    async fn homeless(keys: &Keys, username: &str) -> Error {
        // The checked remote refuses an identity pointer older than one
        // this device saw; an honest "none" means signup stopped.
        match PointerStore::get(keys.remote.as_ref(), &keys.owner(), &keys.owner()).await {
            Ok(Some(_)) => Error::LoginReplayed,
            Ok(None) => Error::UnfinishedSignup(username.to_string()),
            Err(e) => Error::Pointer(e),
        }
    }

    /// The login up to the opened static data: parameters, scrypt, the
    /// signed request, decryption and the version check.
    async fn open_account(
        net: &Arc<dyn NetworkAccess>,
        username: &str,
        password: &str,
        device: &Device,
    ) -> Result<Opened> {
        peergos_pki::check_username(username)?;
        let params = net.login_params(username).await?;
        device.check_kdf(&params)?;
        // The server's info and the name's PKI entry do not depend on the
        // password: they are fetched while scrypt runs, and looked at only
        // once the static data has opened (so a wrong password or an
        // unknown name still fails with the one error that does not say
        // which).
        let lookup = async {
            let info = net.info().await?;
            let chain = pki_chain(net.as_ref(), &info.pki, username).await?;
            Ok::<_, Error>((info, chain))
        };
        let (login, looked_up) = tokio::join!(derive(params.clone(), username, password), lookup);
        let login = login?;
        let time_ms = now_ms();
        let request = LoginRequest {
            stamp: stamp(&login, "login", username, time_ms, &[]),
        };
        let sealed = match net.login(username, &request).await.map_err(Error::from) {
            Err(Error::BadLogin) => {
                return Err(diagnose_bad_login(net, &looked_up, &params).await);
            }
            answer => answer?,
        };
        let plain = Zeroizing::new(
            login
                .root_key
                .decrypt_with_aad(&sealed, &static_aad(username))
                .map_err(|_| Error::CorruptLoginData)?,
        );
        let data: StaticData = match cbor::from_slice_versioned(&plain, "login data", 2) {
            Ok(data) => data,
            Err(newer @ peergos_ipld::Error::NewerFormat { .. }) => {
                return Err(Error::Newer(newer))
            }
            Err(_) => return Err(Error::CorruptLoginData),
        };
        let (info, chain) = looked_up?;
        if let Some(seen) = device.login_version(&info.peer, username)? {
            if data.version() < seen {
                return Err(Error::LoginRolledBack {
                    seen,
                    offered: data.version(),
                });
            }
        }
        Ok(Opened {
            info,
            login,
            data,
            chain,
            time_ms,
        })
    }

    /// The keys in the static data, after checking the identity against
    /// the PKI, and the identity's space as this device sees it.
    fn keys(
        net: &Arc<dyn NetworkAccess>,
        username: &str,
        opened: &Opened,
        device: &Device,
    ) -> Result<Keys> {
        let identity = SigningKeyPair::from_seed(Zeroizing::new(opened.data.identity));
        let boxing = BoxingKeyPair::from_secret_bytes(&opened.data.boxing)?;
        let writer = SigningKeyPair::from_seed(Zeroizing::new(opened.data.writer));
        let id_hash = PublicKeyHash::of(&identity.public());
        check_claim(opened.chain.clone(), username, &id_hash)?;
        let pointers = Arc::new(device.pointer_cache(&opened.info.peer));
        let remote =
            Arc::new(Remote::for_owner(Arc::clone(net), id_hash).checked_by(Arc::clone(&pointers)));
        Ok(Keys {
            identity,
            boxing,
            writer,
            pointers,
            remote,
        })
    }

    /// Builds the context from opened static data that names the home.
    fn finish(
        net: Arc<dyn NetworkAccess>,
        username: &str,
        opened: Opened,
        keys: Keys,
        device: &Device,
    ) -> Result<Self> {
        let id_hash = keys.owner();
        let root = opened
            .data
            .root
            .clone()
            .ok_or_else(|| Error::UnfinishedSignup(username.to_string()))?;
        if root.owner != id_hash {
            return Err(Error::Invalid(
                "the stored root capability belongs to another identity".into(),
            ));
        }
        device.saw_login_version(&opened.info.peer, username, opened.data.version())?;
        // check_claim (in `keys`) refused a login without a chain.
        let name = opened
            .chain
            .clone()
            .ok_or_else(|| Error::Invalid(format!("'{username}' is not in the server's PKI")))?;
        let fs = Arc::new(Filesystem::open(
            Arc::clone(&keys.remote),
            keys.remote,
            root,
        ));
        Ok(UserContext {
            net,
            username: username.to_string(),
            login: opened.login,
            login_version: opened.data.version(),
            identity: keys.identity,
            boxing: keys.boxing,
            writer: keys.writer,
            fs,
            last_stamp: AtomicU64::new(0),
            info: opened.info,
            device: device.clone(),
            name: std::sync::Mutex::new(name),
            pointers: keys.pointers,
            social_lock: tokio::sync::Mutex::new(()),
            shared: std::sync::Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// A remote over `owner`'s space on this user's server, checked by the
    /// device's record of what it has seen there.
    pub(crate) fn remote_for(&self, owner: PublicKeyHash) -> Arc<Remote> {
        Arc::new(
            Remote::for_owner(Arc::clone(&self.net), owner).checked_by(Arc::clone(&self.pointers)),
        )
    }

    /// When the user's name lapses unless renewed, in seconds since the
    /// Unix epoch (it stays theirs for
    /// [`peergos_pki::RECLAIM_GRACE_SECS`] more).
    pub fn name_expiry(&self) -> u64 {
        self.name
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .current()
            .expiry
    }

    /// Renews the name if it is due now ([`renew_name_at`](Self::renew_name_at)).
    pub async fn renew_name_if_due(&self) -> Result<Option<u64>> {
        self.renew_name_at(now_ms() / 1000).await
    }

    /// Renews the name if fewer than [`RENEW_WITHIN_SECS`] of its claim
    /// remain at `now` (seconds since the Unix epoch): the chain is
    /// extended with a claim for the same key and servers lasting
    /// [`CLAIM_LIFETIME_SECS`] from `now`, signed by the identity key.
    /// Returns the new expiry, or None when nothing was due.
    pub async fn renew_name_at(&self, now: u64) -> Result<Option<u64>> {
        let chain = self.name.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let current = chain.current();
        if current.expiry > now.saturating_add(RENEW_WITHIN_SECS) {
            return Ok(None);
        }
        let expiry = now.saturating_add(CLAIM_LIFETIME_SECS).max(current.expiry);
        let renewed = chain.extend(
            Claim {
                username: current.username.clone(),
                identity: current.identity,
                expiry,
                servers: current.servers.clone(),
            },
            &self.identity,
        )?;
        self.net.renew_name(&renewed).await?;
        *self.name.lock().unwrap_or_else(|e| e.into_inner()) = renewed;
        tracing::info!(username = %self.username, expiry, "renewed the name");
        Ok(Some(expiry))
    }

    /// The device this context runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The username.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The identity key's hash (the owner of the user's space).
    pub fn identity(&self) -> PublicKeyHash {
        PublicKeyHash::of(&self.identity.public())
    }

    /// The user's boxing key pair (follow requests are sealed to it).
    pub fn boxing(&self) -> &BoxingKeyPair {
        &self.boxing
    }

    /// The network access.
    pub fn network(&self) -> &Arc<dyn NetworkAccess> {
        &self.net
    }

    /// The user's filesystem. Its root is the home directory
    /// `/username`: paths given to it are relative to that (use
    /// [`path`](Self::path) to convert an absolute path).
    pub fn fs(&self) -> &RemoteFs {
        &self.fs
    }

    /// The user's filesystem, shared (for layers that keep it, like a
    /// mount).
    pub fn fs_arc(&self) -> Arc<RemoteFs> {
        Arc::clone(&self.fs)
    }

    /// Converts an absolute path (`/alice/docs/a.txt`) into a path in
    /// [`fs`](Self::fs) (`/docs/a.txt`).
    pub fn path(&self, absolute: &str) -> Result<String> {
        let trimmed = absolute.trim_start_matches('/');
        let (first, rest) = trimmed.split_once('/').unwrap_or((trimmed, ""));
        if first != self.username {
            return Err(Error::OutsideHome {
                path: absolute.to_string(),
                home: self.username.clone(),
            });
        }
        Ok(format!("/{}", rest.trim_matches('/')))
    }

    /// Bytes used and allowed on the home server.
    pub async fn space(&self) -> Result<Space> {
        Ok(self.net.space(&self.identity()).await?)
    }

    /// A timestamp newer than any this context used before.
    pub(crate) fn next_time(&self) -> u64 {
        let now = now_ms();
        let previous = self.last_stamp.fetch_max(now, Ordering::Relaxed);
        if previous >= now {
            // Two requests in one millisecond: step past the last one.
            self.last_stamp.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            now
        }
    }

    /// Changes the password: new scrypt parameters and login keys, the
    /// static data re-encrypted under the new root key, signed by the old
    /// login key. The old password stops working; no file changes.
    pub async fn change_password(&mut self, old: &str, new: &str) -> Result<()> {
        let check = derive(self.login.params.clone(), &self.username, old).await?;
        if check.signing.public() != self.login.signing.public() {
            return Err(Error::BadLogin);
        }
        let params = LoginParams::new_random();
        let login = derive(params.clone(), &self.username, new).await?;
        let version = self.login_version + 1;
        let data = StaticData {
            v: 2,
            seq: Some(version),
            identity: *self.identity.seed(),
            boxing: self.boxing.to_secret_bytes().to_vec(),
            writer: *self.writer.seed(),
            root: Some(self.fs.root().clone()),
        };
        let sealed = seal_static(&login, &self.username, &data)?;
        let login_key = login.signing.public();
        let payload = ChangeRequest::payload(&params, &login_key, &sealed);
        let request = ChangeRequest {
            stamp: stamp(
                &self.login,
                "change",
                &self.username,
                self.next_time(),
                &payload,
            ),
            login: params,
            login_key,
            data: Bytes::from(sealed),
        };
        self.net.change_password(&self.username, &request).await?;
        self.device
            .saw_login_version(&self.info.peer, &self.username, version)?;
        self.login_version = version;
        // The identity's WriterData records the current parameters.
        let remote = self.remote_for(self.identity());
        let committer = Committer::new(Arc::clone(&remote), remote);
        let recorded = request.login.clone();
        committer
            .commit(&self.identity(), &self.identity, |mut state, _tx| {
                let recorded = recorded.clone();
                async move {
                    state.login = Some(recorded);
                    Ok(state)
                }
            })
            .await?;
        self.login = login;
        Ok(())
    }
}

impl Keys {
    fn owner(&self) -> PublicKeyHash {
        PublicKeyHash::of(&self.identity.public())
    }
}

/// The error for a refused login: a plain wrong password, unless the
/// parameters the server served differ from those the account's signed
/// `WriterData` records (then the answer was corrupted or forged).
async fn diagnose_bad_login(
    net: &Arc<dyn NetworkAccess>,
    looked_up: &Result<(Info, Option<KeyChain>)>,
    served: &LoginParams,
) -> Error {
    let Ok((_, Some(chain))) = looked_up else {
        return Error::BadLogin;
    };
    let identity = chain.current().identity;
    let remote = Arc::new(Remote::for_owner(Arc::clone(net), identity));
    let committer = Committer::new(Arc::clone(&remote), remote);
    match committer.current(&identity, &identity).await {
        Ok((Some((state, _)), _)) if state.login.as_ref().is_some_and(|p| p != served) => {
            Error::ForgedLoginParams
        }
        _ => Error::BadLogin,
    }
}

fn stamp(login: &LoginKeys, action: &str, username: &str, time_ms: u64, payload: &[u8]) -> Stamp {
    Stamp {
        time_ms,
        signature: login.signing.sign(
            LOGIN_AUTH,
            &auth_message(action, username, time_ms, payload),
        ),
    }
}

fn seal_static(login: &LoginKeys, username: &str, data: &StaticData) -> Result<Vec<u8>> {
    let plain = Zeroizing::new(cbor::to_vec(data)?);
    Ok(login
        .root_key
        .encrypt_with_aad(&plain, &static_aad(username)))
}

/// Makes the home the static data names, or what of it is missing after
/// an interrupted signup: commits the identity's `WriterData` (login
/// parameters, boxing key, the root writer as an owned key), creates
/// `/username` at `root` and `/username/shared`. Each step that is done
/// already is left as it is, and the home is made at `root` alone.
async fn finish_home(
    remote: &Arc<Remote>,
    username: &str,
    login: &LoginKeys,
    identity: &SigningKeyPair,
    boxing: &BoxingKeyPair,
    writer: &SigningKeyPair,
    root: &AbsoluteCapability,
) -> Result<()> {
    let owner = PublicKeyHash::of(&identity.public());
    let writer_hash = PublicKeyHash::of(&writer.public());
    let committer = Committer::new(Arc::clone(remote), Arc::clone(remote));
    let (params, boxing_public) = (login.params.clone(), boxing.public().clone());
    let (current, _) = committer.current(&owner, &owner).await?;
    let recorded = current.as_ref().is_some_and(|(state, _)| {
        state.owned.contains(&writer_hash) && state.boxing.as_ref() == Some(&boxing_public)
    });
    if !recorded {
        committer
            .commit(&owner, identity, |mut state, _tx| {
                let (params, boxing_public) = (params.clone(), boxing_public.clone());
                async move {
                    state.login = Some(params);
                    state.boxing = Some(boxing_public);
                    state.owned.insert(writer_hash);
                    Ok(state)
                }
            })
            .await?;
    }
    let fs = Filesystem::open(Arc::clone(remote), Arc::clone(remote), root.clone());
    let fs = match fs.stat("/").await {
        Ok(_) => fs,
        Err(peergos_cryptree::Error::NotFound { .. }) => {
            Filesystem::create_at(
                Arc::clone(remote),
                Arc::clone(remote),
                root,
                writer,
                username,
            )
            .await?
        }
        Err(e) => return Err(e.into()),
    };
    match fs.mkdir(SHARED_DIR).await {
        Ok(_) | Err(peergos_cryptree::Error::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Checks that the server's PKI maps `username` to `identity`.
fn check_claim(chain: Option<KeyChain>, username: &str, identity: &PublicKeyHash) -> Result<()> {
    let chain =
        chain.ok_or_else(|| Error::Invalid(format!("'{username}' is not in the server's PKI")))?;
    if chain.current().identity != *identity {
        return Err(Error::Invalid(format!(
            "the PKI maps '{username}' to another identity key"
        )));
    }
    Ok(())
}

/// A name's key chain from the server's PKI (None: the name is not
/// claimed), after checking that the PKI pointer is signed by `pki`, the
/// CHAMP path proves the entry, and the chain verifies.
pub(crate) async fn pki_chain(
    net: &dyn NetworkAccess,
    pki: &PublicKeyHash,
    username: &str,
) -> Result<Option<KeyChain>> {
    let answer = net.pki_lookup(username).await?;
    let pointer = answer
        .pointer
        .ok_or_else(|| Error::Invalid("the server has no PKI".into()))?;
    PointerCache::new().observe(pki, pki, &pointer)?;
    let root: Cid = pointer
        .update
        .current
        .ok_or_else(|| Error::Invalid("the PKI pointer is empty".into()))?;
    let blocks = answer
        .proof
        .iter()
        .map(|bytes| Ok(Block::new(peergos_ipld::Codec::DagCbor, bytes.clone())?))
        .collect::<Result<Vec<_>>>()?;
    let value = peergos_champ::verify_proof(&root, &name_key(username), &blocks)?;
    let Some(Value::Link(cid)) = value else {
        return Ok(None);
    };
    let bytes = answer
        .chain
        .ok_or_else(|| Error::Invalid("the PKI answer lacks the chain block".into()))?;
    cid.verify(&bytes)?;
    let chain = KeyChain::from_bytes(&bytes)?;
    chain.verify()?;
    if chain.username() != username {
        return Err(Error::Invalid(format!(
            "the PKI entry for '{username}' holds the chain of '{}'",
            chain.username()
        )));
    }
    Ok(Some(chain))
}
