//! Per-service traffic settings: active health checks, passive ejection, retries, timeouts,
//! request size, CORS, security headers and rate limits. Defaults live here.

use std::time::Duration;

use serde::Deserialize;

use super::values::{Bounded, Dur, Size};

/// Active health checks: `GET path` on every backend each `interval`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawHealthCheck")]
pub struct HealthCheckSettings {
    /// Path probed; a 2xx or 3xx answer within `timeout` passes.
    pub path: String,
    /// Time between probes of one backend.
    pub interval: Duration,
    /// Longest wait for a probe's response headers.
    pub timeout: Duration,
    /// Passing probes in a row that bring a down backend back.
    pub healthy_threshold: u32,
    /// Failing probes in a row that take an up backend out.
    pub unhealthy_threshold: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealthCheck {
    #[serde(default = "default_health_path")]
    path: String,
    #[serde(default = "default_health_interval")]
    interval: Dur,
    #[serde(default = "default_health_timeout")]
    timeout: Dur,
    #[serde(default = "default_threshold")]
    healthy_threshold: Bounded<1, 100>,
    #[serde(default = "default_threshold")]
    unhealthy_threshold: Bounded<1, 100>,
}

fn default_health_path() -> String {
    "/health".to_string()
}
fn default_health_interval() -> Dur {
    Dur(Duration::from_secs(5))
}
fn default_health_timeout() -> Dur {
    Dur(Duration::from_secs(1))
}
fn default_threshold() -> Bounded<1, 100> {
    Bounded(2)
}

impl TryFrom<RawHealthCheck> for HealthCheckSettings {
    type Error = String;
    fn try_from(raw: RawHealthCheck) -> Result<Self, String> {
        if !raw.path.starts_with('/')
            || raw
                .path
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "health_check.path `{}` must start with / and have no spaces",
                raw.path
            ));
        }
        if raw.timeout.0 > raw.interval.0 {
            return Err("health_check.timeout must not be longer than its interval".into());
        }
        Ok(HealthCheckSettings {
            path: raw.path,
            interval: raw.interval.0,
            timeout: raw.timeout.0,
            healthy_threshold: raw.healthy_threshold.0,
            unhealthy_threshold: raw.unhealthy_threshold.0,
        })
    }
}

/// Passive ejection: a backend failing `consecutive_failures` client requests in a row (refused
/// connections, resets, 5xx) leaves the rotation for `base_time`, doubled on each ejection in a
/// row up to `max_time`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EjectionSettings {
    /// Failures in a row that eject; 0 turns passive ejection off.
    pub consecutive_failures: u32,
    /// First ejection's length.
    #[serde(with = "dur")]
    pub base_time: Duration,
    /// Cap on the doubled ejection time.
    #[serde(with = "dur")]
    pub max_time: Duration,
}

impl Default for EjectionSettings {
    fn default() -> Self {
        EjectionSettings {
            consecutive_failures: 5,
            base_time: Duration::from_secs(10),
            max_time: Duration::from_secs(300),
        }
    }
}

/// Upstream timeouts of a service.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutSettings {
    /// TCP connect to a backend; past it the next backend is tried.
    #[serde(with = "dur")]
    pub connect: Duration,
    /// Wait for response headers after the request was sent (504 after it). Also settable as
    /// the service's `timeout`.
    #[serde(with = "opt_dur")]
    pub request: Option<Duration>,
    /// Idle keep-alive connections to backends are closed after this.
    #[serde(with = "dur")]
    pub idle: Duration,
    /// A WebSocket tunnel with no byte in either direction for this long is closed (it holds a
    /// client connection slot and a backend connection).
    #[serde(with = "dur")]
    pub tunnel_idle: Duration,
}

impl Default for TimeoutSettings {
    fn default() -> Self {
        TimeoutSettings {
            connect: Duration::from_secs(3),
            request: None,
            idle: Duration::from_secs(60),
            tunnel_idle: Duration::from_secs(3600),
        }
    }
}

/// Cross-origin requests from browsers; preflights are answered by the proxy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawCors")]
pub struct CorsSettings {
    /// Exact origins (`https://app.example.com`), or `*` for any.
    pub allowed_origins: Vec<String>,
    /// Methods a preflight may ask for.
    pub allowed_methods: Vec<String>,
    /// Request headers a preflight may ask for (case-insensitive).
    pub allowed_headers: Vec<String>,
    /// Response headers scripts may read.
    pub expose_headers: Vec<String>,
    /// Whether cookies / `Authorization` may be sent cross-origin.
    pub allow_credentials: bool,
    /// How long browsers may cache a preflight.
    pub max_age: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCors {
    allowed_origins: Vec<String>,
    #[serde(default = "default_cors_methods")]
    allowed_methods: Vec<String>,
    #[serde(default)]
    allowed_headers: Vec<String>,
    #[serde(default)]
    expose_headers: Vec<String>,
    #[serde(default)]
    allow_credentials: bool,
    #[serde(default)]
    max_age: Option<Dur>,
}

fn default_cors_methods() -> Vec<String> {
    ["GET", "HEAD", "POST"].map(String::from).to_vec()
}

impl TryFrom<RawCors> for CorsSettings {
    type Error = String;
    fn try_from(raw: RawCors) -> Result<Self, String> {
        if raw.allowed_origins.is_empty() {
            return Err("cors.allowed_origins must list at least one origin (or `*`)".into());
        }
        let any = raw.allowed_origins.iter().any(|o| o == "*");
        if any && raw.allow_credentials {
            return Err(
                "cors: browsers refuse credentials with origin `*`; list the origins".into(),
            );
        }
        for origin in raw.allowed_origins.iter().filter(|o| *o != "*") {
            let ok = (origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin.ends_with('/')
                && origin.parse::<http::Uri>().is_ok_and(|u| u.path() == "/");
            if !ok {
                return Err(format!(
                    "cors origin `{origin}` must be scheme://host[:port] with no path, or `*`"
                ));
            }
        }
        for method in &raw.allowed_methods {
            http::Method::from_bytes(method.as_bytes())
                .map_err(|_| format!("cors method `{method}` is not an HTTP method"))?;
        }
        for name in raw.allowed_headers.iter().chain(&raw.expose_headers) {
            http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("cors header `{name}` is not a header name"))?;
        }
        Ok(CorsSettings {
            allowed_origins: raw.allowed_origins,
            allowed_methods: raw.allowed_methods,
            allowed_headers: raw.allowed_headers,
            expose_headers: raw.expose_headers,
            allow_credentials: raw.allow_credentials,
            max_age: raw.max_age.map(|d| d.0),
        })
    }
}

/// Token-bucket rate limit of a service's requests.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawRateLimit")]
pub struct RateLimitSettings {
    /// Sustained requests per second per key.
    pub requests_per_second: u32,
    /// Requests allowed at once above the sustained rate.
    pub burst: u32,
    /// What a bucket belongs to.
    pub key: RateLimitKey,
}

/// Who a rate-limit bucket belongs to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitKey {
    /// The client's IP address.
    #[default]
    Ip,
    /// The authenticated account (needs `auth: required`).
    User,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    requests_per_second: Bounded<1, 1_000_000>,
    #[serde(default)]
    burst: Option<Bounded<1, 1_000_000>>,
    #[serde(default)]
    key: RateLimitKey,
}

impl TryFrom<RawRateLimit> for RateLimitSettings {
    type Error = String;
    fn try_from(raw: RawRateLimit) -> Result<Self, String> {
        let rate = raw.requests_per_second.0;
        Ok(RateLimitSettings {
            requests_per_second: rate,
            burst: raw.burst.map_or(rate, |b| b.0),
            key: raw.key,
        })
    }
}

/// Largest request body a service accepts, when limited.
pub type MaxBody = Option<Size>;

/// Retries of idempotent requests after 502/503/a reset, and the share of requests that may be
/// retries. Written as a map, or as a bare number of attempts (`retries: 2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(from = "RawRetries")]
pub struct RetrySettings {
    /// Extra tries per request (connect failures are always tried on the next backend).
    pub attempts: Bounded<0, 5>,
    /// Retries may be at most this percentage of the service's requests (over ~10 s).
    pub budget_percent: Bounded<0, 100>,
}

/// A bare number, or the full map: a visitor for each, so a bad value gets a clear message
/// (an untagged enum would only say that nothing matched).
#[derive(Deserialize)]
#[serde(transparent)]
struct RawRetries(#[serde(deserialize_with = "retries_either")] RetrySettings);

fn retries_either<'de, D: serde::Deserializer<'de>>(d: D) -> Result<RetrySettings, D::Error> {
    use serde::de::{self, MapAccess, Visitor};
    struct Either;
    impl<'de> Visitor<'de> for Either {
        type Value = RetrySettings;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a number of attempts (0 to 5) or {attempts, budget_percent}")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<RetrySettings, E> {
            let attempts = super::rules::check_range(v, 0, 5).map_err(E::custom)?;
            Ok(RetrySettings {
                attempts: Bounded(attempts),
                ..RetrySettings::default()
            })
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<RetrySettings, E> {
            self.visit_u64(u64::try_from(v).unwrap_or(u64::MAX))
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RetrySettings, A::Error> {
            let map = RetryMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
            Ok(RetrySettings {
                attempts: map.attempts,
                budget_percent: map.budget_percent,
            })
        }
    }
    d.deserialize_any(Either)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RetryMap {
    attempts: Bounded<0, 5>,
    budget_percent: Bounded<0, 100>,
}

impl Default for RetryMap {
    fn default() -> Self {
        let defaults = RetrySettings::default();
        RetryMap {
            attempts: defaults.attempts,
            budget_percent: defaults.budget_percent,
        }
    }
}

impl From<RawRetries> for RetrySettings {
    fn from(raw: RawRetries) -> Self {
        raw.0
    }
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            attempts: Bounded(1),
            budget_percent: Bounded(20),
        }
    }
}

/// `#[serde(with = "dur")]` for plain `Duration` fields.
mod dur {
    use super::Dur;
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Dur::deserialize(d).map(|d| d.0)
    }
}

/// `#[serde(with = "opt_dur")]` for optional `Duration` fields.
mod opt_dur {
    use super::Dur;
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<Dur>::deserialize(d).map(|d| d.map(|d| d.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: for<'de> Deserialize<'de>>(yaml: &str) -> Result<T, String> {
        serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn health_check_defaults_fill_in() {
        let h: HealthCheckSettings = parse("{}").unwrap();
        assert_eq!(
            (h.path.as_str(), h.interval, h.timeout),
            ("/health", Duration::from_secs(5), Duration::from_secs(1))
        );
        assert_eq!((h.healthy_threshold, h.unhealthy_threshold), (2, 2));
    }

    #[test]
    fn rejects_health_check_path_without_slash() {
        let err = parse::<HealthCheckSettings>("{path: health}").unwrap_err();
        assert!(err.contains("must start with /"), "{err}");
    }

    #[test]
    fn rejects_health_check_timeout_longer_than_interval() {
        let err = parse::<HealthCheckSettings>("{interval: 1s, timeout: 2s}").unwrap_err();
        assert!(err.contains("not be longer than its interval"), "{err}");
    }

    #[test]
    fn rejects_zero_thresholds() {
        let err = parse::<HealthCheckSettings>("{healthy_threshold: 0}").unwrap_err();
        assert!(err.contains("from 1 to 100"), "{err}");
    }

    #[test]
    fn rejects_cors_credentials_with_any_origin() {
        let err =
            parse::<CorsSettings>("{allowed_origins: ['*'], allow_credentials: true}").unwrap_err();
        assert!(err.contains("credentials"), "{err}");
    }

    #[test]
    fn rejects_cors_origin_with_a_path() {
        let err = parse::<CorsSettings>("{allowed_origins: ['https://a.com/x']}").unwrap_err();
        assert!(err.contains("no path"), "{err}");
        assert!(parse::<CorsSettings>("{allowed_origins: ['https://a.com:8443']}").is_ok());
    }

    #[test]
    fn rejects_cors_bad_header_names() {
        let err = parse::<CorsSettings>("{allowed_origins: ['*'], allowed_headers: ['a b']}")
            .unwrap_err();
        assert!(err.contains("not a header name"), "{err}");
    }

    #[test]
    fn rate_limit_burst_defaults_to_the_rate() {
        let r: RateLimitSettings = parse("{requests_per_second: 7}").unwrap();
        assert_eq!((r.burst, r.key), (7, RateLimitKey::Ip));
        assert!(parse::<RateLimitSettings>("{requests_per_second: 0}").is_err());
    }

    #[test]
    fn retries_take_a_map_or_a_bare_count() {
        assert_eq!(
            parse::<RetrySettings>("{}").unwrap(),
            RetrySettings::default()
        );
        let bare = parse::<RetrySettings>("3").unwrap();
        assert_eq!((bare.attempts.0, bare.budget_percent.0), (3, 20));
        let map = parse::<RetrySettings>("{attempts: 2, budget_percent: 10}").unwrap();
        assert_eq!((map.attempts.0, map.budget_percent.0), (2, 10));
    }

    #[test]
    fn rejects_more_than_five_retries_and_unknown_retry_keys() {
        let err = parse::<RetrySettings>("6").unwrap_err();
        assert!(err.contains("from 0 to 5"), "{err}");
        assert!(parse::<RetrySettings>("{attempts: 6}").is_err());
        assert!(parse::<RetrySettings>("{tries: 2}").is_err());
    }
}
