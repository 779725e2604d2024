//! The request body sent upstream: the client's body as it streams in, telling the forwarder
//! when it has been sent in full (the backend's response deadline starts then), enforcing the
//! service's size limit and the pause allowed between chunks, and marking its errors as the
//! client's. And the response body sent back: the backend's, cut off when the backend goes
//! silent mid-body.

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
use crate::policy::BodyLimits;

/// The client's body failed: the client's fault, not the backend's.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientBodyError {
    /// Bad chunking, or cut short.
    #[error("the request body could not be read: {0}")]
    Read(#[source] hyper::Error),
    /// More bytes than the service accepts.
    #[error("the request body exceeds {0} bytes")]
    TooLarge(u64),
    /// The client paused longer than allowed between chunks.
    #[error("the request body stalled for {0:?}")]
    Stalled(Duration),
}

/// The body of an upstream request.
#[derive(Debug)]
pub(crate) struct UpstreamBody {
    /// `None` for a retry's empty body (only bodiless requests are retried).
    body: Option<Incoming>,
    /// Present when there is a body to wait for.
    sent: Option<Arc<Notify>>,
    limits: BodyLimits,
    received: u64,
    /// Armed while waiting for the client's next chunk.
    stall: Option<Pin<Box<Sleep>>>,
    /// Whether `stall` runs for the current wait.
    waiting: bool,
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
        (
            UpstreamBody {
                body: Some(body),
                sent: sent.clone(),
                limits,
                received: 0,
                stall: None,
                waiting: false,
                handed_on: sent.as_ref().map(|_| Arc::new(AtomicU64::new(now_ms()))),
            },
            sent,
        )
    }

    /// An empty body, for a retry of a bodiless request.
    pub(crate) fn empty(limits: BodyLimits) -> Self {
        UpstreamBody {
            body: None,
            sent: None,
            limits,
            received: 0,
            stall: None,
            waiting: false,
            handed_on: None,
        }
    }

    /// When the body last handed data on, for requests with a body (see `handed_on`).
    pub(crate) fn handed_on(&self) -> Option<Arc<AtomicU64>> {
        self.handed_on.clone()
    }

    /// Whether the client has paused too long. The clock starts at the first pending poll after
    /// data (not at the data itself), so time the backend spent not reading is not blamed on
    /// the client.
    fn stalled(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = Instant::now() + self.limits.read_timeout;
        let stall = match &mut self.stall {
            Some(stall) if self.waiting => stall,
            Some(stall) => {
                stall.as_mut().reset(deadline);
                stall
            }
            None => self
                .stall
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        self.waiting = true;
        if let Some(handed_on) = &self.handed_on {
            handed_on.store(WAITING_ON_CLIENT, Ordering::Relaxed);
        }
        stall.as_mut().poll(cx).is_ready()
    }

    fn count(&mut self, frame: &Frame<Bytes>) -> Result<(), ClientBodyError> {
        self.waiting = false;
        if let Some(handed_on) = &self.handed_on {
            handed_on.store(now_ms(), Ordering::Relaxed);
        }
        if let Some(data) = frame.data_ref() {
            self.received += data.len() as u64;
            if let Some(max) = self.limits.max_bytes.filter(|&max| self.received > max) {
                return Err(ClientBodyError::TooLarge(max));
            }
        }
        Ok(())
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
        let Some(body) = &mut this.body else {
            return Poll::Ready(None);
        };
        let polled = match Pin::new(body).poll_frame(cx) {
            Poll::Pending if this.stalled(cx) => {
                return Poll::Ready(Some(Err(ClientBodyError::Stalled(
                    this.limits.read_timeout,
                ))))
            }
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Ok(frame))) => match this.count(&frame) {
                Ok(()) => Poll::Ready(Some(Ok(frame))),
                Err(error) => return Poll::Ready(Some(Err(error))),
            },
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(ClientBodyError::Read(error)))),
            Poll::Ready(None) => Poll::Ready(None),
        };
        // hyper stops polling once `is_end_stream` says so, so the last data frame can be the
        // end too.
        let done = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.is_end_stream(),
            _ => false,
        };
        if let (true, Some(sent)) = (done, &this.sent) {
            // notify_one keeps a permit, so a waiter that arrives later still wakes.
            sent.notify_one();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Incoming::size_hint)
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
    inner: Incoming,
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
    pub(crate) fn new(inner: Incoming, stall: Duration, in_flight: Option<InFlight>) -> Self {
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
