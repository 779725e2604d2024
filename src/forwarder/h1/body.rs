//! A backend's response body, read from its connection by whoever polls it (hyper's server
//! dispatcher, on the worker that runs the request): once the body has been read in full on a
//! connection that may carry another request, the connection goes back to the worker's pool.
//! A body dropped before its end closes the connection; one that fails mid-way ends with an
//! error, so the client's response is aborted rather than finished as if complete.
//!
//! When the backend answered before it had the whole request, the rest of the request is sent
//! while the body is read, and the connection is parked only once both are done; a rest still
//! being sent when the body is dropped is finished by a task of its own, within
//! [`FINISH_TIME`].

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};

use super::super::pool::Home;
use super::conn::{Conn, Upgraded};
use super::decode::{Decoded, Decoder};
use super::parse::{BodyKind, ParseError};
use super::write::RequestWriter;
use super::Error;

/// How long the rest of a request may take to send once its response has been read; then the
/// connection is closed instead of parked.
const FINISH_TIME: Duration = Duration::from_secs(5);

/// The body of a response from a backend.
#[derive(Debug)]
pub(crate) struct BackendBody {
    /// Until the body has ended (or failed).
    live: Option<Live>,
    /// The connection of a `101 Switching Protocols` answer, for the tunnel.
    upgraded: Option<Conn>,
}

#[derive(Debug)]
struct Live {
    conn: Conn,
    decoder: Decoder,
    /// Whether the connection may be reused once the body has ended.
    keep_alive: bool,
    home: Home,
    /// What the backend had not been sent of the request when it answered: sent meanwhile,
    /// and the connection is parked only once it is out.
    unsent: Option<Box<RequestWriter>>,
}

impl BackendBody {
    pub(super) fn new(
        conn: Conn,
        kind: BodyKind,
        keep_alive: bool,
        home: Home,
        unsent: Option<Box<RequestWriter>>,
    ) -> Self {
        if kind == BodyKind::Upgrade {
            return BackendBody {
                live: None,
                upgraded: Some(conn),
            };
        }
        let mut body = BackendBody {
            live: Some(Live {
                conn,
                decoder: Decoder::new(kind),
                keep_alive,
                home,
                unsent,
            }),
            upgraded: None,
        };
        body.park_if_done();
        body
    }

    /// The switched connection of a 101 answer, with any bytes the backend sent after the head.
    pub(crate) fn take_upgraded(&mut self) -> Option<Upgraded> {
        self.upgraded.take().map(Upgraded::new)
    }

    /// Once the body has been read in full and the request sent in full, parks a reusable
    /// connection (others close).
    fn park_if_done(&mut self) {
        if self
            .live
            .as_ref()
            .is_some_and(|l| l.decoder.is_done() && l.unsent.is_none())
        {
            if let Some(live) = self.live.take() {
                live.park();
            }
        }
    }

    fn fail(&mut self, error: Error) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.live = None;
        Poll::Ready(Some(Err(error)))
    }
}

impl Live {
    fn park(self) {
        if self.keep_alive && self.conn.buf.is_empty() {
            let mut conn = self.conn;
            // A parked connection holds no read buffer (the next exchange takes one): a pool
            // of idle backend connections costs their sockets, not 16 KiB each.
            conn.buf = BytesMut::new();
            self.home.park(conn);
        }
    }

    /// Sends more of the request's rest, if any is left; a failure only means the connection
    /// is not reused (the backend has answered already).
    fn poll_unsent(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(writer) = &mut self.unsent else {
            return Poll::Ready(());
        };
        let result = std::task::ready!(writer.poll_write(cx, &self.conn.stream));
        if result.is_err() {
            self.keep_alive = false;
        }
        self.unsent = None;
        Poll::Ready(())
    }

    /// Sends the rest of the request after its response has been read, then parks the
    /// connection; gives up (closing it) after [`FINISH_TIME`].
    async fn finish(mut self) {
        let sent = tokio::time::timeout(FINISH_TIME, poll_fn(|cx| self.poll_unsent(cx))).await;
        if sent.is_ok() {
            self.park();
        }
    }
}

impl http_body::Body for BackendBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        loop {
            let Some(live) = &mut this.live else {
                return Poll::Ready(None);
            };
            // Pending or not, the response is read meanwhile: the backend answered already.
            let _ = live.poll_unsent(cx);
            let frame = match live.decoder.decode(&mut live.conn.buf) {
                Err(error) => return this.fail(Error::Parse(error)),
                Ok(Decoded::Data(data)) => Frame::data(data),
                Ok(Decoded::Trailers(trailers)) => Frame::trailers(trailers),
                Ok(Decoded::End) => {
                    this.park_if_done();
                    return Poll::Ready(None);
                }
                Ok(Decoded::NeedMore) => {
                    match live.conn.poll_fill(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(error)) => return this.fail(Error::Io(error)),
                        Poll::Ready(Ok(0)) => match live.decoder.eof() {
                            Ok(()) => live.keep_alive = false,
                            Err(error) => return this.fail(Error::Parse(error)),
                        },
                        Poll::Ready(Ok(_)) => {}
                    }
                    continue;
                }
            };
            this.park_if_done();
            return Poll::Ready(Some(Ok(frame)));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.live.as_ref().is_none_or(|l| l.decoder.is_done())
    }

    fn size_hint(&self) -> SizeHint {
        self.live
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |l| l.decoder.size_hint())
    }
}

impl Drop for BackendBody {
    fn drop(&mut self) {
        // A body read to its end whose last frame came with the end parks on the way out too.
        self.park_if_done();
        // Read to its end while the request's rest is still going out: that finishes on its
        // own (dropped outside a runtime, the connection just closes).
        if let Some(live) = self.live.take() {
            if live.keep_alive && live.decoder.is_done() {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(live.finish());
                }
            }
        }
    }
}

/// Keeps the error type's `From` for the response body's boxed errors.
impl From<ParseError> for Error {
    fn from(error: ParseError) -> Self {
        Error::Parse(error)
    }
}
