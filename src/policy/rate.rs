//! A service's request rate limit: one token bucket (GCRA, governor) per client IP or account,
//! in a concurrent map (no lock on the request path beyond its shard).
//!
//! Buckets that have refilled are dropped every [`SWEEP_EVERY`] by a task started with the
//! first request, so memory follows recent clients only. The task holds the buckets weakly and
//! ends once no snapshot holds them (a reload that keeps the limit's settings carries the buckets
//! over; one that changes them starts fresh).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::{RateLimitKey, RateLimitSettings};
use crate::error::ProxyError;

/// How often buckets that have refilled are forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Who a bucket belongs to. Account ids are UUIDs, kept as numbers so a lookup allocates
/// nothing; any other `sub` (not issued by Gatehouse) is kept as text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum RateKey {
    Ip(IpAddr),
    Account(u128),
    OtherAccount(Box<str>),
}

impl RateKey {
    /// The client's address (an IPv4-mapped IPv6 address counts as the IPv4 one).
    pub(crate) fn ip(ip: IpAddr) -> Self {
        RateKey::Ip(ip.to_canonical())
    }

    /// The account with id `sub`.
    pub(crate) fn account(sub: &str) -> Self {
        match uuid::Uuid::try_parse(sub) {
            Ok(id) => RateKey::Account(id.as_u128()),
            Err(_) => RateKey::OtherAccount(sub.into()),
        }
    }
}

type Buckets = DefaultKeyedRateLimiter<RateKey>;

/// The buckets of one service.
#[derive(Debug)]
pub(crate) struct RateLimit {
    settings: RateLimitSettings,
    buckets: Arc<Buckets>,
    sweeping: AtomicBool,
    sweep_every: Duration,
}

impl RateLimit {
    /// Buckets of `burst` requests, refilled at `requests_per_second`.
    pub(crate) fn new(settings: &RateLimitSettings) -> Self {
        let rate = NonZeroU32::new(settings.requests_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(settings.burst).unwrap_or(rate);
        RateLimit {
            settings: settings.clone(),
            buckets: Arc::new(RateLimiter::keyed(
                Quota::per_second(rate).allow_burst(burst),
            )),
            sweeping: AtomicBool::new(false),
            sweep_every: SWEEP_EVERY,
        }
    }

    /// Takes over `previous`'s buckets (and its sweeper) when the settings are the same, so a
    /// reload does not hand every client a fresh burst.
    pub(crate) fn carry_over(&mut self, previous: &RateLimit) {
        if self.settings == previous.settings {
            self.buckets = Arc::clone(&previous.buckets);
            let sweeping = previous.sweeping.load(Ordering::Relaxed);
            self.sweeping = AtomicBool::new(sweeping);
        }
    }

    /// What the buckets are keyed by.
    pub(crate) fn key(&self) -> RateLimitKey {
        self.settings.key
    }

    /// Takes one request from `key`'s bucket; `RateLimited` (429 with `Retry-After`) when empty.
    pub(crate) fn check(&self, key: &RateKey) -> Result<(), ProxyError> {
        self.start_sweeping();
        self.buckets.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.buckets.clock().now());
            ProxyError::RateLimited(round_up_secs(wait))
        })
    }

    /// Spawns the sweeper on the first request's runtime (a relaxed load on later requests).
    fn start_sweeping(&self) {
        if self.sweeping.load(Ordering::Relaxed) || self.sweeping.swap(true, Ordering::Relaxed) {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(sweep(Arc::downgrade(&self.buckets), self.sweep_every));
        }
    }
}

/// Forgets refilled buckets every `every` while the buckets live.
async fn sweep(buckets: Weak<Buckets>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(buckets) = buckets.upgrade() else {
            return;
        };
        buckets.retain_recent();
        buckets.shrink_to_fit();
    }
}

/// `Retry-After` is whole seconds; never 0, which would invite an immediate retry.
fn round_up_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(rate: u32, burst: u32, key: RateLimitKey) -> RateLimit {
        RateLimit::new(&RateLimitSettings {
            requests_per_second: rate,
            burst,
            key,
        })
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn the_burst_passes_then_429_with_a_retry_after() {
        let limit = limit(1, 3, RateLimitKey::Ip);
        for _ in 0..3 {
            assert!(limit.check(&RateKey::ip(IP)).is_ok());
        }
        match limit.check(&RateKey::ip(IP)) {
            Err(ProxyError::RateLimited(secs)) => assert_eq!(secs, 1),
            other => panic!("expected 429, got {other:?}"),
        }
        assert!(limit
            .check(&RateKey::ip("10.0.0.2".parse().unwrap()))
            .is_ok());
    }

    #[test]
    fn account_ids_are_keyed_without_letter_case_and_others_as_text() {
        let id = "0190a5c2-7d3e-7b6a-9c1d-2e3f4a5b6c7d";
        assert_eq!(RateKey::account(id), RateKey::account(&id.to_uppercase()));
        assert_eq!(RateKey::account("a"), RateKey::OtherAccount("a".into()));
    }

    #[test]
    fn mapped_ipv6_counts_as_its_ipv4_address() {
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(RateKey::ip(mapped), RateKey::ip(IP));
    }

    #[tokio::test]
    async fn the_sweeper_forgets_refilled_buckets() {
        let mut limit = limit(1000, 1, RateLimitKey::Ip);
        limit.sweep_every = Duration::from_millis(20);
        for last in 0..50u8 {
            assert!(limit.check(&RateKey::ip([10, 0, 0, last].into())).is_ok());
        }
        assert_eq!(limit.buckets.len(), 50);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(limit.buckets.len(), 0);
    }

    #[test]
    fn unchanged_settings_keep_their_buckets_across_a_reload() {
        let old = limit(1, 1, RateLimitKey::Ip);
        assert!(old.check(&RateKey::ip(IP)).is_ok());
        let mut same = limit(1, 1, RateLimitKey::Ip);
        same.carry_over(&old);
        assert!(same.check(&RateKey::ip(IP)).is_err());
        let mut changed = limit(1, 2, RateLimitKey::Ip);
        changed.carry_over(&old);
        assert!(changed.check(&RateKey::ip(IP)).is_ok());
    }

    #[tokio::test]
    async fn the_sweeper_ends_with_its_buckets() {
        let ended = tokio::time::timeout(
            Duration::from_secs(1),
            sweep(Weak::new(), Duration::from_millis(1)),
        );
        assert!(ended.await.is_ok());
    }

    #[test]
    fn waits_round_up_to_whole_seconds() {
        assert_eq!(round_up_secs(Duration::from_millis(1)), 1);
        assert_eq!(round_up_secs(Duration::from_millis(5500)), 6);
        assert_eq!(round_up_secs(Duration::ZERO), 1);
    }
}
