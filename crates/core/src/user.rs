//! Accounts: signup, login and password change, and the logged-in
//! [`UserContext`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use peergos_champ::Value;
use peergos_cryptree::{AbsoluteCapability, Committer, Filesystem};
use peergos_ipld::{cbor, Block, Cid};
use peergos_keys::{BoxingKeyPair, LoginKeys, LoginParams, PublicKeyHash, SigningKeyPair};
use peergos_pki::{name_key, Claim, KeyChain};
use peergos_pointers::PointerCache;
use peergos_server::api::{
    auth_message, ChangeRequest, DataRequest, Info, LoginRequest, SignupRequest, Space, Stamp,
    LOGIN_AUTH,
};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{Error, NetworkAccess, Remote, Result};

/// How long a new PKI claim lasts: one year.
pub const CLAIM_LIFETIME_SECS: u64 = 365 * 24 * 60 * 60;

/// The name of the folder under the home directory where per-friend
/// shares live.
pub const SHARED_DIR: &str = "shared";

/// The user's secrets, encrypted under the login root key and stored on
/// the home server.
///
/// CBOR: `{"v": 1, "identity": bytes(32), "boxing": bytes, "writer":
/// bytes(32), "root": AbsoluteCapability | null}`.
#[derive(Serialize, Deserialize)]
struct StaticData {
    v: u64,
    #[serde(with = "serde_bytes")]
    identity: [u8; 32],
    #[serde(with = "serde_bytes")]
    boxing: Vec<u8>,
    #[serde(with = "serde_bytes")]
    writer: [u8; 32],
    root: Option<AbsoluteCapability>,
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
        .await
        .map_err(|e| Error::Task(e.to_string()))?
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
    pub(crate) identity: SigningKeyPair,
    boxing: BoxingKeyPair,
    writer: SigningKeyPair,
    pub(crate) fs: Arc<RemoteFs>,
    last_stamp: AtomicU64,
    /// The server's id and its PKI key.
    pub(crate) info: Info,
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

impl UserContext {
    /// Creates an account on the server behind `net` and logs in.
    ///
    /// Derives the login keys from the password (scrypt), makes fresh
    /// identity, boxing and root-writer keys, claims the name in the PKI,
    /// commits the identity's `WriterData`, creates `/username` and
    /// `/username/shared`, and stores the encrypted static data.
    pub async fn signup(
        net: Arc<dyn NetworkAccess>,
        username: &str,
        password: &str,
        token: Option<&str>,
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
        let data = StaticData {
            v: 1,
            identity: *identity.seed(),
            boxing: boxing.to_secret_bytes().to_vec(),
            writer: *writer.seed(),
            root: None,
        };
        let sealed = seal_static(&login, username, &data)?;
        net.signup(&SignupRequest {
            username: username.to_string(),
            chain,
            login: params,
            login_key: login.signing.public(),
            data: Bytes::from(sealed),
            token: token.map(str::to_string),
        })
        .await?;
        let chain = pki_chain(net.as_ref(), &info.pki, username).await?;
        Self::finish(net, &info, username.to_string(), login, data, chain).await
    }

    /// Logs in: fetches the login parameters, runs scrypt, fetches the
    /// encrypted static data with a fresh signature, decrypts it, and
    /// checks the identity against the PKI.
    pub async fn login(
        net: Arc<dyn NetworkAccess>,
        username: &str,
        password: &str,
    ) -> Result<Self> {
        peergos_pki::check_username(username)?;
        let params = net.login_params(username).await?;
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
        let (login, looked_up) = tokio::join!(derive(params, username, password), lookup);
        let login = login?;
        let time_ms = now_ms();
        let request = LoginRequest {
            stamp: stamp(&login, "login", username, time_ms, &[]),
        };
        let sealed = net.login(username, &request).await?;
        let plain = Zeroizing::new(
            login
                .root_key
                .decrypt_with_aad(&sealed, &static_aad(username))
                .map_err(|_| Error::Invalid("the static data does not decrypt".into()))?,
        );
        let data: StaticData =
            cbor::from_slice(&plain).map_err(|e| Error::Invalid(format!("static data: {e}")))?;
        let (info, chain) = looked_up?;
        let context = Self::finish(net, &info, username.to_string(), login, data, chain).await?;
        context.last_stamp.store(time_ms, Ordering::Relaxed);
        Ok(context)
    }

    /// Builds the context from the static data, completing a signup that
    /// stopped before its filesystem existed. `chain` is the name's entry
    /// in the server's PKI, checked against the identity here.
    async fn finish(
        net: Arc<dyn NetworkAccess>,
        info: &Info,
        username: String,
        login: LoginKeys,
        data: StaticData,
        chain: Option<KeyChain>,
    ) -> Result<Self> {
        let identity = SigningKeyPair::from_seed(Zeroizing::new(data.identity));
        let boxing = BoxingKeyPair::from_secret_bytes(&data.boxing)?;
        let writer = SigningKeyPair::from_seed(Zeroizing::new(data.writer));
        let id_hash = PublicKeyHash::of(&identity.public());
        check_claim(chain, &username, &id_hash)?;
        let remote = Arc::new(Remote::for_owner(Arc::clone(&net), id_hash));
        let root = match &data.root {
            Some(root) => root.clone(),
            None => {
                let root =
                    create_home(&remote, &username, &login, &identity, &boxing, &writer).await?;
                let done = StaticData {
                    v: 1,
                    identity: data.identity,
                    boxing: data.boxing.clone(),
                    writer: data.writer,
                    root: Some(root.clone()),
                };
                let sealed = seal_static(&login, &username, &done)?;
                let time_ms = now_ms();
                net.update_data(
                    &username,
                    &DataRequest {
                        stamp: stamp(&login, "data", &username, time_ms, &sealed),
                        data: Bytes::from(sealed),
                    },
                )
                .await?;
                root
            }
        };
        if root.owner != id_hash {
            return Err(Error::Invalid(
                "the stored root capability belongs to another identity".into(),
            ));
        }
        let fs = Arc::new(Filesystem::open(Arc::clone(&remote), remote, root));
        Ok(UserContext {
            net,
            username,
            login,
            identity,
            boxing,
            writer,
            fs,
            last_stamp: AtomicU64::new(0),
            info: info.clone(),
            social_lock: tokio::sync::Mutex::new(()),
            shared: std::sync::Mutex::new(std::collections::HashMap::new()),
        })
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
        self.net.space(&self.identity()).await
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
        let data = StaticData {
            v: 1,
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
        // The identity's WriterData records the current parameters.
        let remote = Arc::new(Remote::for_owner(Arc::clone(&self.net), self.identity()));
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

/// Commits the identity's `WriterData` (login parameters, boxing key, the
/// root writer as an owned key) and creates `/username/shared`.
async fn create_home(
    remote: &Arc<Remote>,
    username: &str,
    login: &LoginKeys,
    identity: &SigningKeyPair,
    boxing: &BoxingKeyPair,
    writer: &SigningKeyPair,
) -> Result<AbsoluteCapability> {
    let owner = PublicKeyHash::of(&identity.public());
    let writer_hash = PublicKeyHash::of(&writer.public());
    let committer = Committer::new(Arc::clone(remote), Arc::clone(remote));
    let (params, boxing_public) = (login.params.clone(), boxing.public().clone());
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
    let fs = Filesystem::create(
        Arc::clone(remote),
        Arc::clone(remote),
        owner,
        writer,
        username,
    )
    .await?;
    fs.mkdir(SHARED_DIR).await?;
    Ok(fs.root().clone())
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
