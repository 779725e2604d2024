//! The one credentials check behind `POST /login` and the browser sign-in form: the login rate
//! per client network (`throttle`), then on the control runtime the failure back-off
//! (`lockout`), the account lookup and an argon2id verification (`password`, with a dummy hash
//! for unknown emails so every failure takes as long). Each attempt is counted in
//! `gatehouse_logins_total{result}`. Also the revocation of one token (logout, sign-out).

use std::sync::Arc;

use super::{Auth, Claims, Throttled};
use crate::metrics::LoginResult;
use crate::request::ClientNetwork;
use crate::store::{Credentials, Revocation, StoreError};

/// Why a login did not produce an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefused {
    /// The network's rate or the account's back-off: try again after this.
    Throttled(Throttled),
    /// Unknown email, wrong password or disabled account: one answer for all three.
    InvalidCredentials,
    /// The account store could not be reached (logged here).
    StoreUnavailable,
}

impl Auth {
    /// The account whose `email` and `password` these are, from a client in `network`; the
    /// outcome is counted.
    pub async fn check_login(
        self: &Arc<Self>,
        network: ClientNetwork,
        email: String,
        password: String,
    ) -> Result<Credentials, LoginRefused> {
        let rate_limited = |t: Throttled| {
            self.count_login(LoginResult::RateLimited);
            LoginRefused::Throttled(t)
        };
        self.throttle.login(network).map_err(rate_limited)?;
        let worker = Arc::clone(self);
        let checked = self
            .run(async move {
                let store = &*worker.store;
                let attempt = match worker.lockout.begin(store, &email, network).await? {
                    Ok(attempt) => attempt,
                    Err(throttled) => return Ok(Err(throttled)),
                };
                let found = store.credentials(&email).await?;
                let hash = found.as_ref().map(|c| c.password_hash.clone());
                let matched = worker.passwords.verify(password, hash).await;
                let found = found.filter(|c| matched && !c.account.disabled);
                if found.is_some() {
                    // Not being able to take the count back only leaves one failure too many.
                    if let Err(error) = attempt.succeeded(store).await {
                        tracing::warn!(%error, "could not clear a login failure counter");
                    }
                }
                Ok::<_, StoreError>(Ok(found))
            })
            .await
            .and_then(|checked| checked)
            .map_err(|error| {
                tracing::error!(%error, "login could not reach the account store");
                LoginRefused::StoreUnavailable
            })?;
        match checked.map_err(rate_limited)? {
            Some(credentials) => {
                self.count_login(LoginResult::Success);
                Ok(credentials)
            }
            None => {
                self.count_login(LoginResult::Failure);
                Err(LoginRefused::InvalidCredentials)
            }
        }
    }

    /// Refuses the token these `claims` came from, and ends its refresh family (every access
    /// and refresh token of that login or browser session): on this replica at once (even if
    /// the store is down), on every other within a second through the store. `Err` means the store did
    /// not take it, so other replicas may still accept the token.
    pub async fn revoke(&self, claims: &Claims) -> Result<(), StoreError> {
        let jti = claims.jti.clone();
        // Remembered for as long as verification could still accept the token, not only until
        // its `exp`: tokens pass for a few seconds of clock skew after it.
        let expires_at = i64::try_from(claims.accepted_until()).unwrap_or(i64::MAX);
        self.revocations.apply(&Revocation::Token {
            jti: jti.clone(),
            expires_at,
        });
        let store = Arc::clone(&self.store);
        let token = self
            .run(async move { store.revoke_token(&jti, expires_at).await })
            .await
            .and_then(|stored| stored);
        let family = self.end_family(claims).await;
        token.and(family)
    }
}
