//! Gatehouse's own HTTP/1.1 client: one request/response exchange on a pooled connection, run
//! inside the request's task. hyper's client ran each connection as a task of its own, reached
//! through a channel, and every request paid for the hand-off both ways; here the request's
//! task writes the request, reads the response head and hands back a body that reads the rest
//! from the socket when polled. No task, no channel, no allocation per exchange beyond the
//! head's bytes.
//!
//! - `write`: the request head and the body's framing, streaming the body.
//! - `parse`: the response head (`httparse`), its framing and keep-alive.
//! - `chunked`, `decode`: the body's framing, without I/O.
//! - `body`: the response body, parking the connection again once it has been read.
//! - `conn`: the socket and its read buffer.
//! - `replay`: the parser and decoder over given bytes, for the `upstream_response` fuzz target.

mod body;
mod chunked;
mod conn;
mod decode;
mod parse;
mod replay;
mod write;

use std::future::{poll_fn, Future};
use std::io;
use std::task::Poll;
use std::time::Duration;

use http_body_util::BodyExt;

use bytes::Bytes;
use http::{header, Method, Response};

use super::body::{ClientBodyError, UpstreamBody};
use super::pool::Home;
pub(crate) use body::BackendBody;
pub(crate) use conn::Conn;
pub use parse::{BodyKind, ParseError, MAX_HEAD, MAX_HEADERS};
pub use replay::{replay_response, Replayed};
use write::{Framing, RequestWriter, WriteError};

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("backend connection: {0}")]
    Io(#[source] io::Error),
    #[error(transparent)]
    Parse(ParseError),
    #[error("the backend closed the connection without answering")]
    Closed,
    /// The client's fault, not the backend's.
    #[error(transparent)]
    ClientBody(ClientBodyError),
}

/// A request's head as it goes on the wire, serialised once however many connections or
/// backends it is sent to (a retry resends these bytes: cloning them is a reference count).
#[derive(Debug, Clone)]
pub(crate) struct RequestHead {
    bytes: Bytes,
    framing: Framing,
    /// `HEAD`: the response has no body whatever its headers say.
    head_request: bool,
    /// The request asked the backend to close the connection after it.
    close: bool,
}

impl RequestHead {
    /// Serialises `parts` (method, origin-form target, headers) for `body`, whose framing it
    /// settles (and states in `parts.headers`, see `write::head`).
    pub(crate) fn new(parts: &mut http::request::Parts, body: &UpstreamBody) -> Self {
        let (bytes, framing) = write::head(&parts.method, &parts.uri, &mut parts.headers, body);
        let close = parts
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|line| crate::http1::has_token(line, "close"));
        RequestHead {
            bytes,
            framing,
            head_request: parts.method == Method::HEAD,
            close,
        }
    }

    /// Whether no body goes out after the head: sent again as it is, it is the whole request.
    pub(crate) fn is_bodiless(&self) -> bool {
        self.framing == Framing::None
    }
}

/// A request ready for a backend: its head and the body that streams after it.
#[derive(Debug)]
pub(crate) struct Outbound {
    pub(crate) head: RequestHead,
    pub(crate) body: UpstreamBody,
}

/// How `send` failed.
#[derive(Debug)]
pub(crate) enum SendError {
    /// Not a byte of the request was written: it comes back, to go out on another connection.
    Unsent(Box<Outbound>, io::Error),
    Failed(Error),
}

/// Sends `request` on `conn` and waits for the response head. The body streams while the
/// response is awaited. A response that comes before the body has been sent either ends the
/// sending (the connection is then not reused) or, when the backend keeps the connection and
/// at most [`FINISH_BYTES`] are left, lets the rest follow (see [`BackendBody`]). `home` is
/// where the connection is parked once the response body has been read, when the backend
/// allows.
///
/// Not an `async fn`, which keeps each by-value argument twice in its state (as passed and as
/// moved apart): this state is part of every proxied request's, copied in full when the
/// exchange is boxed, and memory touched per request costs kernel time too (README,
/// Performance). Taken apart before the async block, each part is kept once.
pub(crate) fn send(
    mut conn: Conn,
    request: Outbound,
    home: Home,
) -> impl Future<Output = Result<Response<BackendBody>, SendError>> {
    let Outbound {
        head: request_head,
        body,
    } = request;
    let (head_request, close) = (request_head.head_request, request_head.close);
    let bytes = request_head.bytes.clone();
    let mut writer = RequestWriter::new(bytes, body, request_head.framing);
    async move {
        let mut written = false;
        let mut write_failed: Option<io::Error> = None;
        let outcome = poll_fn(|cx| {
            if !written && write_failed.is_none() {
                match writer.poll_write(cx, &conn.stream) {
                    Poll::Ready(Ok(())) => written = true,
                    Poll::Ready(Err(WriteError::Body(error))) => {
                        return Poll::Ready(Err(Some(Error::ClientBody(error))))
                    }
                    Poll::Ready(Err(WriteError::Io(error))) if !writer.wrote_any() => {
                        write_failed = Some(error);
                        return Poll::Ready(Err(None));
                    }
                    // The backend may still answer (and say why it stopped reading).
                    Poll::Ready(Err(WriteError::Io(error))) => write_failed = Some(error),
                    Poll::Pending => {}
                }
            }
            loop {
                match parse::parse_head(&mut conn.buf, head_request) {
                    Ok(Some(head)) => return Poll::Ready(Ok(head)),
                    Ok(None) => {}
                    Err(error) => return Poll::Ready(Err(Some(Error::Parse(error)))),
                }
                match conn.poll_fill(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(0)) => {
                        let error = write_failed.take().map_or(Error::Closed, Error::Io);
                        return Poll::Ready(Err(Some(error)));
                    }
                    Poll::Ready(Ok(_)) => {}
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(Some(Error::Io(error)))),
                }
            }
        })
        .await;
        let head = match outcome {
            Ok(head) => head,
            Err(Some(error)) => return Err(SendError::Failed(error)),
            Err(None) => {
                let error = write_failed.unwrap_or_else(|| io::ErrorKind::BrokenPipe.into());
                return match writer.into_unsent_body() {
                    Some(body) => Err(SendError::Unsent(
                        Box::new(Outbound {
                            head: request_head,
                            body,
                        }),
                        error,
                    )),
                    None => Err(SendError::Failed(Error::Io(error))),
                };
            }
        };
        // Reused only after a whole exchange: the request written in full, both sides agreeing.
        let reusable = head.keep_alive && write_failed.is_none() && !close;
        let unsent = if written {
            None
        } else if reusable && head.body != BodyKind::Upgrade && writer.rest_within(FINISH_BYTES) {
            // An early answer on a connection the backend keeps (nginx's `return 200` to a
            // POST): it reads and drops the rest of the body, so the rest goes to it, as a proxy
            // that had buffered the body would have sent it, and the connection is reused. A
            // backend that wants no more says `Connection: close` (RFC 9112 §9.5), and the
            // branch below stops sending; ending here on every early answer cost a new
            // connection per request.
            Some(Box::new(writer))
        } else {
            if let Some(rest) = writer.into_rest() {
                tokio::spawn(discard(rest));
            }
            None
        };
        let keep_alive = reusable && (written || unsent.is_some());
        let body = BackendBody::new(conn, head.body, keep_alive, home, unsent);
        let mut response = Response::new(body);
        *response.status_mut() = head.status;
        *response.version_mut() = head.version;
        *response.headers_mut() = head.headers;
        if let Some(reason) = head.reason {
            // Passed on to the client as hyper's client did.
            if let Ok(reason) = hyper::ext::ReasonPhrase::try_from(reason) {
                response.extensions_mut().insert(reason);
            }
        }
        Ok(response)
    }
}

/// The most of a request body still to send when its backend answers early and keeps the
/// connection, for the rest to be sent after the answer (more, and the connection is closed).
const FINISH_BYTES: u64 = 1024 * 1024;
/// The most of a client's body read and dropped after its backend answered early.
const DISCARD_BYTES: u64 = 1024 * 1024;
/// How long that may take.
const DISCARD_TIME: Duration = Duration::from_secs(5);

/// Reads what is left of a client's request body after the backend answered before taking all
/// of it (nginx's `return 200` to a POST, a 413): the rest is read and dropped, as nginx
/// discards it, so the client's keep-alive connection can carry its next request. hyper closes
/// a connection whose request body was left unread. Bounded: past [`DISCARD_BYTES`] or
/// [`DISCARD_TIME`] (or the body's own limits) the body is dropped and the connection closes.
async fn discard(mut rest: UpstreamBody) {
    let reading = async {
        let mut read = 0u64;
        while let Some(Ok(frame)) = rest.frame().await {
            read += frame.data_ref().map_or(0, |data| data.len() as u64);
            if read > DISCARD_BYTES {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_TIME, reading).await;
}

#[cfg(test)]
mod tests;
