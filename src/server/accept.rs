//! The accept loop: one task per connection, a connection cap, header-read timeout (the TLS
//! handshake included, and for HTTP/2, where hyper has none, the wait for each stream's
//! head), request limits, and a bounded graceful drain when the shutdown future completes.
//!
//! The first bytes decide the protocol (`preface`). A cleartext HTTP/1 connection is served by
//! Gatehouse's own server (`h1`) until a request it leaves to hyper; then, like a TLS HTTP/1
//! one, by hyper's HTTP/1 connection alone, and an HTTP/2 one by hyper's HTTP/2 connection.
//! hyper's connection states are boxed, so a connection's task is sized for what serves it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::h1;
use super::listen;
use super::preface::{self, Protocol};
use super::stream::ClientStream;
use super::tls::{self, ServerTls};
use crate::clock::now_ms;
use crate::config::Limits;
use crate::handler::{self, RequestLimits};
use crate::request::{ClientInfo, ConnectionSlot};
use crate::state::{AppState, Worker};

/// Accept errors such as EMFILE are retried after this pause instead of spinning.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Rapid reset (CVE-2023-44487): streams a client may open and cancel before the server has
/// accepted them; beyond this the connection is closed with ENHANCE_YOUR_CALM. Pinned here (it
/// is h2's default) so a dependency update cannot loosen it.
const H2_MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;
/// "MadeYouReset" (CVE-2025-8671): streams the server itself had to reset because the client
/// broke the protocol, before the connection is closed (h2's default, pinned likewise).
const H2_MAX_LOCAL_ERROR_RESET_STREAMS: usize = 1024;

/// hyper refuses a smaller HTTP/1 read buffer (it panics), so `max_header_bytes` is raised to this.
const MIN_H1_BUFFER: usize = 8 * 1024;

/// Connection-level settings of one listener.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time a client has to send complete request headers (and finish the TLS handshake).
    pub header_read_timeout: Duration,
    /// How long in-flight requests may run after shutdown begins.
    pub shutdown_timeout: Duration,
    /// Largest request head (HTTP/1 read buffer; HTTP/2 header list size); 431 beyond.
    pub max_header_bytes: usize,
    /// Most header fields in one request; 431 beyond.
    pub max_headers: usize,
    /// Longest request target (path + query); 414 beyond.
    pub max_uri_bytes: usize,
    /// HTTP/2 streams one connection may have open at once (advertised in SETTINGS).
    pub h2_max_concurrent_streams: u32,
    /// TLS on this listener; `None` for cleartext (HTTP/1.1 and h2c).
    pub tls: Option<Arc<ServerTls>>,
}

impl From<&Limits> for ServerOptions {
    fn from(limits: &Limits) -> Self {
        ServerOptions {
            max_connections: limits.max_connections,
            header_read_timeout: limits.header_read_timeout,
            shutdown_timeout: limits.shutdown_timeout,
            max_header_bytes: usize::try_from(limits.max_header_bytes.0).unwrap_or(usize::MAX),
            max_headers: limits.max_headers,
            max_uri_bytes: usize::try_from(limits.max_uri_bytes.0).unwrap_or(usize::MAX),
            h2_max_concurrent_streams: limits.h2_max_concurrent_streams,
            tls: None,
        }
    }
}

impl ServerOptions {
    /// The same options serving TLS with `tls` (or cleartext with `None`).
    pub fn with_tls(mut self, tls: Option<Arc<ServerTls>>) -> Self {
        self.tls = tls;
        self
    }

    fn request_limits(&self) -> RequestLimits {
        RequestLimits {
            max_uri_bytes: self.max_uri_bytes,
            max_headers: self.max_headers,
            max_header_bytes: self.max_header_bytes,
        }
    }
}

/// One worker: serves `listener` on the current runtime until `shutdown` completes, then
/// stops accepting and lets in-flight requests finish for at most `shutdown_timeout`.
/// `permits` is the connection cap, shared by all workers.
pub(super) async fn serve_worker(
    mut sockets: watch::Receiver<listen::Socket>,
    state: Arc<AppState>,
    options: ServerOptions,
    permits: Arc<Semaphore>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let builders = Arc::new(Builders::new(&options));
    let acceptor = options.tls.as_ref().map(|tls| tls.acceptor());
    let limits = options.request_limits();
    let worker = Arc::new(Worker::new(state));
    // Each connection task holds a receiver: `send` asks them to close gracefully, and
    // `closed` completes once the last one has (what hyper-util's GracefulShutdown does, but
    // the tasks also close connections of their own accord, see `closing`).
    let (drain, _) = watch::channel(());
    let Some(mut listener) = listen::for_this_runtime(&sockets.borrow_and_update())? else {
        return Ok(()); // Closed before this worker started.
    };
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
            Ok(()) = sockets.changed() => {
                // `listen` changed on reload: accept on the new socket; this worker's handle
                // on the old one closes here, connections already accepted carry on.
                match listen::for_this_runtime(&sockets.borrow_and_update()) {
                    Ok(Some(moved)) => listener = moved,
                    Ok(None) => break, // Closed: shutting down.
                    Err(error) => tracing::error!(%error, "cannot accept on the new listener"),
                }
                continue;
            }
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let trusted = Arc::clone(&worker.state.trusted_proxies);
        let client = Arc::new(ClientInfo::new(peer, worker.state.proto, trusted));
        let slot = ConnectionSlot::new(permit, &worker.state.metrics.connections);
        let mut draining = drain.subscribe();
        let builders = Arc::clone(&builders);
        let acceptor = acceptor.clone();
        let header_read_timeout = options.header_read_timeout;
        let (max_head, max_headers) = (h1_buffer(&options), options.max_headers);
        let worker = Arc::clone(&worker);
        tokio::spawn(async move {
            // The slot (captured) is held until the connection ends.
            let Some((stream, protocol)) =
                ready(stream, acceptor.as_ref(), header_read_timeout).await
            else {
                return;
            };
            let stream = match (stream, protocol) {
                // Cleartext HTTP/1: Gatehouse's own server first; hyper from the first request
                // it leaves to hyper, if any.
                (ClientStream::Plain(socket), Protocol::Http1) => {
                    let settings = h1::Settings {
                        worker: Arc::clone(&worker),
                        client: Arc::clone(&client),
                        limits,
                        header_read_timeout,
                        max_head,
                        max_headers,
                    };
                    match h1::serve(socket, &settings, &mut draining).await {
                        Ok(h1::Ended::HandedOver(continued)) => {
                            ClientStream::Continued(Box::new(continued))
                        }
                        Ok(h1::Ended::Closed) => return,
                        Err(error) => {
                            tracing::debug!(%peer, %error, "connection ended with an error");
                            return;
                        }
                    }
                }
                (stream, _) => stream,
            };
            // Requests in progress are tracked for HTTP/2's idle bound only (see `closing`):
            // an HTTP/1.1 request pays for no counter and no clock read.
            let activity = (protocol == Protocol::Http2).then(|| Arc::new(Activity::new()));
            let service = service_fn({
                let (worker, slot) = (Arc::clone(&worker), slot.clone());
                let activity = activity.clone();
                move |mut request: Request<Incoming>| {
                    let busy = activity.as_ref().map(Activity::start);
                    // An upgraded connection outlives this task (it becomes a tunnel): the
                    // tunnel takes a share of the slot, so it still counts against
                    // max_connections.
                    if request.headers().contains_key(http::header::UPGRADE) {
                        request.extensions_mut().insert(slot.clone());
                    }
                    let (worker, client) = (Arc::clone(&worker), Arc::clone(&client));
                    async move {
                        let _busy = busy;
                        Ok::<_, std::convert::Infallible>(
                            handler::handle(worker, request, client, limits).await,
                        )
                    }
                }
            });
            let io = TokioIo::new(stream);
            let ended = match protocol {
                Protocol::Http1 => {
                    let connection = builders.http1.serve_connection(io, service);
                    // hyper's header-read timeout bounds an idle HTTP/1.1 connection, keep-alive
                    // included, so only a drain closes it from here: no timer of ours is
                    // polled on every wake. On graceful shutdown: no further request.
                    let closing = async {
                        let _ = draining.changed().await;
                    };
                    // Boxed: hyper's connection state is large, and most cleartext connections
                    // never get here (`h1` serves them), so their tasks are not sized for it.
                    Box::pin(serve(connection.with_upgrades(), closing, |c| {
                        c.graceful_shutdown()
                    }))
                    .await
                }
                Protocol::Http2 => {
                    let activity = activity.expect("made above for HTTP/2");
                    let connection = builders.http2.serve_connection(io, service);
                    let closing = closing(&mut draining, &activity, header_read_timeout);
                    // HTTP/2: GOAWAY, open streams finish.
                    Box::pin(serve(connection, closing, |c| c.graceful_shutdown())).await
                }
            };
            if let Err(error) = ended {
                tracing::debug!(%peer, error = %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(
        connections = drain.receiver_count(),
        "shutting down: draining in-flight requests"
    );
    let drained = async {
        let _ = drain.send(());
        drain.closed().await;
    };
    tokio::select! {
        () = drained => tracing::info!("all connections drained"),
        () = tokio::time::sleep(options.shutdown_timeout) => {
            tracing::warn!(timeout = ?options.shutdown_timeout, "drain timed out; closing the remaining connections");
        }
    }
    Ok(())
}

/// Waits, within `deadline`, until hyper can serve the connection without an unbounded read:
/// the TLS handshake (if any) is done and the first bytes tell HTTP/1 from HTTP/2 (returned).
async fn ready(
    stream: TcpStream,
    acceptor: Option<&TlsAcceptor>,
    deadline: Duration,
) -> Option<(ClientStream, Protocol)> {
    let Some(acceptor) = acceptor else {
        return match preface::arrives(&stream, deadline).await {
            Some(protocol) => Some((ClientStream::Plain(stream), protocol)),
            None => {
                tracing::debug!(peer = ?stream.peer_addr().ok(), "no request within the header read timeout; closing");
                None
            }
        };
    };
    // Boxed: a TLS handshake's state is large, and inline it would size every connection's
    // task, cleartext ones included, for as long as the connection lives.
    Box::pin(tls::accept(acceptor, stream, deadline)).await
}

/// Serves `connection` until it ends; once `closing` completes first, asks it to shut down
/// gracefully (`shutdown`) and lets it finish.
async fn serve<C>(
    connection: C,
    closing: impl Future<Output = ()>,
    shutdown: impl FnOnce(Pin<&mut C>),
) -> Result<(), hyper::Error>
where
    C: Future<Output = Result<(), hyper::Error>>,
{
    tokio::pin!(connection);
    tokio::select! {
        ended = connection.as_mut() => ended,
        () = closing => {
            shutdown(connection.as_mut());
            connection.await
        }
    }
}

/// Completes when an HTTP/2 connection should be closed gracefully: the server is draining, or
/// no request has been in progress on it for `idle`. hyper closes an HTTP/1.1 connection that
/// has not sent a complete head within its header-read timeout, idle keep-alive included; it
/// has no such bound for HTTP/2, where a client could otherwise hold its connection (and slot)
/// without ever finishing a HEADERS frame, answering pings to stay alive. The same bound here.
async fn closing(draining: &mut watch::Receiver<()>, activity: &Activity, idle: Duration) {
    tokio::select! {
        _ = draining.changed() => {}
        () = activity.idle_for(idle) => {}
    }
}

/// The requests in progress on one connection, and when the last one ended (or the connection
/// began), in process-clock milliseconds.
struct Activity {
    in_flight: AtomicUsize,
    since: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            in_flight: AtomicUsize::new(0),
            since: AtomicU64::new(now_ms()),
        }
    }

    /// Marks a request in progress until the returned guard drops (its handler finished, or was
    /// dropped when the client reset the stream).
    fn start(activity: &Arc<Activity>) -> Busy {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        Busy(Arc::clone(activity))
    }

    /// Completes once no request has been in progress for `limit`.
    async fn idle_for(&self, limit: Duration) {
        let limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        loop {
            let quiet = if self.in_flight.load(Ordering::Relaxed) == 0 {
                now_ms().saturating_sub(self.since.load(Ordering::Relaxed))
            } else {
                0
            };
            if quiet >= limit_ms {
                return;
            }
            tokio::time::sleep(Duration::from_millis(limit_ms - quiet)).await;
        }
    }
}

/// A request in progress on its connection.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.since.store(now_ms(), Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// hyper's HTTP/1 read buffer, so the longest head it reads (431 beyond); `h1` hands a longer
/// one to hyper to refuse.
fn h1_buffer(options: &ServerOptions) -> usize {
    options.max_header_bytes.max(MIN_H1_BUFFER)
}

/// hyper's connection settings for each protocol, built once per worker.
struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl Builders {
    fn new(options: &ServerOptions) -> Self {
        let mut http1 = http1::Builder::new();
        // A head that does not fit the read buffer, or has too many fields, is answered 431 by
        // hyper. The buffer is never under 8 KiB (hyper refuses less), so `RequestLimits`
        // enforces the exact `max_header_bytes`.
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(options.header_read_timeout)
            .keep_alive(true)
            .max_buf_size(h1_buffer(options))
            .max_headers(options.max_headers);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        // Pings find peers that vanished without closing, so their slots are freed. A header
        // list over its size gets 431 from h2.
        http2
            .timer(TokioTimer::new())
            .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT)
            .max_concurrent_streams(options.h2_max_concurrent_streams)
            .max_header_list_size(u32::try_from(options.max_header_bytes).unwrap_or(u32::MAX))
            .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESET_STREAMS)
            .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESET_STREAMS);
        Builders { http1, http2 }
    }
}
