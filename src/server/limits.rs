//! Request limits the handler checks first (so refusals are counted and logged): the request
//! target's length
//! (414) on every protocol, and the header count on HTTP/2 (hyper counts HTTP/1 headers while
//! parsing and answers 431 itself; HTTP/2 only has a byte bound, `max_header_list_size`).

use http::{Request, Response, StatusCode};
use serde_json::json;

use crate::error::{json_response, ProxyBody};

/// The per-request bounds of one listener.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Longest path + query, in bytes.
    pub(super) max_uri_bytes: usize,
    /// Most header fields (each value of a repeated name counts).
    pub(super) max_headers: usize,
}

impl RequestLimits {
    /// The error response for a request over a limit; `None` when it is within all of them.
    pub(crate) fn reject<B>(&self, request: &Request<B>) -> Option<Response<ProxyBody>> {
        let target = request
            .uri()
            .path_and_query()
            .map_or(0, |target| target.as_str().len());
        if target > self.max_uri_bytes {
            return Some(json_response(
                StatusCode::URI_TOO_LONG,
                &json!({
                    "error": "uri_too_long",
                    "message": format!(
                        "the request target is {target} bytes; at most {} are accepted",
                        self.max_uri_bytes
                    ),
                }),
            ));
        }
        let headers = request.headers().len();
        if headers > self.max_headers {
            return Some(json_response(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                &json!({
                    "error": "request_header_fields_too_large",
                    "message": format!(
                        "the request has {headers} header fields; at most {} are accepted",
                        self.max_headers
                    ),
                }),
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: RequestLimits = RequestLimits {
        max_uri_bytes: 16,
        max_headers: 2,
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
    fn too_many_headers_is_431() {
        let response = LIMITS.reject(&request("/", 3)).unwrap();
        assert_eq!(
            response.status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
    }
}
