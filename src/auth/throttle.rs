//! Login and registration rates: token buckets (GCRA) per client network (an IPv4 address or
//! an IPv6 /64), in this process. They bound how fast one network may make attempts of any
//! kind, and so the argon2 work it can cause here. The network's bucket of token signature
//! verifications (`verifications`) is kept here too, swept with the others. What stops guessing at one account is the
//! failure back-off in `lockout`, which the account store shares between replicas; an
//! account-wide bucket here would let anyone lock anyone out.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::verifications::VerificationBuckets;
use crate::config::AuthLimits;
use crate::request::ClientNetwork;

/// A refused attempt: retry after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    /// Time until the bucket allows another attempt, rounded up to whole seconds (≥ 1).
    pub retry_after_secs: u64,
}

/// The login, registration and verification buckets.
#[derive(Debug)]
pub struct Throttle {
    login_by_network: Option<DefaultKeyedRateLimiter<ClientNetwork>>,
    register_by_network: Option<DefaultKeyedRateLimiter<ClientNetwork>>,
    verifications: Option<VerificationBuckets>,
    clock: DefaultClock,
}

impl Throttle {
    /// Buckets of `limits` attempts per minute (a burst of that many, refilled evenly), and of
    /// verifications per second (with their own burst); 0 = off.
    pub fn new(limits: &AuthLimits) -> Self {
        let verifications = limits.token_verifications_per_second.0;
        Throttle {
            login_by_network: limiter(limits.login_per_minute),
            register_by_network: limiter(limits.register_per_minute),
            verifications: (verifications > 0).then(|| {
                VerificationBuckets::new(verifications, limits.token_verification_burst.0)
            }),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one login attempt from the client network's bucket.
    pub fn login(&self, network: ClientNetwork) -> Result<(), Throttled> {
        self.take(&self.login_by_network, &network)
    }

    /// Takes one registration attempt from the client network's bucket.
    pub fn register(&self, network: ClientNetwork) -> Result<(), Throttled> {
        self.take(&self.register_by_network, &network)
    }

    /// Takes one signature verification of a token the network has not presented before (not
    /// verified, nor refused, recently) from its bucket.
    pub fn verification(&self, network: ClientNetwork) -> Result<(), Throttled> {
        match &self.verifications {
            Some(buckets) => buckets.take(network),
            None => Ok(()),
        }
    }

    /// Drops buckets that are full again, so memory follows recent clients only.
    pub fn forget_idle(&self) {
        if let Some(buckets) = &self.verifications {
            buckets.forget_idle();
        }
        for limiter in [&self.login_by_network, &self.register_by_network]
            .into_iter()
            .flatten()
        {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    fn take<K>(
        &self,
        limiter: &Option<DefaultKeyedRateLimiter<K>>,
        key: &K,
    ) -> Result<(), Throttled>
    where
        K: std::hash::Hash + Eq + Clone,
    {
        let Some(limiter) = limiter else {
            return Ok(());
        };
        limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            Throttled {
                retry_after_secs: round_up_secs(wait),
            }
        })
    }
}

fn limiter<K: std::hash::Hash + Eq + Clone>(per_minute: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n)))
}

/// A wait as whole seconds for `Retry-After`, rounded up, at least 1.
pub(super) fn round_up_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(login: u32, register: u32) -> AuthLimits {
        AuthLimits {
            login_per_minute: login,
            register_per_minute: register,
            ..AuthLimits::default()
        }
    }

    fn network(ip: &str) -> ClientNetwork {
        ClientNetwork::from(ip.parse::<std::net::IpAddr>().unwrap())
    }

    #[test]
    fn the_burst_passes_then_a_retry_after_is_given() {
        let throttle = Throttle::new(&limits(3, 0));
        for _ in 0..3 {
            assert!(throttle.login(network("127.0.0.1")).is_ok());
        }
        let refused = throttle.login(network("127.0.0.1")).unwrap_err();
        assert!((1..=20).contains(&refused.retry_after_secs), "{refused:?}");
        assert!(
            throttle.login(network("127.0.0.2")).is_ok(),
            "another client"
        );
    }

    #[test]
    fn an_ipv6_64_is_one_client() {
        let throttle = Throttle::new(&limits(2, 0));
        assert!(throttle.login(network("2001:db8:0:1::1")).is_ok());
        assert!(throttle.login(network("2001:db8:0:1::2")).is_ok());
        assert!(throttle.login(network("2001:db8:0:1:ffff::3")).is_err());
        assert!(throttle.login(network("2001:db8:0:2::1")).is_ok());
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let throttle = Throttle::new(&limits(0, 0));
        for _ in 0..1000 {
            assert!(throttle.login(network("127.0.0.1")).is_ok());
            assert!(throttle.register(network("127.0.0.1")).is_ok());
        }
    }

    #[test]
    fn verifications_are_bucketed_per_network_unless_off() {
        let mut limits = limits(0, 0);
        limits.token_verifications_per_second = crate::config::Bounded(1);
        limits.token_verification_burst = crate::config::Bounded(2);
        let throttle = Throttle::new(&limits);
        assert!(throttle.verification(network("127.0.0.1")).is_ok());
        assert!(throttle.verification(network("127.0.0.1")).is_ok());
        assert!(throttle.verification(network("127.0.0.1")).is_err());
        assert!(throttle.verification(network("127.0.0.2")).is_ok());
        limits.token_verifications_per_second = crate::config::Bounded(0);
        let off = Throttle::new(&limits);
        for _ in 0..1000 {
            assert!(off.verification(network("127.0.0.1")).is_ok());
        }
    }

    #[test]
    fn waits_round_up_to_whole_seconds() {
        assert_eq!(round_up_secs(Duration::from_millis(1)), 1);
        assert_eq!(round_up_secs(Duration::from_millis(5500)), 6);
        assert_eq!(round_up_secs(Duration::ZERO), 1);
    }
}
