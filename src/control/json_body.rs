//! Reading a control-plane request body (`read_small` also reads the sign-in form): JSON only, at most 16 KiB, no unknown fields, read
//! whole before any work is done, no pause between chunks longer than `limits.body_read_timeout`
//! and no slower than `limits.min_body_rate` (as for proxied bodies).

use std::pin::Pin;
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use http::{header, Request};
use http_body::Body;
use http_body_util::Limited;
use hyper::body::Incoming;
use serde::de::DeserializeOwned;

use crate::error::{Invalid, ProxyError};
use crate::policy::{BodyClock, BodyPace};

/// Largest body a control-plane request may carry.
pub(super) const MAX_BODY_BYTES: usize = 16 * 1024;

/// Parses the body as `T`. Refuses non-JSON (415) and oversized bodies (413) before reading
/// them when the headers already tell; a body that turns out too long stops being read at the
/// limit, and one that pauses too long between chunks or arrives below the minimum rate is
/// answered 408 (a client trickling or stalling its body would otherwise hold its connection
/// for good).
pub(super) async fn read_json<T: DeserializeOwned>(
    request: Request<Incoming>,
    pace: BodyPace,
) -> Result<T, ProxyError> {
    if !is_json(request.headers()) {
        return Err(ProxyError::UnsupportedMediaType);
    }
    let bytes = read_small(request, pace).await?;
    parse_json(&bytes)
}

/// The whole body of a control-plane-sized request (the sign-in form too), under the same
/// limits: at most [`MAX_BODY_BYTES`] (413, refused unread when `Content-Length` says so) and
/// the pause and minimum-rate limits of `pace` (408). The caller checks the media type.
pub(crate) async fn read_small(
    request: Request<Incoming>,
    pace: BodyPace,
) -> Result<Bytes, ProxyError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Err(ProxyError::PayloadTooLarge(MAX_BODY_BYTES));
    }
    read_limited(request.into_body(), pace).await
}

async fn read_limited(body: Incoming, pace: BodyPace) -> Result<Bytes, ProxyError> {
    let mut body = Limited::new(body, MAX_BODY_BYTES);
    let mut clock = BodyClock::new(pace);
    let mut bytes = BytesMut::new();
    loop {
        let next = std::future::poll_fn(|cx| match Pin::new(&mut body).poll_frame(cx) {
            Poll::Pending => clock.poll_expired(cx).map(Err),
            Poll::Ready(frame) => Poll::Ready(Ok(frame)),
        });
        let frame = match next.await {
            Err(slow) => return Err(ProxyError::from(slow)),
            Ok(None) => return Ok(bytes.freeze()),
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(error))) if error.is::<http_body_util::LengthLimitError>() => {
                return Err(ProxyError::PayloadTooLarge(MAX_BODY_BYTES))
            }
            Ok(Some(Err(_))) => {
                return Err(ProxyError::BadRequest("the request body could not be read"))
            }
        };
        let data = frame.data_ref().map_or(&[][..], |data| &data[..]);
        clock.arrived(data.len() as u64);
        bytes.extend_from_slice(data);
    }
}

/// JSON into `T`: syntax errors are `invalid_json`; a wrong shape (missing, unknown or mistyped
/// fields) is `invalid_request`, with serde's description of what is wrong.
pub(super) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ProxyError> {
    // serde's derive would also take an array of the fields in declaration order; the
    // contract is an object, so anything else that parses is a wrong shape.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            return Err(ProxyError::InvalidField(
                Invalid::Json,
                format!("the request body is not valid: {error}"),
            ));
        }
        return Err(ProxyError::InvalidField(
            Invalid::Request,
            "the request body must be a JSON object".into(),
        ));
    }
    serde_json::from_slice(bytes).map_err(|error| {
        let code = match error.classify() {
            serde_json::error::Category::Data => Invalid::Request,
            _ => Invalid::Json,
        };
        ProxyError::InvalidField(code, format!("the request body is not valid: {error}"))
    })
}

/// `application/json`, with or without parameters, in any letter case.
pub(super) fn is_json(headers: &http::HeaderMap) -> bool {
    is_media_type(headers, "application/json")
}

/// Whether the `Content-Type` essence (before any parameters) is `expected`, in any case.
pub(super) fn is_media_type(headers: &http::HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim())
        .is_some_and(|essence| essence.eq_ignore_ascii_case(expected))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Probe {
        name: String,
    }

    fn content_type(value: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn json_content_types_are_recognised_with_parameters() {
        assert!(is_json(&content_type("application/json")));
        assert!(is_json(&content_type("Application/JSON; charset=utf-8")));
        assert!(!is_json(&content_type("text/plain")));
        assert!(!is_json(&content_type("application/jsonx")));
        assert!(!is_json(&http::HeaderMap::new()));
    }

    #[test]
    fn syntax_errors_are_invalid_json() {
        let error = parse_json::<Probe>(b"{\"name\":").unwrap_err();
        assert_eq!(error.code(), "invalid_json");
    }

    #[test]
    fn unknown_and_missing_fields_are_invalid_requests() {
        let unknown = parse_json::<Probe>(br#"{"name":"a","admin":true}"#).unwrap_err();
        assert_eq!(unknown.code(), "invalid_request");
        assert!(unknown.to_string().contains("admin"), "{unknown}");
        let missing = parse_json::<Probe>(b"{}").unwrap_err();
        assert_eq!(missing.code(), "invalid_request");
    }

    #[test]
    fn only_objects_are_accepted() {
        assert!(parse_json::<Probe>(br#" {"name":"a"}"#).is_ok());
        let array = parse_json::<Probe>(br#"["a"]"#).unwrap_err();
        assert_eq!(array.code(), "invalid_request");
        assert_eq!(
            parse_json::<Probe>(b"null").unwrap_err().code(),
            "invalid_request"
        );
        assert_eq!(
            parse_json::<Probe>(b"nope").unwrap_err().code(),
            "invalid_json"
        );
        assert_eq!(parse_json::<Probe>(b"").unwrap_err().code(), "invalid_json");
    }
}
