//! The one credentials check behind `POST /login` and the browser sign-in form: the login rate
//! per client network (`throttle`), then on the control runtime the failure back-off
//! (`lockout`), the account lookup and an argon2id verification (`password`, with a dummy hash
//! for unknown emails so every failure takes as long). Each attempt is counted in
//! `gatehouse_logins_total{result}`. Also the revocation of one token (logout, sign-out).

use std::net::IpAddr;
use std::sync::Arc;

use super::{AuditEvent, Auth, Claims, Throttled};
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

/// Where a login came from, for the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginSource {
    /// `POST /login`: `login_success` / `login_failure`.
    Api,
    /// The browser sign-in form: `signin_success` / `signin_failure`.
    Signin,
}

impl LoginSource {
    fn events(self) -> (AuditEvent, AuditEvent) {
        match self {
            LoginSource::Api => (AuditEvent::LoginSuccess, AuditEvent::LoginFailure),
            LoginSource::Signin => (AuditEvent::SigninSuccess, AuditEvent::SigninFailure),
        }
    }
}

/// What the check on the control runtime found.
enum Checked {
    /// The account's back-off holds; the username if the email is an account's.
    HeldBack(Throttled, Option<String>),
    /// The right password for an enabled account.
    Matched(Credentials),
    /// Refused; the username if the email is an account's, and why (for the audit trail only).
    Refused(Option<String>, &'static str),
}

impl Auth {
    /// The account whose `email` and `password` these are, from a client at `client` (its
    /// network is what the throttle and back-off count); the outcome is counted and, except for
    /// refusals by the per-network rate (`gatehouse_logins_total{result="rate_limited"}` only,
    /// so a flood cannot crowd the queue), recorded in the audit trail.
    pub async fn check_login(
        self: &Arc<Self>,
        client: IpAddr,
        source: LoginSource,
        email: String,
        password: String,
    ) -> Result<Credentials, LoginRefused> {
        let network = ClientNetwork::from(client);
        let (succeeded, failed) = source.events();
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
                    Err(throttled) => {
                        let found = store.credentials(&email).await.ok().flatten();
                        let username = found.map(|c| c.account.username);
                        return Ok(Checked::HeldBack(throttled, username));
                    }
                };
                let found = store.credentials(&email).await?;
                let hash = found.as_ref().map(|c| c.password_hash.clone());
                let matched = worker.passwords.verify(password, hash).await;
                let Some(found) = found else {
                    return Ok(Checked::Refused(None, "unknown_account"));
                };
                if !matched || found.account.disabled {
                    let reason = if matched {
                        "disabled"
                    } else {
                        "wrong_password"
                    };
                    return Ok(Checked::Refused(Some(found.account.username), reason));
                }
                // Not being able to take the count back only leaves one failure too many.
                if let Err(error) = attempt.succeeded(store).await {
                    tracing::warn!(%error, "could not clear a login failure counter");
                }
                Ok::<_, StoreError>(Checked::Matched(found))
            })
            .await
            .and_then(|checked| checked)
            .map_err(|error| {
                tracing::error!(%error, "login could not reach the account store");
                LoginRefused::StoreUnavailable
            })?;
        let refused = |username: Option<String>, reason: &str| {
            let detail = serde_json::json!({ "reason": reason });
            self.audit
                .record(failed, username.as_deref(), Some(client), detail);
        };
        match checked {
            Checked::Matched(credentials) => {
                self.count_login(LoginResult::Success);
                let username = Some(credentials.account.username.as_str());
                let detail = serde_json::json!({});
                self.audit.record(succeeded, username, Some(client), detail);
                Ok(credentials)
            }
            Checked::HeldBack(throttled, username) => {
                refused(username, "backoff");
                Err(rate_limited(throttled))
            }
            Checked::Refused(username, reason) => {
                self.count_login(LoginResult::Failure);
                refused(username, reason);
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
