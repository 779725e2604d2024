//! Picking a backend: a strategy chooses among the backends that are available now.
//!
//! Weights are folded into a schedule of backend indexes once per config snapshot (nginx's
//! smooth weighted order), so round-robin and random picks are one atomic add or one random
//! number and a slice index; `least_requests` and `p2c` read each candidate's in-flight count.
//! No lock anywhere. Backends that are ejected or failed their health checks are skipped; when
//! none is available the pick is `None` and the request gets a fast 503 rather than being sent
//! to a backend known to be down (failing open would turn one outage into a pile of timeouts).
//! `backend` is one upstream server; `health` holds what is known of its health;
//! `active_check` runs the active checks.

pub mod active_check;
mod backend;
mod health;
mod least;
mod random;
mod round_robin;
mod schedule;

pub use backend::Backend;
pub use health::{BackendState, InFlight};
#[cfg(test)]
pub use random::SeededRng;
pub use random::{RandomSource, ThreadRng};

use std::sync::Arc;

use crate::config::Strategy;
use random::RandomPick;
use round_robin::RoundRobin;

/// Chooses which backend of a service gets the next request.
#[derive(Debug)]
pub struct Balancer {
    strategy: Strategy,
    schedule: Box<[u32]>,
    weights: Box<[u32]>,
    turn: RoundRobin,
    random: RandomPick,
}

impl Balancer {
    /// A balancer over backends with these weights (index = backend index).
    pub fn new(strategy: Strategy, weights: &[u32]) -> Self {
        Self::with_rng(strategy, weights, Arc::new(ThreadRng))
    }

    /// As [`Balancer::new`], with the random source injected (tests seed it).
    pub fn with_rng(strategy: Strategy, weights: &[u32], rng: Arc<dyn RandomSource>) -> Self {
        Balancer {
            strategy,
            schedule: schedule::smooth_weighted(weights),
            weights: weights.into(),
            turn: RoundRobin::default(),
            random: RandomPick::new(rng),
        }
    }

    /// Whether picks read in-flight counts, so requests must keep them.
    pub fn counts_in_flight(&self) -> bool {
        matches!(self.strategy, Strategy::LeastRequests | Strategy::P2c)
    }

    /// The index of the backend for the next request, among those available at `now`
    /// ([`crate::clock::now_ms`]); `None` when none is.
    pub fn pick(&self, backends: &[Backend], now: u64) -> Option<usize> {
        let available = |i: usize| backends[i].state.is_available(now);
        match self.strategy {
            Strategy::RoundRobin => {
                self.in_schedule(self.turn.pick(self.schedule.len()), available)
            }
            Strategy::Random => self.in_schedule(self.random.pick(self.schedule.len()), available),
            Strategy::LeastRequests => {
                let start = self.turn.pick(backends.len());
                least::least_loaded(backends, &self.weights, start, available)
            }
            Strategy::P2c => {
                let slots = self.schedule.len();
                let a = self.schedule[self.random.pick(slots)] as usize;
                let b = self.schedule[self.random.pick(slots)] as usize;
                match (available(a), available(b)) {
                    (true, true) => Some(least::lighter_of(backends, &self.weights, a, b)),
                    (true, false) => Some(a),
                    (false, true) => Some(b),
                    (false, false) => least::least_loaded(backends, &self.weights, a, available),
                }
            }
        }
    }

    /// The first available backend in the schedule from `slot` on (the slot's own first).
    fn in_schedule(&self, slot: usize, available: impl Fn(usize) -> bool) -> Option<usize> {
        let slots = self.schedule.len();
        (0..slots)
            .map(|step| self.schedule[(slot + step) % slots] as usize)
            .find(|&index| available(index))
    }
}

/// The backends to fall back on after `first`, in turn, each once.
pub fn attempt_order(first: usize, count: usize) -> impl Iterator<Item = usize> {
    (0..count).map(move |step| (first + step) % count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::now_ms;

    use crate::metrics::Metrics;

    fn pool(count: usize) -> Vec<Backend> {
        let metrics = Metrics::new();
        (0..count)
            .map(|i| {
                let authority: http::uri::Authority =
                    format!("127.0.0.1:{}", i + 1).parse().unwrap();
                let state = BackendState::new(
                    metrics.backend("svc", authority.as_str()),
                    crate::config::EjectionSettings::default(),
                );
                Backend {
                    authority,
                    state: Arc::new(state),
                }
            })
            .collect()
    }

    fn picks(balancer: &Balancer, backends: &[Backend], n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| balancer.pick(backends, now_ms()).unwrap())
            .collect()
    }

    #[test]
    fn round_robin_rotates_strictly() {
        let balancer = Balancer::new(Strategy::RoundRobin, &[1, 1, 1]);
        assert_eq!(picks(&balancer, &pool(3), 7), [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn weighted_round_robin_interleaves_like_nginx() {
        let balancer = Balancer::new(Strategy::RoundRobin, &[5, 1, 1]);
        assert_eq!(picks(&balancer, &pool(3), 7), [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn unavailable_backends_are_skipped_by_every_strategy() {
        let backends = pool(3);
        backends[1].state.refused();
        for strategy in [
            Strategy::RoundRobin,
            Strategy::Random,
            Strategy::LeastRequests,
            Strategy::P2c,
        ] {
            let balancer = Balancer::new(strategy, &[1, 1, 1]);
            let chosen = picks(&balancer, &backends, 60);
            assert!(
                !chosen.contains(&1),
                "{strategy:?} picked an ejected backend"
            );
            assert!(
                chosen.contains(&0) && chosen.contains(&2),
                "{strategy:?}: {chosen:?}"
            );
        }
    }

    #[test]
    fn no_available_backend_is_no_pick() {
        let backends = pool(2);
        backends.iter().for_each(|b| b.state.refused());
        for strategy in [
            Strategy::RoundRobin,
            Strategy::Random,
            Strategy::LeastRequests,
            Strategy::P2c,
        ] {
            assert_eq!(
                Balancer::new(strategy, &[1, 1]).pick(&backends, now_ms()),
                None
            );
        }
    }

    #[test]
    fn least_requests_prefers_the_idle_backend_and_rotates_ties() {
        let backends = pool(3);
        let balancer = Balancer::new(Strategy::LeastRequests, &[1, 1, 1]);
        let _busy = [
            backends[0].state.start_request(),
            backends[2].state.start_request(),
        ];
        assert_eq!(picks(&balancer, &backends, 5), [1, 1, 1, 1, 1]);
        drop(_busy);
        let mut idle = picks(&balancer, &backends, 3);
        idle.sort_unstable();
        assert_eq!(idle, [0, 1, 2]);
    }

    #[test]
    fn p2c_never_picks_the_busier_of_two_when_one_is_idle() {
        let backends = pool(2);
        let balancer = Balancer::with_rng(Strategy::P2c, &[1, 1], Arc::new(SeededRng::new(3)));
        let _busy = backends[0].state.start_request();
        assert!(
            picks(&balancer, &backends, 50)
                .iter()
                .filter(|&&i| i == 0)
                .count()
                < 25
        );
        assert!(picks(&balancer, &backends, 50).contains(&1));
    }

    #[test]
    fn failover_order_tries_every_backend_once() {
        assert_eq!(attempt_order(2, 4).collect::<Vec<_>>(), [2, 3, 0, 1]);
        assert_eq!(attempt_order(0, 1).collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn seeded_random_is_repeatable() {
        let backends = pool(2);
        let a = Balancer::with_rng(Strategy::Random, &[1, 1], Arc::new(SeededRng::new(7)));
        let b = Balancer::with_rng(Strategy::Random, &[1, 1], Arc::new(SeededRng::new(7)));
        let picks_a = picks(&a, &backends, 50);
        let picks_b = picks(&b, &backends, 50);
        assert_eq!(picks_a, picks_b);
        assert!(picks_a.contains(&0) && picks_a.contains(&1));
    }
}
