//! Configuration: YAML → validated, typed [`Settings`].
//!
//! Three steps, so each can be read and tested alone: `schema` holds the serde structs (`deny_unknown_fields`), whose scalar
//! fields are the checked types of `values`; every rule is a small named function in `rules`;
//! `load` parses a file and turns any failure into `PATH:LINE:COLUMN: message`. `traffic` holds
//! the per-service traffic settings (health, retries, timeouts, CORS, rate limits).

mod keys;
mod load;
mod locate;
mod routes;
mod rules;
mod schema;
mod traffic;
mod values;

pub use keys::{KeySettings, MAX_ASSERTION_TTL};
pub use load::{load, parse_str, route_location, ConfigError};
pub use locate::{locate, Step};
pub use routes::{covers as route_covers, RoutePath, RouteSettings};
pub use rules::parse_duration;
pub use schema::{
    AccountsPageAccess, AuditSettings, AuthLimits, AuthSettings, BackendSettings, DatabaseSettings,
    JwtAlgorithm, JwtSettings, Limits, MinBodyRate, RefreshSettings, Registration, ServiceAuth,
    ServiceSettings, SessionSettings, Settings, Strategy, TlsSettings,
};
pub use traffic::{
    CorsSettings, EjectionSettings, HealthCheckSettings, RateLimitKey, RateLimitSettings,
    RetrySettings, TimeoutSettings,
};
pub use values::{
    BackendUrl, Bounded, BufferSize, CookieDomain, CookieName, HostName, IdentityHeader, ProxyNet,
    ServiceName, Size, Weight, Workers,
};
