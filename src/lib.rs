//! Gatehouse: an authenticating reverse proxy and load balancer.
//!
//! `docs/architecture.md` is the map: the request path, the layers and what each may use, the
//! snapshot and reload model, the auth and revocation model. The modules, bottom layer first
//! (nothing imports from a layer above its own; `layers.rs` checks it in every test run):
//! - `allocator`, `clock`, `request`, `file_watch`: leaves: the global allocator (mimalloc);
//!   the one clock; what every layer knows about one request (client, caller, request id, host,
//!   connection slot); watching replaced files.
//! - `store`: the account store (SQLite or PostgreSQL) behind the `AccountStore` trait.
//! - `config`: YAML → validated `Settings`, errors as `PATH:LINE:COLUMN: message`.
//! - `metrics`: the Prometheus registry; handles resolved per snapshot, not per request.
//! - `auth`: JWT issue/verify, argon2id, revocation deny-lists, login throttling, API keys.
//! - `error`: `ProxyError`, its status mapping and JSON error bodies.
//! - `policy`: per-service CORS, security headers, rate limits, body limits, retry budget.
//! - `balancer`: `Backend`, strategies over a weighted schedule, health and active checks.
//! - `service`: a service's runtime form: policy, backends, balancer.
//! - `forwarder`: pooled upstream client, header rewrite, failover, upgrades.
//! - `router`: Host header → service (the handler sends unclaimed hosts to `control`).
//! - `state`: the live snapshot (`ArcSwap`) and what requests share.
//! - `control`: control-plane endpoints (`/account`, `/login`, `/logout`, `/accounts`, …).
//! - `signin`: browser sign-in on service hosts (`/.gatehouse/signin`, `signout`, `me`): the
//!   form, the session cookie, CSRF and `rd` rules.
//! - `handler`: one request end to end: limits, route, policy, forward, error → response, log.
//! - `server`: worker threads, listeners, TLS, connections, drain, the admin listener.
//! - `reload`: SIGHUP or a file change → new snapshot, swapped only if it builds.
//! - `cli`: `gatehouse accounts …`, `gatehouse apikeys …` and `gatehouse probe URL`.
//!
//! Public: what the binary, the integration tests, the benchmarks (`benches/`) and the fuzz
//! targets (`fuzz/`) drive. The rest is private to the crate.

pub mod allocator;
pub mod auth;
mod balancer;
pub mod cli;
pub mod clock;
pub mod config;
mod control;
mod error;
mod file_watch;
pub mod forwarder;
mod handler;
pub mod http1;
#[cfg(test)]
mod layers;
pub mod metrics;
mod policy;
pub mod reload;
pub mod request;
pub mod router;
pub mod server;
pub mod service;
mod signin;
mod state;
pub mod store;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use config::Settings;
pub use state::AppState;

/// Starts everything but the listener: keys, the account store (opened and migrated) and the
/// revocation feed; then the state requests share.
pub async fn start(settings: &Settings) -> Result<Arc<AppState>, auth::StartError> {
    let metrics = metrics::Metrics::new();
    let assertion_service = settings
        .services
        .iter()
        .find(|service| service.assertion)
        .map(|service| service.name.0.clone());
    let auth = auth::Auth::start_for(
        &settings.auth,
        &settings.database.url,
        metrics.clone(),
        assertion_service.as_deref(),
    )
    .await?;
    Ok(Arc::new(AppState::new(settings, Arc::new(auth), metrics)))
}

/// Runs the proxy on an already-bound listener until `shutdown` completes, then drains.
///
/// The calling runtime serves as the first of `settings.workers` workers.
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let state = start(&settings).await.map_err(std::io::Error::other)?;
    serve(listener, state, &settings, shutdown).await
}

/// Serves an already started `state` on `listener` until `shutdown` completes, then drains.
///
/// With `settings.tls` the listener speaks TLS, and the certificate is reloaded when either
/// file changes (the binary also reloads it on SIGHUP).
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    settings: &Settings,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let tls = match &settings.tls {
        Some(files) => Some(server::ServerTls::load(files).map_err(std::io::Error::other)?),
        None => None,
    };
    let _watch = tls.as_ref().and_then(server::ServerTls::watch);
    let options = server::ServerOptions::from(&settings.limits).with_tls(tls);
    let workers = settings.workers.resolve();
    server::serve_workers(listener, settings.listen, state, options, workers, shutdown).await
}
