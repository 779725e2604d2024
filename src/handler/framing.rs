//! Request heads hyper accepts but a proxy must not pass on (RFC 9112): a `Transfer-Encoding`
//! other than exactly one `chunked`, and more than one `Host` line.
//!
//! The upstream request is re-framed and `Transfer-Encoding` dropped as hop-by-hop, so a
//! coding besides the one `chunked` hyper removes (a second `chunked`, `gzip`) would reach the
//! backend still applied, with nothing saying so. Two `Host` lines let the route follow one
//! while a backend reads the other (RFC 9112 §3.2: "MUST respond with a 400").

use http::header::{self, HeaderMap};

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
