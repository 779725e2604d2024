//! What every request shares: the live routing snapshot and the upstream client.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use http::HeaderValue;
use ipnet::IpNet;

use crate::auth::Auth;
use crate::config::Settings;
use crate::forwarder::Forwarder;
use crate::metrics::Metrics;
use crate::router::Router;
use crate::server::Listen;

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
    pub listen: OnceLock<Arc<Listen>>,
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
        Worker {
            state,
            forwarder: Forwarder::new(),
        }
    }
}

/// Request ids unique across restarts and replicas: a random per-process prefix and a counter.
#[derive(Debug)]
pub struct RequestIds {
    prefix: u64,
    counter: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        RequestIds {
            prefix: rand::random(),
            counter: AtomicU64::new(0),
        }
    }

    /// The next id: 32 lowercase hex digits (hand-encoded: `format!` showed in profiles).
    pub fn next(&self) -> HeaderValue {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut id = [0u8; 32];
        for (i, digit) in id.iter_mut().enumerate() {
            let word = if i < 16 { self.prefix } else { n };
            let shift = 60 - 4 * (i % 16);
            *digit = HEX[((word >> shift) & 0xf) as usize];
        }
        HeaderValue::from_bytes(&id).expect("hex digits are a valid header value")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_distinct_32_hex_digits() {
        let ids = RequestIds::new();
        let (a, b) = (ids.next(), ids.next());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.to_str().unwrap().bytes().all(|c| c.is_ascii_hexdigit()));
        let expected = format!("{:016x}{:016x}", ids.prefix, 1);
        assert_eq!(b.to_str().unwrap(), expected);
    }
}
