//! Turning one request into one response: routing, body counting and the
//! JSON echo.

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::http::request::Parts;
use hyper::{Request, Response, StatusCode};

use crate::assertion::AssertionVerifier;
use crate::body::ResponseBody;

const X_BACKEND: HeaderName = HeaderName::from_static("x-backend");
const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
const OCTET_STREAM: HeaderValue = HeaderValue::from_static("application/octet-stream");

/// State shared by every connection of one server.
#[derive(Debug)]
pub(crate) struct Backend {
    name: Box<str>,
    /// Pre-built once so each response only bumps a refcount.
    header: HeaderValue,
    /// With `--jwks`: every request must carry a valid `X-Gatehouse-Assertion`.
    verifier: Option<AssertionVerifier>,
}

impl Backend {
    /// Panics if `name` cannot be sent as a header value: a test setup bug
    /// that should fail loudly rather than produce malformed responses.
    pub(crate) fn new(name: String) -> Self {
        Self::verifying(name, None)
    }

    /// A backend that answers 401 to requests without a valid assertion (when `verifier`).
    pub(crate) fn verifying(name: String, verifier: Option<AssertionVerifier>) -> Self {
        let header = HeaderValue::from_str(&name)
            .unwrap_or_else(|_| panic!("backend name {name:?} is not a valid header value"));
        Backend {
            name: name.into_boxed_str(),
            header,
            verifier,
        }
    }
}

/// What the request path asks for.
#[derive(Debug, PartialEq)]
enum Route {
    Echo(StatusCode),
    Slow(Duration),
    Bytes(u64),
    /// A special path with an unusable argument; echoed with 400 so the
    /// caller can see what was received.
    Invalid,
}

fn route(path: &str) -> Route {
    if let Some(arg) = path.strip_prefix("/slow/") {
        arg.parse::<f64>()
            .ok()
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
            .map_or(Route::Invalid, Route::Slow)
    } else if let Some(arg) = path.strip_prefix("/status/") {
        arg.parse::<u16>()
            .ok()
            // hyper cannot send a 1xx as the final response (it turns it into
            // a 500 and drops the connection), so those are rejected too.
            .filter(|code| (200..=999).contains(code))
            .and_then(|code| StatusCode::from_u16(code).ok())
            .map_or(Route::Invalid, Route::Echo)
    } else if let Some(arg) = path.strip_prefix("/bytes/") {
        arg.parse::<u64>().map_or(Route::Invalid, Route::Bytes)
    } else {
        Route::Echo(StatusCode::OK)
    }
}

/// Answers one request. Never fails: every problem becomes a status code.
pub(crate) async fn handle(
    backend: Arc<Backend>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let (parts, body) = req.into_parts();
    // Drained before anything else so that every route, /bytes included,
    // consumes the upload and leaves a keep-alive connection reusable.
    let Ok(body_len) = count_body(body).await else {
        // The peer broke off mid-upload; nobody is likely to read this.
        return Ok(respond(
            &backend,
            StatusCode::BAD_REQUEST,
            ResponseBody::empty(),
            None,
        ));
    };

    let assertion = match &backend.verifier {
        None => None,
        Some(verifier) => {
            let sent = parts.headers.get("x-gatehouse-assertion");
            match verifier
                .check(parts.uri.path(), sent.map(HeaderValue::as_bytes))
                .await
            {
                Ok(claims) => claims,
                Err(refused) => return Ok(refuse(&backend, refused.as_str())),
            }
        }
    };

    let status = match route(parts.uri.path()) {
        Route::Echo(status) => status,
        Route::Slow(delay) => {
            tokio::time::sleep(delay).await;
            StatusCode::OK
        }
        Route::Bytes(len) => {
            let mut res = respond(
                &backend,
                StatusCode::OK,
                ResponseBody::generated(len),
                Some(OCTET_STREAM),
            );
            res.headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(len));
            return Ok(res);
        }
        Route::Invalid => StatusCode::BAD_REQUEST,
    };

    if matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED) {
        // These statuses forbid a body; sending one would desync HTTP/1.1.
        return Ok(respond(&backend, status, ResponseBody::empty(), None));
    }
    let json = echo_json(&backend.name, &parts, body_len, assertion.as_ref());
    Ok(respond(
        &backend,
        status,
        ResponseBody::full(json),
        Some(APPLICATION_JSON),
    ))
}

/// 401 with `{"backend","error"}`: the assertion was missing or did not verify.
fn refuse(backend: &Backend, reason: &str) -> Response<ResponseBody> {
    let body = serde_json::json!({"backend": &*backend.name, "error": reason});
    respond(
        backend,
        StatusCode::UNAUTHORIZED,
        ResponseBody::full(Bytes::from(body.to_string())),
        Some(APPLICATION_JSON),
    )
}

fn respond(
    backend: &Backend,
    status: StatusCode,
    body: ResponseBody,
    content_type: Option<HeaderValue>,
) -> Response<ResponseBody> {
    let mut res = Response::new(body);
    *res.status_mut() = status;
    let headers = res.headers_mut();
    headers.insert(X_BACKEND, backend.header.clone());
    if let Some(content_type) = content_type {
        headers.insert(CONTENT_TYPE, content_type);
    }
    res
}

/// Counts request body bytes frame by frame so that uploads of any size pass
/// through in constant memory.
async fn count_body(mut body: Incoming) -> Result<u64, hyper::Error> {
    let mut len = 0;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            len += data.len() as u64;
        }
    }
    Ok(len)
}

/// Builds the echo document by hand (serde_json only escapes strings) so
/// that the header map is borrowed rather than copied into a `Value` tree.
fn echo_json(
    name: &str,
    parts: &Parts,
    body_len: u64,
    assertion: Option<&serde_json::Value>,
) -> Bytes {
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path(), |pq| pq.as_str());
    let headers = &parts.headers;
    // A close upper bound for ASCII input, so the buffer is allocated once.
    let capacity = 96
        + name.len()
        + path.len()
        + headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 8)
            .sum::<usize>();
    let mut buf = Vec::with_capacity(capacity);

    buf.extend_from_slice(b"{\"backend\":");
    push_json_str(&mut buf, name);
    buf.extend_from_slice(b",\"method\":");
    push_json_str(&mut buf, parts.method.as_str());
    buf.extend_from_slice(b",\"path\":");
    push_json_str(&mut buf, path);
    buf.extend_from_slice(b",\"headers\":{");
    for (i, key) in headers.keys().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        push_json_str(&mut buf, key.as_str());
        buf.push(b':');
        let mut values = headers.get_all(key).iter().map(lossy);
        let mut joined = values.next().unwrap_or_default();
        for value in values {
            let joined = joined.to_mut();
            joined.push_str(", ");
            joined.push_str(&value);
        }
        push_json_str(&mut buf, &joined);
    }
    buf.extend_from_slice(b"},\"body_len\":");
    serde_json::to_writer(&mut buf, &body_len).expect("writing to a Vec cannot fail");
    if let Some(claims) = assertion {
        // The verified claims, so a caller sees who the backend was told it is.
        buf.extend_from_slice(b",\"assertion\":");
        serde_json::to_writer(&mut buf, claims).expect("writing to a Vec cannot fail");
    }
    buf.push(b'}');
    Bytes::from(buf)
}

fn push_json_str(buf: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(buf, s).expect("writing to a Vec cannot fail");
}

/// Borrows the value when it is valid UTF-8, which is almost always.
fn lossy(value: &HeaderValue) -> Cow<'_, str> {
    String::from_utf8_lossy(value.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_echo_with_200() {
        assert_eq!(route("/"), Route::Echo(StatusCode::OK));
        assert_eq!(route("/a/b"), Route::Echo(StatusCode::OK));
        assert_eq!(route("/slowly"), Route::Echo(StatusCode::OK));
    }

    #[test]
    fn slow_path_accepts_fractional_seconds_only_when_finite_and_non_negative() {
        assert_eq!(route("/slow/0.5"), Route::Slow(Duration::from_millis(500)));
        assert_eq!(route("/slow/2"), Route::Slow(Duration::from_secs(2)));
        assert_eq!(route("/slow/-1"), Route::Invalid);
        assert_eq!(route("/slow/NaN"), Route::Invalid);
        assert_eq!(route("/slow/inf"), Route::Invalid);
        assert_eq!(route("/slow/"), Route::Invalid);
    }

    #[test]
    fn status_path_accepts_only_sendable_codes() {
        assert_eq!(route("/status/418"), Route::Echo(StatusCode::IM_A_TEAPOT));
        assert_eq!(
            route("/status/999"),
            Route::Echo(StatusCode::from_u16(999).unwrap())
        );
        for bad in [
            "/status/99",
            "/status/100",
            "/status/199",
            "/status/1000",
            "/status/x",
        ] {
            assert_eq!(route(bad), Route::Invalid, "{bad}");
        }
    }

    #[test]
    fn bytes_path_takes_a_non_negative_integer() {
        assert_eq!(route("/bytes/0"), Route::Bytes(0));
        assert_eq!(route("/bytes/1073741824"), Route::Bytes(1 << 30));
        assert_eq!(route("/bytes/-1"), Route::Invalid);
        assert_eq!(route("/bytes/1.5"), Route::Invalid);
    }

    #[test]
    fn echo_document_escapes_and_joins_header_values() {
        let (mut parts, ()) = Request::post("/p?q=1")
            .header("x-a", "one")
            .header("x-a", "two")
            .header("x-q", r#"say "hi" \o/"#)
            .header("x-b", HeaderValue::from_bytes(b"caf\xe9").unwrap())
            .body(())
            .unwrap()
            .into_parts();
        parts
            .headers
            .append("x-a", HeaderValue::from_static("three"));
        let json: serde_json::Value =
            serde_json::from_slice(&echo_json("b\"1", &parts, 7, None)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "backend": "b\"1",
                "method": "POST",
                "path": "/p?q=1",
                "headers": {
                    "x-a": "one, two, three",
                    "x-q": r#"say "hi" \o/"#,
                    "x-b": "caf\u{FFFD}",
                },
                "body_len": 7,
            })
        );
    }
}
