//! The request body sent upstream: the client's body as it streams in (or first read ahead, up
//! to the service's `request_buffering`), telling the forwarder when it has been sent in full
//! (the backend's response deadline starts then), enforcing the service's size limit, the pause
//! allowed between chunks and the minimum rate, and marking its errors as the client's. And the
//! response body sent back: the backend's, cut off when the backend goes silent mid-body.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use crate::balancer::InFlight;
use crate::clock::now_ms;
use crate::error::BodyError;
use crate::policy::{BodyClock, BodyLimits, SlowBody};

use super::h1::BackendBody;

/// The client's body failed: the client's fault, not the backend's.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientBodyError {
    /// Bad chunking, or cut short.
    #[error("the request body could not be read: {0}")]
    Read(#[source] hyper::Error),
    /// More bytes than the service accepts.
    #[error("the request body exceeds {0} bytes")]
    TooLarge(u64),
    /// The client paused too long, or sent too slowly.
    #[error(transparent)]
    Slow(SlowBody),
}

/// The body of an upstream request.
#[derive(Debug)]
pub(crate) struct UpstreamBody {
    /// The client's body until it has ended; `None` after (and for a retry's empty body: only
    /// bodiless requests are retried).
    body: Option<Incoming>,
    /// Frames read ahead of the backend (`request_buffering`), sent first.
    read_ahead: VecDeque<Frame<Bytes>>,
    /// Data bytes in `read_ahead`.
    read_ahead_bytes: u64,
    /// Present when there is a body to wait for.
    sent: Option<Arc<Notify>>,
    max_bytes: Option<u64>,
    /// Times the waits on the client (stall and minimum rate) and counts what arrived.
    clock: BodyClock,
    /// When the body last handed data on (process-clock ms), or [`WAITING_ON_CLIENT`]: lets
    /// the forwarder tell a backend that stopped reading from a client that stopped sending.
    /// Only for requests with a body.
    handed_on: Option<Arc<AtomicU64>>,
}

/// `handed_on` while the body waits for the client's next bytes.
pub(crate) const WAITING_ON_CLIENT: u64 = u64::MAX;

impl UpstreamBody {
    /// Wraps the client's body; the returned notify fires once it has been sent, if it has one.
    pub(crate) fn new(body: Incoming, limits: BodyLimits) -> (Self, Option<Arc<Notify>>) {
        let sent = (!body.is_end_stream()).then(|| Arc::new(Notify::new()));
        let handed_on = sent.as_ref().map(|_| Arc::new(AtomicU64::new(now_ms())));
        let mut upstream = UpstreamBody::empty(limits);
        upstream.body = Some(body);
        upstream.sent = sent.clone();
        upstream.handed_on = handed_on;
        (upstream, sent)
    }

    /// An empty body, for a retry of a bodiless request.
    pub(crate) fn empty(limits: BodyLimits) -> Self {
        UpstreamBody {
            body: None,
            read_ahead: VecDeque::new(),
            read_ahead_bytes: 0,
            sent: None,
            max_bytes: limits.max_bytes,
            clock: BodyClock::new(limits.pace),
            handed_on: None,
        }
    }

    /// When the body last handed data on, for requests with a body (see `handed_on`).
    pub(crate) fn handed_on(&self) -> Option<Arc<AtomicU64>> {
        self.handed_on.clone()
    }

    /// Reads the client's body ahead, until it ends or `limit` bytes are in, under the same
    /// limits as when streaming; the frames read are sent first, the rest streams after them.
    pub(crate) async fn read_ahead(&mut self, limit: u64) -> Result<(), ClientBodyError> {
        while self.read_ahead_bytes < limit {
            match std::future::poll_fn(|cx| self.poll_client(cx)).await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        self.read_ahead_bytes += data.len() as u64;
                    }
                    self.read_ahead.push_back(frame);
                }
                Some(Err(error)) => return Err(error),
                None => break,
            }
        }
        // An empty body that ended here is sent in full already: hyper will not poll it.
        if self.is_end_stream() {
            self.notify_sent();
        }
        Ok(())
    }

    /// Puts data taken from the body back in front of the rest (a request that could not be
    /// written goes out again on another connection). The data was counted when it arrived.
    pub(crate) fn put_back(&mut self, data: Vec<Bytes>) {
        for bytes in data.into_iter().rev() {
            self.read_ahead_bytes += bytes.len() as u64;
            self.read_ahead.push_front(Frame::data(bytes));
        }
    }

    /// The client's next frame, counted and timed.
    fn poll_client(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        let Some(body) = &mut self.body else {
            return Poll::Ready(None);
        };
        match Pin::new(body).poll_frame(cx) {
            Poll::Pending => {
                if let Some(handed_on) = &self.handed_on {
                    handed_on.store(WAITING_ON_CLIENT, Ordering::Relaxed);
                }
                // The clock starts at the first pending poll after data (not at the data
                // itself), so time the backend spent not reading is not blamed on the client.
                match self.clock.poll_expired(cx) {
                    Poll::Ready(slow) => Poll::Ready(Some(Err(ClientBodyError::Slow(slow)))),
                    Poll::Pending => Poll::Pending,
                }
            }
            Poll::Ready(Some(Ok(frame))) => match self.count(&frame) {
                Ok(()) => Poll::Ready(Some(Ok(frame))),
                Err(error) => Poll::Ready(Some(Err(error))),
            },
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(ClientBodyError::Read(error)))),
            Poll::Ready(None) => {
                self.body = None;
                Poll::Ready(None)
            }
        }
    }

    fn count(&mut self, frame: &Frame<Bytes>) -> Result<(), ClientBodyError> {
        if let Some(handed_on) = &self.handed_on {
            handed_on.store(now_ms(), Ordering::Relaxed);
        }
        let bytes = frame.data_ref().map_or(0, |data| data.len() as u64);
        self.clock.arrived(bytes);
        match self.max_bytes {
            Some(max) if self.clock.received() > max => Err(ClientBodyError::TooLarge(max)),
            _ => Ok(()),
        }
    }

    fn notify_sent(&self) {
        if let Some(sent) = &self.sent {
            // notify_one keeps a permit, so a waiter that arrives later still wakes.
            sent.notify_one();
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        let this = &mut *self;
        let polled = match this.read_ahead.pop_front() {
            Some(frame) => {
                if let Some(data) = frame.data_ref() {
                    this.read_ahead_bytes -= data.len() as u64;
                }
                if let Some(handed_on) = &this.handed_on {
                    handed_on.store(now_ms(), Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            None => this.poll_client(cx),
        };
        // hyper stops polling once `is_end_stream` says so, so the last data frame can be the
        // end too.
        let done = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.is_end_stream(),
            _ => false,
        };
        if done {
            this.notify_sent();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.read_ahead.is_empty() && self.body.as_ref().is_none_or(Incoming::is_end_stream)
    }

    /// The client's remaining body plus what was read ahead: exact when the client's is (or
    /// the whole body was read ahead), so the backend gets a `Content-Length`.
    fn size_hint(&self) -> SizeHint {
        let rest = self
            .body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Incoming::size_hint);
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(self.read_ahead_bytes));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(self.read_ahead_bytes));
        }
        hint
    }
}

/// The backend went silent mid-body.
#[derive(Debug, thiserror::Error)]
#[error("the backend sent no part of its response body for {0:?}")]
pub(crate) struct BackendStalled(Duration);

/// A backend's response body on its way to the client. The status line is sent by then, so a
/// backend that stops sending cannot be answered 504; without a bound the client would wait as
/// long as the backend hangs, holding its connection. A pause longer than `stall` (the service's
/// `timeout`, the same patience as for the response head) ends the body with an error, which
/// makes hyper abort the client's response (a connection close on HTTP/1.1, `RST_STREAM` on
/// HTTP/2) instead of finishing it as if complete. Like nginx's `proxy_read_timeout`, it bounds
/// each pause, not the whole transfer.
pub(crate) struct ResponseBody {
    inner: BackendBody,
    stall: Duration,
    /// Armed while waiting for the backend's next frame.
    timer: Option<Pin<Box<Sleep>>>,
    waiting: bool,
    /// The request counted in flight on its backend (load-aware strategies), until this body
    /// has been sent or abandoned: a long download is load as much as a slow answer.
    _in_flight: Option<InFlight>,
}

impl ResponseBody {
    /// Wraps `inner`, allowing pauses of at most `stall`, holding `in_flight` until dropped.
    pub(crate) fn new(inner: BackendBody, stall: Duration, in_flight: Option<InFlight>) -> Self {
        ResponseBody {
            inner,
            stall,
            timer: None,
            waiting: false,
            _in_flight: in_flight,
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting = false;
                Poll::Ready(frame.map(|f| f.map_err(BodyError::from)))
            }
            Poll::Pending => {
                // The clock is read only when a wait starts, not on every poll during one.
                let timer = match &mut this.timer {
                    Some(timer) if this.waiting => timer,
                    Some(timer) => {
                        timer.as_mut().reset(Instant::now() + this.stall);
                        timer
                    }
                    None => this.timer.insert(Box::pin(tokio::time::sleep(this.stall))),
                };
                this.waiting = true;
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(BackendStalled(this.stall).into()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
