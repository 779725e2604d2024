//! A service as the request path sees it: its policy, its backends and its balancer, built once
//! per config snapshot.

use std::sync::Arc;
use std::time::Duration;

use http::uri::Authority;

use crate::balancer::{Backend, BackendState, Balancer};
use crate::config::{EjectionSettings, HealthCheckSettings, Limits, ServiceSettings};
use crate::metrics::{AccessMetrics, Metrics, ServiceMetrics};
use crate::policy::{AccessRules, BodyLimits, BodyPace, Policy, RetryBudget};
// Public here for what builds services outside the crate (the fuzz targets).
pub use crate::policy::IdentityHeaders;

/// A routed pool of backends with its policy.
#[derive(Debug)]
pub struct Service {
    /// Name from the config (metrics and logs); shared so a request can keep it cheaply.
    pub name: Arc<str>,
    /// Who may pass: the routes, then the service's own `auth` and `roles`.
    pub access: AccessRules,
    /// Access decisions counted by route and result.
    pub access_metrics: AccessMetrics,
    /// Whether the client's `Authorization` header is passed to the backends.
    pub forward_authorization: bool,
    /// Whether `TRACE` is forwarded (otherwise 405).
    pub allow_trace: bool,
    /// Headers no client may pass to the backends (shared by every service of a snapshot).
    pub identity_headers: Arc<IdentityHeaders>,
    /// How long to wait for a backend's response headers.
    pub timeout: Duration,
    /// How long a TCP connect to a backend may take.
    pub connect_timeout: Duration,
    /// Idle upstream connections are closed after this.
    pub idle_timeout: Duration,
    /// A tunnel silent both ways for this long is closed.
    pub tunnel_idle: Duration,
    /// Extra tries for idempotent requests after a 502/503 or a broken connection.
    pub retries: u32,
    /// Caps retries at a share of requests; shared with the next snapshot while the share is
    /// unchanged, so reloads during an outage do not refill it.
    pub retry_budget: Arc<RetryBudget>,
    /// Request body size, pause and rate limits (the size from the policy).
    pub body_limits: BodyLimits,
    /// Bytes of a request body read before a backend is picked; `None`: streamed at once.
    pub request_buffering: Option<u64>,
    /// Active health checks of the backends, if configured.
    pub health_check: Option<HealthCheckSettings>,
    /// The pool, in config order.
    pub backends: Box<[Backend]>,
    /// Chooses from `backends`.
    pub balancer: Balancer,
    /// Request counters and latency, resolved once per snapshot.
    pub metrics: ServiceMetrics,
    /// CORS, security headers, rate limit and body limits.
    pub policy: Policy,
    ejection: EjectionSettings,
    /// Whether requests of authenticated callers carry `X-Gatehouse-Assertion`.
    pub assertion: bool,
}

/// What building a service needs beyond its own settings.
#[derive(Debug, Clone, Copy)]
pub struct BuildContext<'a> {
    /// Where the service's metric handles come from.
    pub metrics: &'a Metrics,
    /// Whether clients connect over TLS.
    pub tls: bool,
    /// The top-level `limits` (the request body's pause and rate limits come from there).
    pub limits: &'a Limits,
    /// `identity_headers`, built once for the whole snapshot.
    pub identity_headers: &'a Arc<IdentityHeaders>,
}

impl Service {
    /// Builds the runtime form of a validated service. Backends that `previous` (the same
    /// service in the snapshot being replaced) already had keep their health, load and
    /// counters, unless the health settings changed.
    pub fn from_settings(
        settings: &ServiceSettings,
        context: BuildContext<'_>,
        previous: Option<&Service>,
    ) -> Self {
        let weights: Vec<u32> = settings.backends.iter().map(|b| b.weight.0).collect();
        let name = settings.name.0.as_str();
        let mut policy = Policy::from_settings(settings, context.tls);
        if let Some(previous) = previous {
            // Rate-limit buckets survive a reload, or every reload would hand out fresh bursts.
            policy.carry_over(&previous.policy);
        }
        let same_health = previous
            .filter(|p| p.health_check == settings.health_check && p.ejection == settings.ejection);
        Service {
            name: name.into(),
            access: AccessRules::from_settings(settings),
            access_metrics: context.metrics.access(name, settings.routes.len()),
            forward_authorization: settings.forward_authorization,
            allow_trace: settings.allow_trace,
            identity_headers: Arc::clone(context.identity_headers),
            timeout: settings.request_timeout(),
            connect_timeout: settings.timeouts.connect,
            idle_timeout: settings.timeouts.idle,
            tunnel_idle: settings.timeouts.tunnel_idle,
            retries: settings.retries.attempts.0,
            retry_budget: previous
                .map(|p| &p.retry_budget)
                .filter(|b| b.percent() == settings.retries.budget_percent.0)
                .map_or_else(
                    || Arc::new(RetryBudget::new(settings.retries.budget_percent.0)),
                    Arc::clone,
                ),
            body_limits: BodyLimits {
                max_bytes: policy.max_request_body(),
                pace: BodyPace::from(context.limits),
            },
            request_buffering: settings.request_buffering.0,
            assertion: settings.assertion,
            health_check: settings.health_check.clone(),
            backends: settings
                .backends
                .iter()
                .map(|b| {
                    let authority = b.url.authority().clone();
                    let kept = same_health.and_then(|p| p.backend(&authority));
                    let state = match kept {
                        Some(kept) => Arc::clone(&kept.state),
                        None => Arc::new(BackendState::new(
                            context.metrics.backend(name, authority.as_str()),
                            settings.ejection.clone(),
                        )),
                    };
                    Backend { authority, state }
                })
                .collect(),
            balancer: Balancer::new(settings.strategy, &weights),
            metrics: context.metrics.service(name),
            policy,
            ejection: settings.ejection.clone(),
        }
    }

    /// The backend at `authority`, if this service has it.
    pub fn backend(&self, authority: &Authority) -> Option<&Backend> {
        self.backends.iter().find(|b| b.authority == *authority)
    }
}
