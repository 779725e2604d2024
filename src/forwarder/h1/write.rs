//! The request on the wire: its head (method, origin-form target, the headers as the forwarder
//! left them, HTTP/1.1) and its body, framed as hyper's client framed it: an exact size as
//! `Content-Length`, an unknown one as `Transfer-Encoding: chunked`, and nothing for a body
//! that has already ended. The head goes out with the body's first bytes in one vectored write
//! when they are at hand; the body streams as the client sends it, at most [`QUEUE_LIMIT`]
//! bytes ahead of the socket.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Uri};
use http_body::Body as _;
use tokio::net::TcpStream;

use super::super::body::{ClientBodyError, UpstreamBody};
use super::parse::content_length;
use crate::http1::Piece;

/// Body bytes taken from the client ahead of what the socket has accepted.
const QUEUE_LIMIT: usize = 64 * 1024;
/// Slices per vectored write.
const MAX_SLICES: usize = 32;

/// How the body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body is sent.
    None,
    Length(u64),
    Chunked,
}

/// The head's bytes and the body's framing. Adjusts `headers` as hyper did: a body that has
/// ended sends no `Transfer-Encoding`; a known size sets `Content-Length` unless a valid one
/// is there; an unknown size is chunked (and any `Content-Length` dropped), except on `GET`,
/// `HEAD` and `CONNECT`, which then send no body at all.
pub(super) fn head(
    method: &Method,
    uri: &Uri,
    headers: &mut HeaderMap,
    body: &UpstreamBody,
) -> (Bytes, Framing) {
    let framing = if body.is_end_stream() {
        headers.remove(header::TRANSFER_ENCODING);
        Framing::None
    } else if headers.contains_key(header::TRANSFER_ENCODING) {
        // The forwarder strips it as hop-by-hop; kept for completeness, framed as chunked.
        headers.remove(header::CONTENT_LENGTH);
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        Framing::Chunked
    } else if let Some(len) = content_length(headers) {
        Framing::Length(len)
    } else if let Some(len) = body.size_hint().exact() {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        Framing::Length(len)
    } else if matches!(*method, Method::GET | Method::HEAD | Method::CONNECT) {
        Framing::None
    } else {
        headers.remove(header::CONTENT_LENGTH);
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        Framing::Chunked
    };
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut bytes =
        Vec::with_capacity(method.as_str().len() + target.len() + 16 + headers.len() * 32);
    bytes.extend_from_slice(method.as_str().as_bytes());
    bytes.push(b' ');
    bytes.extend_from_slice(target.as_bytes());
    bytes.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers.iter() {
        bytes.extend_from_slice(name.as_str().as_bytes());
        bytes.extend_from_slice(b": ");
        bytes.extend_from_slice(value.as_bytes());
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"\r\n");
    (Bytes::from(bytes), framing)
}

/// Why the request could not be written.
#[derive(Debug)]
pub(super) enum WriteError {
    /// The client's body failed.
    Body(ClientBodyError),
    /// The socket failed, or the body did not match its `Content-Length`.
    Io(io::Error),
}

/// Writes the head, then streams the body, from the request's own task.
#[derive(Debug)]
pub(super) struct RequestWriter {
    queue: VecDeque<Piece>,
    queued: usize,
    /// The body: polled until it ends, kept after that (and unpolled when it is not sent at
    /// all) in case the request must go out again on another connection.
    body: Option<UpstreamBody>,
    /// The body has ended or failed: nothing more to take from it.
    ended: bool,
    framing: Framing,
    /// Bytes of a `Content-Length` body still to come.
    left: u64,
    /// Whether any byte reached the socket.
    wrote: bool,
    /// Data taken from the body before anything was written, to put back if nothing can be.
    taken: Vec<Bytes>,
}

impl RequestWriter {
    pub(super) fn new(head: Bytes, body: UpstreamBody, framing: Framing) -> Self {
        let mut queue = VecDeque::with_capacity(4);
        let queued = head.len();
        queue.push_back(Piece::Bytes(head));
        RequestWriter {
            queue,
            queued,
            body: Some(body),
            ended: false,
            framing,
            left: match framing {
                Framing::Length(len) => len,
                _ => 0,
            },
            wrote: false,
            taken: Vec::new(),
        }
    }

    /// Whether any byte of the request reached the socket.
    pub(super) fn wrote_any(&self) -> bool {
        self.wrote
    }

    /// What the client has not sent of its body yet, when it has not ended: the exchange is
    /// over (the backend answered) and the rest is not going to this backend.
    pub(super) fn into_rest(mut self) -> Option<UpstreamBody> {
        match self.ended {
            true => None,
            false => self.body.take(),
        }
    }

    /// Whether what is left to send is a `Content-Length` body of at most `limit` bytes, those
    /// already taken from the client but not yet written included.
    pub(super) fn rest_within(&self, limit: u64) -> bool {
        matches!(self.framing, Framing::Length(_)) && self.left + self.queued as u64 <= limit
    }

    /// The body, with what was taken from it put back; only before anything was written.
    pub(super) fn into_unsent_body(mut self) -> Option<UpstreamBody> {
        let mut body = self.body.take()?;
        body.put_back(std::mem::take(&mut self.taken));
        Some(body)
    }

    /// Writes until the whole request is out (`Ready(Ok)`), the socket or the client's body is
    /// not ready (`Pending`), or either fails.
    pub(super) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        stream: &TcpStream,
    ) -> Poll<Result<(), WriteError>> {
        loop {
            let body_pending = match self.fill(cx) {
                Poll::Ready(Ok(())) => false,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => true,
            };
            if self.queue.is_empty() {
                return if body_pending || self.sending_body() {
                    Poll::Pending
                } else {
                    Poll::Ready(Ok(()))
                };
            }
            match stream.poll_write_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(error)) => return Poll::Ready(Err(WriteError::Io(error))),
                Poll::Pending => return Poll::Pending,
            }
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let count = self.queue.len().min(MAX_SLICES);
            for (slice, piece) in slices.iter_mut().zip(self.queue.iter()) {
                *slice = IoSlice::new(piece.bytes());
            }
            match stream.try_write_vectored(&slices[..count]) {
                Ok(0) => return Poll::Ready(Err(WriteError::Io(io::ErrorKind::WriteZero.into()))),
                Ok(n) => self.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Poll::Ready(Err(WriteError::Io(error))),
            }
        }
    }

    /// Whether body frames are still to be taken.
    fn sending_body(&self) -> bool {
        !self.ended && self.framing != Framing::None
    }

    fn consume(&mut self, mut n: usize) {
        if !self.wrote {
            self.wrote = true;
            self.taken = Vec::new();
        }
        self.queued -= n;
        while n > 0 {
            let piece = self.queue.front_mut().expect("written bytes were queued");
            let len = piece.bytes().len();
            if n >= len {
                n -= len;
                self.queue.pop_front();
            } else {
                piece.advance(n);
                n = 0;
            }
        }
    }

    /// Takes the body's frames into the queue while they are ready and the queue has room.
    fn fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WriteError>> {
        while self.sending_body() && self.queued < QUEUE_LIMIT {
            let body = self.body.as_mut().expect("sending");
            let frame = match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(error))) => {
                    self.ended = true;
                    return Poll::Ready(Err(WriteError::Body(error)));
                }
                Poll::Ready(None) => None,
                Poll::Ready(Some(Ok(frame))) => Some(frame),
            };
            // hyper stopped at `is_end_stream`; so does this, so the body's `sent` fires alike.
            let ended = frame.is_none() || body.is_end_stream();
            if let Some(data) = frame.and_then(|f| f.into_data().ok()) {
                if !data.is_empty() {
                    self.push_data(data)?;
                }
            }
            if ended {
                self.end()?;
            }
        }
        Poll::Ready(Ok(()))
    }

    fn push_data(&mut self, data: Bytes) -> Result<(), WriteError> {
        if !self.wrote {
            self.taken.push(data.clone());
        }
        let len = data.len();
        match self.framing {
            Framing::Length(_) => {
                if len as u64 > self.left {
                    return Err(too_long());
                }
                self.left -= len as u64;
                self.queue.push_back(Piece::Bytes(data));
                self.queued += len;
            }
            Framing::Chunked => {
                let size = Piece::chunk_size(len);
                self.queued += size.bytes().len() + len + 2;
                self.queue.push_back(size);
                self.queue.push_back(Piece::Bytes(data));
                self.queue.push_back(Piece::Static(b"\r\n"));
            }
            Framing::None => {}
        }
        Ok(())
    }

    fn end(&mut self) -> Result<(), WriteError> {
        self.ended = true;
        match self.framing {
            Framing::Length(_) if self.left > 0 => {
                return Err(WriteError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the request body ended before its Content-Length",
                )));
            }
            Framing::Chunked => {
                self.queue.push_back(Piece::Static(b"0\r\n\r\n"));
                self.queued += 5;
            }
            _ => {}
        }
        Ok(())
    }
}

fn too_long() -> WriteError {
    WriteError::Io(io::Error::new(
        io::ErrorKind::InvalidInput,
        "the request body is longer than its Content-Length",
    ))
}
