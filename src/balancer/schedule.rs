//! nginx's smooth weighted round-robin, unrolled into a fixed order at config build time.

/// One cycle of picks (length = sum of weights) in which heavier backends appear more often and
/// spread out rather than in bursts: each step every backend gains its weight, the richest is
/// picked and pays the total.
pub(super) fn smooth_weighted(weights: &[u32]) -> Box<[u32]> {
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut order = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, &w) in current.iter_mut().zip(weights) {
            *c += i64::from(w);
        }
        let best = (0..current.len())
            .max_by_key(|&i| (current[i], std::cmp::Reverse(i)))
            .expect("a service has at least one backend");
        current[best] -= total;
        order.push(best as u32);
    }
    order.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_weights_give_plain_rotation() {
        assert_eq!(&*smooth_weighted(&[1, 1, 1]), &[0, 1, 2]);
    }

    #[test]
    fn each_backend_appears_weight_times() {
        let order = smooth_weighted(&[3, 2, 1]);
        for (backend, weight) in [3, 2, 1].into_iter().enumerate() {
            assert_eq!(
                order.iter().filter(|&&b| b as usize == backend).count(),
                weight
            );
        }
    }

    #[test]
    fn heavy_backend_is_spread_out() {
        assert_eq!(&*smooth_weighted(&[5, 1, 1]), &[0, 0, 1, 0, 2, 0, 0]);
    }
}
