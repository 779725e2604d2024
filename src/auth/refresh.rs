//! Refresh tokens and families. Each login starts a family (`auth.refresh.ttl` at most) with
//! one opaque refresh token; `POST /token` spends it for a new access token and a new refresh
//! token of the same family. Access tokens carry the family id (`fam`), so ending a family
//! (logout, sign-out, reuse of a spent refresh token) ends its access tokens on every replica
//! through the revocation feed. Refresh tokens are stored only as SHA-256 hashes.
//!
//! Reuse detection has no grace window: the first presentation of a refresh token wins (one
//! conditional UPDATE decides), and any later one, a client's retry included, ends the family.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::{general_purpose::URL_SAFE_NO_PAD, Engine};
use sha2::{Digest, Sha256};

use super::jwt::LEEWAY_SECS;
use super::{AuditEvent, Auth, Claims, Throttled};
use crate::clock::unix_millis;
use crate::metrics::RefreshResult;
use crate::request::ClientNetwork;
use crate::store::{Credentials, NewFamily, NewRefresh, Revocation, Rotation, StoreError};

/// Longer presented refresh tokens are refused unhashed (ours are 43 characters).
const MAX_REFRESH_BYTES: usize = 256;

/// What a login or a refresh hands out.
#[derive(Debug)]
pub struct Issued {
    /// The signed access token.
    pub access_token: String,
    /// The opaque refresh token, shown once.
    pub refresh_token: String,
    /// Seconds until the refresh token expires unless used (idle time or the family's end).
    pub refresh_expires_in: u64,
}

/// Why a refresh gave nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshRefused {
    /// Unknown, spent, expired, or its account disabled: `invalid_grant`.
    InvalidGrant,
    /// The client network's rate (shared with login).
    Throttled(Throttled),
    /// The store could not be reached (logged here).
    StoreUnavailable,
}

/// A fresh refresh token (256 random bits, base64url) and its stored form.
fn new_refresh_token(idle_until: i64, access_until: i64) -> (String, NewRefresh) {
    let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let hash = hash(&token);
    let stored = NewRefresh {
        hash,
        idle_until,
        access_until,
    };
    (token, stored)
}

/// Margin on a family's `tokens_until` for the moment between storing it and signing the
/// access token (the store may be slow): the token's `exp` is taken a little later.
const ISSUE_MARGIN_SECS: i64 = 60;

/// The stored form of a refresh token: lower-case hex SHA-256.
fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Whole seconds from `now` to `until` (both Unix ms), for `refresh_expires_in`.
fn seconds_left(now: i64, until: i64) -> u64 {
    u64::try_from(until.saturating_sub(now) / 1000).unwrap_or(0)
}

fn new_family_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl Auth {
    /// Starts a family for a successful `POST /login`: its first refresh token and an access
    /// token carrying its id.
    pub async fn start_family(
        self: &Arc<Self>,
        credentials: &Credentials,
    ) -> Result<Issued, StoreError> {
        let now = unix_millis();
        let expires_at = now.saturating_add(millis(self.refresh.ttl));
        let family = NewFamily {
            id: new_family_id(),
            account_id: credentials.account.id.clone(),
            now,
            expires_at,
            tokens_until: self.access_until(now),
        };
        let idle_until = now.saturating_add(millis(self.refresh.idle));
        let (refresh_token, first) =
            new_refresh_token(idle_until.min(expires_at), family.tokens_until);
        let store = Arc::clone(&self.store);
        let stored = family.clone();
        self.run(async move { store.start_family(&stored, Some(&first)).await })
            .await
            .and_then(|started| started)?;
        let (access_token, _) = self
            .keys
            .issue_for(credentials, self.keys.ttl(), Some(&family.id))
            .map_err(|error| StoreError::Unavailable(error.to_string()))?;
        Ok(Issued {
            access_token,
            refresh_token,
            refresh_expires_in: seconds_left(now, idle_until.min(expires_at)),
        })
    }

    /// A browser session for `credentials`: a family without a refresh token, and an access
    /// token of it that lasts `auth.session.ttl` (the cookie's value).
    pub async fn start_session(
        self: &Arc<Self>,
        credentials: &Credentials,
    ) -> Result<String, StoreError> {
        let id = new_family_id();
        let (token, claims) = self
            .keys
            .issue_for(credentials, self.session.ttl, Some(&id))
            .map_err(|error| StoreError::Unavailable(error.to_string()))?;
        let family = NewFamily {
            id,
            account_id: credentials.account.id.clone(),
            now: unix_millis(),
            expires_at: i64::try_from(claims.exp)
                .unwrap_or(i64::MAX)
                .saturating_mul(1000),
            tokens_until: i64::try_from(claims.accepted_until()).unwrap_or(i64::MAX),
        };
        let store = Arc::clone(&self.store);
        self.run(async move { store.start_family(&family, None).await })
            .await
            .and_then(|started| started)?;
        Ok(token)
    }

    /// `POST /token` with `grant_type=refresh_token`: spends `presented` and issues a new pair
    /// of the same family. A spent token ends its family. Throttled per client network like
    /// login; counted in `gatehouse_token_refreshes_total`.
    pub async fn refresh(
        self: &Arc<Self>,
        client: IpAddr,
        presented: &str,
    ) -> Result<Issued, RefreshRefused> {
        self.throttle
            .login(ClientNetwork::from(client))
            .map_err(RefreshRefused::Throttled)?;
        let invalid = || {
            self.metrics.refresh(RefreshResult::Invalid);
            RefreshRefused::InvalidGrant
        };
        if presented.is_empty() || presented.len() > MAX_REFRESH_BYTES {
            return Err(invalid());
        }
        let now = unix_millis();
        let idle_until = now.saturating_add(millis(self.refresh.idle));
        let (refresh_token, next) = new_refresh_token(idle_until, self.access_until(now));
        let presented = hash(presented);
        let store = Arc::clone(&self.store);
        let rotated = self
            .run(async move {
                let rotation = store.rotate_refresh(&presented, &next, now).await?;
                if let Rotation::Rotated {
                    family_id, owner, ..
                } = &rotation
                {
                    if owner.as_ref().is_none_or(|owner| owner.account.disabled) {
                        // Whatever the feed says, no further refresh of this family.
                        store.revoke_family(family_id, now).await?;
                    }
                }
                Ok::<_, StoreError>(rotation)
            })
            .await
            .and_then(|rotated| rotated)
            .map_err(|error| {
                tracing::error!(%error, "refresh could not reach the account store");
                RefreshRefused::StoreUnavailable
            })?;
        match rotated {
            Rotation::Rotated {
                family_id,
                expires_at,
                owner: Some(credentials),
                ..
            } if !credentials.account.disabled => {
                let (access_token, _) = self
                    .keys
                    .issue_for(&credentials, self.keys.ttl(), Some(&family_id))
                    .map_err(|_| RefreshRefused::StoreUnavailable)?;
                self.metrics.refresh(RefreshResult::Success);
                self.audit.record(
                    AuditEvent::Refresh,
                    Some(&credentials.account.username),
                    Some(client),
                    serde_json::json!({ "family": family_id }),
                );
                Ok(Issued {
                    access_token,
                    refresh_token,
                    refresh_expires_in: seconds_left(now, idle_until.min(expires_at)),
                })
            }
            Rotation::Reused(revocation) => {
                let family = match &revocation {
                    Some(Revocation::Family { id, .. }) => serde_json::json!({ "family": id }),
                    _ => serde_json::json!({}),
                };
                if let Some(revocation) = revocation {
                    self.revocations.apply(&revocation);
                }
                self.audit
                    .record(AuditEvent::RefreshReuse, None, Some(client), family);
                tracing::warn!("a spent refresh token was presented again; its family is revoked");
                self.metrics.refresh(RefreshResult::Reused);
                Err(RefreshRefused::InvalidGrant)
            }
            _ => Err(invalid()),
        }
    }

    /// The last second an access token issued now (Unix ms) could be accepted, with a margin.
    fn access_until(&self, now: i64) -> i64 {
        let ttl = i64::try_from(self.keys.ttl().as_secs()).unwrap_or(i64::MAX);
        (now / 1000)
            .saturating_add(ttl)
            .saturating_add(LEEWAY_SECS as i64)
            .saturating_add(ISSUE_MARGIN_SECS)
    }

    /// Ends the family the token of these `claims` was issued from, if any: here at once, on
    /// every replica within a second through the store.
    pub async fn end_family(&self, claims: &Claims) -> Result<(), StoreError> {
        let Some(id) = claims.family.clone() else {
            return Ok(());
        };
        // Until the store's own (longer) horizon arrives with the next resync.
        let expires_at = i64::try_from(claims.accepted_until()).unwrap_or(i64::MAX);
        self.revocations.apply(&Revocation::Family {
            id: id.clone(),
            expires_at,
        });
        let store = Arc::clone(&self.store);
        let now = unix_millis();
        let revoked = self
            .run(async move { store.revoke_family(&id, now).await })
            .await
            .and_then(|revoked| revoked)?;
        if let Some(revocation) = revoked {
            self.revocations.apply(&revocation);
        }
        Ok(())
    }

    /// `POST /logout/all`: every family and every access token of the account of these
    /// `claims` ends (its token generation is bumped, as `accounts disable` does). `false` if
    /// the account no longer exists.
    pub async fn end_all_sessions(&self, claims: &Claims) -> Result<bool, StoreError> {
        let store = Arc::clone(&self.store);
        let account = claims.sub.clone();
        let now = unix_millis();
        let ended = self
            .run(async move { store.end_sessions(&account, now).await })
            .await
            .and_then(|ended| ended)?;
        if let Some(revocation) = &ended {
            self.revocations.apply(revocation);
        }
        Ok(ended.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_carry_256_bits_and_are_stored_hashed() {
        let (token, stored) = new_refresh_token(7, 8);
        assert_eq!(URL_SAFE_NO_PAD.decode(&token).unwrap().len(), 32);
        assert_eq!(stored.hash, hash(&token));
        assert_eq!(stored.hash.len(), 64);
        assert!(!stored.hash.contains(&token));
        assert_ne!(new_refresh_token(7, 8).0, token);
    }
}
