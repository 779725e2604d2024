//! The config file's shape (every key: the README's "Config reference", `config/app.yaml`). Unknown keys are errors; defaults live here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::keys::KeySettings;
use super::routes::RouteSettings;
use super::rules;
use super::traffic::{
    CorsSettings, EjectionSettings, HealthCheckSettings, MaxBody, RateLimitSettings, RetrySettings,
    TimeoutSettings,
};
use super::values::{
    BackendUrl, Bounded, BufferSize, CookieDomain, CookieName, Dur, HostName, IdentityHeader,
    NonEmpty, ProxyNet, ServiceName, Size, Weight, Workers,
};
use crate::store::Role;

/// The whole validated configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Proxy and control plane listener.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Worker threads, each with its own event loop: `auto` (one per CPU) or a count.
    #[serde(default)]
    pub workers: Workers,
    /// When set, `/metrics` is served only here (with `/health` and `/ready`).
    #[serde(default)]
    pub admin_listen: Option<SocketAddr>,
    /// TLS on `listen` (rustls).
    #[serde(default)]
    pub tls: Option<TlsSettings>,
    /// Proxies in front of Gatehouse (ingress controllers, load balancers) whose
    /// `X-Forwarded-For` and `X-Forwarded-Proto` are believed; empty: none, the TCP peer is
    /// the client.
    #[serde(default)]
    pub trusted_proxies: Vec<ProxyNet>,
    /// Headers that name a user and that no client may pass to a backend (removed from every
    /// proxied request, in any `_` spelling); a trailing `*` matches a prefix.
    #[serde(default = "default_identity_headers")]
    pub identity_headers: Vec<IdentityHeader>,
    /// The account store.
    #[serde(default)]
    pub database: DatabaseSettings,
    /// Connection-level limits.
    #[serde(default)]
    pub limits: Limits,
    /// Login, tokens and the accounts page.
    #[serde(default)]
    pub auth: AuthSettings,
    /// Host-routed backend pools; required, though `[]` (control plane only) is allowed.
    pub services: Vec<ServiceSettings>,
}

/// The headers other auth proxies (oauth2-proxy, Authelia, Pomerium) set for their backends, so
/// that a backend written for one of them cannot be handed an identity by a client.
fn default_identity_headers() -> Vec<IdentityHeader> {
    [
        "remote-user",
        "remote-email",
        "remote-groups",
        "remote-name",
        "x-auth-request-user",
        "x-auth-request-email",
        "x-auth-request-groups",
        "x-auth-request-preferred-username",
        "x-forwarded-user",
        "x-forwarded-email",
        "x-forwarded-groups",
        "x-forwarded-preferred-username",
        "x-gatehouse-*",
    ]
    .into_iter()
    .map(|name| IdentityHeader(name.to_string()))
    .collect()
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
}

/// Certificate and key files (PEM) for TLS on `listen`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Where accounts live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawDatabase")]
pub struct DatabaseSettings {
    /// `sqlite://PATH` (created if missing) or `postgres://…`; `DATABASE_URL` overrides it.
    pub url: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    #[serde(default = "default_database_url")]
    url: String,
}

impl TryFrom<RawDatabase> for DatabaseSettings {
    type Error = String;
    fn try_from(raw: RawDatabase) -> Result<Self, String> {
        rules::check_database_url(&raw.url)?;
        Ok(DatabaseSettings { url: raw.url })
    }
}

fn default_database_url() -> String {
    "sqlite://data/gatehouse.db".to_string()
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            url: default_database_url(),
        }
    }
}

/// Bounds that protect the process from slow or numerous clients.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// A client must send complete request headers within this time (slowloris).
    #[serde(with = "dur")]
    pub header_read_timeout: Duration,
    /// Connections served at once; further clients wait in the accept backlog.
    pub max_connections: usize,
    /// On SIGTERM, how long in-flight requests may take to finish before the process exits.
    #[serde(with = "dur")]
    pub shutdown_timeout: Duration,
    /// Largest request head (request line + headers); 431 beyond.
    pub max_header_bytes: Size,
    /// Most header fields in one request; 431 beyond.
    pub max_headers: usize,
    /// Longest request target (path + query); 414 beyond.
    pub max_uri_bytes: Size,
    /// A request body must keep arriving: no gap between its chunks longer than this (408).
    #[serde(with = "dur")]
    pub body_read_timeout: Duration,
    /// A request body must arrive at an average rate of at least this, counted over the time
    /// spent waiting on the client (408 below it).
    pub min_body_rate: MinBodyRate,
    /// HTTP/2 streams one client connection may have open at once.
    pub h2_max_concurrent_streams: u32,
}

/// The slowest a request body may arrive, as Kestrel's `MinRequestBodyDataRate`: the bytes
/// received, divided by the time spent waiting for them, once that time exceeds `grace`. A
/// pause limit alone lets a client hold its connection (and a backend's) for days by sending a
/// byte just inside each pause. Time the proxy spends not reading (a backend applying
/// back-pressure) does not count against the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MinBodyRate {
    /// Bytes per second; `0` turns the check off.
    pub bytes_per_second: Bounded<0, 1_073_741_824>,
    /// Waiting time before the rate is first checked, so a slow start is not cut off.
    #[serde(with = "dur")]
    pub grace: Duration,
}

impl Default for MinBodyRate {
    fn default() -> Self {
        MinBodyRate {
            bytes_per_second: Bounded(240),
            grace: Duration::from_secs(5),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            shutdown_timeout: Duration::from_secs(30),
            max_header_bytes: Size(64 * 1024),
            max_headers: 100,
            max_uri_bytes: Size(8 * 1024),
            body_read_timeout: Duration::from_secs(30),
            min_body_rate: MinBodyRate::default(),
            h2_max_concurrent_streams: 200,
        }
    }
}

/// Authentication settings shared by every service.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Token format and lifetime.
    pub jwt: JwtSettings,
    /// Who may see `/accounts` and its page.
    pub accounts_page: AccountsPageAccess,
    /// Who may create accounts with `POST /account`.
    pub registration: Registration,
    /// Per-client rate limits on login and registration.
    pub limits: AuthLimits,
    /// The browser session cookie of `/.gatehouse/signin`.
    pub session: SessionSettings,
    /// The audit trail of credential events.
    pub audit: AuditSettings,
    /// Refresh tokens of `POST /login` and `POST /token`.
    pub refresh: RefreshSettings,
    /// Signing keys in the store: assertions to backends, EdDSA tokens without `key_file`.
    pub keys: KeySettings,
}

/// The audit trail (`GET /audit`): how long events are kept in the account store.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Events older than this are deleted (checked every minute).
    #[serde(with = "dur")]
    pub retention: Duration,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            retention: Duration::from_secs(90 * 24 * 60 * 60),
        }
    }
}

/// Refresh tokens: each login starts a family that lasts at most `ttl`, and whose refresh token
/// expires when unused for `idle`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RefreshSettings {
    /// The absolute lifetime of a family (one login), however often it is refreshed.
    #[serde(with = "dur")]
    pub ttl: Duration,
    /// A refresh token unused this long is expired.
    #[serde(with = "dur")]
    pub idle: Duration,
}

impl Default for RefreshSettings {
    fn default() -> Self {
        RefreshSettings {
            ttl: Duration::from_secs(30 * 24 * 60 * 60),
            idle: Duration::from_secs(7 * 24 * 60 * 60),
        }
    }
}

/// The browser session: `/.gatehouse/signin` sets a cookie holding a signed access token with
/// this lifetime (instead of `jwt.ttl`), checked and revoked like any token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionSettings {
    /// The cookie's name.
    pub cookie_name: CookieName,
    /// When set, the cookie is sent to this domain and every host under it (single sign-on
    /// across services), and `rd` may name such a host; otherwise it stays on the host that set it.
    pub cookie_domain: Option<CookieDomain>,
    /// How long a session lasts (the cookie's `Max-Age` and the token's `exp`).
    #[serde(with = "dur")]
    pub ttl: Duration,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            cookie_name: CookieName("gatehouse_session".to_string()),
            cookie_domain: None,
            ttl: Duration::from_secs(12 * 60 * 60),
        }
    }
}

/// How tokens are signed. The key comes from `GATEHOUSE_JWT_SECRET`, `secret_file` or `key_file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawJwt")]
pub struct JwtSettings {
    /// Signing algorithm, pinned on verification.
    pub algorithm: JwtAlgorithm,
    /// `iss` claim written and required.
    pub issuer: String,
    /// Token lifetime.
    pub ttl: Duration,
    /// File holding the HS256 secret (≥ 32 bytes).
    pub secret_file: Option<PathBuf>,
    /// PEM Ed25519 private key for EdDSA.
    pub key_file: Option<PathBuf>,
    /// File holding the HS256 secret used before the current one: tokens it signed still
    /// verify, nothing new is signed with it, so the secret can change without a logout.
    pub previous_secret_file: Option<PathBuf>,
    /// The HS256 secret from `GATEHOUSE_JWT_SECRET`, set by the binary (never read from YAML:
    /// secrets do not belong in config files).
    secret_override: Option<Secret>,
    /// The previous HS256 secret from `GATEHOUSE_JWT_PREVIOUS_SECRET`, likewise.
    previous_secret_override: Option<Secret>,
}

impl JwtSettings {
    /// The secret given by the environment, which wins over `secret_file`.
    pub fn secret_override(&self) -> Option<&[u8]> {
        self.secret_override.as_ref().map(|s| s.0.as_slice())
    }

    /// Sets the secret given by the environment.
    pub fn set_secret_override(&mut self, secret: Vec<u8>) {
        self.secret_override = Some(Secret(secret));
    }

    /// The previous secret given by the environment, which wins over `previous_secret_file`.
    pub fn previous_secret_override(&self) -> Option<&[u8]> {
        self.previous_secret_override
            .as_ref()
            .map(|s| s.0.as_slice())
    }

    /// Sets the previous secret given by the environment.
    pub fn set_previous_secret_override(&mut self, secret: Vec<u8>) {
        self.previous_secret_override = Some(Secret(secret));
    }
}

/// Key material that must never reach a log line.
#[derive(Clone)]
struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwt {
    #[serde(default)]
    algorithm: JwtAlgorithm,
    #[serde(default = "default_issuer")]
    issuer: String,
    #[serde(default = "default_ttl")]
    ttl: Dur,
    #[serde(default)]
    secret_file: Option<PathBuf>,
    #[serde(default)]
    key_file: Option<PathBuf>,
    #[serde(default)]
    previous_secret_file: Option<PathBuf>,
}

impl TryFrom<RawJwt> for JwtSettings {
    type Error = String;
    fn try_from(raw: RawJwt) -> Result<Self, String> {
        if raw.algorithm == JwtAlgorithm::EdDSA && raw.previous_secret_file.is_some() {
            return Err(
                "auth.jwt.previous_secret_file is an HS256 secret; with EdDSA, keys \
                        rotate instead"
                    .to_string(),
            );
        }
        Ok(JwtSettings {
            algorithm: raw.algorithm,
            issuer: raw.issuer,
            ttl: raw.ttl.0,
            secret_file: raw.secret_file,
            key_file: raw.key_file,
            previous_secret_file: raw.previous_secret_file,
            secret_override: None,
            previous_secret_override: None,
        })
    }
}

fn default_issuer() -> String {
    "gatehouse".to_string()
}

fn default_ttl() -> Dur {
    Dur(Duration::from_secs(15 * 60))
}

impl Default for JwtSettings {
    fn default() -> Self {
        JwtSettings {
            algorithm: JwtAlgorithm::default(),
            issuer: default_issuer(),
            ttl: default_ttl().0,
            secret_file: None,
            key_file: None,
            previous_secret_file: None,
            secret_override: None,
            previous_secret_override: None,
        }
    }
}

/// Token signing algorithms Gatehouse issues and accepts (one at a time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with a shared secret.
    #[default]
    HS256,
    /// Ed25519 signatures; the public key is published as JWKS.
    EdDSA,
}

/// Access to the accounts list and page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountsPageAccess {
    /// Anyone.
    Public,
    /// Any logged-in account.
    Authenticated,
    /// Admin accounts only: the list holds every account's email, so ordinary (possibly
    /// self-registered) accounts do not see it unless the operator says so.
    #[default]
    Admin,
}

/// Who may create accounts over HTTP (`gatehouse accounts create` always can).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Registration {
    /// Anyone (throttled per client network).
    #[default]
    Open,
    /// Only a caller with an admin token.
    Admin,
    /// Nobody: `POST /account` answers 403.
    Closed,
}

/// Login, registration and token-verification throttling. Attempts per minute (verifications
/// per second) are per client network (an IPv4 address or an IPv6 /64) in each replica; failed
/// logins are counted in the account store, per account and per account + client network, so
/// every replica sees them. 0 turns a limit off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthLimits {
    /// `POST /login` attempts per minute per client network.
    pub login_per_minute: u32,
    /// `POST /account` attempts per minute per client network.
    pub register_per_minute: u32,
    /// Failed logins for one account from one client network before that network backs off.
    pub network_failures: u32,
    /// Failed logins for one account from all networks before the account backs off for every
    /// network that has failed on it (a network with no recent failure still gets its try).
    pub account_failures: u32,
    /// The longest back-off: waits double from 1 s per failure past the free ones up to this.
    #[serde(with = "dur")]
    pub max_backoff: Duration,
    /// A failure counter is forgotten this long after its last failure.
    #[serde(with = "dur")]
    pub failure_memory: Duration,
    /// Signature verifications per second per client network, of tokens not verified or
    /// refused before (0 = off). Beyond it a token is refused unchecked (429).
    pub token_verifications_per_second: Bounded<0, 1_000_000>,
    /// The burst of those verifications a network may make at once.
    pub token_verification_burst: Bounded<1, 1_000_000>,
}

impl Default for AuthLimits {
    fn default() -> Self {
        AuthLimits {
            login_per_minute: 10,
            register_per_minute: 30,
            network_failures: 5,
            account_failures: 20,
            max_backoff: Duration::from_secs(15 * 60),
            failure_memory: Duration::from_secs(24 * 60 * 60),
            // A client presents a new token about once per `auth.jwt.ttl` (15 min) or refresh;
            // even a NAT of thousands of users makes a few new tokens a second. 20/s bounds a
            // single network's flood of forged EdDSA tokens to under 0.1 % of a core (about
            // 40 µs each); a burst of 50 covers a page that opens many requests with a token
            // just issued, and a whole office signing in at nine.
            token_verifications_per_second: Bounded(20),
            token_verification_burst: Bounded(50),
        }
    }
}

/// One host-routed backend pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSettings {
    /// Unique name, used in metrics and logs.
    pub name: ServiceName,
    /// Host names routed here (case-insensitive, port ignored).
    pub hosts: NonEmpty<HostName>,
    /// How a backend is picked.
    #[serde(default)]
    pub strategy: Strategy,
    /// Whether a valid token is needed.
    #[serde(default)]
    pub auth: ServiceAuth,
    /// Upstream servers.
    pub backends: NonEmpty<BackendSettings>,
    /// Only accounts with one of these roles may pass (403 otherwise); absent = any account.
    #[serde(default)]
    pub roles: Option<NonEmpty<Role>>,
    /// Whether the client's `Authorization` header reaches the backends (off: the token is
    /// Gatehouse's business, and backends get `X-Forwarded-User`/`-Email` instead).
    #[serde(default)]
    pub forward_authorization: bool,
    /// Whether `TRACE` requests are forwarded (off: 405, since a backend's echo of the request
    /// shows its headers, cookies included, to whoever reads the response).
    #[serde(default)]
    pub allow_trace: bool,
    /// Longest wait for a backend's response headers before answering 504 (`timeouts.request`
    /// wins when both are set).
    #[serde(default = "default_timeout", with = "dur")]
    pub timeout: Duration,
    /// Connect, request and idle timeouts towards the backends.
    #[serde(default)]
    pub timeouts: TimeoutSettings,
    /// Active health checks; absent = passive health only.
    #[serde(default)]
    pub health_check: Option<HealthCheckSettings>,
    /// Passive ejection of backends that keep failing.
    #[serde(default)]
    pub ejection: EjectionSettings,
    /// Retries of idempotent requests, bounded by a budget.
    #[serde(default)]
    pub retries: RetrySettings,
    /// Largest request body accepted (413 beyond); absent = unlimited (streamed).
    #[serde(default)]
    pub max_request_body: MaxBody,
    /// Read a request body up to this size whole before a backend is picked (nginx's
    /// `proxy_request_buffering`); a longer body follows its read part streaming. Absent or
    /// `0`: streamed from the first byte.
    #[serde(default)]
    pub request_buffering: BufferSize,
    /// Access rules per path and method, first match wins; no match: `auth` and `roles`.
    #[serde(default)]
    pub routes: Vec<RouteSettings>,
    /// Browser cross-origin policy; absent = no CORS headers added.
    #[serde(default)]
    pub cors: Option<CorsSettings>,
    /// Adds HSTS (on TLS), `X-Content-Type-Options`, `X-Frame-Options` and `Referrer-Policy`
    /// to responses that lack them.
    #[serde(default)]
    pub security_headers: bool,
    /// Per-client request rate limit (429 beyond).
    #[serde(default)]
    pub rate_limit: Option<RateLimitSettings>,
    /// Whether requests forwarded for an authenticated caller carry `X-Gatehouse-Assertion`,
    /// a short-lived EdDSA JWT naming the caller, signed with the store's keys.
    #[serde(default)]
    pub assertion: bool,
}

impl ServiceSettings {
    /// The wait for response headers: `timeouts.request`, else `timeout`.
    pub fn request_timeout(&self) -> Duration {
        self.timeouts.request.unwrap_or(self.timeout)
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Load-balancing strategy of a service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Strict rotation (weighted smoothly when weights differ).
    #[default]
    RoundRobin,
    /// Uniform (or weighted) random choice.
    Random,
    /// The backend with the fewest requests in flight (ties broken in turn).
    LeastRequests,
    /// Power of two choices: two weighted-random picks, the one with fewer in flight.
    P2c,
}

/// A service's authentication policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceAuth {
    /// Every request needs a valid bearer token.
    #[default]
    Required,
    /// Open: proxied without a token.
    None,
}

/// One upstream server of a service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSettings {
    /// `http://host:port`.
    pub url: BackendUrl,
    /// Relative share of traffic.
    #[serde(default)]
    pub weight: Weight,
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
