//! Uniform choice over the schedule, from an injectable random source.

use std::fmt;
use std::sync::Arc;
#[cfg(test)]
use std::sync::Mutex;

#[cfg(test)]
use rand::rngs::StdRng;
use rand::Rng;
#[cfg(test)]
use rand::SeedableRng;

/// Where random picks come from; production uses the thread-local generator, tests a seed.
pub trait RandomSource: Send + Sync + fmt::Debug {
    /// A number in `0..n` (`n` > 0).
    fn below(&self, n: usize) -> usize;
}

/// The per-thread generator: no shared state between worker threads.
#[derive(Debug, Default)]
pub struct ThreadRng;

impl RandomSource for ThreadRng {
    fn below(&self, n: usize) -> usize {
        rand::rng().random_range(0..n)
    }
}

/// A seeded generator for repeatable tests (it locks, so it stays out of production).
#[cfg(test)]
#[derive(Debug)]
pub struct SeededRng(Mutex<StdRng>);

#[cfg(test)]
impl SeededRng {
    /// A generator that yields the same sequence for the same seed.
    pub fn new(seed: u64) -> Self {
        SeededRng(Mutex::new(StdRng::seed_from_u64(seed)))
    }
}

#[cfg(test)]
impl RandomSource for SeededRng {
    fn below(&self, n: usize) -> usize {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .random_range(0..n)
    }
}

#[derive(Debug)]
pub(super) struct RandomPick {
    rng: Arc<dyn RandomSource>,
}

impl RandomPick {
    pub(super) fn new(rng: Arc<dyn RandomSource>) -> Self {
        RandomPick { rng }
    }

    pub(super) fn pick(&self, slots: usize) -> usize {
        self.rng.below(slots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With p = 1/2 over 1000 picks, the count of one side lies within 5 standard deviations
    /// (σ ≈ 15.8) of 500 except with probability < 1e-6; the seed makes it exact anyway.
    #[test]
    fn seeded_split_over_1000_picks_is_within_binomial_bounds() {
        let pick = RandomPick::new(Arc::new(SeededRng::new(42)));
        let zeros = (0..1000).filter(|_| pick.pick(2) == 0).count();
        assert!((421..=579).contains(&zeros), "{zeros} of 1000");
    }

    #[test]
    fn thread_rng_stays_in_range() {
        assert!((0..1000).all(|_| ThreadRng.below(3) < 3));
    }
}
