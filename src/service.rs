//! A service as the request path sees it: its policy, its backends and its balancer, built once
//! per config snapshot.

use std::sync::Arc;
use std::time::Duration;

use http::uri::Authority;

use crate::balancer::{BackendState, Balancer};
use crate::config::{ServiceAuth, ServiceSettings};
use crate::metrics::{Metrics, ServiceMetrics};
use crate::store::Role;

/// One upstream server.
#[derive(Debug)]
pub struct Backend {
    /// `host:port`, the target of upstream requests.
    pub authority: Authority,
    /// Health and counters, carried over to the next snapshot while the backend stays.
    pub state: Arc<BackendState>,
}

/// A routed pool of backends with its policy.
#[derive(Debug)]
pub struct Service {
    /// Name from the config (metrics and logs); shared so a request can keep it cheaply.
    pub name: Arc<str>,
    /// Whether a token is required.
    pub auth: ServiceAuth,
    /// Roles allowed through, when restricted.
    pub roles: Option<Box<[Role]>>,
    /// Whether the client's `Authorization` header is passed to the backends.
    pub forward_authorization: bool,
    /// How long to wait for a backend's response headers.
    pub timeout: Duration,
    /// The pool, in config order.
    pub backends: Box<[Backend]>,
    /// Chooses from `backends`.
    pub balancer: Balancer,
    /// Request counters and latency, resolved once per snapshot.
    pub metrics: ServiceMetrics,
}

impl Service {
    /// Builds the runtime form of a validated service; backends that `previous` (the same
    /// service in the snapshot being replaced) already had keep their state.
    pub fn from_settings(
        settings: &ServiceSettings,
        metrics: &Metrics,
        previous: Option<&Service>,
    ) -> Self {
        let weights: Vec<u32> = settings.backends.iter().map(|b| b.weight.0).collect();
        let name = settings.name.0.as_str();
        Service {
            name: name.into(),
            auth: settings.auth,
            roles: settings.roles.as_ref().map(|roles| roles.0.clone().into()),
            forward_authorization: settings.forward_authorization,
            timeout: settings.timeout,
            backends: settings
                .backends
                .iter()
                .map(|b| {
                    let authority = b.url.authority().clone();
                    let kept = previous.and_then(|p| p.backend(&authority));
                    let state = match kept {
                        Some(kept) => Arc::clone(&kept.state),
                        None => {
                            Arc::new(BackendState::new(metrics.backend(name, authority.as_str())))
                        }
                    };
                    Backend { authority, state }
                })
                .collect(),
            balancer: Balancer::new(settings.strategy, &weights),
            metrics: metrics.service(name),
        }
    }

    /// The backend at `authority`, if this service has it.
    pub fn backend(&self, authority: &Authority) -> Option<&Backend> {
        self.backends.iter().find(|b| b.authority == *authority)
    }
}
