//! The accept loop: one task per connection, a connection cap, header-read timeout, and a
//! bounded graceful drain when the shutdown future completes.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use prometheus::IntGauge;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::preface;
use crate::config::Limits;
use crate::forwarder::ClientInfo;
use crate::handler;
use crate::state::{AppState, Worker};

/// Accept errors such as EMFILE are retried after this pause instead of spinning.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection-level settings of one listener.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time a client has to send complete request headers.
    pub header_read_timeout: Duration,
    /// How long in-flight requests may run after shutdown begins.
    pub shutdown_timeout: Duration,
}

impl From<&Limits> for ServerOptions {
    fn from(limits: &Limits) -> Self {
        ServerOptions {
            max_connections: limits.max_connections,
            header_read_timeout: limits.header_read_timeout,
            shutdown_timeout: limits.shutdown_timeout,
        }
    }
}

/// One worker: serves `listener` on the current runtime until `shutdown` completes, then
/// stops accepting and lets in-flight requests finish for at most `shutdown_timeout`.
/// `permits` is the connection cap, shared by all workers.
pub(super) async fn serve_worker(
    listener: TcpListener,
    state: Arc<AppState>,
    options: ServerOptions,
    permits: Arc<Semaphore>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let builder = Arc::new(connection_builder(&options));
    let worker = Arc::new(Worker::new(state));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        // Waiting for a permit before accepting leaves excess clients in the kernel backlog.
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => permit.expect("never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let header_read_timeout = options.header_read_timeout;
        let client = Arc::new(ClientInfo::new(peer, worker.state.proto));
        let active = Active::new(&worker.state.metrics.connections);
        let worker = Arc::clone(&worker);
        let service = service_fn(move |request| {
            let (worker, client) = (Arc::clone(&worker), Arc::clone(&client));
            async move {
                Ok::<_, std::convert::Infallible>(handler::handle(worker, request, client).await)
            }
        });
        let watcher = graceful.watcher();
        let builder = Arc::clone(&builder);
        tokio::spawn(async move {
            let _slot = (permit, active);
            if !preface::arrives(&stream, header_read_timeout).await {
                tracing::debug!(%peer, "no request within the header read timeout; closing");
                return;
            }
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%peer, error = %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(
        connections = graceful.count(),
        "shutting down: draining in-flight requests"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(options.shutdown_timeout) => {
            tracing::warn!(timeout = ?options.shutdown_timeout, "drain timed out; closing the remaining connections");
        }
    }
    Ok(())
}

/// Counts a connection in `gatehouse_connections_active` for as long as it lives.
struct Active(IntGauge);

impl Active {
    fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        Active(gauge.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn connection_builder(options: &ServerOptions) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true);
    // Pings find peers that vanished without closing, so their slots are freed.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT);
    builder
}
