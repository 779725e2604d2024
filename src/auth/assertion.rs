//! `X-Gatehouse-Assertion`: a short-lived EdDSA JWT telling a backend who the caller is, which
//! the backend verifies against the JWKS instead of trusting the network.
//!
//! Signing costs ~20 µs, so an assertion is made once per (caller, service) and reused until
//! shortly before it expires ([`REFRESH_MARGIN_SECS`]), or until another key starts signing.
//! The cache is bounded like the token cache; when full and nothing in it has expired, the
//! assertion is signed per request (correct, only slower).

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use serde::Serialize;

use super::cache::Identity;
use super::keyring::Keyring;
use crate::store::Role;

/// Most (caller, service) assertions remembered at once (about 1 KiB each).
const CAPACITY: usize = 10_000;

/// An assertion is re-signed once it has less than this left (or a fifth of its lifetime, if
/// less), so a backend never receives one about to expire in flight.
pub const REFRESH_MARGIN_SECS: u64 = 30;

/// The claims of an assertion.
#[derive(Debug, Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    username: &'a str,
    email: &'a str,
    role: Role,
    iat: u64,
    exp: u64,
}

/// The cache key: which caller, for which service.
#[derive(Debug, PartialEq, Eq)]
struct CacheKey {
    service: Box<str>,
    sub: Box<str>,
}

// Hashed as (service, sub) strings, identically to `KeyRef`, so a lookup allocates nothing.
impl Hash for CacheKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (&*self.service, &*self.sub).hash(state);
    }
}

struct KeyRef<'a> {
    service: &'a str,
    sub: &'a str,
}

impl Hash for KeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.service, self.sub).hash(state);
    }
}

impl papaya::Equivalent<CacheKey> for KeyRef<'_> {
    fn equivalent(&self, key: &CacheKey) -> bool {
        *key.service == *self.service && *key.sub == *self.sub
    }
}

/// One signed assertion and what it was made from.
struct Cached {
    header: HeaderValue,
    /// Re-sign from this Unix second on.
    refresh_at: u64,
    /// Past this Unix second, useless (for evicting when full).
    exp: u64,
    /// The `seq` of the key that signed it.
    key_seq: i64,
    /// The caller's details when signed: an account renamed under the same `sub` gets a new one.
    username: Box<str>,
    email: Box<str>,
    role: Role,
}

/// Signs and caches assertions.
#[derive(Debug)]
pub struct Assertions {
    keyring: Arc<Keyring>,
    issuer: String,
    ttl_secs: u64,
    cache: papaya::HashMap<CacheKey, Cached, foldhash::fast::RandomState>,
}

impl std::fmt::Debug for Cached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The assertion is a bearer credential for its service.
        f.write_str("Cached(..)")
    }
}

impl Assertions {
    /// Assertions signed by `keyring`'s current key, issued by `issuer`, valid for `ttl`.
    pub fn new(keyring: Arc<Keyring>, issuer: &str, ttl: Duration) -> Self {
        Assertions {
            keyring,
            issuer: issuer.to_string(),
            ttl_secs: ttl.as_secs(),
            cache: papaya::HashMap::builder()
                .hasher(foldhash::fast::RandomState::default())
                .build(),
        }
    }

    /// The `X-Gatehouse-Assertion` value for `identity` at `service`: cached while fresh and
    /// signed by the current key, else signed now. `None` only if signing fails.
    pub fn header_for(&self, identity: &Identity, service: &str) -> Option<HeaderValue> {
        let now_ms = crate::clock::unix_millis();
        let now = u64::try_from(now_ms / 1000).unwrap_or(0);
        let key_seq = self.keyring.signer_seq(now_ms);
        let claims = &identity.claims;
        let lookup = KeyRef {
            service,
            sub: &claims.sub,
        };
        let cache = self.cache.pin();
        if let Some(hit) = cache.get(&lookup) {
            if hit.refresh_at > now
                && hit.key_seq == key_seq
                && *hit.username == *claims.username
                && *hit.email == *claims.email
                && hit.role == claims.role
            {
                return Some(hit.header.clone());
            }
        }
        let signer = self.keyring.signer(now_ms);
        let exp = now + self.ttl_secs;
        let token = signer
            .sign(&AssertionClaims {
                iss: &self.issuer,
                aud: service,
                sub: &claims.sub,
                username: &claims.username,
                email: &claims.email,
                role: claims.role,
                iat: now,
                exp,
            })
            .inspect_err(|error| tracing::error!(%error, "cannot sign an assertion"))
            .ok()?;
        let header = HeaderValue::try_from(token).ok()?;
        if cache.len() >= CAPACITY {
            cache.retain(|_, cached| cached.exp > now);
            if cache.len() >= CAPACITY {
                return Some(header);
            }
        }
        let margin = REFRESH_MARGIN_SECS.min(self.ttl_secs / 5);
        cache.insert(
            CacheKey {
                service: service.into(),
                sub: claims.sub.as_str().into(),
            },
            Cached {
                header: header.clone(),
                refresh_at: exp - margin,
                exp,
                key_seq: signer.seq,
                username: claims.username.as_str().into(),
                email: claims.email.as_str().into(),
                role: claims.role,
            },
        );
        Some(header)
    }

    /// Assertions held.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}
