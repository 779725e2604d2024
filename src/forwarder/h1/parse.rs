//! A backend's response head, parsed with `httparse`: the status line and at most
//! [`MAX_HEADERS`] fields in at most [`MAX_HEAD`] bytes, informational (1xx) answers skipped,
//! and how the body is framed (RFC 9112 §6.3) and whether the connection may carry another
//! request afterwards.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Version};

use crate::http1::{has_token, last_coding_is_chunked};

/// The most bytes a response head may take (hyper allowed about 408 KiB).
pub const MAX_HEAD: usize = 64 * 1024;
/// The most header fields a response head may have (hyper's default too).
pub const MAX_HEADERS: usize = 100;

/// Why a response (head or body) cannot be read; the backend's fault, answered 502.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The head did not end within [`MAX_HEAD`] bytes.
    #[error("the response head exceeds {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// Malformed: bad syntax, a bad length, a limit of the body's framing exceeded.
    #[error("invalid response: {0}")]
    Invalid(&'static str),
    /// The connection ended before the message did.
    #[error("the connection closed before the response ended")]
    Incomplete,
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body (HEAD, 204, 304, `Content-Length: 0`).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: …, chunked`.
    Chunked,
    /// Until the backend closes the connection.
    Close,
    /// `101 Switching Protocols`: what follows is the new protocol's.
    Upgrade,
}

/// A final response head.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    /// The reason phrase, when it is not the status's canonical one.
    pub reason: Option<Bytes>,
    pub body: BodyKind,
    /// Whether the connection may carry another request once the body is read: HTTP/1.1
    /// without `Connection: close`, HTTP/1.0 with `Connection: keep-alive`; never after a body
    /// delimited by the close, a switch of protocols, or a length stated two ways.
    pub keep_alive: bool,
}

/// Parses the response head at the start of `buf`, consuming it (and any 1xx heads before it)
/// on success. `Ok(None)`: more bytes are needed. `head_request`: the request was `HEAD`, so
/// the response has no body whatever its headers say.
pub fn parse_head(buf: &mut BytesMut, head_request: bool) -> Result<Option<Head>, ParseError> {
    loop {
        if buf.is_empty() {
            return Ok(None);
        }
        // Uninitialised: filling 100 empty fields (3 KiB) for every response cost more than
        // parsing the few a backend sends.
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            buf,
            &mut fields,
        );
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
                return Err(ParseError::HeadTooLarge)
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(ParseError::Invalid("more than 100 header fields"))
            }
            Err(_) => return Err(ParseError::Invalid("malformed response head")),
        };
        if len > MAX_HEAD {
            return Err(ParseError::HeadTooLarge);
        }
        let code = response.code.unwrap_or_default();
        let status =
            StatusCode::from_u16(code).map_err(|_| ParseError::Invalid("invalid status code"))?;
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            // 100 Continue and friends: the final answer follows.
            buf.advance(len);
            continue;
        }
        let version = if response.version == Some(1) {
            Version::HTTP_11
        } else {
            Version::HTTP_10
        };
        let reason = response
            .reason
            .filter(|r| Some(*r) != status.canonical_reason());
        // Offsets first: the fields borrow `buf`, which is split off (without a copy) next.
        let base = buf.as_ptr() as usize;
        let mut spans =
            [const { MaybeUninit::<(usize, usize, usize, usize)>::uninit() }; MAX_HEADERS];
        let count = response.headers.len();
        for (span, field) in spans.iter_mut().zip(response.headers.iter()) {
            let name = field.name.as_ptr() as usize - base;
            let value = field.value.as_ptr() as usize - base;
            span.write((
                name,
                name + field.name.len(),
                value,
                value + field.value.len(),
            ));
        }
        let reason = reason.map(|r| {
            let at = r.as_ptr() as usize - base;
            (at, at + r.len())
        });
        let bytes = buf.split_to(len).freeze();
        let mut headers = HeaderMap::with_capacity(count + RESPONSE_HEADROOM);
        let mut seen = Framers {
            http10: version == Version::HTTP_10,
            ..Framers::default()
        };
        for span in &spans[..count] {
            // SAFETY: the first `count` spans were written above, one per parsed field.
            let (n0, n1, v0, v1) = unsafe { span.assume_init() };
            let name = HeaderName::from_bytes(&bytes[n0..n1])
                .map_err(|_| ParseError::Invalid("invalid header name"))?;
            let value = HeaderValue::from_maybe_shared(bytes.slice(v0..v1))
                .map_err(|_| ParseError::Invalid("invalid header value"))?;
            seen.note(&name, &value);
            headers.append(name, value);
        }
        let reason = reason.map(|(a, b)| bytes.slice(a..b));
        let body = framing(status, version, &headers, seen, head_request)?;
        // HTTP/1.1 unless a `Connection` line says `close`; HTTP/1.0 only with `keep-alive`
        // (and no `close`).
        let reusable = !seen.close && (version == Version::HTTP_11 || seen.keep_alive);
        let keep_alive = reusable
            && !matches!(body, BodyKind::Close | BodyKind::Upgrade)
            && !(seen.content_length && seen.transfer_encoding);
        return Ok(Some(Head {
            status,
            version,
            headers,
            reason,
            body,
            keep_alive,
        }));
    }
}

/// Room for the headers the proxy adds to a response on its way out, so that adding them does
/// not regrow the map: the request id and a few of the CORS and security headers (a service
/// with all of them grows it once more).
const RESPONSE_HEADROOM: usize = 4;

/// What the fields that decide framing and reuse say, noted while the head's map is built so
/// that none of them costs a lookup afterwards (most responses lack most of them).
#[derive(Debug, Default, Clone, Copy)]
struct Framers {
    content_length: bool,
    transfer_encoding: bool,
    /// The `Content-Length` lines so far, as [`content_length`] reads them: `None` once one is
    /// invalid or disagrees.
    length: Option<u64>,
    /// A `Connection` line has `close`; one has `keep-alive` (looked for in HTTP/1.0 only,
    /// where it matters).
    close: bool,
    keep_alive: bool,
    http10: bool,
}

impl Framers {
    fn note(&mut self, name: &HeaderName, value: &HeaderValue) {
        if name == header::CONTENT_LENGTH {
            self.length = match self.content_length {
                false => line_length(value, None),
                true => self
                    .length
                    .and_then(|length| line_length(value, Some(length))),
            };
            self.content_length = true;
        } else if name == header::TRANSFER_ENCODING {
            self.transfer_encoding = true;
        } else if name == header::CONNECTION {
            self.close |= has_token(value, "close");
            self.keep_alive |= self.http10 && has_token(value, "keep-alive");
        }
    }
}

/// RFC 9112 §6.3, in hyper's order.
fn framing(
    status: StatusCode,
    version: Version,
    headers: &HeaderMap,
    seen: Framers,
    head_request: bool,
) -> Result<BodyKind, ParseError> {
    match status.as_u16() {
        101 => return Ok(BodyKind::Upgrade),
        204 | 304 => return Ok(BodyKind::Empty),
        _ if head_request => return Ok(BodyKind::Empty),
        _ => {}
    }
    if seen.transfer_encoding {
        if version == Version::HTTP_10 {
            return Err(ParseError::Invalid(
                "Transfer-Encoding in an HTTP/1.0 response",
            ));
        }
        return Ok(if chunked_last(headers) {
            BodyKind::Chunked
        } else {
            BodyKind::Close
        });
    }
    if !seen.content_length {
        return Ok(BodyKind::Close);
    }
    match seen.length {
        // hyper reserves the top two values of u64 for its own markers.
        Some(len) if len > u64::MAX - 2 => Err(ParseError::Invalid("Content-Length too large")),
        Some(0) => Ok(BodyKind::Empty),
        Some(len) => Ok(BodyKind::Length(len)),
        None => Err(ParseError::Invalid("invalid Content-Length")),
    }
}

/// Whether the last transfer coding of the last `Transfer-Encoding` line is `chunked`.
fn chunked_last(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .next_back()
        .is_some_and(last_coding_is_chunked)
}

/// The `Content-Length`: every value of every line (comma-separated) the same valid number.
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    let mut length = None;
    for line in headers.get_all(header::CONTENT_LENGTH) {
        length = Some(line_length(line, length)?);
    }
    length
}

/// The number every comma-separated value of one `Content-Length` line states, if they all
/// state the same valid one and it is `so_far` (the earlier lines') when there is one.
fn line_length(line: &HeaderValue, so_far: Option<u64>) -> Option<u64> {
    let mut length = so_far;
    for value in line.to_str().ok()?.split(',') {
        let value = value.trim();
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u64 = value.parse().ok()?;
        if length.is_some_and(|l| l != n) {
            return None;
        }
        length = Some(n);
    }
    length
}
