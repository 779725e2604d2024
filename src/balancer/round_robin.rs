//! Strict rotation over the schedule.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The next slot is a shared counter; `Relaxed` suffices because only the count matters,
/// not its ordering with other memory.
#[derive(Debug, Default)]
pub(super) struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    pub(super) fn pick(&self, slots: usize) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_around_after_the_last_slot() {
        let rr = RoundRobin::default();
        let picks: Vec<usize> = (0..5).map(|_| rr.pick(2)).collect();
        assert_eq!(picks, [0, 1, 0, 1, 0]);
    }

    #[test]
    fn counter_overflow_keeps_rotating() {
        let rr = RoundRobin {
            next: AtomicUsize::new(usize::MAX),
        };
        assert_eq!(rr.pick(2), usize::MAX % 2);
        assert_eq!(rr.pick(2), 0);
    }
}
