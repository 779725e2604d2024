//! How much of a request body a service accepts, and how fast the body must arrive.

use std::time::Duration;

use crate::config::Limits;

/// Limits on a body as it streams; built once per service and snapshot.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Most bytes accepted.
    pub max_bytes: Option<u64>,
    /// How fast it must arrive.
    pub pace: BodyPace,
}

/// How fast a request body must arrive, proxied or read by the control plane alike
/// (`limits.body_read_timeout` and `limits.min_body_rate`); enforced by a
/// [`BodyClock`](super::BodyClock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyPace {
    /// Longest wait for the next chunk.
    pub read_timeout: Duration,
    /// The slowest average rate over the time spent waiting; `None`: not checked.
    pub min_rate: Option<MinRate>,
}

/// A minimum average rate, checked once the waiting time exceeds `grace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinRate {
    /// Bytes per second, never 0.
    pub bytes_per_second: u64,
    /// Waiting time before the rate is first checked.
    pub grace: Duration,
}

impl Default for BodyPace {
    fn default() -> Self {
        BodyPace::from(&Limits::default())
    }
}

impl From<&Limits> for BodyPace {
    fn from(limits: &Limits) -> Self {
        let rate = limits.min_body_rate;
        BodyPace {
            read_timeout: limits.body_read_timeout,
            min_rate: (rate.bytes_per_second.0 > 0).then(|| MinRate {
                bytes_per_second: u64::from(rate.bytes_per_second.0),
                grace: rate.grace,
            }),
        }
    }
}
