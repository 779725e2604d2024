//! One worker's keep-alive HTTP/1.1 connections to its backends.
//!
//! Each worker thread has its own pool, so checkout is an uncontended lock and the connection
//! task runs on the same thread as the request. A connection is parked again as soon as its
//! response headers arrive; while the body still streams it reports not ready and checkout
//! passes over it. Connecting is a separate step from sending, so a refused backend is known
//! before the request is handed over and the same request can go to the next backend.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::uri::Authority;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::body::UpstreamBody;

/// Parked connections kept per backend; beyond this a finished connection is closed.
const MAX_PARKED_PER_BACKEND: usize = 1024;

/// A connection able to carry one request at a time.
pub(super) type Sender = SendRequest<UpstreamBody>;

struct Parked {
    sender: Sender,
    /// When it stops being worth reusing: parked time plus the service's idle timeout.
    expires: Instant,
}

/// Keep-alive connections by backend `host:port`.
#[derive(Default)]
pub(super) struct Pool {
    parked: Mutex<HashMap<Box<str>, VecDeque<Parked>>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

impl Pool {
    /// A connection to `backend` ready for a request: a parked one if any is ready, else a new
    /// one, connected within `connect_timeout`.
    pub(super) async fn checkout(
        &self,
        backend: &Authority,
        connect_timeout: Duration,
    ) -> io::Result<Sender> {
        match self.take_ready(backend.as_str()) {
            Some(sender) => Ok(sender),
            None => connect(backend, connect_timeout).await,
        }
    }

    /// Parks `sender` for reuse once its current exchange ends, for at most `idle`.
    pub(super) fn park(&self, backend: &Authority, sender: Sender, idle: Duration) {
        let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
        let queue = match parked.get_mut(backend.as_str()) {
            Some(queue) => queue,
            None => parked.entry(backend.as_str().into()).or_default(),
        };
        if queue.len() < MAX_PARKED_PER_BACKEND {
            queue.push_back(Parked {
                sender,
                expires: Instant::now() + idle,
            });
        }
    }

    /// The oldest ready connection; closed and long-idle ones met on the way are dropped.
    /// Older entries come first, and they are the likeliest to have finished their exchange.
    fn take_ready(&self, backend: &str) -> Option<Sender> {
        let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
        let queue = parked.get_mut(backend)?;
        let now = Instant::now();
        let mut index = 0;
        while index < queue.len() {
            let entry = &queue[index];
            if entry.sender.is_closed() || now > entry.expires {
                queue.remove(index);
            } else if entry.sender.is_ready() {
                return queue.remove(index).map(|p| p.sender);
            } else {
                index += 1;
            }
        }
        None
    }
}

/// Opens a new connection and runs it on this worker; it can be upgraded (WebSocket) once the
/// backend answers 101.
pub(super) async fn connect(backend: &Authority, timeout: Duration) -> io::Result<Sender> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(backend.as_str()))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    let backend = backend.clone();
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%backend, %error, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}
