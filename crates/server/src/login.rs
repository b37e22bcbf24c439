//! Accounts: signup, login parameters, signed stamps and their
//! freshness, the encrypted login data and password changes.

use bytes::Bytes;
use peergos_keys::LoginParams;

use peergos_api as api;
use peergos_api::{
    auth_message, ChangeRequest, DataRequest, LoginRequest, SignupRequest, Stamp, MAX_CLOCK_SKEW_MS,
};

use crate::{accounts, now_ms, Error, Result, Server, SignupPolicy, User};

impl Server {
    // ---- accounts ----

    /// Creates an account: checks the policy, the name and the chain, and
    /// claims the name in the PKI.
    pub async fn signup(&self, request: SignupRequest) -> Result<()> {
        let username = request.username.as_str();
        peergos_pki::check_username(username)?;
        request.chain.verify()?;
        let claim = request.chain.current();
        if claim.username != username {
            return Err(Error::BadRequest(format!(
                "the PKI claim is for '{}', not '{username}'",
                claim.username
            )));
        }
        if request.chain.links().len() != 1 {
            return Err(Error::BadRequest(
                "a new account's chain has exactly one claim".into(),
            ));
        }
        if !claim.servers.first().is_some_and(|s| self.is_me(s)) {
            return Err(Error::BadRequest(format!(
                "the PKI claim does not name this server ({}) as the user's home",
                self.net.peer_id
            )));
        }
        request.login.validate()?;
        if request.data.len() > 64 << 10 {
            return Err(Error::BadRequest(
                "static data is larger than 64 KiB".into(),
            ));
        }
        let token = match self.config.signup {
            SignupPolicy::Open => None,
            SignupPolicy::Token => Some(request.token.as_deref().ok_or(Error::TokenRequired)?),
        };
        self.stores
            .accounts
            .create(accounts::NewUser {
                username,
                identity: &claim.identity,
                login_key: &request.login_key,
                params: &request.login,
                static_data: &request.data,
                quota: self.config.default_quota,
                token,
            })
            .await?;
        if let Err(e) = self.pki_apply(&request.chain).await {
            self.stores.accounts.remove(username).await?;
            return Err(match e {
                Error::Pki(peergos_pki::Error::NameTaken { .. }) => {
                    Error::UsernameTaken(username.to_string())
                }
                e => e,
            });
        }
        tracing::info!(username, "signed up");
        Ok(())
    }

    /// Login parameters. An unknown name gets parameters with a salt
    /// derived from the name and a server secret, stable across calls, so
    /// the answer does not tell whether the name exists.
    pub async fn login_params(&self, username: &str) -> Result<LoginParams> {
        if let Some(user) = self.stores.accounts.user(username).await? {
            return Ok(user.params);
        }
        let mut input = self.identity.salt_secret.to_vec();
        input.extend_from_slice(username.as_bytes());
        Ok(LoginParams {
            log_n: 17,
            r: 8,
            p: 1,
            salt: peergos_keys::sha256(&input),
        })
    }

    /// Checks a stamp: signed by the user's login key over this action and
    /// payload, within the clock skew, newer than the last accepted one.
    async fn check_stamp(
        &self,
        username: &str,
        action: &str,
        payload: &[u8],
        stamp: &Stamp,
    ) -> Result<User> {
        let user = self
            .stores
            .accounts
            .user(username)
            .await?
            .ok_or(Error::BadLogin)?;
        user.login_key
            .verify(
                api::LOGIN_AUTH,
                &auth_message(action, username, stamp.time_ms, payload),
                &stamp.signature,
            )
            .map_err(|_| Error::BadLogin)?;
        self.check_fresh(username, stamp).await?;
        Ok(user)
    }

    /// Checks a stamp signed by the user's identity key (domain
    /// [`api::OWNER_AUTH`]), with the same freshness rules as
    /// [`check_stamp`](Self::check_stamp).
    pub(crate) async fn check_owner_stamp(
        &self,
        username: &str,
        action: &str,
        payload: &[u8],
        stamp: &Stamp,
    ) -> Result<User> {
        let user = self
            .stores
            .accounts
            .user(username)
            .await?
            .ok_or_else(|| Error::UnknownUser(username.to_string()))?;
        user.identity
            .key()?
            .verify(
                api::OWNER_AUTH,
                &auth_message(action, username, stamp.time_ms, payload),
                &stamp.signature,
            )
            .map_err(|_| {
                Error::BadRequest(format!(
                    "the request is not signed by {username}'s identity key"
                ))
            })?;
        self.check_fresh(username, stamp).await?;
        Ok(user)
    }

    async fn check_fresh(&self, username: &str, stamp: &Stamp) -> Result<()> {
        let now = now_ms();
        if stamp.time_ms.abs_diff(now) > MAX_CLOCK_SKEW_MS {
            return Err(Error::Stale(format!(
                "the request's time is {} s from the server's clock; check the client's clock",
                stamp.time_ms.abs_diff(now) / 1000
            )));
        }
        let advanced = match self
            .stores
            .accounts
            .advance_auth(username, stamp.time_ms)
            .await
        {
            Ok(advanced) => advanced,
            // The database cannot record it (a full disk, say): judge the
            // stamp against the newest recorded one and those accepted
            // since, kept in memory, so logins (and so reads) still work.
            Err(e) => {
                tracing::warn!(username, "recording a signed time failed: {e}");
                let recorded = self
                    .stores
                    .accounts
                    .user(username)
                    .await?
                    .map_or(0, |u| u.last_auth);
                let mut unrecorded = match self.traffic.unrecorded_auth.lock() {
                    Ok(map) => map,
                    Err(poisoned) => poisoned.into_inner(),
                };
                let last = unrecorded.entry(username.to_string()).or_insert(0);
                let newer = stamp.time_ms > recorded.max(*last);
                if newer {
                    *last = stamp.time_ms;
                }
                newer
            }
        };
        if !advanced {
            return Err(Error::Stale(
                "the signed time is not newer than the last request's (a replay?)".into(),
            ));
        }
        Ok(())
    }

    /// The encrypted static data, for a fresh signature by the login key.
    pub async fn login(&self, username: &str, request: &LoginRequest) -> Result<Bytes> {
        Ok(self
            .check_stamp(username, "login", &[], &request.stamp)
            .await?
            .static_data)
    }

    /// Replaces the static data.
    pub async fn update_data(&self, username: &str, request: &DataRequest) -> Result<()> {
        if request.data.len() > 64 << 10 {
            return Err(Error::BadRequest(
                "static data is larger than 64 KiB".into(),
            ));
        }
        self.check_stamp(username, "data", &request.data, &request.stamp)
            .await?;
        self.stores
            .accounts
            .update_login(username, None, &request.data)
            .await
    }

    /// Changes the login key (a password change): signed by the old key.
    pub async fn change_password(&self, username: &str, request: &ChangeRequest) -> Result<()> {
        request.login.validate()?;
        if request.data.len() > 64 << 10 {
            return Err(Error::BadRequest(
                "static data is larger than 64 KiB".into(),
            ));
        }
        let payload = ChangeRequest::payload(&request.login, &request.login_key, &request.data);
        self.check_stamp(username, "change", &payload, &request.stamp)
            .await?;
        self.stores
            .accounts
            .update_login(
                username,
                Some((&request.login_key, &request.login)),
                &request.data,
            )
            .await?;
        tracing::info!(username, "password changed");
        Ok(())
    }
}
