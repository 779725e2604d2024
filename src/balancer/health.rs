//! What the proxy knows of each backend's health, and the metric handles that report it.
//!
//! Today health is passive: a refused connection marks a backend down, any answer marks it up
//! again (the backend stays in rotation either way; failover skips it per request). The state
//! outlives config reloads for backends that did not change, so a reload never forgets an
//! outage.

use std::sync::atomic::{AtomicBool, Ordering};

use http::StatusCode;

use crate::error::ProxyError;
use crate::metrics::BackendMetrics;

/// One backend's observed health and counters, shared across config snapshots.
#[derive(Debug)]
pub struct BackendState {
    up: AtomicBool,
    metrics: BackendMetrics,
}

impl BackendState {
    /// A backend assumed up until a connection says otherwise.
    pub fn new(metrics: BackendMetrics) -> Self {
        metrics.up.set(1);
        BackendState {
            up: AtomicBool::new(true),
            metrics,
        }
    }

    /// Whether the last attempt reached the backend.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// The backend answered with `status`.
    pub fn answered(&self, status: StatusCode) {
        self.metrics.upstream(status);
        // A load first: the common case (already up) then writes nothing shared.
        if !self.is_up() && !self.up.swap(true, Ordering::Relaxed) {
            self.metrics.up.set(1);
        }
    }

    /// The backend refused the connection (or closed a fresh one unanswered).
    pub fn refused(&self) {
        self.metrics.upstream(StatusCode::BAD_GATEWAY);
        if self.up.swap(false, Ordering::Relaxed) {
            self.metrics.up.set(0);
        }
    }

    /// An attempt that reached the backend ended in `error`; a client's fault is not counted.
    pub fn failed(&self, error: &ProxyError) {
        match error {
            ProxyError::UpstreamTimeout(_) => self.metrics.upstream(StatusCode::GATEWAY_TIMEOUT),
            ProxyError::Upstream(_) => self.metrics.upstream(StatusCode::BAD_GATEWAY),
            _ => {}
        }
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

    #[test]
    fn refusal_marks_down_and_an_answer_marks_up_again() {
        let metrics = Metrics::new();
        let state = BackendState::new(metrics.backend("svc", "127.0.0.1:1"));
        assert!(state.is_up() && gauge(&metrics).ends_with(" 1"));
        state.refused();
        assert!(!state.is_up() && gauge(&metrics).ends_with(" 0"));
        state.answered(StatusCode::OK);
        assert!(state.is_up() && gauge(&metrics).ends_with(" 1"));
    }

    #[test]
    fn attempts_are_counted_by_code() {
        let metrics = Metrics::new();
        let state = BackendState::new(metrics.backend("svc", "b:1"));
        state.answered(StatusCode::OK);
        state.refused();
        state.failed(&ProxyError::UpstreamTimeout(std::time::Duration::ZERO));
        state.failed(&ProxyError::BadRequest("client"));
        let text = String::from_utf8(metrics.encode()).unwrap();
        for code in ["200", "502", "504"] {
            let line = format!(
                "gatehouse_upstream_requests_total{{backend=\"b:1\",code=\"{code}\",service=\"svc\"}} 1"
            );
            assert!(text.contains(&line), "{line} missing:\n{text}");
        }
        assert!(!text.contains("code=\"400\""));
    }
}
