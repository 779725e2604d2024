//! The request body sent upstream: streamed, yet recoverable while no byte has been read, so a
//! refused connection can be retried on the next backend with the same body.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// Holds the client's body until the first backend that really connects starts reading it.
#[derive(Debug, Clone)]
pub(crate) struct BodySlot(Arc<Mutex<Option<Incoming>>>);

impl BodySlot {
    pub(crate) fn new(body: Incoming) -> Self {
        BodySlot(Arc::new(Mutex::new(Some(body))))
    }

    /// Whether the body is still unread (so another attempt can send it).
    pub(crate) fn is_unread(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    fn take(&self) -> Option<Incoming> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// The body of an upstream request.
#[derive(Debug)]
pub(crate) enum UpstreamBody {
    /// No body (most GETs): nothing to keep for a retry.
    Empty,
    /// Not yet read from the slot.
    Pending { slot: BodySlot, hint: SizeHint },
    /// Being streamed.
    Streaming(Incoming),
}

impl UpstreamBody {
    pub(crate) fn pending(slot: &BodySlot, hint: SizeHint) -> Self {
        UpstreamBody::Pending {
            slot: slot.clone(),
            hint,
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        loop {
            match &mut *self {
                UpstreamBody::Empty => return Poll::Ready(None),
                UpstreamBody::Streaming(body) => return Pin::new(body).poll_frame(cx),
                UpstreamBody::Pending { slot, .. } => {
                    *self = match slot.take() {
                        Some(body) => UpstreamBody::Streaming(body),
                        None => UpstreamBody::Empty,
                    };
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Empty => true,
            UpstreamBody::Pending { .. } => false,
            UpstreamBody::Streaming(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Empty => SizeHint::with_exact(0),
            UpstreamBody::Pending { hint, .. } => *hint,
            UpstreamBody::Streaming(body) => body.size_hint(),
        }
    }
}
