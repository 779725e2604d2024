//! One upstream server as the balancer sees it: where it is, and what is known of its health.

use std::sync::Arc;

use http::uri::Authority;

use super::BackendState;

/// One upstream server.
#[derive(Debug)]
pub struct Backend {
    /// `host:port`, the target of upstream requests.
    pub authority: Authority,
    /// Health and counters, carried over to the next snapshot while the backend stays.
    pub state: Arc<BackendState>,
}
