//! Request limits the handler checks first (so refusals are counted and logged): the request
//! target's length (414) on every protocol, the header count on HTTP/2 (hyper counts HTTP/1
//! headers while parsing and answers 431 itself; HTTP/2 only has a byte bound,
//! `max_header_list_size`), and the head's size on HTTP/1.1, whose only bound in hyper is its
//! read buffer, never under 8 KiB (`max_buf_size`): a smaller `max_header_bytes` is enforced
//! here, exactly.

use http::{header, HeaderValue, Request, Response, Version};

use super::framing;
use crate::error::{ProxyBody, ProxyError};

/// The per-request bounds of one listener.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Longest path + query, in bytes.
    pub max_uri_bytes: usize,
    /// Most header fields (each value of a repeated name counts).
    pub max_headers: usize,
    /// Largest head: request line and header fields as HTTP/1.1 spells them.
    pub max_header_bytes: usize,
}

impl RequestLimits {
    /// The error response for a request over a limit; `None` when it is within all of them.
    /// On HTTP/1.x the refusal also closes the connection: a refused head's body is left
    /// unread, and a request pipelined behind a head over a limit is not served (hyper, when
    /// its own read buffer fills first, closes likewise).
    pub(crate) fn reject<B>(&self, request: &Request<B>) -> Option<Response<ProxyBody>> {
        let mut response = self.refusal(request)?.into_response();
        if request.version() <= Version::HTTP_11 {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        Some(response)
    }

    fn refusal<B>(&self, request: &Request<B>) -> Option<ProxyError> {
        // Heads hyper parses but a proxy must not forward (see `framing`).
        let refused =
            framing::refusal(request.headers()).or_else(|| framing::target_refusal(request.uri()));
        if let Some(reason) = refused {
            return Some(ProxyError::RefusedHead(reason));
        }
        let target = request
            .uri()
            .path_and_query()
            .map_or(0, |target| target.as_str().len());
        let max = self.max_uri_bytes;
        if target > max {
            return Some(ProxyError::UriTooLong { len: target, max });
        }
        let (count, max) = (request.headers().len(), self.max_headers);
        if count > max {
            return Some(ProxyError::TooManyHeaders { count, max });
        }
        let (bytes, max) = (head_bytes(request), self.max_header_bytes);
        if bytes > max {
            return Some(ProxyError::HeadTooLarge { bytes, max });
        }
        None
    }
}

/// The size of the request's head as HTTP/1.1 writes it: `METHOD target HTTP/1.1` and one
/// `name: value` line per field, each with its CRLF, and the blank line.
fn head_bytes<B>(request: &Request<B>) -> usize {
    let target = request
        .uri()
        .path_and_query()
        .map_or(1, |target| target.as_str().len());
    let line = request.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    let fields: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    line + fields + 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    const LIMITS: RequestLimits = RequestLimits {
        max_uri_bytes: 16,
        max_headers: 2,
        max_header_bytes: 1024,
    };

    fn request(target: &str, headers: usize) -> Request<()> {
        let mut builder = Request::get(target);
        for i in 0..headers {
            builder = builder.header(format!("x-h{i}"), "v");
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn a_request_within_the_limits_passes() {
        assert!(LIMITS.reject(&request("/0123456789abcde", 2)).is_none());
    }

    #[test]
    fn a_target_over_the_limit_is_414() {
        let response = LIMITS.reject(&request("/0123456789?abcde", 0)).unwrap();
        assert_eq!(response.status(), StatusCode::URI_TOO_LONG);
        assert_eq!(response.headers()["content-type"], "application/json");
    }

    #[test]
    fn the_query_counts_toward_the_target() {
        assert!(LIMITS.reject(&request("/?0123456789abcdef", 0)).is_some());
    }

    #[test]
    fn an_absolute_uri_counts_only_its_path_and_query() {
        let absolute = request("http://a-rather-long-host.example/short", 0);
        assert!(LIMITS.reject(&absolute).is_none());
    }

    #[test]
    fn a_head_over_max_header_bytes_is_431() {
        let at_limit = 1024 - "GET / HTTP/1.1\r\nx: \r\n\r\n".len();
        let request = |value: usize| {
            Request::get("/")
                .header("x", "v".repeat(value))
                .body(())
                .unwrap()
        };
        assert!(LIMITS.reject(&request(at_limit)).is_none());
        let response = LIMITS.reject(&request(at_limit + 1)).unwrap();
        assert_eq!(
            response.status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(response.headers()["connection"], "close");
    }

    #[test]
    fn a_second_host_line_is_400_and_closes() {
        let request = Request::get("/")
            .header("host", "a.test")
            .header("host", "b.test")
            .body(())
            .unwrap();
        let response = LIMITS.reject(&request).unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()["connection"], "close");
    }

    #[test]
    fn too_many_headers_is_431() {
        let response = LIMITS.reject(&request("/", 3)).unwrap();
        assert_eq!(
            response.status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
    }
}
