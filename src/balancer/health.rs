//! What the proxy knows of each backend's health, and the metric handles that report it.
//!
//! Two sources decide whether a backend is in rotation:
//! - passive ejection: a refused connection ejects at once (the process is not there); other
//!   failures (resets, timeouts, 5xx answers) eject after `consecutive_failures` in a row. An
//!   ejection lasts `base_time`, doubled for each ejection in a row up to `max_time`; then the
//!   backend gets traffic again, and one success clears the record.
//! - active checks (when configured): `unhealthy_threshold` failed probes in a row take the
//!   backend out, `healthy_threshold` passing ones bring it back and end any ejection.
//!
//! The state outlives config reloads for backends that did not change, so a reload never
//! forgets an outage. All of it is atomics: the request path takes no lock.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use crate::clock::now_ms;
use crate::config::{EjectionSettings, HealthCheckSettings};
use crate::error::ProxyError;
use crate::metrics::BackendMetrics;

/// One backend's health, load and counters, shared across config snapshots.
#[derive(Debug)]
pub struct BackendState {
    /// The active checks' verdict (always true without checks).
    checked_up: AtomicBool,
    /// Positive: passing probes in a row; negative: failing ones.
    probe_streak: AtomicI32,
    /// Process-clock millisecond until which the backend is ejected (0: not ejected).
    ejected_until: AtomicU64,
    /// Passive failures in a row.
    failures: AtomicU32,
    /// Ejections in a row, for the back-off.
    ejections: AtomicU32,
    /// Requests sent and not yet answered (kept by strategies that need it).
    in_flight: AtomicUsize,
    /// Whether an active-check task runs for this state.
    probing: AtomicBool,
    ejection: EjectionSettings,
    metrics: BackendMetrics,
}

impl BackendState {
    /// A backend assumed up until traffic or a probe says otherwise.
    pub fn new(metrics: BackendMetrics, ejection: EjectionSettings) -> Self {
        metrics.up.set(1);
        BackendState {
            checked_up: AtomicBool::new(true),
            probe_streak: AtomicI32::new(0),
            ejected_until: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            in_flight: AtomicUsize::new(0),
            probing: AtomicBool::new(false),
            ejection,
            metrics,
        }
    }

    /// Whether the backend may get requests at `now` (see [`now_ms`]).
    pub fn is_available(&self, now: u64) -> bool {
        self.checked_up.load(Ordering::Relaxed) && now >= self.ejected_until.load(Ordering::Relaxed)
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request in flight until the guard drops. The guard owns a share of the state,
    /// so it can travel with the response body and count the request until its last byte.
    pub fn start_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// The backend answered with `status`; a 5xx counts as a failure.
    pub fn answered(&self, status: StatusCode) {
        self.metrics.upstream(status);
        if status.is_server_error() {
            self.failure();
        } else {
            self.success();
        }
    }

    /// The backend refused the connection (or the connect timed out): ejected at once.
    pub fn refused(&self) {
        self.metrics.upstream(StatusCode::BAD_GATEWAY);
        self.eject("refused the connection");
    }

    /// An attempt that reached the backend ended in `error`; a client's fault is not counted.
    pub fn failed(&self, error: &ProxyError) {
        match error {
            ProxyError::UpstreamTimeout(_) => self.metrics.upstream(StatusCode::GATEWAY_TIMEOUT),
            ProxyError::Upstream(_) => self.metrics.upstream(StatusCode::BAD_GATEWAY),
            _ => return,
        }
        self.failure();
    }

    /// True exactly once: for the caller that gets to start this backend's probe task.
    pub fn claim_probe(&self) -> bool {
        !self.probing.swap(true, Ordering::Relaxed)
    }

    /// Records an active probe; returns whether the backend is up by the checks afterwards.
    pub fn probed(&self, passed: bool, settings: &HealthCheckSettings) -> bool {
        self.metrics.health_check(passed);
        let streak = self.probe_streak.load(Ordering::Relaxed);
        let streak = match (passed, streak) {
            (true, s) if s > 0 => s.saturating_add(1),
            (true, _) => 1,
            (false, s) if s < 0 => s.saturating_sub(1),
            (false, _) => -1,
        };
        self.probe_streak.store(streak, Ordering::Relaxed);
        let up = self.checked_up.load(Ordering::Relaxed);
        if up && !passed && streak.unsigned_abs() >= settings.unhealthy_threshold {
            self.checked_up.store(false, Ordering::Relaxed);
            self.metrics.up.set(0);
            tracing::warn!(
                backend = self.name(),
                "backend failed its health checks; out of rotation"
            );
        } else if !up && passed && streak.unsigned_abs() >= settings.healthy_threshold {
            self.checked_up.store(true, Ordering::Relaxed);
            self.clear();
            tracing::info!(
                backend = self.name(),
                "backend passed its health checks; back in rotation"
            );
        } else if up && passed && self.is_ejected(now_ms()) {
            // Passing checks end an ejection early; the back-off memory stays until traffic
            // succeeds, so a backend that passes checks but fails requests is ejected longer.
            if streak.unsigned_abs() >= settings.healthy_threshold {
                self.ejected_until.store(0, Ordering::Relaxed);
                self.metrics.up.set(1);
            }
        }
        self.checked_up.load(Ordering::Relaxed)
    }

    fn success(&self) {
        // Loads first: in the common case (healthy already) nothing shared is written.
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        let was_out = self.ejections.load(Ordering::Relaxed) != 0 || self.metrics.up.get() == 0;
        // A success from a request sent before the ejection does not end it early.
        if was_out && self.checked_up.load(Ordering::Relaxed) && !self.is_ejected(now_ms()) {
            self.clear();
        }
    }

    fn is_ejected(&self, now: u64) -> bool {
        now < self.ejected_until.load(Ordering::Relaxed)
    }

    fn failure(&self) {
        let threshold = self.ejection.consecutive_failures;
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if threshold > 0 && failures >= threshold {
            self.eject("kept failing");
        }
    }

    fn eject(&self, why: &str) {
        if self.ejection.consecutive_failures == 0 {
            return; // Passive ejection is off.
        }
        let now = now_ms();
        let until = self.ejected_until.load(Ordering::Relaxed);
        if now < until {
            return; // Already out: requests in flight when it went out don't extend it.
        }
        let row = self.ejections.load(Ordering::Relaxed).min(20);
        let length = self
            .ejection
            .base_time
            .saturating_mul(1 << row)
            .min(self.ejection.max_time);
        let next = now.saturating_add(millis(length));
        // Two workers may see the same failure run end; only one ejects (and counts it).
        if self
            .ejected_until
            .compare_exchange(until, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        self.ejections.fetch_add(1, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
        self.metrics.up.set(0);
        tracing::warn!(backend = self.name(), why, ejected_for = ?length, "backend ejected");
    }

    fn clear(&self) {
        self.ejected_until.store(0, Ordering::Relaxed);
        self.ejections.store(0, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
        self.metrics.up.set(1);
    }

    fn name(&self) -> &str {
        self.metrics.backend()
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A request counted in flight on a backend until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<BackendState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn gauge(metrics: &Metrics) -> String {
        let text = String::from_utf8(metrics.encode()).unwrap();
        text.lines()
            .find(|l| l.starts_with("gatehouse_backend_up{"))
            .unwrap()
            .to_string()
    }

    fn ejection(failures: u32) -> EjectionSettings {
        EjectionSettings {
            consecutive_failures: failures,
            base_time: Duration::from_millis(200),
            max_time: Duration::from_millis(500),
        }
    }

    fn checks(healthy_threshold: u32, unhealthy_threshold: u32) -> HealthCheckSettings {
        HealthCheckSettings {
            path: "/h".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            healthy_threshold,
            unhealthy_threshold,
        }
    }

    fn state(metrics: &Metrics, failures: u32) -> BackendState {
        BackendState::new(metrics.backend("svc", "127.0.0.1:1"), ejection(failures))
    }

    #[test]
    fn a_refusal_ejects_at_once_and_the_ejection_expires() {
        let metrics = Metrics::new();
        let s = state(&metrics, 3);
        assert!(s.is_available(now_ms()) && gauge(&metrics).ends_with(" 1"));
        s.refused();
        assert!(!s.is_available(now_ms()) && gauge(&metrics).ends_with(" 0"));
        assert!(s.is_available(now_ms() + 201));
        // Let it expire: a deadline of now has passed by the time `answered` reads the clock.
        // (A fixed `1` did not when the whole test ran within the process clock's first
        // millisecond, as it can in a release build.)
        s.ejected_until.store(now_ms(), Ordering::Relaxed);
        s.answered(StatusCode::OK);
        assert!(gauge(&metrics).ends_with(" 1"));
    }

    #[test]
    fn five_hundreds_eject_only_after_the_threshold() {
        let metrics = Metrics::new();
        let s = state(&metrics, 3);
        s.answered(StatusCode::SERVICE_UNAVAILABLE);
        s.answered(StatusCode::BAD_GATEWAY);
        assert!(s.is_available(now_ms()));
        s.answered(StatusCode::OK); // a success resets the run
        s.answered(StatusCode::INTERNAL_SERVER_ERROR);
        s.answered(StatusCode::INTERNAL_SERVER_ERROR);
        assert!(s.is_available(now_ms()));
        s.answered(StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!s.is_available(now_ms()));
    }

    #[test]
    fn ejections_in_a_row_back_off_up_to_the_cap() {
        let s = state(&Metrics::new(), 1);
        s.refused();
        let first = s.ejected_until.load(Ordering::Relaxed) - now_ms();
        s.ejected_until.store(now_ms(), Ordering::Relaxed); // let it expire
        s.refused();
        let second = s.ejected_until.load(Ordering::Relaxed) - now_ms();
        s.ejected_until.store(now_ms(), Ordering::Relaxed);
        s.refused();
        let third = s.ejected_until.load(Ordering::Relaxed) - now_ms();
        assert!((150..=200).contains(&first), "{first}");
        assert!((350..=400).contains(&second), "{second}");
        assert!((450..=500).contains(&third), "{third}");
    }

    #[test]
    fn a_late_success_does_not_end_a_running_ejection() {
        let s = state(&Metrics::new(), 3);
        s.refused();
        s.answered(StatusCode::OK); // sent before the refusal, answered after it
        assert!(!s.is_available(now_ms()));
    }

    #[test]
    fn ending_an_ejection_by_probe_needs_the_healthy_threshold() {
        let s = state(&Metrics::new(), 3);
        s.refused();
        let checks = checks(2, 5);
        s.probed(true, &checks);
        assert!(!s.is_available(now_ms()));
        s.probed(true, &checks);
        assert!(s.is_available(now_ms()));
    }

    #[test]
    fn zero_failures_turns_passive_ejection_off() {
        let s = state(&Metrics::new(), 0);
        s.refused();
        s.answered(StatusCode::BAD_GATEWAY);
        assert!(s.is_available(now_ms()));
    }

    #[test]
    fn probes_take_out_and_bring_back_by_threshold() {
        let metrics = Metrics::new();
        let s = state(&metrics, 3);
        let checks = checks(2, 3);
        assert!(s.probed(false, &checks) && s.probed(false, &checks));
        assert!(!s.probed(false, &checks));
        assert!(!s.is_available(now_ms()) && gauge(&metrics).ends_with(" 0"));
        assert!(!s.probed(true, &checks));
        assert!(s.probed(true, &checks));
        assert!(s.is_available(now_ms()) && gauge(&metrics).ends_with(" 1"));
    }

    #[test]
    fn a_passing_probe_ends_an_ejection() {
        let s = state(&Metrics::new(), 3);
        s.refused();
        let checks = checks(1, 1);
        s.probed(true, &checks);
        assert!(s.is_available(now_ms()));
    }

    #[test]
    fn attempts_are_counted_by_code() {
        let metrics = Metrics::new();
        let s = state(&metrics, 5);
        s.answered(StatusCode::OK);
        s.refused();
        s.failed(&ProxyError::UpstreamTimeout(Duration::ZERO));
        s.failed(&ProxyError::BadRequest("client"));
        let text = String::from_utf8(metrics.encode()).unwrap();
        for code in ["200", "502", "504"] {
            let line = format!(
                "gatehouse_upstream_requests_total{{backend=\"127.0.0.1:1\",code=\"{code}\",service=\"svc\"}} 1"
            );
            assert!(text.contains(&line), "{line} missing:\n{text}");
        }
        assert!(!text.contains("code=\"400\""));
    }

    #[test]
    fn in_flight_counts_until_the_guard_drops() {
        let s = Arc::new(state(&Metrics::new(), 5));
        let (a, b) = (s.start_request(), s.start_request());
        assert_eq!(s.in_flight(), 2);
        drop(a);
        drop(b);
        assert_eq!(s.in_flight(), 0);
    }
}
