//! API keys on the request path, in memory.
//!
//! - A key seen before is a lookup in `known` (by its SHA-256): no database call. Its expiry,
//!   its revocation (`Revocations`, fed by the revocation machinery) and its account's state
//!   (disabled) are checked in memory on every request.
//! - A key not yet seen costs one store lookup, made on the control runtime (never on a worker's
//!   own runtime). Lookups of keys this replica does not know are bounded twice: one global
//!   token bucket ([`LOOKUP_BURST`], refilled at [`LOOKUPS_PER_SECOND`]) for the whole process,
//!   and a negative cache that answers a key found unknown, revoked or expired with 401 for
//!   [`UNKNOWN_FOR_MS`] without asking again. Beyond the bucket a key is refused (401) unasked,
//!   so a flood of made-up keys costs the store at most that rate. The price: while such a
//!   flood lasts, a genuine key this replica has not seen yet may be refused too; keys it
//!   already knows keep working.
//! - Concurrent first requests with one key share one lookup: the first takes the bucket token
//!   and asks, the others wait for its answer (a CI job that starts 50 requests at once with a
//!   new key costs one lookup, and none of them is refused by the bucket).
//! - When a key is used its `last_used` time is set in memory; [`flush`], on the control
//!   runtime, writes the times that changed every [`FLUSH_EVERY`] in one statement.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::watch;

use crate::clock::unix_millis;
use crate::metrics::{ApiKeyLookup, Metrics};
use crate::store::{AccountStore, KeyOwner};

use super::api_keys;
use super::cache::Identity;
use super::jwt::{Claims, TokenError};
use super::revocation::Revocations;
use super::AuthError;

/// Store lookups of keys not in memory allowed at once, process-wide.
pub const LOOKUP_BURST: u32 = 20;

/// Refill rate of that bucket.
pub const LOOKUPS_PER_SECOND: u32 = 10;

/// How long a key found unknown, revoked or expired is refused without asking the store.
pub const UNKNOWN_FOR_MS: i64 = 10_000;

/// Longest wait for a lookup before the request is answered 503.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// How often last-used times are written and the cache swept.
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);

/// Most keys held in either map.
const CAPACITY: usize = 10_000;

/// Most last-used times written per flush (one statement); the rest wait for the next.
const TOUCH_PER_FLUSH: usize = 500;

/// `exp` of a key that never expires (9999-12-31): claims need one, and it must survive
/// conversion to any integer type a reader of the claims may use.
const NEVER: u64 = 253_402_300_799;

/// A key this replica has seen, and whom it stands for.
#[derive(Debug)]
struct Known {
    id: Box<str>,
    expires_at_ms: Option<i64>,
    identity: Arc<Identity>,
    /// Last use here, Unix ms.
    last_used_ms: AtomicI64,
    /// The last use already written.
    flushed_ms: AtomicI64,
}

type Digest = [u8; 32];

/// What the request path does next with an API key.
#[derive(Debug)]
pub(super) enum Step<'c> {
    /// Known and valid.
    Known(Arc<Identity>),
    /// Not in memory: ask the store (a bucket token was taken), then answer through
    /// [`ApiKeyCache::found`] or [`ApiKeyCache::failed`] while holding the guard.
    LookUp(Lookup<'c>),
    /// Another request is asking the store about this key: wait for it (its guard is
    /// dropped), then take the next step.
    Wait(watch::Receiver<()>),
}

/// One lookup in flight. Dropping it (answered, failed, or the request abandoned) releases the
/// requests waiting on the same key.
#[derive(Debug)]
pub(super) struct Lookup<'c> {
    cache: &'c ApiKeyCache,
    /// The key's SHA-256.
    pub(super) digest: Digest,
    _done: watch::Sender<()>,
}

impl Drop for Lookup<'_> {
    fn drop(&mut self) {
        // Removed before `_done` drops and wakes the waiters, so they find the answer.
        self.cache.pending.pin().remove(&self.digest);
    }
}

/// The keys this replica knows, the ones it knows to refuse, and the lookup bucket.
#[derive(Debug)]
pub struct ApiKeyCache {
    known: papaya::HashMap<Digest, Arc<Known>, foldhash::fast::RandomState>,
    /// Digest → refused until (Unix ms).
    unknown: papaya::HashMap<Digest, i64, foldhash::fast::RandomState>,
    /// Keys being looked up now (at most the bucket's worth per lookup time).
    pending: papaya::HashMap<Digest, watch::Receiver<()>, foldhash::fast::RandomState>,
    lookups: DefaultDirectRateLimiter,
    issuer: String,
    metrics: Metrics,
}

impl ApiKeyCache {
    /// An empty cache whose identities carry `issuer` (as tokens would).
    pub fn new(issuer: &str, metrics: Metrics) -> Self {
        let quota = Quota::per_second(LOOKUPS_PER_SECOND.try_into().expect("non-zero"))
            .allow_burst(LOOKUP_BURST.try_into().expect("non-zero"));
        ApiKeyCache {
            known: papaya::HashMap::builder()
                .hasher(foldhash::fast::RandomState::default())
                .build(),
            unknown: papaya::HashMap::builder()
                .hasher(foldhash::fast::RandomState::default())
                .build(),
            pending: papaya::HashMap::builder()
                .hasher(foldhash::fast::RandomState::default())
                .build(),
            lookups: RateLimiter::direct(quota),
            issuer: issuer.to_string(),
            metrics,
        }
    }

    /// The identity of a known key, or leave to look it up; refusals that need no store.
    pub(super) fn step(
        &self,
        token: &str,
        now_ms: i64,
        revocations: &Revocations,
    ) -> Result<Step<'_>, AuthError> {
        if !api_keys::well_formed(token) {
            return Err(TokenError::Invalid.into());
        }
        let digest = api_keys::digest(token);
        if let Some(known) = self.known.pin().get(&digest) {
            return self.use_known(known, now_ms, revocations).map(Step::Known);
        }
        if self
            .unknown
            .pin()
            .get(&digest)
            .is_some_and(|until| now_ms < *until)
        {
            return Err(TokenError::Invalid.into());
        }
        let pending = self.pending.pin();
        if let Some(answer) = pending.get(&digest) {
            return Ok(Step::Wait(answer.clone()));
        }
        if self.lookups.check().is_err() {
            self.metrics.api_key_lookup(ApiKeyLookup::Throttled);
            return Err(TokenError::Invalid.into());
        }
        let (done, answer) = watch::channel(());
        match pending.try_insert(digest, answer) {
            Ok(_) => Ok(Step::LookUp(Lookup {
                cache: self,
                digest,
                _done: done,
            })),
            // Another request started the same lookup a moment ago.
            Err(occupied) => Ok(Step::Wait(occupied.current.clone())),
        }
    }

    fn use_known(
        &self,
        known: &Known,
        now_ms: i64,
        revocations: &Revocations,
    ) -> Result<Arc<Identity>, AuthError> {
        if known.expires_at_ms.is_some_and(|end| now_ms >= end) {
            return Err(TokenError::Expired.into());
        }
        if revocations.api_key_revoked(&known.id) {
            return Err(TokenError::Revoked.into());
        }
        revocations.check(&known.identity.claims)?;
        known.last_used_ms.fetch_max(now_ms, Ordering::Relaxed);
        Ok(Arc::clone(&known.identity))
    }

    /// Takes the store's answer for `digest`: a live key of an enabled account is remembered
    /// and used; anything else is remembered as refused for [`UNKNOWN_FOR_MS`].
    pub(super) fn found(
        &self,
        digest: Digest,
        owner: Option<KeyOwner>,
        now_ms: i64,
        revocations: &Revocations,
    ) -> Result<Arc<Identity>, AuthError> {
        let Some(owner) = owner else {
            self.metrics.api_key_lookup(ApiKeyLookup::Unknown);
            self.refuse_for_a_while(digest, now_ms);
            return Err(TokenError::Invalid.into());
        };
        let refusal = if !owner.key.is_live(now_ms) {
            Some(match owner.key.revoked_at_ms {
                Some(_) => TokenError::Revoked,
                None => TokenError::Expired,
            })
        } else if owner.account.disabled {
            Some(TokenError::Revoked)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            self.metrics.api_key_lookup(ApiKeyLookup::Refused);
            self.refuse_for_a_while(digest, now_ms);
            return Err(refusal.into());
        }
        self.metrics.api_key_lookup(ApiKeyLookup::Found);
        let known = Arc::new(self.known_of(owner, now_ms)?);
        // Checked after the store answered: a revocation that arrived meanwhile wins.
        let identity = self.use_known(&known, now_ms, revocations)?;
        self.remember(digest, known, now_ms);
        Ok(identity)
    }

    /// A store failure: nothing is remembered, so the next request asks again.
    pub(super) fn failed(&self) {
        self.metrics.api_key_lookup(ApiKeyLookup::Error);
    }

    fn known_of(&self, owner: KeyOwner, now_ms: i64) -> Result<Known, TokenError> {
        let KeyOwner { key, account } = owner;
        let secs = |ms: i64| u64::try_from(ms.div_euclid(1000)).unwrap_or(0);
        let claims = Claims {
            sub: account.id,
            username: account.username,
            email: account.email,
            role: account.role,
            iss: self.issuer.clone(),
            iat: secs(key.created_at_ms),
            nbf: 0,
            exp: key.expires_at_ms.map_or(NEVER, secs),
            jti: key.id.clone(),
            // Tokens older than the account's generation are revoked by `POST /logout/all`;
            // a key is not a session, so it stays valid until revoked, expired or disabled.
            generation: i64::MAX,
            family: None,
        };
        let identity = Identity::new(claims).ok_or(TokenError::Invalid)?;
        Ok(Known {
            id: key.id.into(),
            expires_at_ms: key.expires_at_ms,
            identity: Arc::new(identity),
            last_used_ms: AtomicI64::new(now_ms),
            flushed_ms: AtomicI64::new(key.last_used_at_ms.unwrap_or(0)),
        })
    }

    /// Keeps a verified key. When full, dead entries go first; if it is still full the key is
    /// not kept (it keeps working, at the cost of a bucketed lookup per request).
    fn remember(&self, digest: Digest, known: Arc<Known>, now_ms: i64) {
        let map = self.known.pin();
        if map.len() >= CAPACITY {
            map.retain(|_, k| k.expires_at_ms.is_none_or(|end| now_ms < end));
            if map.len() >= CAPACITY {
                return;
            }
        }
        map.insert(digest, known);
        self.unknown.pin().remove(&digest);
    }

    fn refuse_for_a_while(&self, digest: Digest, now_ms: i64) {
        let map = self.unknown.pin();
        if map.len() >= CAPACITY {
            map.retain(|_, until| now_ms < *until);
            if map.len() >= CAPACITY {
                return;
            }
        }
        map.insert(digest, now_ms + UNKNOWN_FOR_MS);
    }

    /// Drops expired and revoked keys, and refusals that ran out.
    pub fn sweep(&self, now_ms: i64, revocations: &Revocations) {
        self.known.pin().retain(|_, known| {
            known.expires_at_ms.is_none_or(|end| now_ms < end)
                && !revocations.api_key_revoked(&known.id)
        });
        self.unknown.pin().retain(|_, until| now_ms < *until);
    }

    /// Keys used since their last flush, with their last use: at most [`TOUCH_PER_FLUSH`],
    /// those written longest ago first, so that with more keys in use than one statement takes
    /// none waits for ever.
    pub fn used_since_flush(&self) -> Vec<(String, i64)> {
        let map = self.known.pin();
        let mut used: Vec<_> = map
            .values()
            .filter_map(|known| {
                let used = known.last_used_ms.load(Ordering::Relaxed);
                let flushed = known.flushed_ms.load(Ordering::Relaxed);
                (used > flushed).then(|| (flushed, known.id.to_string(), used))
            })
            .collect();
        used.sort_unstable_by_key(|(flushed, ..)| *flushed);
        used.into_iter()
            .take(TOUCH_PER_FLUSH)
            .map(|(_, id, time)| (id, time))
            .collect()
    }

    /// Notes that these times were written.
    pub fn flushed(&self, written: &[(String, i64)]) {
        let written: std::collections::HashMap<&str, i64> = written
            .iter()
            .map(|(id, time)| (id.as_str(), *time))
            .collect();
        for known in self.known.pin().values() {
            if let Some(time) = written.get(&*known.id) {
                known.flushed_ms.fetch_max(*time, Ordering::Relaxed);
            }
        }
    }

    /// Keys held in memory.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }
}

/// Every [`FLUSH_EVERY`]: sweeps the cache and writes the last-used times that changed, in one
/// statement, until the process ends. A failed write is retried at the next flush (the times
/// stay marked unwritten).
pub async fn flush(
    cache: Arc<ApiKeyCache>,
    store: Arc<dyn AccountStore>,
    revocations: Arc<Revocations>,
) {
    let mut every = tokio::time::interval(FLUSH_EVERY);
    loop {
        every.tick().await;
        cache.sweep(unix_millis(), &revocations);
        let used = cache.used_since_flush();
        if used.is_empty() {
            continue;
        }
        match store.touch_api_keys(&used).await {
            Ok(()) => cache.flushed(&used),
            Err(error) => tracing::warn!(%error, "could not record API key use"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Account, ApiKey, Revocation, Role};

    fn owner(id: &str, expires_at_ms: Option<i64>) -> KeyOwner {
        KeyOwner {
            key: ApiKey {
                id: id.into(),
                account_id: "acc".into(),
                name: "ci".into(),
                created_at_ms: 1_000,
                expires_at_ms,
                revoked_at_ms: None,
                last_used_at_ms: None,
            },
            account: Account {
                id: "acc".into(),
                username: "alice".into(),
                email: "alice@example.com".into(),
                role: Role::Admin,
                created_at_ms: 0,
                disabled: false,
            },
        }
    }

    fn cache() -> ApiKeyCache {
        ApiKeyCache::new("gatehouse", Metrics::new())
    }

    fn looked_up(cache: &ApiKeyCache, key: &str, state: &Revocations) -> Digest {
        match cache.step(key, 10_000, state) {
            Ok(Step::LookUp(lookup)) => lookup.digest,
            other => panic!("expected a lookup, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn concurrent_requests_with_one_key_share_one_lookup() {
        let (cache, state) = (cache(), Revocations::new());
        let key = api_keys::generate().key;
        let Ok(Step::LookUp(lookup)) = cache.step(&key, 10_000, &state) else {
            panic!("the first request looks up");
        };
        let Ok(Step::Wait(mut answer)) = cache.step(&key, 10_000, &state) else {
            panic!("the second waits");
        };
        cache
            .found(lookup.digest, Some(owner("k1", None)), 10_000, &state)
            .unwrap();
        drop(lookup);
        let _ = answer.changed().await;
        assert!(matches!(
            cache.step(&key, 10_000, &state),
            Ok(Step::Known(_))
        ));
        // An abandoned lookup releases its waiters too, and the next request asks again.
        let other = api_keys::generate().key;
        let Ok(Step::LookUp(abandoned)) = cache.step(&other, 10_000, &state) else {
            panic!("a lookup");
        };
        let Ok(Step::Wait(mut answer)) = cache.step(&other, 10_000, &state) else {
            panic!("a wait");
        };
        drop(abandoned);
        assert!(answer.changed().await.is_err(), "woken without an answer");
        assert!(matches!(
            cache.step(&other, 10_000, &state),
            Ok(Step::LookUp(_))
        ));
    }

    #[test]
    fn a_found_key_is_known_from_then_on_as_its_account() {
        let (cache, state) = (cache(), Revocations::new());
        let key = api_keys::generate().key;
        let digest = looked_up(&cache, &key, &state);
        let identity = cache
            .found(digest, Some(owner("k1", None)), 10_000, &state)
            .unwrap();
        assert_eq!(identity.caller.user, "alice");
        assert_eq!(identity.claims.role, Role::Admin);
        match cache.step(&key, 11_000, &state) {
            Ok(Step::Known(again)) => assert!(Arc::ptr_eq(&again, &identity)),
            other => panic!("expected the cached key, got {other:?}"),
        }
        assert_eq!(cache.used_since_flush(), vec![("k1".to_string(), 11_000)]);
        cache.flushed(&cache.used_since_flush());
        assert!(cache.used_since_flush().is_empty());
    }

    #[test]
    fn a_known_key_is_refused_once_expired_revoked_or_its_account_disabled() {
        let (cache, state) = (cache(), Revocations::new());
        let key = api_keys::generate().key;
        let digest = looked_up(&cache, &key, &state);
        cache
            .found(digest, Some(owner("k1", Some(20_000))), 10_000, &state)
            .unwrap();
        let refused = |now| cache.step(&key, now, &state).err();
        assert_eq!(refused(20_000), Some(TokenError::Expired.into()));

        let (cache, key) = (self::cache(), api_keys::generate().key);
        let digest = looked_up(&cache, &key, &state);
        cache
            .found(digest, Some(owner("k2", None)), 10_000, &state)
            .unwrap();
        state.apply(&Revocation::Account {
            id: "acc".into(),
            generation: 5,
            disabled: false,
        });
        assert!(
            cache.step(&key, 10_000, &state).is_ok(),
            "logout/all keeps keys"
        );
        state.apply(&Revocation::ApiKey {
            id: "k2".into(),
            until: i64::MAX,
        });
        assert_eq!(
            cache.step(&key, 10_000, &state).err(),
            Some(TokenError::Revoked.into())
        );
        cache.sweep(10_000, &state);
        assert!(cache.is_empty(), "the sweep drops revoked keys");

        let (cache, key, state) = (self::cache(), api_keys::generate().key, Revocations::new());
        let digest = looked_up(&cache, &key, &state);
        cache
            .found(digest, Some(owner("k3", None)), 10_000, &state)
            .unwrap();
        state.apply(&Revocation::Account {
            id: "acc".into(),
            generation: 1,
            disabled: true,
        });
        assert_eq!(
            cache.step(&key, 10_000, &state).err(),
            Some(TokenError::Revoked.into())
        );
    }

    #[test]
    fn more_keys_in_use_than_one_flush_takes_are_written_over_the_next_flushes() {
        let (cache, state) = (cache(), Revocations::new());
        for n in 0..TOUCH_PER_FLUSH + 100 {
            let digest = api_keys::digest(&format!("key {n}"));
            let owner = owner(&format!("k{n}"), None);
            cache.found(digest, Some(owner), 10_000, &state).unwrap();
        }
        let first = cache.used_since_flush();
        assert_eq!(first.len(), TOUCH_PER_FLUSH);
        cache.flushed(&first);
        let second = cache.used_since_flush();
        assert_eq!(second.len(), 100);
        assert!(second
            .iter()
            .all(|(id, _)| !first.iter().any(|(f, _)| f == id)));
    }

    #[test]
    fn a_revocation_that_arrives_during_the_lookup_wins() {
        let (cache, state) = (cache(), Revocations::new());
        let key = api_keys::generate().key;
        let digest = looked_up(&cache, &key, &state);
        state.apply(&Revocation::ApiKey {
            id: "k1".into(),
            until: i64::MAX,
        });
        let answer = cache.found(digest, Some(owner("k1", None)), 10_000, &state);
        assert_eq!(answer.err(), Some(TokenError::Revoked.into()));
    }

    #[test]
    fn unknown_keys_are_refused_unasked_for_a_while_and_lookups_are_bucketed() {
        let (cache, state) = (cache(), Revocations::new());
        let key = api_keys::generate().key;
        let digest = looked_up(&cache, &key, &state);
        assert!(cache.found(digest, None, 10_000, &state).is_err());
        for now in [10_000, 10_000 + UNKNOWN_FOR_MS - 1] {
            assert_eq!(
                cache.step(&key, now, &state).err(),
                Some(TokenError::Invalid.into()),
                "negative cache"
            );
        }
        // One lookup above, and the bucket holds LOOKUP_BURST in all.
        let admitted = (0..LOOKUP_BURST * 3)
            .filter(|_| {
                matches!(
                    cache.step(&api_keys::generate().key, 0, &state),
                    Ok(Step::LookUp(_))
                )
            })
            .count();
        assert!(admitted <= LOOKUP_BURST as usize, "{admitted} lookups");
        assert!(admitted >= LOOKUP_BURST as usize - 2, "{admitted} lookups");
        assert!(matches!(
            cache.step("gh_short", 0, &state),
            Err(AuthError::Token(TokenError::Invalid))
        ));
    }
}
