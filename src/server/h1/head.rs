//! A request head, read by `httparse` as hyper's server reads it, taken only when it is one
//! this server answers itself: HTTP/1.1, origin-form target, nothing that changes the
//! connection (no `Transfer-Encoding`, `Expect` or `Upgrade`, no `CONNECT`), and no body or a
//! body of one `Content-Length` line of at most [`MAX_BODY`] bytes, taken with the head once
//! all of it is in the buffer. Every other head, and every head hyper would refuse, is left to
//! hyper, which then reads the same bytes (`Parsed::Other`).

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Uri, Version};
use hyper::body::Incoming;

use crate::forwarder::ADDED_REQUEST_HEADERS;
use crate::http1::has_token;

/// What the bytes at the start of the buffer are.
// The head is the common case and moves once or twice; boxed, it would cost an allocation
// per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(super) enum Parsed {
    /// A request this server answers; its head and body are taken off the buffer.
    Simple(Head),
    /// Not a whole head yet.
    Partial,
    /// A whole head this server answers once its body is in: the buffer must first hold this
    /// many bytes (head and body). Nothing was taken off the buffer.
    Body(usize),
    /// A head hyper must serve (or refuse): a chunked or longer body, an upgrade, HTTP/1.0, a
    /// malformed head, too many fields. Nothing was taken off the buffer.
    Other,
}

/// A request head this server answers.
#[derive(Debug)]
pub(super) struct Head {
    pub request: Request<Incoming>,
    /// The head's length in bytes (without the body).
    pub len: usize,
    /// The client did not ask to close the connection after this request.
    pub keep_alive: bool,
    /// The client accepts trailer fields (`TE: trailers`), which hyper sends only then.
    pub trailers: bool,
}

/// Reads the head at the start of `buf`; `max_headers` is hyper's field limit (more: hyper
/// answers 431).
pub(super) fn parse(buf: &mut BytesMut, max_headers: usize) -> Parsed {
    // Frozen whole, so that the target and every field value share its bytes (as hyper's do);
    // what follows the head goes back into `buf`, and so does all of it if hyper is to read it.
    let bytes = std::mem::take(buf).freeze();
    match read(&bytes, max_headers) {
        Read::Simple(mut head, body) => {
            let end = head.len + body;
            if bytes.len() < end {
                *buf = BytesMut::from(bytes);
                return Parsed::Body(end);
            }
            if body > 0 {
                *head.request.body_mut() = Incoming::full(bytes.slice(head.len..end));
            }
            if bytes.len() > end {
                *buf = BytesMut::from(&bytes[end..]);
            }
            Parsed::Simple(head)
        }
        Read::Partial => {
            *buf = BytesMut::from(bytes);
            Parsed::Partial
        }
        Read::Other => {
            *buf = BytesMut::from(bytes);
            Parsed::Other
        }
    }
}

/// The largest request body taken with its head; a longer one is hyper's, which streams it.
pub(super) const MAX_BODY: usize = 64 * 1024;

#[allow(clippy::large_enum_variant)] // As `Parsed`.
enum Read {
    /// The head (its body still empty) and the body's length.
    Simple(Head, usize),
    Partial,
    Other,
}

fn read(bytes: &Bytes, max_headers: usize) -> Read {
    // hyper's parser keeps up to `max_headers` fields on the stack uninitialised; so does this.
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let fields = &mut fields[..max_headers.min(MAX_FIELDS)];
    let mut request = httparse::Request::new(&mut []);
    let len = match request.parse_with_uninit_headers(bytes, fields) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Read::Partial,
        Err(_) => return Read::Other,
    };
    if request.version != Some(1) {
        return Read::Other;
    }
    let Some(path) = request.path.filter(|path| path.starts_with('/')) else {
        return Read::Other;
    };
    let Ok(method) = Method::from_bytes(request.method.unwrap_or_default().as_bytes()) else {
        return Read::Other;
    };
    if method == Method::CONNECT {
        return Read::Other;
    }
    // hyper answers 400 to a target `Uri` refuses.
    let Ok(uri) = Uri::from_maybe_shared(bytes.slice_ref(path.as_bytes())) else {
        return Read::Other;
    };
    let mut headers = HeaderMap::with_capacity(request.headers.len() + ADDED_REQUEST_HEADERS);
    let mut keep_alive = true;
    let mut trailers = false;
    let mut body: Option<usize> = None;
    for field in request.headers.iter() {
        let Ok(name) = HeaderName::from_bytes(field.name.as_bytes()) else {
            return Read::Other;
        };
        // httparse admits only HTAB, SP, visible ASCII and obs-text in a value, which is what
        // `HeaderValue` holds (hyper takes them unchecked for that reason); checked all the
        // same, a byte loop, so that no unsafe code is needed.
        let Ok(value) = HeaderValue::from_maybe_shared(bytes.slice_ref(field.value)) else {
            return Read::Other;
        };
        match name {
            // One line of digits, as small as `MAX_BODY`; repeated lines (which hyper folds
            // into one when they agree) and anything else are hyper's to judge.
            header::CONTENT_LENGTH => match (body, content_length(value.as_bytes())) {
                (None, Some(length)) => body = Some(length),
                _ => return Read::Other,
            },
            header::TRANSFER_ENCODING | header::EXPECT | header::UPGRADE => return Read::Other,
            header::CONNECTION => keep_alive &= !has_token(&value, "close"),
            header::TE => trailers |= has_token(&value, "trailers"),
            _ => {}
        }
        headers.append(name, value);
    }
    let mut request = Request::new(Incoming::empty());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    let head = Head {
        request,
        len,
        keep_alive,
        trailers,
    };
    Read::Simple(head, body.unwrap_or(0))
}

/// A `Content-Length` value of at most [`MAX_BODY`]: one to six ASCII digits.
fn content_length(value: &[u8]) -> Option<usize> {
    if value.is_empty() || value.len() > 6 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let length = value
        .iter()
        .fold(0usize, |n, &d| n * 10 + usize::from(d - b'0'));
    (length <= MAX_BODY).then_some(length)
}

/// The most fields a head may have here; hyper's own default limit is the same.
const MAX_FIELDS: usize = 100;

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;

    fn parse_str(bytes: &str) -> (Parsed, BytesMut) {
        let mut buf = BytesMut::from(bytes);
        let parsed = parse(&mut buf, 100);
        (parsed, buf)
    }

    #[test]
    fn a_plain_get_is_taken_with_its_fields_and_the_rest_stays() {
        let (parsed, rest) =
            parse_str("GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\n\r\nGET /next");
        let Parsed::Simple(head) = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(head.request.method(), Method::GET);
        assert_eq!(head.request.uri(), "/a?b=1");
        assert_eq!(head.request.version(), Version::HTTP_11);
        let values: Vec<_> = head.request.headers().get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "2"]);
        assert_eq!(head.request.headers()["host"], "x");
        assert!(head.keep_alive && !head.trailers);
        assert_eq!(&rest[..], b"GET /next");
    }

    #[test]
    fn close_and_te_trailers_are_noted() {
        let (parsed, _) =
            parse_str("HEAD / HTTP/1.1\r\nConnection: keep-alive, Close\r\nTE: trailers\r\n\r\n");
        let Parsed::Simple(head) = parsed else {
            panic!("{parsed:?}")
        };
        assert!(!head.keep_alive && head.trailers);
    }

    #[test]
    fn heads_hyper_must_serve_are_left_whole() {
        for other in [
            "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
            "POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\nx",
            "POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\nx",
            "POST / HTTP/1.1\r\nContent-Length: 0x1\r\n\r\nx",
            "POST / HTTP/1.1\r\nContent-Length: 65537\r\n\r\nx",
            "POST / HTTP/1.1\r\nContent-Length: 0000001\r\n\r\nx",
            "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "PUT / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            "GET / HTTP/1.0\r\n\r\n",
            "CONNECT a:443 HTTP/1.1\r\n\r\n",
            "GET http://a/ HTTP/1.1\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "GET /\x7f HTTP/1.1\r\n\r\n",
        ] {
            let (parsed, rest) = parse_str(other);
            assert!(matches!(parsed, Parsed::Other), "{other:?}: {parsed:?}");
            assert_eq!(&rest[..], other.as_bytes(), "{other:?}");
        }
    }

    #[test]
    fn a_body_is_taken_with_its_head_once_all_of_it_is_in() {
        let request = "POST /up HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        for cut in 0..5 {
            let (parsed, rest) = parse_str(&request[..request.len() - 5 + cut]);
            assert!(
                matches!(parsed, Parsed::Body(n) if n == request.len()),
                "{parsed:?}"
            );
            assert_eq!(rest.len(), request.len() - 5 + cut, "nothing is taken");
        }
        let (parsed, rest) = parse_str(&format!("{request}GET /next"));
        let Parsed::Simple(head) = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(head.len, request.len() - 5);
        assert_eq!(head.request.headers()["content-length"], "5");
        assert_eq!(head.request.body().size_hint().exact(), Some(5));
        assert_eq!(&rest[..], b"GET /next");

        let (parsed, rest) = parse_str("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        let Parsed::Simple(head) = parsed else {
            panic!("{parsed:?}")
        };
        assert!(head.request.body().is_end_stream() && rest.is_empty());

        let largest = format!(
            "POST / HTTP/1.1\r\nContent-Length: {MAX_BODY}\r\n\r\n{}",
            "x".repeat(MAX_BODY)
        );
        assert!(matches!(parse_str(&largest).0, Parsed::Simple(_)));
    }

    #[test]
    fn a_head_with_more_fields_than_the_limit_is_left_to_hyper() {
        let fields: String = (0..5).map(|i| format!("x-{i}: 1\r\n")).collect();
        let bytes = format!("GET / HTTP/1.1\r\n{fields}\r\n");
        let mut buf = BytesMut::from(bytes.as_str());
        assert!(matches!(parse(&mut buf, 4), Parsed::Other));
        assert!(matches!(parse(&mut buf, 5), Parsed::Simple(_)));
    }

    #[test]
    fn an_unfinished_head_is_partial() {
        let (parsed, rest) = parse_str("GET / HTTP/1.1\r\nHost: x\r\n");
        assert!(matches!(parsed, Parsed::Partial));
        assert_eq!(rest.len(), 25);
    }
}
