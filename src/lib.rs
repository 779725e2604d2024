//! Gatehouse: an authenticating reverse proxy and load balancer.
//!
//! # Layout
//! The request path, in order:
//! - `server`: worker threads, TLS (rustls, hot-swapped certificate), per-connection HTTP/1.1 +
//!   HTTP/2, request limits, connection cap, drain, access log.
//! - `handler`: one request end to end: route, policy, forward, error → response.
//! - `router`: Host header → service; anything else → `control`.
//! - `auth`: JWT issue/verify, argon2id, revocation deny-lists, login throttling.
//! - `service`: a service's runtime form: policy, backends, balancer.
//! - `policy`: per-service CORS, security headers, rate limits and body limits.
//! - `balancer`: strategies (round-robin, random) over a weighted schedule; backend health.
//! - `forwarder`: pooled upstream client, header rewrite, failover on refused connections.
//! - `control`: control-plane endpoints (`/account`, `/login`, `/logout`, `/accounts`, `/health`, …).
//! - `error`: `ProxyError`, its status mapping and JSON error bodies.
//! - `config`: YAML → validated `Settings`, errors as `PATH:LINE:COLUMN: message`.
//! - `metrics`: the Prometheus registry; handles resolved per snapshot, not per request.
//! - `state`: the live snapshot (`ArcSwap`) and what requests share.
//! - `reload`: SIGHUP or a file change → new snapshot, swapped only if it builds.
//! - `file_watch`: watching replaced files (config, certificate), shared by the reloads.
//! - `admin`: `gatehouse accounts create|list|disable|seed`.
//! - `probe`: `gatehouse probe URL`, the container health check.
//! - `store`: the account store (SQLite or PostgreSQL) behind the `AccountStore` trait.

pub mod admin;
pub mod auth;
pub mod balancer;
pub mod config;
mod control;
pub mod error;
mod file_watch;
pub mod forwarder;
mod handler;
pub mod metrics;
pub mod policy;
pub mod probe;
pub mod reload;
pub mod router;
pub mod server;
pub mod service;
pub mod state;
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
    let auth = auth::Auth::start(&settings.auth, &settings.database.url, metrics.clone()).await?;
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
