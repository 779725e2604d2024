//! Picking a backend: a strategy walks a precomputed weighted schedule of backend indexes.
//!
//! Weights are folded into the schedule once per config snapshot (nginx's smooth weighted
//! order), so a pick is one atomic add or one random number and a slice index: no lock.
//! `health` holds what is known of each backend's health.

mod health;
mod random;
mod round_robin;
mod schedule;

pub use health::BackendState;
pub use random::{RandomSource, SeededRng, ThreadRng};

use std::sync::Arc;

use crate::config::Strategy;
use random::RandomPick;
use round_robin::RoundRobin;

/// Chooses which backend of a service gets the next request.
#[derive(Debug)]
pub struct Balancer {
    schedule: Box<[u32]>,
    picker: Picker,
}

#[derive(Debug)]
enum Picker {
    RoundRobin(RoundRobin),
    Random(RandomPick),
}

impl Balancer {
    /// A balancer over backends with these weights (index = backend index).
    pub fn new(strategy: Strategy, weights: &[u32]) -> Self {
        Self::with_rng(strategy, weights, Arc::new(ThreadRng))
    }

    /// As [`Balancer::new`], with the random source injected (tests seed it).
    pub fn with_rng(strategy: Strategy, weights: &[u32], rng: Arc<dyn RandomSource>) -> Self {
        let picker = match strategy {
            Strategy::RoundRobin => Picker::RoundRobin(RoundRobin::default()),
            Strategy::Random => Picker::Random(RandomPick::new(rng)),
        };
        Balancer {
            schedule: schedule::smooth_weighted(weights),
            picker,
        }
    }

    /// The index of the backend for the next request.
    pub fn pick(&self) -> usize {
        let slot = match &self.picker {
            Picker::RoundRobin(rr) => rr.pick(self.schedule.len()),
            Picker::Random(random) => random.pick(self.schedule.len()),
        };
        self.schedule[slot] as usize
    }
}

/// The order to try backends in when the first choice refuses: the pick, then the rest in turn,
/// each at most once.
pub fn attempt_order(first: usize, count: usize) -> impl Iterator<Item = usize> {
    (0..count).map(move |step| (first + step) % count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_rotates_strictly() {
        let balancer = Balancer::new(Strategy::RoundRobin, &[1, 1, 1]);
        let picks: Vec<usize> = (0..7).map(|_| balancer.pick()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn weighted_round_robin_interleaves_like_nginx() {
        let balancer = Balancer::new(Strategy::RoundRobin, &[5, 1, 1]);
        let picks: Vec<usize> = (0..7).map(|_| balancer.pick()).collect();
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn failover_order_tries_every_backend_once() {
        assert_eq!(attempt_order(2, 4).collect::<Vec<_>>(), [2, 3, 0, 1]);
        assert_eq!(attempt_order(0, 1).collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn seeded_random_is_repeatable() {
        let a = Balancer::with_rng(Strategy::Random, &[1, 1], Arc::new(SeededRng::new(7)));
        let b = Balancer::with_rng(Strategy::Random, &[1, 1], Arc::new(SeededRng::new(7)));
        let picks_a: Vec<usize> = (0..50).map(|_| a.pick()).collect();
        let picks_b: Vec<usize> = (0..50).map(|_| b.pick()).collect();
        assert_eq!(picks_a, picks_b);
        assert!(picks_a.contains(&0) && picks_a.contains(&1));
    }
}
