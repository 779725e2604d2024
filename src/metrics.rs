//! Every metric Gatehouse exports (listed in the README's "Observability"), in one registry per process (per `AppState`, so tests that run
//! several proxies in one process count separately).
//!
//! The request path never formats a label: each service and backend resolves its handles when
//! a config snapshot is built, and the per-status counters are resolved on first use and then
//! kept in lock-free slots ([`StatusCounters`]).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{Method, StatusCode};
use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets for a proxy: from half a millisecond to ten seconds.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Methods with a label of their own; any other method is counted as `OTHER` (bounded labels).
const METHODS: [Method; 9] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::OPTIONS,
    Method::CONNECT,
    Method::TRACE,
];
const OTHER_METHOD: usize = METHODS.len();

/// A request method's place among the `method` label values (taken before the request is
/// consumed, so the method need not be cloned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodSlot(usize);

/// The label slot of `method`: its own for standard methods, `OTHER` for the rest.
pub fn method_slot(method: &Method) -> MethodSlot {
    MethodSlot(
        METHODS
            .iter()
            .position(|m| m == method)
            .unwrap_or(OTHER_METHOD),
    )
}

/// The `service` label of control-plane requests.
pub const CONTROL: &str = "control";

/// Why a token was refused: the `reason` label of `gatehouse_auth_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No bearer token.
    Missing,
    /// Malformed, wrongly signed, wrong issuer or not yet valid.
    Invalid,
    /// Past `exp`.
    Expired,
    /// Logged out or its account disabled.
    Revoked,
    /// Not checked: the client network's bucket of verifications was empty (429).
    RateLimited,
}

/// What became of a token not in the verified-token cache: the `result` label of
/// `gatehouse_token_verifications_total`. `valid` + `invalid` are the signature checks made
/// (their CPU cost); `cached_invalid` and `throttled` were answered without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Checked and accepted (then cached until it expires).
    Valid,
    /// Checked and refused.
    Invalid,
    /// Refused from the negative cache: the same token was refused recently.
    CachedInvalid,
    /// Refused unchecked: the client network's bucket of verifications was empty.
    Throttled,
}

/// How a login ended: the `result` label of `gatehouse_logins_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginResult {
    /// A token was issued.
    Success,
    /// Wrong email or password, or a disabled account.
    Failure,
    /// Refused by the throttle (429).
    RateLimited,
}

/// How a `POST /token` refresh ended: the `result` label of `gatehouse_token_refreshes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshResult {
    /// A new pair was issued.
    Success,
    /// Unknown, expired or malformed refresh token, or a disabled account.
    Invalid,
    /// A spent refresh token presented again: its family was revoked.
    Reused,
}

/// How a store lookup of an API key not in memory ended: the `result` label of
/// `gatehouse_api_key_lookups_total`. `throttled` counts lookups the bucket refused (no store
/// call was made); the others are store calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKeyLookup {
    /// A live key of an enabled account, now held in memory.
    Found,
    /// No key has that hash.
    Unknown,
    /// Revoked, expired, or of a disabled account.
    Refused,
    /// The store failed.
    Error,
    /// Refused without a lookup: the bucket of lookups was empty.
    Throttled,
}

/// The registry and every metric family in it.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    durations: HistogramVec,
    upstream: IntCounterVec,
    backend_up: IntGaugeVec,
    health_checks: IntCounterVec,
    access: IntCounterVec,
    auth_failures: [IntCounter; 5],
    token_verifications: [IntCounter; 4],
    logins: [IntCounter; 3],
    refreshes: [IntCounter; 3],
    reloads: [IntCounter; 2],
    audit_events: IntCounterVec,
    audit_dropped: IntCounter,
    api_key_lookups: [IntCounter; 5],
    /// Client connections open now.
    pub connections: IntGauge,
    /// Counters for the control plane, resolved once.
    pub control: Arc<ServiceMetrics>,
}

impl Metrics {
    /// A fresh registry with every family registered, process metrics included.
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = counter_vec(
            &registry,
            "gatehouse_requests_total",
            "Client requests answered, by service, method and status code.",
            &["service", "method", "code"],
        );
        let durations = HistogramOpts::new(
            "gatehouse_request_duration_seconds",
            "Time from request arrival to response headers, by service.",
        )
        .buckets(DURATION_BUCKETS.to_vec());
        let durations = registered(&registry, HistogramVec::new(durations, &["service"]));
        let upstream = counter_vec(
            &registry,
            "gatehouse_upstream_requests_total",
            "Attempts sent to backends for client requests, by backend and status code (502 when no response came, 504 on timeout).",
            &["service", "backend", "code"],
        );
        let backend_up = Opts::new(
            "gatehouse_backend_up",
            "1 when the backend last accepted a connection, 0 when it refused or failed its health check.",
        );
        let backend_up = registered(
            &registry,
            IntGaugeVec::new(backend_up, &["service", "backend"]),
        );
        let health_checks = counter_vec(
            &registry,
            "gatehouse_health_checks_total",
            "Active health checks sent to backends, by result.",
            &["service", "backend", "result"],
        );
        let access = counter_vec(
            &registry,
            "gatehouse_access_decisions_total",
            "Access decisions on proxied requests, by service, route (its index in the service's routes, or default) and result.",
            &["service", "route", "result"],
        );
        let auth_failures = counter_vec(
            &registry,
            "gatehouse_auth_failures_total",
            "Requests refused for a missing, invalid, expired or revoked token, or a token left unchecked by the client network's verification bucket (rate_limited).",
            &["reason"],
        );
        let token_verifications = counter_vec(
            &registry,
            "gatehouse_token_verifications_total",
            "Tokens not in the verified-token cache, by result: valid and invalid were signature-checked; cached_invalid was refused from the negative cache and throttled by the client network's bucket, both unchecked.",
            &["result"],
        );
        let logins = counter_vec(
            &registry,
            "gatehouse_logins_total",
            "Login attempts by result.",
            &["result"],
        );
        let refreshes = counter_vec(
            &registry,
            "gatehouse_token_refreshes_total",
            "Refresh-token grants at POST /token by result (reused: a spent token came back and its family was revoked).",
            &["result"],
        );
        let reloads = counter_vec(
            &registry,
            "gatehouse_config_reloads_total",
            "Config reloads by result; a failed one leaves the previous config serving.",
            &["result"],
        );
        let audit_events = counter_vec(
            &registry,
            "gatehouse_audit_events_total",
            "Audit-trail events written to the account store, by event.",
            &["event"],
        );
        let audit_dropped = registered(
            &registry,
            IntCounter::new(
                "gatehouse_audit_events_dropped_total",
                "Audit-trail events dropped because the queue to the store was full.",
            ),
        );
        let api_key_lookups = counter_vec(
            &registry,
            "gatehouse_api_key_lookups_total",
            "Store lookups of API keys not held in memory, by result (throttled: refused without a lookup).",
            &["result"],
        );
        let connections = registered(
            &registry,
            IntGauge::new(
                "gatehouse_connections_active",
                "Client connections open now.",
            ),
        );
        register_process_metrics(&registry);
        let control = Arc::new(ServiceMetrics::new(&requests, &durations, CONTROL));
        Metrics {
            auth_failures: ["missing", "invalid", "expired", "revoked", "rate_limited"]
                .map(|reason| auth_failures.with_label_values(&[reason])),
            token_verifications: ["valid", "invalid", "cached_invalid", "throttled"]
                .map(|result| token_verifications.with_label_values(&[result])),
            logins: ["success", "failure", "rate_limited"]
                .map(|result| logins.with_label_values(&[result])),
            refreshes: ["success", "invalid", "reused"]
                .map(|result| refreshes.with_label_values(&[result])),
            reloads: ["success", "failure"].map(|result| reloads.with_label_values(&[result])),
            audit_events,
            audit_dropped,
            api_key_lookups: ["found", "unknown", "refused", "error", "throttled"]
                .map(|result| api_key_lookups.with_label_values(&[result])),
            registry,
            requests,
            durations,
            upstream,
            backend_up,
            health_checks,
            access,
            connections,
            control,
        }
    }

    /// The access-decision counters of a service with `routes` routes, for a new snapshot.
    pub fn access(&self, service: &str, routes: usize) -> AccessMetrics {
        let labels = (0..routes)
            .map(|index| index.to_string())
            .chain(["default".to_string()]);
        AccessMetrics {
            by_route: labels
                .map(|route| {
                    AccessResult::ALL.map(|result| {
                        self.access
                            .with_label_values(&[service, &route, result.as_str()])
                    })
                })
                .collect(),
        }
    }

    /// The handles of one service, for a new config snapshot.
    pub fn service(&self, name: &str) -> ServiceMetrics {
        ServiceMetrics::new(&self.requests, &self.durations, name)
    }

    /// The handles of one backend of `service`, for a new config snapshot.
    pub fn backend(&self, service: &str, backend: &str) -> BackendMetrics {
        BackendMetrics {
            name: backend.into(),
            upstream: StatusCounters::new(self.upstream.clone(), [service, backend, ""]),
            up: self.backend_up.with_label_values(&[service, backend]),
            checks: ["success", "failure"].map(|result| {
                self.health_checks
                    .with_label_values(&[service, backend, result])
            }),
        }
    }

    /// Drops the series of a backend that left the config, so it is not reported down forever.
    pub fn forget_backend(&self, service: &str, backend: &str) {
        let _ = self.backend_up.remove_label_values(&[service, backend]);
    }

    /// Counts a refused token.
    pub fn auth_failure(&self, reason: AuthFailure) {
        self.auth_failures[reason as usize].inc();
    }

    /// Counts what became of a token not in the verified-token cache.
    pub fn token_verification(&self, result: Verification) {
        self.token_verifications[result as usize].inc();
    }

    /// Counts a login attempt.
    pub fn login(&self, result: LoginResult) {
        self.logins[result as usize].inc();
    }

    /// Counts an API key lookup (or one the bucket refused).
    pub fn api_key_lookup(&self, result: ApiKeyLookup) {
        self.api_key_lookups[result as usize].inc();
    }

    /// Counts an audit event written to the store (off the request path: `event` is one of
    /// the fixed audit event names).
    pub fn audit_written(&self, event: &str) {
        self.audit_events.with_label_values(&[event]).inc();
    }

    /// Counts an audit event dropped by a full queue.
    pub fn audit_dropped(&self) {
        self.audit_dropped.inc();
    }

    /// Counts a refresh-token grant.
    pub fn refresh(&self, result: RefreshResult) {
        self.refreshes[result as usize].inc();
    }

    /// Counts a config reload.
    pub fn reload(&self, succeeded: bool) {
        self.reloads[usize::from(!succeeded)].inc();
    }

    /// The Prometheus text exposition of everything.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("writing to a Vec cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(registry, IntCounterVec::new(Opts::new(name, help), labels))
}

/// Registers a freshly built collector and returns a handle to it. The names and labels are
/// constants of this file, so an error here is a programming error.
fn registered<C: Collector + Clone + 'static>(
    registry: &Registry,
    built: prometheus::Result<C>,
) -> C {
    let collector = built.expect("valid metric definition");
    registry
        .register(Box::new(collector.clone()))
        .expect("each metric is registered once");
    collector
}

#[cfg(target_os = "linux")]
fn register_process_metrics(registry: &Registry) {
    let collector = prometheus::process_collector::ProcessCollector::for_self();
    registry
        .register(Box::new(collector))
        .expect("registered once");
}

#[cfg(not(target_os = "linux"))]
fn register_process_metrics(_registry: &Registry) {}

/// One service's request counters and latency histogram.
#[derive(Debug)]
pub struct ServiceMetrics {
    by_method: Box<[StatusCounters<3>]>,
    duration: Histogram,
}

impl ServiceMetrics {
    fn new(requests: &IntCounterVec, durations: &HistogramVec, name: &str) -> Self {
        let methods = METHODS.iter().map(Method::as_str).chain(["OTHER"]);
        ServiceMetrics {
            by_method: methods
                .map(|method| StatusCounters::new(requests.clone(), [name, method, ""]))
                .collect(),
            duration: durations.with_label_values(&[name]),
        }
    }

    /// Records one answered request; `method` from [`method_slot`].
    pub fn record(&self, method: MethodSlot, status: StatusCode, elapsed: Duration) {
        self.by_method[method.0].inc(status);
        self.duration.observe(elapsed.as_secs_f64());
    }
}

/// The outcome of an access decision: the `result` label of `gatehouse_access_decisions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessResult {
    /// Let through.
    Allow,
    /// No valid credentials (401).
    Deny401,
    /// Signed in, but the role may not (403).
    Deny403,
    /// A browser sent to the sign-in page.
    SignIn,
}

impl AccessResult {
    const ALL: [AccessResult; 4] = [
        AccessResult::Allow,
        AccessResult::Deny401,
        AccessResult::Deny403,
        AccessResult::SignIn,
    ];

    /// The label value (and `gatehouse explain`'s first word).
    pub fn as_str(self) -> &'static str {
        match self {
            AccessResult::Allow => "allow",
            AccessResult::Deny401 => "deny_401",
            AccessResult::Deny403 => "deny_403",
            AccessResult::SignIn => "signin",
        }
    }
}

/// A service's access-decision counters: one per route (then the default) and result.
#[derive(Debug)]
pub struct AccessMetrics {
    by_route: Box<[[IntCounter; 4]]>,
}

impl AccessMetrics {
    /// Counts one decision; `route` is `None` for the service's default.
    pub fn record(&self, route: Option<usize>, result: AccessResult) {
        let slot = route
            .filter(|&r| r + 1 < self.by_route.len())
            .unwrap_or(self.by_route.len() - 1);
        self.by_route[slot][result as usize].inc();
    }
}

/// One backend's handles: attempts by status, the up gauge, health-check results.
#[derive(Debug)]
pub struct BackendMetrics {
    name: Box<str>,
    upstream: StatusCounters<3>,
    /// `gatehouse_backend_up`.
    pub up: IntGauge,
    checks: [IntCounter; 2],
}

impl BackendMetrics {
    /// Counts an attempt that ended with `status` (502/504 when no response came).
    pub fn upstream(&self, status: StatusCode) {
        self.upstream.inc(status);
    }

    /// The `backend` label: `host:port`.
    pub fn backend(&self) -> &str {
        &self.name
    }

    /// Counts an active health check.
    pub fn health_check(&self, passed: bool) {
        self.checks[usize::from(!passed)].inc();
    }
}

/// Counters of one label set that differ only in the last label, a status code. Each hundred
/// (1xx … 5xx) is allocated on first use and each code resolved once, so counting is two
/// atomic loads and an add; codes beyond 599 (rare, non-standard) take the vector's lock.
#[derive(Debug)]
struct StatusCounters<const N: usize> {
    vec: IntCounterVec,
    labels: [Box<str>; N],
    hundreds: [OnceLock<Box<[OnceLock<IntCounter>]>>; 5],
}

impl<const N: usize> StatusCounters<N> {
    /// `labels` ends with a placeholder for the code.
    fn new(vec: IntCounterVec, labels: [&str; N]) -> Self {
        StatusCounters {
            vec,
            labels: labels.map(Box::from),
            hundreds: Default::default(),
        }
    }

    fn inc(&self, status: StatusCode) {
        let code = status.as_u16();
        let Some(hundred) = self.hundreds.get(usize::from(code / 100).wrapping_sub(1)) else {
            return self.resolve(status).inc();
        };
        let slots = hundred.get_or_init(|| (0..100).map(|_| OnceLock::new()).collect());
        slots[usize::from(code % 100)]
            .get_or_init(|| self.resolve(status))
            .inc();
    }

    fn resolve(&self, status: StatusCode) -> IntCounter {
        let mut labels: [&str; N] = std::array::from_fn(|i| &*self.labels[i]);
        labels[N - 1] = status.as_str();
        self.vec.with_label_values(&labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(metrics: &Metrics) -> String {
        String::from_utf8(metrics.encode()).unwrap()
    }

    #[test]
    fn requests_are_counted_per_service_method_and_code() {
        let metrics = Metrics::new();
        let svc = metrics.service("svc");
        for _ in 0..3 {
            svc.record(
                method_slot(&Method::GET),
                StatusCode::OK,
                Duration::from_millis(2),
            );
        }
        let purge = Method::from_bytes(b"PURGE").unwrap();
        svc.record(method_slot(&purge), StatusCode::NOT_FOUND, Duration::ZERO);
        let text = exposition(&metrics);
        assert!(
            text.contains(r#"gatehouse_requests_total{code="200",method="GET",service="svc"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"gatehouse_requests_total{code="404",method="OTHER",service="svc"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"gatehouse_request_duration_seconds_count{service="svc"} 4"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"gatehouse_request_duration_seconds_bucket{service="svc",le="0.0025"} 4"#
            ),
            "{text}"
        );
    }

    #[test]
    fn non_standard_status_codes_are_still_counted() {
        let metrics = Metrics::new();
        let backend = metrics.backend("svc", "127.0.0.1:1");
        backend.upstream(StatusCode::from_u16(799).unwrap());
        backend.upstream(StatusCode::from_u16(799).unwrap());
        assert!(exposition(&metrics).contains(
            r#"gatehouse_upstream_requests_total{backend="127.0.0.1:1",code="799",service="svc"} 2"#
        ));
    }

    #[test]
    fn fixed_label_values_are_exported_at_zero_from_the_start() {
        let text = exposition(&Metrics::new());
        for line in [
            r#"gatehouse_auth_failures_total{reason="revoked"} 0"#,
            r#"gatehouse_auth_failures_total{reason="rate_limited"} 0"#,
            r#"gatehouse_token_verifications_total{result="cached_invalid"} 0"#,
            r#"gatehouse_logins_total{result="rate_limited"} 0"#,
            r#"gatehouse_token_refreshes_total{result="reused"} 0"#,
            r#"gatehouse_config_reloads_total{result="failure"} 0"#,
            "gatehouse_connections_active 0",
        ] {
            assert!(text.contains(line), "missing {line}:\n{text}");
        }
    }

    #[test]
    fn each_counter_moves_only_its_own_label() {
        let metrics = Metrics::new();
        metrics.auth_failure(AuthFailure::Expired);
        metrics.token_verification(Verification::Throttled);
        metrics.login(LoginResult::RateLimited);
        metrics.reload(false);
        let text = exposition(&metrics);
        assert!(text.contains(r#"gatehouse_auth_failures_total{reason="expired"} 1"#));
        assert!(text.contains(r#"gatehouse_auth_failures_total{reason="missing"} 0"#));
        assert!(text.contains(r#"gatehouse_token_verifications_total{result="throttled"} 1"#));
        assert!(text.contains(r#"gatehouse_token_verifications_total{result="valid"} 0"#));
        assert!(text.contains(r#"gatehouse_logins_total{result="rate_limited"} 1"#));
        assert!(text.contains(r#"gatehouse_config_reloads_total{result="failure"} 1"#));
        assert!(text.contains(r#"gatehouse_config_reloads_total{result="success"} 0"#));
    }

    #[test]
    fn forgotten_backends_leave_the_exposition() {
        let metrics = Metrics::new();
        metrics.backend("svc", "127.0.0.1:1").up.set(1);
        assert!(exposition(&metrics).contains("gatehouse_backend_up{"));
        metrics.forget_backend("svc", "127.0.0.1:1");
        assert!(!exposition(&metrics).contains("gatehouse_backend_up{"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_metrics_are_exported() {
        let text = exposition(&Metrics::new());
        assert!(text.contains("process_resident_memory_bytes"));
        assert!(text.contains("process_cpu_seconds_total"));
    }
}
