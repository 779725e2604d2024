//! Signature verifications per client network: a token bucket (GCRA) for each network, taken
//! from only when a token is neither in the verified-token cache nor among the refused ones, so
//! a client's tokens cost it one verification each, and a flood of distinct forged tokens from
//! one network costs at most the bucket's rate in CPU. Beyond it the token is refused unchecked
//! (429, `Retry-After`).
//!
//! The map is bounded at [`NETWORKS`] networks. When it is full, networks whose bucket has
//! refilled (idle ones) are dropped, at most once a second (the sweep walks the whole map); if
//! it is still full, the networks that do not fit share one overflow bucket, so memory stays
//! bounded and they are still limited, together.
//!
//! Not `governor` (as `throttle` uses for logins): its keyed store grows with every key until
//! the next sweep, with no bound in between, and it cannot say whether a key is new.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use foldhash::fast::RandomState;

use super::throttle::{round_up_secs, Throttled};
use crate::request::ClientNetwork;

/// Most networks with a bucket of their own.
pub const NETWORKS: usize = 10_000;

/// The shortest time between two sweeps of a full map (nanoseconds).
const SWEEP_EVERY_NS: u64 = 1_000_000_000;

/// Buckets of `burst` verifications refilled at `per_second`, per client network.
#[derive(Debug)]
pub struct VerificationBuckets {
    /// Network → theoretical arrival time (GCRA), nanoseconds on `epoch`'s clock.
    buckets: papaya::HashMap<ClientNetwork, AtomicU64, RandomState>,
    /// The bucket networks share while the map is full.
    overflow: AtomicU64,
    /// Nanoseconds between two verifications at the steady rate.
    interval_ns: u64,
    /// How far ahead of now a bucket's arrival time may run: the burst less one interval.
    tolerance_ns: u64,
    last_sweep_ns: AtomicU64,
    epoch: Instant,
}

impl VerificationBuckets {
    /// Buckets of `burst` verifications, refilled at `per_second`; both at least 1.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let interval_ns = 1_000_000_000 / u64::from(per_second.max(1));
        VerificationBuckets {
            buckets: papaya::HashMap::builder()
                .hasher(RandomState::default())
                .build(),
            overflow: AtomicU64::new(0),
            interval_ns,
            tolerance_ns: interval_ns * u64::from(burst.max(1) - 1),
            last_sweep_ns: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Takes one verification from `network`'s bucket.
    pub fn take(&self, network: ClientNetwork) -> Result<(), Throttled> {
        self.take_at(network, self.now_ns())
    }

    /// [`VerificationBuckets::take`] at `now` (nanoseconds on this clock).
    fn take_at(&self, network: ClientNetwork, now: u64) -> Result<(), Throttled> {
        let buckets = self.buckets.pin();
        if let Some(bucket) = buckets.get(&network) {
            return self.take_from(bucket, now);
        }
        if buckets.len() >= NETWORKS {
            self.sweep_at(now, false);
            if buckets.len() >= NETWORKS {
                return self.take_from(&self.overflow, now);
            }
        }
        // A bucket starts full (arrival time 0 is in the past); a racing insert of the same
        // network returns the one that won.
        let bucket = buckets.get_or_insert_with(network, || AtomicU64::new(0));
        self.take_from(bucket, now)
    }

    /// GCRA: the verification is allowed if the bucket's arrival time is at most `tolerance`
    /// ahead of now, and then moves one interval on.
    fn take_from(&self, bucket: &AtomicU64, now: u64) -> Result<(), Throttled> {
        let mut seen = bucket.load(Ordering::Relaxed);
        loop {
            let arrival = seen.max(now);
            let ahead = arrival - now;
            if ahead > self.tolerance_ns {
                let wait = Duration::from_nanos(ahead - self.tolerance_ns);
                return Err(Throttled {
                    retry_after_secs: round_up_secs(wait),
                });
            }
            let next = arrival + self.interval_ns;
            match bucket.compare_exchange_weak(seen, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Ok(()),
                Err(actual) => seen = actual,
            }
        }
    }

    /// Drops the buckets that have refilled (their network has been idle long enough to get
    /// its whole burst back), so memory follows recent clients. Called every minute, and when
    /// the map is full (then at most once a second).
    pub fn forget_idle(&self) {
        self.sweep_at(self.now_ns(), true);
    }

    fn sweep_at(&self, now: u64, always: bool) {
        let last = self.last_sweep_ns.load(Ordering::Relaxed);
        if !always && now.saturating_sub(last) < SWEEP_EVERY_NS && last != 0 {
            return;
        }
        self.last_sweep_ns.store(now.max(1), Ordering::Relaxed);
        self.buckets
            .pin()
            .retain(|_, arrival| arrival.load(Ordering::Relaxed) > now);
    }

    /// Networks with a bucket of their own.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no network has a bucket.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    const SECOND: u64 = 1_000_000_000;

    fn network(ip: &str) -> ClientNetwork {
        ClientNetwork::from(ip.parse::<IpAddr>().unwrap())
    }

    fn nth(n: usize) -> ClientNetwork {
        ClientNetwork::from(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n as u32)))
    }

    #[test]
    fn the_burst_passes_then_the_rate_refills_it() {
        let buckets = VerificationBuckets::new(20, 50);
        let client = network("192.0.2.1");
        let now = 10 * SECOND;
        for _ in 0..50 {
            assert!(buckets.take_at(client, now).is_ok());
        }
        let refused = buckets.take_at(client, now).unwrap_err();
        assert_eq!(
            refused.retry_after_secs, 1,
            "one interval (50 ms), rounded up"
        );
        // 20 per second: one more every 50 ms, never more than that.
        assert!(buckets.take_at(client, now + SECOND / 20).is_ok());
        assert!(buckets.take_at(client, now + SECOND / 20).is_err());
        let later = now + SECOND;
        let allowed = (0..100)
            .filter(|_| buckets.take_at(client, later).is_ok())
            .count();
        assert_eq!(allowed, 19, "refilled at 20 a second");
    }

    #[test]
    fn networks_have_buckets_of_their_own() {
        let buckets = VerificationBuckets::new(1, 2);
        let now = SECOND;
        for _ in 0..2 {
            assert!(buckets.take_at(network("192.0.2.1"), now).is_ok());
        }
        assert!(buckets.take_at(network("192.0.2.1"), now).is_err());
        assert!(buckets.take_at(network("192.0.2.2"), now).is_ok());
        // An IPv6 /64 is one network.
        assert!(buckets.take_at(network("2001:db8::1"), now).is_ok());
        assert!(buckets.take_at(network("2001:db8::2"), now).is_ok());
        assert!(buckets.take_at(network("2001:db8::3"), now).is_err());
    }

    #[test]
    fn a_long_wait_is_told_in_whole_seconds() {
        let buckets = VerificationBuckets::new(1, 1);
        let client = network("192.0.2.1");
        assert!(buckets.take_at(client, SECOND).is_ok());
        let refused = buckets.take_at(client, SECOND + SECOND / 4).unwrap_err();
        assert_eq!(refused.retry_after_secs, 1);
    }

    #[test]
    fn idle_networks_are_forgotten_and_busy_ones_kept() {
        let buckets = VerificationBuckets::new(10, 5);
        let now = SECOND;
        buckets.take_at(network("192.0.2.1"), now).unwrap();
        for _ in 0..5 {
            buckets.take_at(network("192.0.2.2"), now + SECOND).unwrap();
        }
        // At now + 1.2 s the first has refilled (its one token came back after 100 ms), the
        // second has not (five tokens take 500 ms).
        buckets.sweep_at(now + SECOND + SECOND / 5, true);
        assert_eq!(buckets.len(), 1);
        assert!(buckets.take_at(network("192.0.2.2"), now + SECOND).is_err());
    }

    #[test]
    fn a_full_map_shares_one_overflow_bucket_and_stays_bounded() {
        let buckets = VerificationBuckets::new(1, 3);
        let now = SECOND;
        // Every network busy: none can be dropped.
        for n in 0..NETWORKS {
            buckets.take_at(nth(n), now).unwrap();
        }
        assert_eq!(buckets.len(), NETWORKS);
        // Newcomers share the overflow bucket: three between them, then refused.
        let newcomers: Vec<bool> = (NETWORKS..NETWORKS + 5)
            .map(|n| buckets.take_at(nth(n), now).is_ok())
            .collect();
        assert_eq!(newcomers, [true, true, true, false, false]);
        assert_eq!(buckets.len(), NETWORKS, "no bucket past the bound");
        // Networks with a bucket keep theirs.
        assert!(buckets.take_at(nth(0), now).is_ok());
        // Once the old ones are idle, a sweep (at most once a second) makes room.
        let later = now + 10 * SECOND;
        assert!(buckets.take_at(nth(NETWORKS + 9), later).is_ok());
        assert_eq!(buckets.len(), 1, "the idle buckets were dropped");
    }
}
