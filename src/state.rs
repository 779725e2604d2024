//! What every request shares: the live routing snapshot and the upstream client.

use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use http::HeaderValue;

use crate::config::Settings;
use crate::forwarder::Forwarder;
use crate::router::Router;

/// Shared by all connections; the snapshot is swapped whole on reload, never edited in place.
#[derive(Debug)]
pub struct AppState {
    /// The live routing table; requests load it once and finish on that snapshot.
    pub routes: ArcSwap<Router>,
    /// Pooled upstream client.
    pub forwarder: Forwarder,
    /// Source of new `X-Request-Id` values.
    pub request_ids: RequestIds,
    /// `http` or `https`, as clients connect to `listen`.
    pub proto: &'static str,
}

impl AppState {
    /// State for a freshly loaded config.
    pub fn new(settings: &Settings) -> Self {
        AppState {
            routes: ArcSwap::from_pointee(Router::build(settings)),
            forwarder: Forwarder::new(),
            request_ids: RequestIds::new(),
            proto: if settings.tls.is_some() {
                "https"
            } else {
                "http"
            },
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

    /// The next id: 32 lowercase hex digits.
    pub fn next(&self) -> HeaderValue {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        HeaderValue::try_from(format!("{:016x}{n:016x}", self.prefix))
            .expect("hex digits are a valid header value")
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
    }
}
