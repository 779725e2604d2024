//! Gatehouse's own HTTP/1.1 server for cleartext connections, in front of hyper's.
//!
//! It reads each request head with `httparse` into a buffer taken only when bytes arrive and
//! dropped once the head is parsed, answers the requests it can answer exactly as hyper does
//! (HTTP/1.1 without an upgrade, and without a body or with a `Content-Length` body of at most
//! 64 KiB that has arrived with its head: `head.rs`), and writes the response itself
//! (`respond.rs`), all in the connection's task with no buffer or boxed future kept between
//! requests but the handler's. The first request it does not take (a chunked or longer body,
//! or one still arriving, an upgrade, `Expect`, HTTP/1.0, a head hyper would refuse or that
//! outgrows `max_header_bytes`) and everything after it on that connection are hyper's: the
//! connection is handed over with the bytes read so far put back in front
//! (`server/replay.rs`), so hyper sees the byte stream it would have seen from the start.
//! Streamed bodies, upgrades, `100-continue` and every refusal stay hyper's.
//!
//! The timeouts are hyper's: a head (the first, or the next one on a kept-alive connection)
//! must arrive within `header_read_timeout`, else the connection closes without an answer; a
//! client that closes while its request is in progress cancels it; a drain closes an idle
//! connection and answers a request in progress with `connection: close`.

mod date;
mod head;
mod respond;
mod taken;

pub use taken::taken_heads;

use std::future::{pending, poll_fn};
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Poll};
use std::time::Duration;

use bytes::BytesMut;
use http::Method;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use super::replay::Replay;
use crate::handler::{self, RequestLimits};
use crate::request::ClientInfo;
use crate::state::Worker;
use head::Parsed;
use respond::Asked;

/// Most bytes one read takes (on the stack, then copied to a buffer of their size).
const READ_CHUNK: usize = 4096;

/// One cleartext HTTP/1 connection's settings.
pub(super) struct Settings {
    pub worker: Arc<Worker>,
    pub client: Arc<ClientInfo>,
    pub limits: RequestLimits,
    pub header_read_timeout: Duration,
    /// Largest head hyper reads (its read buffer); a longer one is handed to hyper, which
    /// answers 431.
    pub max_head: usize,
    pub max_headers: usize,
}

/// How a connection left this server.
pub(super) enum Ended {
    /// Closed: the client closed, timed out, asked to, or the server is draining.
    Closed,
    /// A request hyper must serve: it takes the connection from here.
    HandedOver(Replay<TcpStream>),
}

/// Serves `stream` until it closes or a request needs hyper; `draining` changes when the
/// server shuts down.
pub(super) async fn serve(
    mut stream: TcpStream,
    settings: &Settings,
    draining: &mut watch::Receiver<()>,
) -> io::Result<Ended> {
    // Bytes read past the last head (pipelined requests); no allocation while empty.
    let mut buf = BytesMut::new();
    // One timer for the connection's life, moved only when it fires early (`expired`): a
    // timer set and cancelled for every head cost a timer-wheel insert and removal per request.
    let timer = tokio::time::sleep(settings.header_read_timeout);
    tokio::pin!(timer);
    loop {
        let deadline = Instant::now() + settings.header_read_timeout;
        let next = tokio::select! {
            biased;
            next = read_head(&mut stream, &mut buf, settings) => next?,
            () = expired(timer.as_mut(), deadline) => {
                tracing::debug!(peer = %settings.client.peer, "no request within the header read timeout; closing");
                return Ok(Ended::Closed);
            }
            // Idle or part-way through a head: hyper closes such a connection on shutdown.
            _ = draining.changed() => return Ok(Ended::Closed),
        };
        let head = match next {
            Next::Closed => return Ok(Ended::Closed),
            Next::Other => return Ok(Ended::HandedOver(Replay::new(stream, buf))),
            Next::Head(head) => head,
        };
        let head_request = head.request.method() == Method::HEAD;
        let (asked_close, trailers) = (!head.keep_alive, head.trailers);
        let (mut reader, mut writer) = stream.split();
        let answered = async {
            // Boxed: the handler's state is large, and held inline it would size this
            // connection's task for as long as the connection lives, idle or not.
            let handling = Box::pin(handler::handle(
                Arc::clone(&settings.worker),
                head.request,
                Arc::clone(&settings.client),
                settings.limits,
            ));
            let response = handling.await;
            // A drain that began while the request was in progress: this is its last answer.
            let draining_now = draining.has_changed().unwrap_or(true);
            let asked = Asked {
                head: head_request,
                keep_alive: !asked_close && !draining_now,
                trailers,
            };
            respond::write(&mut writer, response, asked).await
        };
        let kept = tokio::select! {
            biased;
            kept = answered => kept?,
            () = client_gone(&mut reader, &mut buf) => return Ok(Ended::Closed),
        };
        if !kept {
            return Ok(Ended::Closed);
        }
    }
}

/// Completes at `deadline`. `timer` may be set earlier (for a previous head, which began
/// earlier): when it fires before `deadline` it is moved there and awaited again, so a
/// connection whose heads keep arriving in time moves its timer about once per timeout, not
/// once per request. It is never set later than the deadline it serves.
async fn expired(mut timer: Pin<&mut Sleep>, deadline: Instant) {
    loop {
        if timer.deadline() > deadline {
            timer.as_mut().reset(deadline);
        }
        timer.as_mut().await;
        if Instant::now() >= deadline {
            return;
        }
        timer.as_mut().reset(deadline);
    }
}

/// What the next bytes on the connection are.
#[allow(clippy::large_enum_variant)] // As `head::Parsed`: not boxed, which would allocate.
enum Next {
    Head(head::Head),
    /// A request for hyper (or bytes it must refuse).
    Other,
    /// The client closed (part-way through a head or not); hyper answers neither.
    Closed,
}

/// Reads until `buf` starts with a whole head, or cannot (`Other`, `Closed`).
async fn read_head(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    settings: &Settings,
) -> io::Result<Next> {
    loop {
        if !buf.is_empty() {
            match head::parse(buf, settings.max_headers) {
                Parsed::Simple(head) => return Ok(Next::Head(head)),
                Parsed::Other => return Ok(Next::Other),
                Parsed::Partial if buf.len() >= settings.max_head => return Ok(Next::Other),
                Parsed::Partial => {}
                // What has arrived of the body is read without waiting on the client: a body
                // still on its way is hyper's, whose body timeouts and rate limits then apply
                // to it. Once, the other tasks run first: a body sent with its head but split
                // by the kernel (a loopback segment is 64 KiB) is often in by then, and a
                // connection handed over stays hyper's.
                Parsed::Body(needed) => {
                    if read_ready(stream, buf, needed).await? {
                        continue;
                    }
                    tokio::task::yield_now().await;
                    match read_ready(stream, buf, needed).await? {
                        true => continue,
                        false => return Ok(Next::Other),
                    }
                }
            }
        }
        let limit = READ_CHUNK.min(settings.max_head - buf.len());
        if read_some(stream, buf, limit).await? == 0 {
            return Ok(Next::Closed);
        }
    }
}

/// Reads at most `limit` bytes onto the end of `buf`; 0 at the end of the stream. The read goes
/// to the stack and only what arrived is copied, so a buffer holds no more than the bytes.
async fn read_some<R: AsyncRead + Unpin>(
    stream: &mut R,
    buf: &mut BytesMut,
    limit: usize,
) -> io::Result<usize> {
    poll_fn(|cx| {
        let mut chunk = [const { MaybeUninit::<u8>::uninit() }; READ_CHUNK];
        let mut read = ReadBuf::uninit(&mut chunk[..limit.min(READ_CHUNK)]);
        ready!(Pin::new(&mut *stream).poll_read(cx, &mut read))?;
        buf.extend_from_slice(read.filled());
        Poll::Ready(Ok(read.filled().len()))
    })
    .await
}

/// Reads what the socket already has until `buf` holds `needed` bytes; whether it does. Never
/// waits: a read that would is the end, and so is the end of the stream.
async fn read_ready(stream: &mut TcpStream, buf: &mut BytesMut, needed: usize) -> io::Result<bool> {
    while buf.len() < needed {
        // Room past `needed`: a read that comes back short tells tokio the socket is drained, so
        // the close watch's first read costs no `recv` that would only say `EAGAIN`.
        buf.reserve(needed - buf.len() + READ_CHUNK);
        let read = poll_fn(|cx| {
            let mut read = ReadBuf::uninit(buf.spare_capacity_mut());
            match Pin::new(&mut *stream).poll_read(cx, &mut read) {
                Poll::Pending => Poll::Ready(None),
                Poll::Ready(result) => Poll::Ready(Some(result.map(|()| read.filled().len()))),
            }
        })
        .await;
        match read {
            None | Some(Ok(0)) => return Ok(false),
            // SAFETY: `poll_read` initialised the first `n` bytes of the spare capacity
            // (`ReadBuf` counts bytes as filled only once written).
            Some(Ok(n)) => unsafe { buf.set_len(buf.len() + n) },
            Some(Err(e)) => return Err(e),
        }
    }
    Ok(true)
}

/// Completes when the client closes its side (or the connection fails) while its request is in
/// progress, as hyper's server notices it. Bytes that arrive meanwhile (a pipelined request)
/// are kept for after the response, and then nothing more is read until then, as in hyper.
async fn client_gone<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut BytesMut) {
    if buf.is_empty() {
        match read_some(reader, buf, READ_CHUNK).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
    pending().await
}
