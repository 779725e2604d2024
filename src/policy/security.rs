//! `security_headers: true`: the usual hardening headers, added only where the backend did not
//! set its own.

use http::header::{self, HeaderMap, HeaderValue};

const HSTS: HeaderValue = HeaderValue::from_static("max-age=31536000; includeSubDomains");
const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");
const DENY: HeaderValue = HeaderValue::from_static("DENY");
const REFERRER: HeaderValue = HeaderValue::from_static("strict-origin-when-cross-origin");

/// The headers to add; HSTS only over TLS (browsers ignore it on cleartext, and promising
/// HTTPS from a listener that has none would lock users out).
#[derive(Debug)]
pub(crate) struct SecurityHeaders {
    hsts: bool,
}

impl SecurityHeaders {
    /// For a listener that is TLS when `tls`.
    pub(crate) fn new(tls: bool) -> Self {
        SecurityHeaders { hsts: tls }
    }

    /// Adds each header the response lacks; a backend's own value wins.
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        if self.hsts {
            headers
                .entry(header::STRICT_TRANSPORT_SECURITY)
                .or_insert(HSTS);
        }
        headers
            .entry(header::X_CONTENT_TYPE_OPTIONS)
            .or_insert(NOSNIFF);
        headers.entry(header::X_FRAME_OPTIONS).or_insert(DENY);
        headers.entry(header::REFERRER_POLICY).or_insert(REFERRER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hsts_is_added_only_over_tls() {
        let mut cleartext = HeaderMap::new();
        SecurityHeaders::new(false).apply(&mut cleartext);
        assert!(!cleartext.contains_key(header::STRICT_TRANSPORT_SECURITY));
        assert_eq!(cleartext[header::X_FRAME_OPTIONS], "DENY");
        let mut tls = HeaderMap::new();
        SecurityHeaders::new(true).apply(&mut tls);
        assert_eq!(tls[header::STRICT_TRANSPORT_SECURITY], HSTS);
    }

    #[test]
    fn a_backend_header_is_kept() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("SAMEORIGIN"),
        );
        SecurityHeaders::new(false).apply(&mut headers);
        assert_eq!(headers[header::X_FRAME_OPTIONS], "SAMEORIGIN");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
}
