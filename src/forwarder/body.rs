//! The request body sent upstream: the client's body as it streams in, telling the forwarder
//! when it has been sent in full (the backend's response deadline starts then), and marking
//! its errors as the client's.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::Notify;

/// The client's body failed (bad chunking, cut short): the client's fault, not the backend's.
#[derive(Debug, thiserror::Error)]
#[error("the request body could not be read: {0}")]
pub(crate) struct ClientBodyError(#[source] pub hyper::Error);

/// The body of an upstream request.
#[derive(Debug)]
pub(crate) struct UpstreamBody {
    body: Incoming,
    /// Present when there is a body to wait for.
    sent: Option<Arc<Notify>>,
}

impl UpstreamBody {
    /// Wraps the client's body; the returned notify fires once it has been sent, if it has one.
    pub(crate) fn new(body: Incoming) -> (Self, Option<Arc<Notify>>) {
        let sent = (!body.is_end_stream()).then(|| Arc::new(Notify::new()));
        (
            UpstreamBody {
                body,
                sent: sent.clone(),
            },
            sent,
        )
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
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        // hyper stops polling once `is_end_stream` says so, so the last data frame can be the
        // end too.
        let done = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.body.is_end_stream(),
            _ => false,
        };
        if let (true, Some(sent)) = (done, &this.sent) {
            // notify_one keeps a permit, so a waiter that arrives later still wakes.
            sent.notify_one();
        }
        polled.map_err(ClientBodyError)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
