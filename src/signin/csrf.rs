//! Cross-site request forgery: a sign-in or sign-out post must come from Gatehouse's own page
//! on this origin. Two checks, both required:
//! 1. the browser's word: an `Origin` other than this request's own origin, or a
//!    `Sec-Fetch-Site` of `cross-site` or `same-site` (another service under the cookie domain
//!    is another site here), is refused;
//! 2. a double-submit token: the page sets a random `gatehouse_csrf` cookie (HttpOnly,
//!    SameSite=Strict, Path=/.gatehouse/) and puts the same value in a hidden field; the post
//!    must carry both, equal (compared in constant time).

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::{general_purpose::URL_SAFE_NO_PAD, Engine};
use http::{header, HeaderMap, HeaderName};

use crate::request::cookie;

/// The cookie's name.
pub(super) const COOKIE: &str = "gatehouse_csrf";
/// Random bytes per token (256 bits).
const TOKEN_BYTES: usize = 32;
/// Their unpadded base64url length.
const TOKEN_CHARS: usize = 43;

const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// A fresh token, or `None` if the system's random source failed (the caller answers 500).
pub(super) fn new_token() -> Option<String> {
    let mut bytes = [0u8; TOKEN_BYTES];
    SystemRandom::new().fill(&mut bytes).ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

/// The request's token cookie, if it holds a token of the right shape.
pub(super) fn from_cookie(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, COOKIE).filter(|token| {
        token.len() == TOKEN_CHARS
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// Whether the cookie's token and the form's are both there and equal.
pub(super) fn tokens_match(cookie: Option<&str>, field: Option<&str>) -> bool {
    match (cookie, field) {
        (Some(cookie), Some(field)) if !cookie.is_empty() => {
            verify_slices_are_equal(cookie.as_bytes(), field.as_bytes()).is_ok()
        }
        _ => false,
    }
}

/// Whether the browser says the request comes from another origin than `own`
/// (`scheme://host[:port]`, see [`own_origin`]).
pub(super) fn cross_site(headers: &HeaderMap, own: &str) -> bool {
    let site = headers.get_all(SEC_FETCH_SITE).iter().any(|value| {
        let value = value.as_bytes();
        value.eq_ignore_ascii_case(b"cross-site") || value.eq_ignore_ascii_case(b"same-site")
    });
    let mut origins = headers.get_all(header::ORIGIN).iter();
    let origin_differs = match (origins.next(), origins.next()) {
        (None, _) => false,
        (Some(origin), None) => origin
            .to_str()
            .map_or(true, |origin| normal_origin(origin) != own),
        // Two `Origin` fields: no browser sends that.
        (Some(_), Some(_)) => true,
    };
    site || origin_differs
}

/// This request's origin as a browser writes it: `scheme://host[:port]`, lowercase, without
/// the scheme's default port. `host` is the request's `Host` (or URI authority) as sent.
pub(super) fn own_origin(scheme: &str, host: &str) -> String {
    normal_origin(&format!("{scheme}://{host}"))
}

fn normal_origin(origin: &str) -> String {
    let origin = origin.trim().to_ascii_lowercase();
    let default_port = if origin.starts_with("https://") {
        ":443"
    } else {
        ":80"
    };
    match origin.strip_suffix(default_port) {
        Some(without) => without.to_string(),
        None => origin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn tokens_are_random_256_bit_base64url() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), TOKEN_CHARS);
        let cookie = headers(&[("cookie", &format!("x=1; gatehouse_csrf={a}"))]);
        assert_eq!(from_cookie(&cookie), Some(a.as_str()));
        let short = headers(&[("cookie", "gatehouse_csrf=abc")]);
        assert_eq!(from_cookie(&short), None);
    }

    #[test]
    fn tokens_match_only_when_both_are_there_and_equal() {
        assert!(tokens_match(Some("abc"), Some("abc")));
        assert!(!tokens_match(Some("abc"), Some("abd")));
        assert!(!tokens_match(Some("abc"), Some("ab")));
        assert!(!tokens_match(None, Some("abc")));
        assert!(!tokens_match(Some("abc"), None));
        assert!(!tokens_match(Some(""), Some("")));
    }

    #[test]
    fn the_own_origin_drops_the_default_port_and_case() {
        assert_eq!(own_origin("http", "S1.Test:80"), "http://s1.test");
        assert_eq!(own_origin("https", "s1.test:443"), "https://s1.test");
        assert_eq!(own_origin("http", "s1.test:8080"), "http://s1.test:8080");
        assert_eq!(own_origin("https", "s1.test:80"), "https://s1.test:80");
    }

    #[test]
    fn another_origin_or_site_is_cross_site() {
        let own = "http://s1.test:8080";
        assert!(!cross_site(&headers(&[]), own));
        assert!(!cross_site(
            &headers(&[("origin", "http://s1.test:8080")]),
            own
        ));
        assert!(!cross_site(
            &headers(&[("origin", "HTTP://S1.test:8080")]),
            own
        ));
        assert!(!cross_site(
            &headers(&[("sec-fetch-site", "same-origin")]),
            own
        ));
        for refused in [
            &[("origin", "https://evil.test")][..],
            &[("origin", "null")],
            &[("origin", "http://s1.test")],
            &[("origin", "https://s1.test:8080")],
            &[("origin", "http://s2.test:8080")],
            &[("sec-fetch-site", "cross-site")],
            &[("sec-fetch-site", "same-site")],
            &[
                ("origin", "http://s1.test:8080"),
                ("sec-fetch-site", "cross-site"),
            ],
            &[
                ("origin", "http://s1.test:8080"),
                ("origin", "http://s1.test:8080"),
            ],
        ] {
            assert!(cross_site(&headers(refused), own), "{refused:?}");
        }
    }
}
