//! Revocation state held in memory, so the request path never asks the database.
//!
//! Two lock-free maps: logged-out token ids (until they expire) and accounts whose tokens are
//! limited (disabled, or a bumped token generation); and two more for ended refresh families and
//! revoked API keys (remembered for `API_KEY_REVOCATION_MEMORY_SECS`: `api_key_cache` drops a
//! revoked key from memory within its sweep interval, long before that). A background task keeps them in step with
//! the store: PostgreSQL pushes each revocation with `NOTIFY` (and a periodic full resync covers
//! anything missed while disconnected); SQLite is polled.

use std::sync::Arc;
use std::time::Duration;

use crate::store::{AccountStore, Revocation, StoreError};

use super::jwt::{Claims, TokenError};
use crate::clock::unix_secs;

/// How often a SQLite replica re-reads revocations (well inside the promised one second).
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Full resync with a push feed: a safety net for notifications lost in a reconnect.
const RESYNC_INTERVAL: Duration = Duration::from_secs(10);
/// Wait before retrying after the store failed.
const RETRY_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AccountLimit {
    generation: i64,
    disabled: bool,
}

/// What has been revoked, as this replica knows it.
#[derive(Debug, Default)]
pub struct Revocations {
    /// `jti` → `exp` of logged-out tokens.
    tokens: papaya::HashMap<Box<str>, i64>,
    /// Account id → current limit, only for accounts that have one.
    accounts: papaya::HashMap<Box<str>, AccountLimit>,
    /// Family id → last second its tokens could be accepted, of ended refresh families.
    families: papaya::HashMap<Box<str>, i64>,
    /// API key id → until when the revocation is remembered (Unix seconds), of revoked keys.
    api_keys: papaya::HashMap<Box<str>, i64>,
}

impl Revocations {
    /// Empty state (nothing revoked).
    pub fn new() -> Self {
        Self::default()
    }

    /// `Err(Revoked)` if the token was logged out, its family ended, or its account disabled
    /// or re-generated.
    pub fn check(&self, claims: &Claims) -> Result<(), TokenError> {
        if self.tokens.pin().contains_key(claims.jti.as_str()) {
            return Err(TokenError::Revoked);
        }
        if let Some(family) = &claims.family {
            if self.families.pin().contains_key(family.as_str()) {
                return Err(TokenError::Revoked);
            }
        }
        if let Some(limit) = self.accounts.pin().get(claims.sub.as_str()) {
            if limit.disabled || claims.generation < limit.generation {
                return Err(TokenError::Revoked);
            }
        }
        Ok(())
    }

    /// Applies one revocation. Generations only grow, so a stale update never undoes a newer
    /// one, whatever order the feed and a resync deliver them in.
    pub fn apply(&self, revocation: &Revocation) {
        match revocation {
            Revocation::Token { jti, expires_at } => {
                self.tokens.pin().insert(jti.as_str().into(), *expires_at);
            }
            Revocation::Family { id, expires_at } => {
                self.families.pin().insert(id.as_str().into(), *expires_at);
            }
            Revocation::Account {
                id,
                generation,
                disabled,
            } => {
                let new = AccountLimit {
                    generation: *generation,
                    disabled: *disabled,
                };
                self.accounts.pin().update_or_insert(
                    id.as_str().into(),
                    |old| {
                        if new.generation >= old.generation {
                            new
                        } else {
                            *old
                        }
                    },
                    new,
                );
            }
            Revocation::ApiKey { id, until } => {
                self.api_keys.pin().insert(id.as_str().into(), *until);
            }
        }
    }

    /// Whether the API key `id` was revoked (checked on every request that uses it).
    pub fn api_key_revoked(&self, id: &str) -> bool {
        self.api_keys.pin().contains_key(id)
    }

    /// Forgets logged-out tokens once they could no longer be accepted anyway (the time they
    /// were recorded with: expiry plus leeway).
    pub fn prune(&self, now: i64) {
        self.tokens.pin().retain(|_, expires_at| *expires_at >= now);
        self.families
            .pin()
            .retain(|_, expires_at| *expires_at >= now);
        self.api_keys.pin().retain(|_, until| *until >= now);
    }

    /// Ended refresh families still held.
    pub fn revoked_families(&self) -> usize {
        self.families.len()
    }

    /// Logged-out tokens still held.
    pub fn revoked_tokens(&self) -> usize {
        self.tokens.len()
    }
}

/// Keeps `revocations` in step with `store` until the process ends.
pub async fn follow(store: Arc<dyn AccountStore>, revocations: Arc<Revocations>) {
    loop {
        if let Err(error) = follow_once(&*store, &revocations).await {
            tracing::warn!(%error, "revocation sync failed; retrying");
            tokio::time::sleep(RETRY_DELAY).await;
        }
    }
}

/// One full resync, then the push feed (or polling) until the store fails.
async fn follow_once(
    store: &dyn AccountStore,
    revocations: &Revocations,
) -> Result<(), StoreError> {
    resync(store, revocations).await?;
    let Some(mut feed) = store.feed().await? else {
        loop {
            tokio::time::sleep(POLL_INTERVAL).await;
            resync(store, revocations).await?;
        }
    };
    // The feed was opened after the first resync: catch up on anything revoked in between.
    resync(store, revocations).await?;
    let mut resync_timer = tokio::time::interval(RESYNC_INTERVAL);
    resync_timer.tick().await;
    loop {
        tokio::select! {
            next = feed.next() => match next? {
                Some(revocation) => revocations.apply(&revocation),
                None => {
                    tracing::warn!("revocation feed reconnecting; resyncing");
                    resync(store, revocations).await?;
                }
            },
            _ = resync_timer.tick() => resync(store, revocations).await?,
        }
    }
}

async fn resync(store: &dyn AccountStore, revocations: &Revocations) -> Result<(), StoreError> {
    for revocation in store.revocations().await? {
        revocations.apply(&revocation);
    }
    revocations.prune(unix_secs() as i64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Role;

    fn claims(jti: &str, sub: &str, generation: i64) -> Claims {
        Claims {
            sub: sub.into(),
            username: "u".into(),
            email: "u@example.com".into(),
            role: Role::User,
            iss: "gatehouse".into(),
            iat: 0,
            nbf: 0,
            exp: u64::MAX / 2,
            jti: jti.into(),
            generation,
            family: None,
        }
    }

    fn account(id: &str, generation: i64, disabled: bool) -> Revocation {
        Revocation::Account {
            id: id.into(),
            generation,
            disabled,
        }
    }

    #[test]
    fn a_logged_out_token_is_revoked_and_others_are_not() {
        let state = Revocations::new();
        state.apply(&Revocation::Token {
            jti: "t1".into(),
            expires_at: 100,
        });
        assert_eq!(state.check(&claims("t1", "a", 0)), Err(TokenError::Revoked));
        assert_eq!(state.check(&claims("t2", "a", 0)), Ok(()));
    }

    #[test]
    fn tokens_of_an_older_generation_or_a_disabled_account_are_revoked() {
        let state = Revocations::new();
        state.apply(&account("a", 2, false));
        assert_eq!(state.check(&claims("t", "a", 1)), Err(TokenError::Revoked));
        assert_eq!(state.check(&claims("t", "a", 2)), Ok(()));
        state.apply(&account("a", 3, true));
        assert_eq!(state.check(&claims("t", "a", 3)), Err(TokenError::Revoked));
    }

    #[test]
    fn a_stale_account_update_never_undoes_a_newer_one() {
        let state = Revocations::new();
        state.apply(&account("a", 5, true));
        state.apply(&account("a", 4, false));
        assert_eq!(state.check(&claims("t", "a", 5)), Err(TokenError::Revoked));
    }

    #[test]
    fn tokens_of_an_ended_family_are_revoked_and_others_are_not() {
        let state = Revocations::new();
        state.apply(&Revocation::Family {
            id: "f1".into(),
            expires_at: 100,
        });
        let mut of_family = claims("t1", "a", 0);
        of_family.family = Some("f1".into());
        assert_eq!(state.check(&of_family), Err(TokenError::Revoked));
        of_family.family = Some("f2".into());
        assert_eq!(state.check(&of_family), Ok(()));
        assert_eq!(state.check(&claims("t1", "a", 0)), Ok(()));
        state.prune(101);
        assert_eq!(state.revoked_families(), 0);
    }

    #[test]
    fn a_revoked_api_key_is_remembered_until_its_time() {
        let state = Revocations::new();
        state.apply(&Revocation::ApiKey {
            id: "k1".into(),
            until: 100,
        });
        assert!(state.api_key_revoked("k1"));
        assert!(!state.api_key_revoked("k2"));
        state.prune(100);
        assert!(state.api_key_revoked("k1"));
        state.prune(101);
        assert!(!state.api_key_revoked("k1"));
    }

    #[test]
    fn prune_drops_only_expired_tokens() {
        let state = Revocations::new();
        for (jti, exp) in [("old", 10), ("new", 1000)] {
            state.apply(&Revocation::Token {
                jti: jti.into(),
                expires_at: exp,
            });
        }
        state.prune(500);
        assert_eq!(state.revoked_tokens(), 1);
        assert_eq!(
            state.check(&claims("new", "a", 0)),
            Err(TokenError::Revoked)
        );
    }
}
