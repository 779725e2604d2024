//! Tokens verification refused, remembered for a while so the same bad token sent again costs a
//! hash lookup instead of a signature check (an Ed25519 verification is about 40 µs of a
//! worker's core; a lookup here well under a microsecond).
//!
//! - Only a token's keyed 128-bit hash is kept, never the token: this memory holds nothing an
//!   attacker could replay, and nothing secret reaches a log or a dump.
//! - Only lasting refusals are remembered ([`Refusal::lasting`]): malformed, wrongly signed,
//!   wrong algorithm or issuer, expired. A token whose `kid` is not published yet is not, or a
//!   key rotated in elsewhere would be refused here after this replica has learnt it.
//! - Entries live [`REFUSED_FOR_SECS`]. The keys cannot change without a restart, so a lasting
//!   refusal would hold for ever; the TTL bounds how long any mistake in that judgement lasts.
//! - Bounded: two generations of at most [`GENERATION`] hashes. New ones go into the current
//!   generation; when it is full it becomes the previous one and the old previous one is
//!   dropped whole. Eviction is O(1) amortised, however fast distinct tokens arrive, instead of
//!   a sweep of the map per insert, which under a flood would cost more than the verification.
//! - One cache per process, shared by every worker: a token refused on one worker's thread is
//!   known to all, and the memory bound is one bound. The maps are lock-free (papaya), so
//!   workers do not contend on the lookups a flood of repeats makes.
//!
//! Revoked tokens are not here: they verify, sit in the verified-token cache, and are refused
//! by the revocation check on every request, as before.

use std::hash::BuildHasher;
use std::sync::Arc;

use arc_swap::ArcSwap;
use foldhash::fast::RandomState;

use super::jwt::{Refusal, TokenError};

/// How long a refused token is answered from memory (seconds).
pub const REFUSED_FOR_SECS: u64 = 60;

/// Most hashes in one generation; at most twice this are held (about 100 bytes each).
pub const GENERATION: usize = 16_384;

/// A token's keyed hash: 128 bits, so that two tokens colliding is not a concern (a collision
/// could only refuse a valid token's first verification, and the seeds are random per process).
pub type TokenHash = u128;

#[derive(Debug, Clone, Copy)]
struct Refused {
    error: TokenError,
    /// Unix seconds after which the refusal is forgotten.
    until: u64,
}

type Map = papaya::HashMap<TokenHash, Refused, RandomState>;

#[derive(Debug)]
struct Generations {
    current: Arc<Map>,
    previous: Arc<Map>,
}

/// The negative cache.
#[derive(Debug)]
pub struct RefusedTokens {
    generations: ArcSwap<Generations>,
    /// Two independent seeds make the 128 bits of [`TokenHash`].
    seeds: (RandomState, RandomState),
}

impl Default for RefusedTokens {
    fn default() -> Self {
        RefusedTokens {
            generations: ArcSwap::from_pointee(Generations {
                current: Arc::new(empty()),
                previous: Arc::new(empty()),
            }),
            seeds: (RandomState::default(), RandomState::default()),
        }
    }
}

fn empty() -> Map {
    papaya::HashMap::builder()
        .hasher(RandomState::default())
        .build()
}

impl RefusedTokens {
    /// The keyed hash `token` is remembered by.
    pub fn hash(&self, token: &str) -> TokenHash {
        let high = self.seeds.0.hash_one(token);
        let low = self.seeds.1.hash_one(token);
        (u128::from(high) << 64) | u128::from(low)
    }

    /// Why the token with this hash was refused, if it was within the last
    /// [`REFUSED_FOR_SECS`] at `now` (Unix seconds).
    pub fn get(&self, hash: TokenHash, now: u64) -> Option<TokenError> {
        let generations = self.generations.load();
        let found = |map: &Map| map.pin().get(&hash).copied();
        found(&generations.current)
            .or_else(|| found(&generations.previous))
            .filter(|refused| refused.until > now)
            .map(|refused| refused.error)
    }

    /// Remembers a refusal at `now` if it is lasting; a passing one is not remembered.
    pub fn remember(&self, hash: TokenHash, refusal: Refusal, now: u64) {
        if !refusal.lasting {
            return;
        }
        let refused = Refused {
            error: refusal.error,
            until: now.saturating_add(REFUSED_FOR_SECS),
        };
        let generations = self.generations.load();
        if generations.current.len() >= GENERATION {
            self.next_generation();
        }
        self.generations.load().current.pin().insert(hash, refused);
    }

    /// Makes the full current generation the previous one, dropping the old previous one.
    /// Concurrent callers may both see it full; only the first swap happens (the others find a
    /// fresh generation and leave it).
    fn next_generation(&self) {
        self.generations.rcu(|generations| {
            if generations.current.len() < GENERATION {
                return Arc::clone(generations);
            }
            Arc::new(Generations {
                current: Arc::new(empty()),
                previous: Arc::clone(&generations.current),
            })
        });
    }

    /// Hashes held, both generations (expired ones included until their generation goes).
    pub fn len(&self) -> usize {
        let generations = self.generations.load();
        generations.current.len() + generations.previous.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lasting(error: TokenError) -> Refusal {
        Refusal {
            error,
            lasting: true,
        }
    }

    #[test]
    fn a_lasting_refusal_is_answered_until_its_ttl_ends() {
        let refused = RefusedTokens::default();
        let hash = refused.hash("forged");
        assert_eq!(refused.get(hash, 1_000), None);
        refused.remember(hash, lasting(TokenError::Expired), 1_000);
        assert_eq!(refused.get(hash, 1_000), Some(TokenError::Expired));
        assert_eq!(
            refused.get(hash, 1_000 + REFUSED_FOR_SECS - 1),
            Some(TokenError::Expired)
        );
        assert_eq!(refused.get(hash, 1_000 + REFUSED_FOR_SECS), None);
        assert_eq!(refused.get(refused.hash("other"), 1_000), None);
    }

    #[test]
    fn a_passing_refusal_is_not_remembered() {
        let refused = RefusedTokens::default();
        let hash = refused.hash("signed by a key not published yet");
        let unknown_kid = Refusal {
            error: TokenError::Invalid,
            lasting: false,
        };
        refused.remember(hash, unknown_kid, 0);
        assert_eq!(refused.get(hash, 0), None);
        assert!(refused.is_empty());
    }

    #[test]
    fn hashes_are_keyed_per_cache_and_differ_per_token() {
        let (a, b) = (RefusedTokens::default(), RefusedTokens::default());
        assert_eq!(a.hash("t"), a.hash("t"));
        assert_ne!(a.hash("t"), a.hash("u"));
        assert_ne!(a.hash("t"), b.hash("t"), "random seeds per process");
    }

    #[test]
    fn a_flood_of_distinct_tokens_stays_within_two_generations() {
        let refused = RefusedTokens::default();
        let first = refused.hash("token 0");
        for n in 0..(3 * GENERATION + 7) {
            let hash = refused.hash(&format!("token {n}"));
            refused.remember(hash, lasting(TokenError::Invalid), 0);
            assert!(refused.len() <= 2 * GENERATION, "{} held", refused.len());
        }
        // The newest are answered; the oldest generation went whole.
        let last = refused.hash(&format!("token {}", 3 * GENERATION + 6));
        assert_eq!(refused.get(last, 0), Some(TokenError::Invalid));
        assert_eq!(refused.get(first, 0), None, "evicted");
    }

    #[test]
    fn the_previous_generation_is_still_answered() {
        let refused = RefusedTokens::default();
        let early = refused.hash("early");
        refused.remember(early, lasting(TokenError::Invalid), 0);
        for n in 0..GENERATION {
            let hash = refused.hash(&n.to_string());
            refused.remember(hash, lasting(TokenError::Invalid), 0);
        }
        // `early` was in the generation that just became the previous one.
        assert_eq!(refused.get(early, 0), Some(TokenError::Invalid));
    }
}
