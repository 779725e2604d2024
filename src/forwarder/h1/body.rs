//! A backend's response body, read from its connection by whoever polls it (hyper's server
//! dispatcher, on the worker that runs the request): once the body has been read in full on a
//! connection that may carry another request, the connection goes back to the worker's pool.
//! A body dropped before its end closes the connection; one that fails mid-way ends with an
//! error, so the client's response is aborted rather than finished as if complete.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};

use super::super::pool::Home;
use super::conn::{Conn, Upgraded};
use super::decode::{Decoded, Decoder};
use super::parse::{BodyKind, ParseError};
use super::Error;

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
}

impl BackendBody {
    pub(super) fn new(conn: Conn, kind: BodyKind, keep_alive: bool, home: Home) -> Self {
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

    /// Once the body has been read in full, parks a reusable connection (others close).
    fn park_if_done(&mut self) {
        if self.live.as_ref().is_some_and(|l| l.decoder.is_done()) {
            if let Some(live) = self.live.take() {
                if live.keep_alive && live.conn.buf.is_empty() {
                    let mut conn = live.conn;
                    // A parked connection holds no read buffer (the next exchange takes one):
                    // a pool of idle backend connections costs their sockets, not 16 KiB each.
                    conn.buf = BytesMut::new();
                    live.home.park(conn);
                }
            }
        }
    }

    fn fail(&mut self, error: Error) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.live = None;
        Poll::Ready(Some(Err(error)))
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
    }
}

/// Keeps the error type's `From` for the response body's boxed errors.
impl From<ParseError> for Error {
    fn from(error: ParseError) -> Self {
        Error::Parse(error)
    }
}
