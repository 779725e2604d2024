//! Login back-off from failures counted in the account store, so replicas share it.
//!
//! Two counters per attempt (OWASP Authentication Cheat Sheet, "account lockout"):
//! - **account + client network**: after `network_failures` failures, that network waits 1 s,
//!   then 2 s, 4 s, … up to `max_backoff` between tries on that account. Other networks are
//!   untouched, so nobody can lock a victim out from elsewhere.
//! - **account**: after `account_failures` failures from anywhere, the account backs off the
//!   same way for every network that has failed on it recently. A network with no recent
//!   failure on the account still gets its try, so the owner's correct password from home is
//!   not held behind a distributed guesser; each such try that fails makes that network wait
//!   too.
//!
//! Every attempt is counted as a failure before the password is checked, by one conditional
//! upsert in the store that also applies the back-off, so concurrent guesses on any replica
//! can neither slip past the count nor make each other fail; a correct password then takes its
//! count back and clears its network's counter. Counters are forgotten `failure_memory` after
//! their last failure. Keys are SHA-256 digests of the email's key and the network, whether or
//! not such an account exists. With both limits at 0 the store is not involved at all.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::throttle::{round_up_secs, Throttled};
use crate::clock::unix_millis;
use crate::config::AuthLimits;
use crate::request::ClientNetwork;
use crate::store::{identifier, AccountStore, FailureCount, FailureRule, StoreError};

/// One counter's rule: `free` failures, then doubling waits up to `max`; forgotten after
/// `memory` without a failure. `free == 0` turns it off.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    free: u32,
    max: Duration,
    memory: Duration,
}

impl Backoff {
    /// The counter as it stands at `now`: a forgotten one counts as none.
    fn current(&self, count: Option<FailureCount>, now: i64) -> Option<FailureCount> {
        count.filter(|c| now.saturating_sub(c.last_failure_ms) < millis(self.memory))
    }

    /// When this counter lets the next attempt through, if that is after `now`.
    fn blocked_until(&self, count: Option<FailureCount>, now: i64) -> Option<i64> {
        let count = self.current(count, now)?;
        if self.free == 0 || count.failures < i64::from(self.free) {
            return None;
        }
        let doublings = (count.failures - i64::from(self.free)).min(40) as u32;
        let wait = millis(Duration::from_secs(1 << doublings).min(self.max));
        let until = count.last_failure_ms.saturating_add(wait);
        (until > now).then_some(until)
    }
}

impl Backoff {
    /// The store's form of this rule for a failure at `now`; `enforce: false` only counts.
    fn rule(&self, now: i64, enforce: bool) -> FailureRule {
        FailureRule {
            now_ms: now,
            forget_before_ms: now.saturating_sub(millis(self.memory)),
            enforce: enforce && self.free > 0,
            free: i64::from(self.free),
            max_wait_ms: millis(self.max),
        }
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The login back-off policy.
#[derive(Debug, Clone)]
pub struct Lockout {
    network: Backoff,
    account: Backoff,
}

/// An attempt that was let through and already counted as a failure: call
/// [`Attempt::succeeded`] if the password matched.
#[derive(Debug)]
#[must_use = "a successful attempt must give its count back"]
pub struct Attempt {
    /// `(network key, account key)`; `None` when the back-off is off.
    keys: Option<(String, String)>,
}

impl Lockout {
    /// The policy of `limits`.
    pub fn new(limits: &AuthLimits) -> Self {
        let backoff = |free| Backoff {
            free,
            max: limits.max_backoff,
            memory: limits.failure_memory,
        };
        Lockout {
            network: backoff(limits.network_failures),
            account: backoff(limits.account_failures),
        }
    }

    /// How long counters are remembered.
    pub fn memory(&self) -> Duration {
        self.network.memory
    }

    /// Lets a login attempt for `email` from `network` through, counting it as a failure, or
    /// refuses it with the wait.
    pub async fn begin(
        &self,
        store: &dyn AccountStore,
        email: &str,
        network: ClientNetwork,
    ) -> Result<Result<Attempt, Throttled>, StoreError> {
        if self.network.free == 0 && self.account.free == 0 {
            return Ok(Ok(Attempt { keys: None }));
        }
        let email_key = identifier::key(email);
        let account_key = digest("account", &email_key);
        let network_key = digest(&network.to_string(), &email_key);
        let now = unix_millis();
        // The network's counter first: whether it was clean decides whether the account's
        // back-off applies.
        let counted = store
            .count_failure(&network_key, &self.network.rule(now, true))
            .await?;
        let Some(network_failures) = counted else {
            return self.refusal(store, &network_key, &self.network, now).await;
        };
        let clean = network_failures == 1;
        let counted = store
            .count_failure(&account_key, &self.account.rule(now, !clean))
            .await?;
        if counted.is_none() {
            // Refused after all: this try was never made, so its network count goes back.
            store.take_back_failure(&network_key, false).await?;
            return self.refusal(store, &account_key, &self.account, now).await;
        }
        Ok(Ok(Attempt {
            keys: Some((network_key, account_key)),
        }))
    }

    /// The refusal for a key the store held back, with the wait its counter gives.
    async fn refusal(
        &self,
        store: &dyn AccountStore,
        key: &str,
        backoff: &Backoff,
        now: i64,
    ) -> Result<Result<Attempt, Throttled>, StoreError> {
        let count = store.failure_count(key).await?;
        let wait_ms = backoff
            .blocked_until(count, now)
            .map_or(1000, |until| until - now);
        Ok(Err(throttled(wait_ms)))
    }
}

impl Attempt {
    /// The password matched: the attempt was no failure, and its network starts afresh.
    pub async fn succeeded(self, store: &dyn AccountStore) -> Result<(), StoreError> {
        let Some((network_key, account_key)) = self.keys else {
            return Ok(());
        };
        store.take_back_failure(&network_key, true).await?;
        store.take_back_failure(&account_key, false).await
    }
}

fn throttled(wait_ms: i64) -> Throttled {
    Throttled {
        retry_after_secs: round_up_secs(Duration::from_millis(wait_ms.max(1) as u64)),
    }
}

/// The stored key: hex SHA-256 of the scope and the email's key, so no row holds what a
/// person typed into the email field.
fn digest(scope: &str, email_key: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(scope.as_bytes());
    hasher.update([0]);
    hasher.update(email_key.as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1000;

    fn backoff(free: u32) -> Backoff {
        Backoff {
            free,
            max: Duration::from_secs(900),
            memory: Duration::from_secs(86_400),
        }
    }

    fn count(failures: i64, last_failure_ms: i64) -> Option<FailureCount> {
        Some(FailureCount {
            failures,
            last_failure_ms,
        })
    }

    #[test]
    fn free_failures_are_not_held_back() {
        let rule = backoff(5);
        assert_eq!(rule.blocked_until(None, 0), None);
        assert_eq!(rule.blocked_until(count(4, 0), 0), None);
        assert_eq!(rule.blocked_until(count(5, 0), 0), Some(SEC));
    }

    #[test]
    fn waits_double_up_to_the_maximum() {
        let rule = backoff(5);
        let waits: Vec<i64> = (5..=17)
            .map(|n| rule.blocked_until(count(n, 0), 0).unwrap())
            .collect();
        assert_eq!(
            waits,
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900].map(|s| s * SEC)
        );
        assert_eq!(rule.blocked_until(count(i64::MAX, 0), 0), Some(900 * SEC));
    }

    #[test]
    fn the_wait_runs_from_the_last_failure() {
        let rule = backoff(1);
        assert_eq!(
            rule.blocked_until(count(3, 10 * SEC), 13 * SEC),
            Some(14 * SEC)
        );
        assert_eq!(rule.blocked_until(count(3, 10 * SEC), 14 * SEC), None);
    }

    #[test]
    fn counters_are_forgotten_after_the_memory() {
        let rule = backoff(1);
        let day = 86_400 * SEC;
        assert!(rule.current(count(50, 0), day - 1).is_some());
        assert_eq!(rule.current(count(50, 0), day), None);
        assert_eq!(rule.blocked_until(count(50, 0), day), None);
    }

    #[test]
    fn zero_free_failures_turns_a_counter_off() {
        assert_eq!(backoff(0).blocked_until(count(1000, 0), 0), None);
    }

    #[test]
    fn keys_do_not_hold_the_email_and_differ_by_scope() {
        let account = digest("account", "kate@example.com");
        let network = digest("192.0.2.1", "kate@example.com");
        assert_eq!(account.len(), 64);
        assert!(!account.contains("kate"));
        assert_ne!(account, network);
        assert_ne!(digest("192.0.2.2", "kate@example.com"), network);
    }
}
