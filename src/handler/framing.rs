//! Request heads hyper accepts but a proxy must not pass on (RFC 9112): a `Transfer-Encoding`
//! other than exactly one `chunked`, more than one `Host` line, and an absolute-form target
//! whose scheme is not `http` or `https`.
//!
//! The upstream request is re-framed and `Transfer-Encoding` dropped as hop-by-hop, so a
//! coding besides the one `chunked` hyper removes (a second `chunked`, `gzip`) would reach the
//! backend still applied, with nothing saying so. Two `Host` lines let the route follow one
//! while a backend reads the other (RFC 9112 §3.2: "MUST respond with a 400"). A target such
//! as `ftp://host/` would be routed by its host and sent on as plain `/`, as if the client had
//! asked for something else.

use http::header::{self, HeaderMap};
use http::Uri;

/// Why a request for `target` is refused, if it is: only `http` and `https` are proxied.
pub(super) fn target_refusal(target: &Uri) -> Option<&'static str> {
    match target.scheme_str() {
        None => None,
        Some(scheme)
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") =>
        {
            None
        }
        Some(_) => Some("the request target's scheme must be http or https"),
    }
}

/// Why a request with these headers is refused, if it is.
pub(super) fn refusal(headers: &HeaderMap) -> Option<&'static str> {
    if headers.get_all(header::HOST).iter().nth(1).is_some() {
        return Some("the request has more than one Host header");
    }
    let mut codings = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii);
    match (codings.next(), codings.next()) {
        (None, _) => None,
        (Some(coding), None) if coding.eq_ignore_ascii_case(b"chunked") => None,
        _ => Some("the only Transfer-Encoding accepted is a single chunked"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_and_https_targets_pass() {
        for ok in ["/x", "http://a.test/x", "HTTPS://a.test/", "a.test:443"] {
            assert_eq!(target_refusal(&ok.parse().unwrap()), None, "{ok}");
        }
        for refused in ["ftp://a.test/x", "ws://a.test/", "gopher://a.test/"] {
            assert!(
                target_refusal(&refused.parse().unwrap()).is_some(),
                "{refused}"
            );
        }
    }
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn one_host_and_one_chunked_pass() {
        let ok = headers(&[("host", "a.test"), ("transfer-encoding", " Chunked ")]);
        assert_eq!(refusal(&ok), None);
        assert_eq!(refusal(&headers(&[("host", "a.test")])), None);
    }

    #[test]
    fn two_host_lines_are_refused() {
        let twice = headers(&[("host", "a.test"), ("host", "a.test")]);
        assert!(refusal(&twice).is_some());
    }

    #[test]
    fn chunked_twice_or_after_another_coding_is_refused() {
        for te in [
            &["chunked, chunked"][..],
            &["chunked", "chunked"],
            &["gzip, chunked"],
        ] {
            let mut map = headers(&[("host", "a.test")]);
            for value in te {
                map.append("transfer-encoding", HeaderValue::from_static(value));
            }
            assert!(refusal(&map).is_some(), "{te:?}");
        }
    }
}
