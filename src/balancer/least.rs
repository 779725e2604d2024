//! Load-aware choices: `least_requests` (fewest in flight) and `p2c` (the lighter of two
//! weighted-random candidates). Both compare `in_flight / weight` without division.

use super::Backend;

/// Whether `a` is less loaded than `b` for their weights: `a.in_flight / a.weight <
/// b.in_flight / b.weight`, cross-multiplied.
fn lighter(a: (usize, u32), b: (usize, u32)) -> bool {
    (a.0 as u64) * u64::from(b.1) < (b.0 as u64) * u64::from(a.1)
}

/// The available backend with the fewest requests in flight for its weight; the scan starts at
/// `start`, so ties go round in turn instead of always to the first backend.
pub(super) fn least_loaded(
    backends: &[Backend],
    weights: &[u32],
    start: usize,
    available: impl Fn(usize) -> bool,
) -> Option<usize> {
    let count = backends.len();
    let mut best: Option<(usize, (usize, u32))> = None;
    for step in 0..count {
        let index = (start + step) % count;
        if !available(index) {
            continue;
        }
        let load = (backends[index].state.in_flight(), weights[index]);
        if best.is_none_or(|(_, best_load)| lighter(load, best_load)) {
            best = Some((index, load));
        }
    }
    best.map(|(index, _)| index)
}

/// The lighter of `a` and `b` (both available), `a` on a tie.
pub(super) fn lighter_of(backends: &[Backend], weights: &[u32], a: usize, b: usize) -> usize {
    let load = |i: usize| (backends[i].state.in_flight(), weights[i]);
    if lighter(load(b), load(a)) {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lighter_compares_load_per_weight() {
        assert!(lighter((1, 1), (3, 2))); // 1 < 1.5
        assert!(!lighter((3, 2), (1, 1)));
        assert!(!lighter((2, 2), (1, 1))); // equal: not lighter
        assert!(lighter((0, 1), (1, 100)));
    }
}
