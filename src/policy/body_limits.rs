//! How much of a request body a service accepts, and how long it waits for the next part.

use std::time::Duration;

/// Limits on a body as it streams; built once per service and snapshot.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Most bytes accepted.
    pub max_bytes: Option<u64>,
    /// Longest wait for the next chunk.
    pub read_timeout: Duration,
}
