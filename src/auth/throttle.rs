//! Login and registration throttling: token buckets (GCRA) per client IP and per account.
//!
//! The per-account bucket is keyed by the lowercased email whether or not an account has it, so
//! a 429 reveals nothing about which emails exist.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::AuthLimits;

/// A refused attempt: retry after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    /// Time until the bucket allows another attempt, rounded up to whole seconds (≥ 1).
    pub retry_after_secs: u64,
}

/// The login and registration buckets.
#[derive(Debug)]
pub struct Throttle {
    login_by_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    login_by_account: Option<DefaultKeyedRateLimiter<Box<str>>>,
    register_by_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
}

impl Throttle {
    /// Buckets of `limits` attempts per minute (a burst of that many, refilled evenly); 0 = off.
    pub fn new(limits: &AuthLimits) -> Self {
        Throttle {
            login_by_ip: limiter(limits.login_per_minute),
            login_by_account: limiter(limits.login_per_minute),
            register_by_ip: limiter(limits.register_per_minute),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one login attempt from the client's and the email's buckets.
    pub fn login(&self, ip: IpAddr, email: &str) -> Result<(), Throttled> {
        self.take(&self.login_by_ip, &ip)?;
        let account: Box<str> = email.to_lowercase().into();
        self.take(&self.login_by_account, &account)
    }

    /// Takes one registration attempt from the client's bucket.
    pub fn register(&self, ip: IpAddr) -> Result<(), Throttled> {
        self.take(&self.register_by_ip, &ip)
    }

    /// Drops buckets that are full again, so memory follows recent clients only.
    pub fn forget_idle(&self) {
        for limiter in [&self.login_by_ip, &self.register_by_ip]
            .into_iter()
            .flatten()
        {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &self.login_by_account {
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

fn round_up_secs(wait: Duration) -> u64 {
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
        }
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn the_burst_passes_then_a_retry_after_is_given() {
        let throttle = Throttle::new(&limits(3, 0));
        for _ in 0..3 {
            assert!(throttle.login(IP, "a@x.com").is_ok());
        }
        let refused = throttle.login(IP, "a@x.com").unwrap_err();
        assert!((1..=20).contains(&refused.retry_after_secs), "{refused:?}");
    }

    #[test]
    fn the_account_bucket_ignores_letter_case_and_client() {
        let throttle = Throttle::new(&limits(2, 0));
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(throttle.login(IP, "A@x.com").is_ok());
        assert!(throttle.login(other, "a@X.com").is_ok());
        assert!(throttle
            .login("10.0.0.3".parse().unwrap(), "a@x.com")
            .is_err());
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let throttle = Throttle::new(&limits(0, 0));
        for _ in 0..1000 {
            assert!(throttle.login(IP, "a@x.com").is_ok());
            assert!(throttle.register(IP).is_ok());
        }
    }

    #[test]
    fn waits_round_up_to_whole_seconds() {
        assert_eq!(round_up_secs(Duration::from_millis(1)), 1);
        assert_eq!(round_up_secs(Duration::from_millis(5500)), 6);
        assert_eq!(round_up_secs(Duration::ZERO), 1);
    }
}
