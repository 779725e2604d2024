//! The request body sent upstream: streamed, yet recoverable while no byte has been read, so a
//! refused connection can be retried on the next backend with the same body.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::Notify;

/// The client's body failed (bad chunking, cut short): the client's fault, not the backend's.
#[derive(Debug, thiserror::Error)]
#[error("the request body could not be read: {0}")]
pub(crate) struct ClientBodyError(#[source] pub hyper::Error);

#[derive(Debug)]
struct Shared {
    body: Mutex<Option<Incoming>>,
    sent: Notify,
}

/// Holds the client's body until the first backend that really connects starts reading it,
/// and tells the forwarder when it has been sent in full.
#[derive(Debug, Clone)]
pub(crate) struct BodySlot(Arc<Shared>);

impl BodySlot {
    pub(crate) fn new(body: Incoming) -> Self {
        BodySlot(Arc::new(Shared {
            body: Mutex::new(Some(body)),
            sent: Notify::new(),
        }))
    }

    /// Whether the body is still unread (so another attempt can send it).
    pub(crate) fn is_unread(&self) -> bool {
        self.0
            .body
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Completes once the whole body has been handed to the upstream connection.
    pub(crate) async fn sent(&self) {
        self.0.sent.notified().await;
    }

    fn take(&self) -> Option<Incoming> {
        self.0.body.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// The body of an upstream request.
#[derive(Debug)]
pub(crate) enum UpstreamBody {
    /// No body (most GETs): nothing to keep for a retry.
    Empty,
    /// Not yet read from the slot.
    Pending { slot: BodySlot, hint: SizeHint },
    /// Being streamed; the slot is told when it ends.
    Streaming { body: Incoming, slot: BodySlot },
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
    type Error = ClientBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        loop {
            match &mut *self {
                UpstreamBody::Empty => return Poll::Ready(None),
                UpstreamBody::Streaming { body, slot } => {
                    let polled = Pin::new(&mut *body).poll_frame(cx);
                    // hyper stops polling once `is_end_stream` says so, so the last data frame
                    // can be the end too.
                    let done = match &polled {
                        Poll::Ready(None) => true,
                        Poll::Ready(Some(Ok(_))) => body.is_end_stream(),
                        _ => false,
                    };
                    if done {
                        // notify_one keeps a permit, so a waiter that arrives later still wakes.
                        slot.0.sent.notify_one();
                    }
                    return polled.map_err(ClientBodyError);
                }
                UpstreamBody::Pending { slot, .. } => {
                    let slot = slot.clone();
                    *self = match slot.take() {
                        Some(body) => UpstreamBody::Streaming { body, slot },
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
            UpstreamBody::Streaming { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Empty => SizeHint::with_exact(0),
            UpstreamBody::Pending { hint, .. } => *hint,
            UpstreamBody::Streaming { body, .. } => body.size_hint(),
        }
    }
}
