//! What every request shares: the live routing snapshot and the upstream client.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use ipnet::IpNet;

use crate::auth::Auth;
use crate::config::Settings;
use crate::forwarder::Forwarder;
use crate::metrics::Metrics;
use crate::request::RequestIds;
use crate::router::Router;

/// Shared by all workers; the snapshot is swapped whole on reload, never edited in place.
#[derive(Debug)]
pub struct AppState {
    /// The live routing table; requests load it once and finish on that snapshot.
    pub routes: ArcSwap<Router>,
    /// Source of new `X-Request-Id` values.
    pub request_ids: RequestIds,
    /// `http` or `https`, as clients connect to `listen`.
    pub proto: &'static str,
    /// Tokens, accounts and the store (not reloaded: a change needs a restart).
    pub auth: Arc<Auth>,
    /// Every metric, in this process's registry.
    pub metrics: Metrics,
    /// Whether `/metrics` lives on `admin_listen` instead of the main listener.
    separate_admin: bool,
    /// The main listening socket, once serving (a reload that changes `listen` moves it).
    pub listen: OnceLock<Arc<dyn Rebind>>,
    /// Proxies whose forwarding headers name the client (a change needs a restart).
    pub trusted_proxies: Arc<[IpNet]>,
}

impl AppState {
    /// State for a freshly loaded config, with its authentication side already started
    /// (reporting to the same `metrics`).
    pub fn new(settings: &Settings, auth: Arc<Auth>, metrics: Metrics) -> Self {
        AppState {
            routes: ArcSwap::from_pointee(Router::build(
                settings,
                &metrics,
                None,
                settings.tls.is_some(),
            )),
            request_ids: RequestIds::new(),
            proto: if settings.tls.is_some() {
                "https"
            } else {
                "http"
            },
            auth,
            metrics,
            separate_admin: settings.admin_listen.is_some(),
            listen: OnceLock::new(),
            trusted_proxies: settings.trusted_proxies.iter().map(|p| p.0).collect(),
        }
    }

    /// Whether the main listener serves `/metrics` (only when no `admin_listen` is set, so
    /// operators can keep metrics off the public port).
    pub fn metrics_on_main_listener(&self) -> bool {
        !self.separate_admin
    }
}

/// The main listening socket as a reload sees it: something that can move to a new address
/// without dropping the connections it already accepted. The server's listener implements it;
/// the state only holds it, so this layer need not know how listening works.
pub trait Rebind: Send + Sync + std::fmt::Debug {
    /// Serves new connections on `address` from now on; `false` if it already did.
    fn rebind(&self, address: SocketAddr) -> std::io::Result<bool>;
}

/// What the requests of one worker thread share: the process-wide state and the worker's own
/// upstream pool (its connections live on that worker's runtime, so no thread hands off I/O).
#[derive(Debug)]
pub struct Worker {
    /// Process-wide state.
    pub state: Arc<AppState>,
    /// This worker's pooled upstream client.
    pub forwarder: Forwarder,
}

impl Worker {
    /// A worker over `state` with a fresh upstream pool; call it on the runtime that serves.
    pub fn new(state: Arc<AppState>) -> Self {
        let forwarder = Forwarder::new(&state.auth.session.cookie_name.0);
        Worker { state, forwarder }
    }
}
