//! Login timing, in a binary of its own: a login with an unknown email takes as long as one
//! with a known email and a wrong password, on SQLite and on PostgreSQL, so the time of a
//! failed login does not tell whether an email has an account. It compares medians of 200
//! pairs of logins against the real binary, which only means something when the load around
//! it is the test's own, not other suites' coming and going. The other attacks on the account
//! endpoints are `tests/it/account_attacks.rs`.

mod common;

use std::time::Instant;

use common::assert_json_error_about;
use common::deployment::{Deployment, Store};

const PASSWORD: &str = "correct horse battery";

mod sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn login_takes_as_long_for_an_unknown_email_as_for_a_known_one() {
        super::login_takes_as_long_for_an_unknown_email_as_for_a_known_one(super::Store::Sqlite)
            .await;
    }
}

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn login_takes_as_long_for_an_unknown_email_as_for_a_known_one() {
        super::login_takes_as_long_for_an_unknown_email_as_for_a_known_one(super::Store::Postgres)
            .await;
    }
}

/// The middle value of `values` (sorted in place).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// 200 logins with an unknown email and 200 with a known email and a wrong password, in pairs
/// taken back to back (which goes first alternates), so load from other tests falls on both
/// alike. Both run a full argon2id verification (the unknown one against a dummy hash), so
/// the median of the pairs' differences stays within 5 ms or 10 % of the median login,
/// whichever is larger.
///
/// Why this bound holds on a loaded 2-core machine yet catches a leak: argon2id at these
/// parameters costs 40 ms unloaded, and skipping it for unknown emails would make them faster
/// by nearly that whole time, several times the bound. Load stretches both logins of a pair
/// alike (so the bound scales with the median), and drifts slower than a pair takes, which
/// the paired difference cancels where two separate medians would not; single outliers move
/// neither median.
/// Throttling is off here (`login_per_minute: 0`): 400 logins from one client is the point.
async fn login_takes_as_long_for_an_unknown_email_as_for_a_known_one(store: Store) {
    const ROUNDS: usize = 200;
    let Some(d) =
        Deployment::start(store, |config| config.auth_limit("login_per_minute", "0")).await
    else {
        return;
    };
    d.registered("timed", "timed@example.com", PASSWORD).await;
    let timed = |email: &'static str| {
        let client = d.client.clone();
        async move {
            let started = Instant::now();
            let reply = client.login(email, "wrong password").await;
            let took = started.elapsed().as_secs_f64() * 1000.0;
            assert_json_error_about(&reply, 401, "invalid_credentials", email);
            took
        }
    };
    for _ in 0..5 {
        timed("timed@example.com").await;
        timed("ghost@example.com").await;
    }
    let (mut known, mut unknown, mut differences) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (k, u) = if round % 2 == 0 {
            let k = timed("timed@example.com").await;
            (k, timed("ghost@example.com").await)
        } else {
            let u = timed("ghost@example.com").await;
            (timed("timed@example.com").await, u)
        };
        known.push(k);
        unknown.push(u);
        differences.push(k - u);
    }
    let mut all: Vec<f64> = known.iter().chain(&unknown).copied().collect();
    let typical = median(&mut all);
    let (known, unknown) = (median(&mut known), median(&mut unknown));
    let difference = median(&mut differences);
    let bound = (typical / 10.0).max(5.0);
    eprintln!(
        "login medians: known {known:.2} ms, unknown {unknown:.2} ms; median pair difference \
         {difference:.2} ms, bound {bound:.2} ms"
    );
    assert!(
        difference.abs() < bound,
        "a known email's login takes {difference:.2} ms longer than an unknown one's (median \
         of {ROUNDS} pairs; medians {known:.2} and {unknown:.2} ms): the timing tells whether \
         an email has an account"
    );
    d.finish().await;
}
