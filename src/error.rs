//! The errors a request can end in, and the one place that maps them to status codes.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};

/// The body type every response of the proxy uses: streamed from a backend or built here.
pub type ProxyBody = UnsyncBoxBody<Bytes, hyper::Error>;

/// Why a request could not be answered normally.
///
/// Variants are grouped by where the fault lies, because that decides the status (pingora's
/// `fail_to_proxy`): the backend (502/504), the client (4xx), nothing to send to (503), or us (500).
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("nothing is served at {0} on this host")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("authentication required")]
    MissingToken,
    #[error("the request is malformed: {0}")]
    BadRequest(&'static str),
    #[error("no healthy backend for service {0}")]
    NoHealthyBackend(String),
    #[error("every backend of service {0} refused the connection")]
    AllBackendsFailed(String),
    #[error("the backend failed: {0}")]
    Upstream(String),
    #[error("the backend did not answer within {0:?}")]
    UpstreamTimeout(std::time::Duration),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ProxyError {
    /// The whole error → status mapping, in one match.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NotFound(_) => StatusCode::NOT_FOUND,
            ProxyError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::MissingToken => StatusCode::UNAUTHORIZED,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::NoHealthyBackend(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::AllBackendsFailed(_) | ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable snake_case code clients can match on (the `error` field of the body).
    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::NotFound(_) => "not_found",
            ProxyError::MethodNotAllowed => "method_not_allowed",
            ProxyError::MissingToken => "missing_token",
            ProxyError::BadRequest(_) => "bad_request",
            ProxyError::NoHealthyBackend(_) => "no_healthy_backend",
            ProxyError::AllBackendsFailed(_) => "bad_gateway",
            ProxyError::Upstream(_) => "bad_gateway",
            ProxyError::UpstreamTimeout(_) => "gateway_timeout",
            ProxyError::Internal(_) => "internal_error",
        }
    }

    /// Turns the error into its JSON response (`{"error","message"}`).
    pub fn into_response(self) -> Response<ProxyBody> {
        let mut response = json_response(
            self.status(),
            &serde_json::json!({ "error": self.code(), "message": self.to_string() }),
        );
        if let ProxyError::MissingToken = self {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// A response with a JSON body built from `value`.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<ProxyBody> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(full_body(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Wraps bytes built in memory into the proxy's body type.
pub fn full_body(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn unknown_route_maps_to_404() {
        assert_eq!(ProxyError::NotFound("x".into()).status(), 404);
    }
    #[test]
    fn wrong_method_maps_to_405() {
        assert_eq!(ProxyError::MethodNotAllowed.status(), 405);
    }
    #[test]
    fn missing_token_maps_to_401_with_bearer_challenge() {
        let response = ProxyError::MissingToken.into_response();
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }
    #[test]
    fn malformed_request_maps_to_400() {
        assert_eq!(ProxyError::BadRequest("x").status(), 400);
    }
    #[test]
    fn no_healthy_backend_maps_to_503() {
        assert_eq!(ProxyError::NoHealthyBackend("s".into()).status(), 503);
    }
    #[test]
    fn all_backends_refusing_maps_to_502() {
        assert_eq!(ProxyError::AllBackendsFailed("s".into()).status(), 502);
    }
    #[test]
    fn upstream_failure_maps_to_502() {
        assert_eq!(ProxyError::Upstream("reset".into()).status(), 502);
    }
    #[test]
    fn upstream_timeout_maps_to_504() {
        let err = ProxyError::UpstreamTimeout(Duration::from_secs(1));
        assert_eq!(err.status(), 504);
    }
    #[test]
    fn internal_error_maps_to_500() {
        assert_eq!(ProxyError::Internal("x".into()).status(), 500);
    }
    #[test]
    fn error_body_is_json_with_code_and_message() {
        let response = ProxyError::NotFound("/x".into()).into_response();
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }
}
