//! Writes a response to an HTTP/1.1 request as hyper's server writes it (`proto/h1/role.rs`
//! `Server::encode`, `encode.rs`, `dispatch.rs` `poll_write`), so a client cannot tell which of
//! the two answered: the same status line, header lines in the map's order with lower-case
//! names, the same choice of framing (the body's own length, else its `Content-Length`, else
//! chunked; none for `HEAD`, 204 and 304), a `date` line, `connection: close` when the
//! connection ends after it, and trailers only where the request accepts them and the response
//! declares them.
//!
//! The head and the body's first bytes go out in one vectored write when the body has them
//! ready, as hyper's buffering does; the writer waits for the body only once everything it was
//! given is written.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body::Body;
use tokio::io::AsyncWrite;

use super::date;
use crate::error::ProxyBody;
use crate::http1::{has_token, last_coding_is_chunked, Piece};

/// What the request asked of its response.
#[derive(Debug, Clone, Copy)]
pub(super) struct Asked {
    /// A `HEAD` request: the head only.
    pub head: bool,
    /// The connection stays open after this response (the client did not ask to close it and
    /// the server is not draining).
    pub keep_alive: bool,
    /// `TE: trailers`.
    pub trailers: bool,
}

/// How the body is framed on the wire.
#[derive(Debug, PartialEq)]
enum Framing {
    /// This many bytes follow; with 0 the body is not read at all.
    Length(u64),
    /// Chunked, with the trailer fields the response declared (`Trailer`).
    Chunked(Option<Vec<HeaderName>>),
    /// Until the connection closes.
    CloseDelimited,
}

/// The body's length as hyper's dispatcher sees it: none (already at its end), known, or not.
#[derive(Debug, Clone, Copy)]
enum BodyLength {
    Known(u64),
    Unknown,
}

/// A head hyper would not send (a length stated twice differently, or a `Content-Length` that
/// is not a number): the connection is closed with nothing written, as hyper does.
#[derive(Debug)]
struct Unsendable;

/// Writes `response` to `out`; `Ok(true)` when the connection may serve another request.
pub(super) async fn write<W: AsyncWrite + Unpin>(
    out: &mut W,
    response: Response<ProxyBody>,
    asked: Asked,
) -> io::Result<bool> {
    let (mut parts, mut body) = response.into_parts();
    let length = if body.is_end_stream() {
        None
    } else {
        Some(
            body.size_hint()
                .exact()
                .map_or(BodyLength::Unknown, BodyLength::Known),
        )
    };
    if parts.status.is_informational() {
        // Only hyper answers upgrades; a 1xx as a final answer is hyper's 500 too.
        parts = Response::new(()).into_parts().0;
        parts.status = StatusCode::INTERNAL_SERVER_ERROR;
        let mut head = Vec::new();
        encode(&mut parts, None, asked, &mut head).map_err(unsendable)?;
        write_all(out, &mut VecDeque::from([Piece::Bytes(Bytes::from(head))])).await?;
        return Ok(false);
    }
    if !asked.keep_alive {
        close_connection(&mut parts.headers);
    }
    let mut head = Vec::with_capacity(64 + parts.headers.len() * 32);
    let (mut framing, is_last) =
        encode(&mut parts, length, asked, &mut head).map_err(unsendable)?;
    let mut queue = VecDeque::with_capacity(4);
    queue.push_back(Piece::Bytes(Bytes::from(head)));
    if framing == Framing::Length(0) {
        // hyper does not poll a body it cannot send (HEAD, 204, 304, or an empty one).
        drop(body);
        write_all(out, &mut queue).await?;
        return Ok(!is_last);
    }
    let mut body = Pin::new(&mut body);
    let ended = loop {
        // What the body has ready joins the queue; the queue is written when it has nothing.
        let frame = match poll_fn(|cx| Poll::Ready(body.as_mut().poll_frame(cx))).await {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                write_all(out, &mut queue).await?;
                poll_fn(|cx| body.as_mut().poll_frame(cx)).await
            }
        };
        let frame = match frame {
            None => break end(&framing, &mut queue),
            Some(Err(error)) => {
                // hyper aborts the response: the client sees it cut short, not complete.
                write_all(out, &mut queue).await?;
                return Err(io::Error::other(error));
            }
            Some(Ok(frame)) => frame,
        };
        let frame = match frame.into_data() {
            Ok(data) => {
                let done = encode_data(&mut framing, data, &mut queue);
                if done || body.is_end_stream() {
                    break if done {
                        Ok(())
                    } else {
                        end(&framing, &mut queue)
                    };
                }
                continue;
            }
            Err(frame) => frame,
        };
        if let Ok(trailers) = frame.into_trailers() {
            break match (&framing, asked.trailers) {
                (Framing::Chunked(Some(allowed)), true) => {
                    queue.push_back(Piece::Bytes(encode_trailers(allowed, &trailers)));
                    Ok(())
                }
                _ => end(&framing, &mut queue),
            };
        }
    };
    write_all(out, &mut queue).await?;
    // A body shorter than its stated length ends the connection, as it does in hyper.
    ended?;
    Ok(!is_last && framing != Framing::CloseDelimited)
}

fn unsendable(_: Unsendable) -> io::Error {
    io::Error::other("the response's length fields cannot be sent")
}

/// Adds `close` to `Connection` unless it is there (hyper's `enforce_version`).
fn close_connection(headers: &mut HeaderMap) {
    const CLOSE: HeaderValue = HeaderValue::from_static("close");
    match headers.entry(header::CONNECTION) {
        header::Entry::Occupied(mut entry) => {
            if !entry.iter().any(|value| has_token(value, "close")) {
                entry.append(CLOSE);
            }
        }
        header::Entry::Vacant(entry) => {
            entry.insert(CLOSE);
        }
    }
}

/// Queues `data` as `framing` sends it; true once a stated length is complete (what follows is
/// not sent, and the body is not read further).
fn encode_data(framing: &mut Framing, mut data: Bytes, queue: &mut VecDeque<Piece>) -> bool {
    if data.is_empty() {
        return false;
    }
    match framing {
        Framing::Length(remaining) => {
            if let Ok(limit) = usize::try_from(*remaining) {
                data.truncate(limit);
            }
            *remaining -= data.len() as u64;
            queue.push_back(Piece::Bytes(data));
            *remaining == 0
        }
        Framing::Chunked(_) => {
            queue.push_back(Piece::chunk_size(data.len()));
            queue.push_back(Piece::Bytes(data));
            queue.push_back(Piece::Static(b"\r\n"));
            false
        }
        Framing::CloseDelimited => {
            queue.push_back(Piece::Bytes(data));
            false
        }
    }
}

/// The end of the body: the last chunk, or an error if a stated length was not reached.
fn end(framing: &Framing, queue: &mut VecDeque<Piece>) -> io::Result<()> {
    match framing {
        Framing::Length(0) | Framing::CloseDelimited => Ok(()),
        Framing::Length(missing) => Err(io::Error::other(format!(
            "the response body ended {missing} bytes short of its length"
        ))),
        Framing::Chunked(_) => {
            queue.push_back(Piece::Static(b"0\r\n\r\n"));
            Ok(())
        }
    }
}

/// The last chunk with the trailer fields the response declared and may send
/// (hyper's `encode_trailers`); none left: the plain last chunk.
fn encode_trailers(allowed: &[HeaderName], trailers: &HeaderMap) -> Bytes {
    let mut out = b"0\r\n".to_vec();
    for (name, value) in trailers {
        if allowed.contains(name) && is_valid_trailer_field(name) {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    Bytes::from(out)
}

/// Fields a trailer section may not carry (hyper's list).
fn is_valid_trailer_field(name: &HeaderName) -> bool {
    !matches!(
        *name,
        header::AUTHORIZATION
            | header::CACHE_CONTROL
            | header::CONTENT_ENCODING
            | header::CONTENT_LENGTH
            | header::CONTENT_RANGE
            | header::CONTENT_TYPE
            | header::HOST
            | header::MAX_FORWARDS
            | header::SET_COOKIE
            | header::TRAILER
            | header::TRANSFER_ENCODING
            | header::TE
    )
}

/// The status line and header section, as hyper's `Server::encode` writes them for an HTTP/1.1
/// request (not `CONNECT`, which hyper serves); the body's framing and whether the connection
/// ends after this response.
fn encode(
    parts: &mut http::response::Parts,
    body: Option<BodyLength>,
    asked: Asked,
    dst: &mut Vec<u8>,
) -> Result<(Framing, bool), Unsendable> {
    let status = parts.status;
    let mut is_last = !asked.keep_alive;
    let reason = parts.extensions.get::<hyper::ext::ReasonPhrase>();
    if status == StatusCode::OK && reason.is_none() {
        dst.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        dst.extend_from_slice(b"HTTP/1.1 ");
        dst.extend_from_slice(status.as_str().as_bytes());
        dst.push(b' ');
        match reason {
            Some(reason) => dst.extend_from_slice(reason.as_bytes()),
            None => dst.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes()),
        }
        dst.extend_from_slice(b"\r\n");
    }
    let can_chunked =
        !asked.head && !matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED);
    let can_have_length = !matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED);

    let mut framing = Framing::Length(0);
    let mut allowed_trailers: Option<Vec<HeaderName>> = None;
    let mut wrote_len = false;
    let mut wrote_date = false;
    let mut current: Option<HeaderName> = None;
    // A line begun for a field whose values are joined (or a length written once): its end is
    // written when the next field starts.
    let mut is_name_written = false;
    let mut must_write_chunked = false;
    let mut prev_len = None;
    let end_line = |dst: &mut Vec<u8>, must_write_chunked: bool| {
        if must_write_chunked {
            dst.extend_from_slice(b", chunked\r\n");
        } else {
            dst.extend_from_slice(b"\r\n");
        }
    };
    for (name, value) in parts.headers.drain() {
        if let Some(name) = name {
            current = Some(name);
            if is_name_written {
                end_line(dst, must_write_chunked);
            }
            is_name_written = false;
        }
        let name = current.as_ref().expect("drain names its first value");
        match *name {
            header::CONTENT_LENGTH => {
                if wrote_len && !is_name_written {
                    return Err(Unsendable);
                }
                match body {
                    Some(BodyLength::Known(len)) => {
                        // The body's own length is trusted over the field, as hyper does.
                        if !is_name_written {
                            framing = Framing::Length(len);
                            line_start(dst, b"content-length: ", &value);
                            wrote_len = true;
                            is_name_written = true;
                        }
                        continue;
                    }
                    Some(BodyLength::Unknown) => {
                        let Some(len) = content_length(&value) else {
                            return Err(Unsendable);
                        };
                        match prev_len {
                            Some(prev) if prev != len => return Err(Unsendable),
                            Some(_) => {}
                            None => {
                                framing = Framing::Length(len);
                                line_start(dst, b"content-length: ", &value);
                                wrote_len = true;
                                is_name_written = true;
                                prev_len = Some(len);
                            }
                        }
                        continue;
                    }
                    // No body: the field is kept only for HEAD (it is the length a GET gets).
                    None if !asked.head => continue,
                    None => wrote_len = true,
                }
            }
            header::TRANSFER_ENCODING => {
                if wrote_len && !is_name_written {
                    return Err(Unsendable);
                }
                if !can_chunked {
                    continue;
                }
                wrote_len = true;
                // `chunked` must be the last coding, else it is added.
                must_write_chunked = !last_coding_is_chunked(&value);
                if is_name_written {
                    line_more(dst, &value);
                } else {
                    framing = Framing::Chunked(None);
                    is_name_written = true;
                    line_start(dst, b"transfer-encoding: ", &value);
                }
                continue;
            }
            header::CONNECTION => {
                is_last |= has_token(&value, "close");
                if is_name_written {
                    line_more(dst, &value);
                } else {
                    is_name_written = true;
                    line_start(dst, b"connection: ", &value);
                }
                continue;
            }
            header::DATE => wrote_date = true,
            header::TRAILER => {
                if !can_chunked {
                    continue;
                }
                if is_name_written {
                    line_more(dst, &value);
                } else {
                    is_name_written = true;
                    line_start(dst, b"trailer: ", &value);
                }
                if let Ok(names) = value.to_str() {
                    let names = names
                        .split(',')
                        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok());
                    allowed_trailers.get_or_insert_with(Vec::new).extend(names);
                }
                continue;
            }
            _ => {}
        }
        dst.extend_from_slice(name.as_str().as_bytes());
        dst.extend_from_slice(b": ");
        dst.extend_from_slice(value.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
    if is_name_written {
        end_line(dst, must_write_chunked);
    }
    if !wrote_len {
        framing = match body {
            Some(BodyLength::Unknown) if can_chunked => {
                dst.extend_from_slice(b"transfer-encoding: chunked\r\n");
                Framing::Chunked(None)
            }
            Some(BodyLength::Unknown) => Framing::CloseDelimited,
            None | Some(BodyLength::Known(0)) => {
                if can_have_length && !asked.head {
                    dst.extend_from_slice(b"content-length: 0\r\n");
                }
                Framing::Length(0)
            }
            Some(BodyLength::Known(len)) if can_have_length => {
                dst.extend_from_slice(b"content-length: ");
                dst.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
                dst.extend_from_slice(b"\r\n");
                Framing::Length(len)
            }
            Some(BodyLength::Known(_)) => Framing::Length(0),
        };
    }
    if !can_chunked {
        // HEAD, 204, 304: no body whatever the fields say.
        framing = Framing::Length(0);
    }
    if !wrote_date {
        dst.extend_from_slice(b"date: ");
        date::extend(dst);
        dst.extend_from_slice(b"\r\n");
    }
    dst.extend_from_slice(b"\r\n");
    if let (Framing::Chunked(fields), Some(allowed)) = (&mut framing, allowed_trailers) {
        *fields = Some(allowed);
    }
    Ok((framing, is_last))
}

fn line_start(dst: &mut Vec<u8>, name: &[u8], value: &HeaderValue) {
    dst.extend_from_slice(name);
    dst.extend_from_slice(value.as_bytes());
}

fn line_more(dst: &mut Vec<u8>, value: &HeaderValue) {
    dst.extend_from_slice(b", ");
    dst.extend_from_slice(value.as_bytes());
}

/// A `Content-Length` value: digits only, no overflow (hyper's `content_length_parse`).
fn content_length(value: &HeaderValue) -> Option<u64> {
    let digits = value.as_bytes();
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |len, &digit| {
        if !digit.is_ascii_digit() {
            return None;
        }
        len.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })
}

/// Writes everything queued, in as few vectored writes as the socket takes.
async fn write_all<W: AsyncWrite + Unpin>(
    out: &mut W,
    queue: &mut VecDeque<Piece>,
) -> io::Result<()> {
    poll_fn(|cx| {
        while !queue.is_empty() {
            let mut slices = [IoSlice::new(&[]); 16];
            let count = queue.len().min(slices.len());
            for (slice, piece) in slices.iter_mut().zip(queue.iter()) {
                *slice = IoSlice::new(piece.bytes());
            }
            let mut written =
                ready!(Pin::new(&mut *out).poll_write_vectored(cx, &slices[..count]))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            while written > 0 {
                let front = queue.front_mut().expect("written no more than queued");
                let len = front.bytes().len();
                if written >= len {
                    written -= len;
                    queue.pop_front();
                } else {
                    front.advance(written);
                    written = 0;
                }
            }
        }
        Pin::new(&mut *out).poll_flush(cx)
    })
    .await
}

#[cfg(test)]
mod tests;
