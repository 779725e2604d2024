//! Verified tokens, remembered until they expire: a client sends the same token with every
//! request, so its signature and claims are checked once, not per request (Envoy's jwt_authn
//! keeps the same kind of cache). Revocation is still checked on every request, by the caller.
//!
//! Only tokens that passed full verification are inserted, so an attacker cannot fill the map
//! with forgeries; its size is bounded all the same.

use std::sync::Arc;

use super::jwt::Claims;
use crate::request::Caller;

/// Most tokens remembered at once (about 1 KiB each).
const CAPACITY: usize = 10_000;

/// A verified token's identity, with its backend headers rendered once.
#[derive(Debug)]
pub struct Identity {
    /// The token's claims.
    pub claims: Claims,
    /// What the backends are told about the caller.
    pub caller: Caller,
}

impl Identity {
    /// Renders the identity headers of `claims`; `None` if they cannot be header values.
    pub fn new(claims: Claims) -> Option<Self> {
        let caller = Caller::new(&claims.username, &claims.email)?;
        Some(Identity { claims, caller })
    }
}

/// Token text → identity, for tokens not yet expired.
#[derive(Debug)]
pub struct TokenCache {
    map: papaya::HashMap<Box<str>, Arc<Identity>, foldhash::fast::RandomState>,
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache {
            map: papaya::HashMap::builder()
                .hasher(foldhash::fast::RandomState::default())
                .build(),
        }
    }
}

impl TokenCache {
    /// The identity of `token` if it was verified before and has not expired by `now`.
    pub fn get(&self, token: &str, now: u64) -> Option<Arc<Identity>> {
        let map = self.map.pin();
        let identity = map.get(token)?;
        (identity.claims.exp > now).then(|| Arc::clone(identity))
    }

    /// Remembers a verified token. When full, expired entries are dropped first; if it is
    /// still full the token is simply not cached (verification stays correct, only slower).
    pub fn insert(&self, token: &str, identity: Arc<Identity>, now: u64) {
        let map = self.map.pin();
        if map.len() >= CAPACITY {
            map.retain(|_, cached| cached.claims.exp > now);
            if map.len() >= CAPACITY {
                return;
            }
        }
        map.insert(token.into(), identity);
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no token is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Role;

    fn identity(exp: u64) -> Arc<Identity> {
        Arc::new(
            Identity::new(Claims {
                sub: "a".into(),
                username: "alice".into(),
                email: "alice@example.com".into(),
                role: Role::User,
                iss: "gatehouse".into(),
                iat: 0,
                nbf: 0,
                exp,
                jti: "j".into(),
                generation: 0,
                family: None,
            })
            .unwrap(),
        )
    }

    #[test]
    fn a_cached_token_is_returned_until_it_expires() {
        let cache = TokenCache::default();
        cache.insert("t", identity(100), 0);
        assert_eq!(cache.get("t", 99).unwrap().caller.user, "alice");
        assert!(cache.get("t", 100).is_none());
        assert!(cache.get("other", 0).is_none());
    }

    #[test]
    fn a_full_cache_makes_room_by_dropping_expired_tokens_only() {
        let cache = TokenCache::default();
        for n in 0..CAPACITY {
            let exp = if n % 2 == 0 { 10 } else { 1000 };
            cache.insert(&n.to_string(), identity(exp), 0);
        }
        cache.insert("fresh", identity(1000), 500);
        assert!(cache.get("fresh", 500).is_some());
        assert_eq!(cache.len(), CAPACITY / 2 + 1);
    }

    #[test]
    fn a_cache_full_of_live_tokens_takes_no_more() {
        let cache = TokenCache::default();
        for n in 0..CAPACITY {
            cache.insert(&n.to_string(), identity(1000), 0);
        }
        cache.insert("late", identity(1000), 0);
        assert!(cache.get("late", 0).is_none());
        assert!(cache.get("1", 0).is_some());
    }
}
