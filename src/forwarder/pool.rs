//! One worker's keep-alive HTTP/1.1 connections to its backends.
//!
//! Each worker thread has its own pool, so checkout is an uncontended lock, and a connection is
//! only ever used by the tasks of its worker. A connection is parked once a response has been
//! read from it in full (by the response body, see `h1::BackendBody`), so every parked
//! connection is idle; checkout passes over those the backend closed or wrote to meanwhile.
//! Connecting is a separate step from sending, so a refused backend is known before the
//! request is handed over and the same request can go to the next backend.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use foldhash::fast::RandomState;
use http::uri::Authority;

use super::h1::Conn;

/// Parked connections kept per backend; beyond this a finished connection is closed.
const MAX_PARKED_PER_BACKEND: usize = 1024;

#[derive(Debug)]
struct Parked {
    conn: Conn,
    /// When it stops being worth reusing: parked time plus the service's idle timeout.
    expires: Instant,
}

/// Keep-alive connections by backend `host:port`.
#[derive(Default)]
pub(super) struct Pool {
    /// foldhash, not SipHash: two lookups per request, keys only from the config's backends.
    parked: Mutex<HashMap<Box<str>, VecDeque<Parked>, RandomState>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

/// Where a connection goes back to once its response has been read: its worker's pool (if the
/// worker still runs), under its backend, for at most `idle`.
#[derive(Debug)]
pub(crate) struct Home {
    pub(super) pool: Weak<Pool>,
    pub(super) backend: Authority,
    pub(super) idle: Duration,
}

impl Home {
    pub(crate) fn park(self, conn: Conn) {
        if let Some(pool) = self.pool.upgrade() {
            pool.park(&self.backend, conn, self.idle);
        }
    }
}

impl Pool {
    /// A connection to `backend` ready for a request, and whether it is a new one: a parked
    /// one if any is still open, else a new one, connected within `connect_timeout`.
    pub(super) async fn checkout(
        &self,
        backend: &Authority,
        connect_timeout: Duration,
    ) -> io::Result<(Conn, bool)> {
        match self.take_idle(backend.as_str()) {
            Some(conn) => Ok((conn, false)),
            None => Ok((
                Conn::connect(backend.as_str(), connect_timeout).await?,
                true,
            )),
        }
    }

    /// Parks `conn` for reuse, for at most `idle`.
    fn park(&self, backend: &Authority, conn: Conn, idle: Duration) {
        let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
        let queue = match parked.get_mut(backend.as_str()) {
            Some(queue) => queue,
            None => parked.entry(backend.as_str().into()).or_default(),
        };
        let now = Instant::now();
        // The oldest are at the front: those past their time go first.
        while queue.front().is_some_and(|p| now > p.expires) {
            queue.pop_front();
        }
        if queue.len() < MAX_PARKED_PER_BACKEND {
            queue.push_back(Parked {
                conn,
                expires: now + idle,
            });
        }
    }

    /// The most recently parked connection still open (the likeliest to be: the backend's own
    /// idle timeout has had the least time to close it); closed and long-idle ones met on the
    /// way are dropped.
    fn take_idle(&self, backend: &str) -> Option<Conn> {
        let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
        let queue = parked.get_mut(backend)?;
        let now = Instant::now();
        while let Some(entry) = queue.pop_back() {
            if now <= entry.expires && entry.conn.is_idle() {
                return Some(entry.conn);
            }
        }
        None
    }
}
