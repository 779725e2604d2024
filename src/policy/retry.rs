//! Which requests may be retried, and the budget that keeps retries from multiplying an outage.

use std::sync::atomic::{AtomicI64, Ordering};

use http::Method;

/// A retry costs this much of the budget; each request earns `percent × 10` of it.
const RETRY_COST: i64 = 1000;
/// The most the budget saves up, in retries: a quiet spell cannot fund a storm later.
const MAX_SAVED_RETRIES: i64 = 10;
/// Retries a fresh budget holds, so a service with little traffic can retry at all.
const RESERVE_RETRIES: i64 = 5;

/// Retries may be at most `percent` % of a service's requests: every request deposits a
/// fraction of a retry, every retry withdraws a whole one (Finagle's retry budget, in one
/// atomic). When every backend fails, upstream tries stay at `1 + percent / 100` per request
/// plus a small reserve.
#[derive(Debug)]
pub struct RetryBudget {
    balance: AtomicI64,
    deposit: i64,
    percent: u32,
}

impl RetryBudget {
    /// A budget allowing `percent` % retries, holding its reserve (none at 0 %).
    pub fn new(percent: u32) -> Self {
        let reserve = if percent == 0 {
            0
        } else {
            RESERVE_RETRIES * RETRY_COST
        };
        RetryBudget {
            balance: AtomicI64::new(reserve),
            deposit: i64::from(percent) * RETRY_COST / 100,
            percent,
        }
    }

    /// The share of requests it allows as retries.
    pub fn percent(&self) -> u32 {
        self.percent
    }

    /// A request arrived: it earns its share.
    pub fn deposit(&self) {
        if self.deposit == 0 {
            return;
        }
        let cap = MAX_SAVED_RETRIES * RETRY_COST;
        // Load first: when the budget is full (the healthy steady state) nothing is written.
        if self.balance.load(Ordering::Relaxed) < cap {
            let _ = self
                .balance
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                    Some((b + self.deposit).min(cap))
                });
        }
    }

    /// Takes one retry from the budget if it holds one.
    pub fn withdraw(&self) -> bool {
        self.balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b >= RETRY_COST).then_some(b - RETRY_COST)
            })
            .is_ok()
    }
}

/// Methods that mean the same when sent twice (RFC 9110 §9.2.2).
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twenty_percent_funds_one_retry_per_five_requests() {
        let budget = RetryBudget::new(20);
        let mut retries = 0;
        for _ in 0..1000 {
            budget.deposit();
            if budget.withdraw() {
                retries += 1;
            }
        }
        assert_eq!(retries, 200 + RESERVE_RETRIES);
    }

    #[test]
    fn savings_are_capped() {
        let budget = RetryBudget::new(100);
        (0..1000).for_each(|_| budget.deposit());
        assert_eq!(
            (0..50).filter(|_| budget.withdraw()).count(),
            MAX_SAVED_RETRIES as usize
        );
    }

    #[test]
    fn a_zero_budget_never_retries() {
        let budget = RetryBudget::new(0);
        budget.deposit();
        assert!(!budget.withdraw());
    }

    #[test]
    fn only_idempotent_methods_are_retried() {
        assert!(is_idempotent(&Method::GET) && is_idempotent(&Method::PUT));
        assert!(!is_idempotent(&Method::POST) && !is_idempotent(&Method::PATCH));
    }
}
