//! The errors a request can end in, and the one place that maps them to status codes.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};

use crate::store::TakenField;

/// The body type every response of the proxy uses: streamed from a backend or built here.
pub type ProxyBody = UnsyncBoxBody<Bytes, BodyError>;

/// Why a response body failed mid-stream (the backend's connection broke, or it went silent);
/// hyper then aborts the client's response rather than end it as if complete.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

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
    #[error("{0}")]
    InvalidToken(crate::auth::TokenError),
    #[error("this account may not access {0}")]
    Forbidden(String),
    #[error("cross-origin request refused: {0}")]
    CorsForbidden(&'static str),
    #[error("registration is closed: an operator creates accounts")]
    RegistrationClosed,
    #[error("{0}: refused, since servers would read it differently")]
    AmbiguousPath(crate::request::PathError),
    #[error("{1}")]
    InvalidField(Invalid, String),
    #[error("{}", taken_code(*.0))]
    Taken(TakenField),
    #[error("the request body exceeds {0} bytes")]
    PayloadTooLarge(usize),
    #[error("no part of the request body arrived for {0:?}")]
    RequestBodyTimeout(std::time::Duration),
    #[error("the request body arrived slower than {0} bytes per second")]
    RequestBodyTooSlow(u64),
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("email or password is wrong")]
    InvalidCredentials,
    #[error("the refresh token is unknown, spent, expired or revoked")]
    InvalidGrant,
    #[error("grant_type must be refresh_token")]
    UnsupportedGrantType,
    #[error("too many attempts; retry in {0} s")]
    RateLimited(u64),
    #[error("the account store is unavailable")]
    StoreUnavailable,
    #[error("the request is malformed: {0}")]
    BadRequest(&'static str),
    #[error("{0}")]
    RefusedHead(&'static str),
    #[error("the request target is {len} bytes; at most {max} are accepted")]
    UriTooLong { len: usize, max: usize },
    #[error("the request has {count} header fields; at most {max} are accepted")]
    TooManyHeaders { count: usize, max: usize },
    #[error("the request head is {bytes} bytes; at most {max} are accepted")]
    HeadTooLarge { bytes: usize, max: usize },
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
    #[error("an account may hold at most {0} API keys that are neither revoked nor expired")]
    TooManyApiKeys(i64),
}

impl ProxyError {
    /// The whole error → status mapping, in one match.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NotFound(_) => StatusCode::NOT_FOUND,
            ProxyError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::MissingToken
            | ProxyError::InvalidToken(_)
            | ProxyError::InvalidCredentials
            | ProxyError::InvalidGrant => StatusCode::UNAUTHORIZED,
            ProxyError::Forbidden(_)
            | ProxyError::CorsForbidden(_)
            | ProxyError::RegistrationClosed => StatusCode::FORBIDDEN,
            ProxyError::BadRequest(_)
            | ProxyError::AmbiguousPath(_)
            | ProxyError::RefusedHead(_)
            | ProxyError::InvalidField(..)
            | ProxyError::UnsupportedGrantType => StatusCode::BAD_REQUEST,
            ProxyError::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            ProxyError::TooManyHeaders { .. } | ProxyError::HeadTooLarge { .. } => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            ProxyError::Taken(_) => StatusCode::CONFLICT,
            ProxyError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::RequestBodyTimeout(_) | ProxyError::RequestBodyTooSlow(_) => {
                StatusCode::REQUEST_TIMEOUT
            }
            ProxyError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ProxyError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::NoHealthyBackend(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::AllBackendsFailed(_) | ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::TooManyApiKeys(_) => StatusCode::CONFLICT,
        }
    }

    /// The stable snake_case code clients can match on (the `error` field of the body).
    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::NotFound(_) => "not_found",
            ProxyError::MethodNotAllowed => "method_not_allowed",
            ProxyError::MissingToken => "missing_token",
            ProxyError::InvalidToken(_) => "invalid_token",
            ProxyError::Forbidden(_) => "forbidden",
            ProxyError::CorsForbidden(_) => "cors_forbidden",
            ProxyError::RegistrationClosed => "registration_closed",
            ProxyError::AmbiguousPath(_) => "ambiguous_path",
            ProxyError::BadRequest(_) | ProxyError::RefusedHead(_) => "bad_request",
            ProxyError::UriTooLong { .. } => "uri_too_long",
            ProxyError::TooManyHeaders { .. } | ProxyError::HeadTooLarge { .. } => {
                "request_header_fields_too_large"
            }
            ProxyError::InvalidField(invalid, _) => invalid.code(),
            ProxyError::Taken(field) => taken_code(*field),
            ProxyError::PayloadTooLarge(_) => "payload_too_large",
            ProxyError::RequestBodyTimeout(_) | ProxyError::RequestBodyTooSlow(_) => {
                "request_timeout"
            }
            ProxyError::UnsupportedMediaType => "unsupported_media_type",
            ProxyError::InvalidCredentials => "invalid_credentials",
            ProxyError::InvalidGrant => "invalid_grant",
            ProxyError::UnsupportedGrantType => "unsupported_grant_type",
            ProxyError::RateLimited(_) => "rate_limited",
            ProxyError::StoreUnavailable => "store_unavailable",
            ProxyError::NoHealthyBackend(_) => "no_healthy_backend",
            ProxyError::AllBackendsFailed(_) => "bad_gateway",
            ProxyError::Upstream(_) => "bad_gateway",
            ProxyError::UpstreamTimeout(_) => "gateway_timeout",
            ProxyError::Internal(_) => "internal_error",
            ProxyError::TooManyApiKeys(_) => "too_many_api_keys",
        }
    }

    /// Turns the error into its JSON response (`{"error","message"}`).
    pub fn into_response(self) -> Response<ProxyBody> {
        let mut response = json_response(
            self.status(),
            &serde_json::json!({ "error": self.code(), "message": self.to_string() }),
        );
        let headers = response.headers_mut();
        match self {
            ProxyError::MissingToken => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ProxyError::InvalidToken(_) => {
                headers.insert(header::WWW_AUTHENTICATE, INVALID_TOKEN_CHALLENGE);
            }
            ProxyError::RateLimited(secs) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            _ => {}
        }
        response
    }
}

/// Which part of a client's input was refused; each is its own `error` code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// The body is not JSON.
    Json,
    /// The body is JSON of the wrong shape (missing, unknown or mistyped fields).
    Request,
    /// A query parameter.
    Query,
    /// The `username` field.
    Username,
    /// The `email` field.
    Email,
    /// The `password` field.
    Password,
    /// An API key's `name`.
    KeyName,
    /// An API key's `expires_in`.
    ExpiresIn,
}

impl Invalid {
    /// The `error` code clients match on.
    pub fn code(self) -> &'static str {
        match self {
            Invalid::Json => "invalid_json",
            Invalid::Request => "invalid_request",
            Invalid::Query => "invalid_query",
            Invalid::Username => "invalid_username",
            Invalid::Email => "invalid_email",
            Invalid::Password => "invalid_password",
            Invalid::KeyName => "invalid_name",
            Invalid::ExpiresIn => "invalid_expires_in",
        }
    }
}

/// The `error` code (and message) of a registration refused for a taken field.
fn taken_code(field: TakenField) -> &'static str {
    match field {
        TakenField::Email => "email_taken",
        TakenField::Username => "username_taken",
    }
}

impl From<crate::auth::AuthError> for ProxyError {
    fn from(error: crate::auth::AuthError) -> Self {
        match error {
            crate::auth::AuthError::Missing => ProxyError::MissingToken,
            crate::auth::AuthError::Token(error) => ProxyError::InvalidToken(error),
            crate::auth::AuthError::StoreUnavailable => ProxyError::StoreUnavailable,
            // The token was not checked, so it is not called invalid: a client told
            // `invalid_token` would refresh or sign in again, costing more than it saved.
            crate::auth::AuthError::Throttled(throttled) => {
                ProxyError::RateLimited(throttled.retry_after_secs)
            }
        }
    }
}

/// RFC 6750 §3.1: the token was presented but is not acceptable.
const INVALID_TOKEN_CHALLENGE: HeaderValue =
    HeaderValue::from_static("Bearer error=\"invalid_token\"");

/// A response with a JSON body built from `value`, marked `nosniff` so that no browser renders
/// an echoed value (a username, a search term) as HTML.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<ProxyBody> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(full_body(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
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
    fn invalid_token_maps_to_401_with_invalid_token_challenge() {
        let response = ProxyError::InvalidToken(crate::auth::TokenError::Expired).into_response();
        assert_eq!(response.status(), 401);
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\""
        );
    }
    #[test]
    fn wrong_role_maps_to_403() {
        assert_eq!(ProxyError::Forbidden("s".into()).status(), 403);
    }
    #[test]
    fn refused_cors_preflight_maps_to_403_cors_forbidden() {
        let err = ProxyError::CorsForbidden("origin");
        assert_eq!((err.status().as_u16(), err.code()), (403, "cors_forbidden"));
    }
    #[test]
    fn closed_registration_maps_to_403() {
        let err = ProxyError::RegistrationClosed;
        assert_eq!(
            (err.status().as_u16(), err.code()),
            (403, "registration_closed")
        );
    }
    #[test]
    fn invalid_field_maps_to_400_with_its_code() {
        let err = ProxyError::InvalidField(Invalid::Email, "bad".into());
        assert_eq!((err.status().as_u16(), err.code()), (400, "invalid_email"));
    }
    #[test]
    fn each_invalid_input_has_its_own_code() {
        let all = [
            Invalid::Json,
            Invalid::Request,
            Invalid::Query,
            Invalid::Username,
            Invalid::Email,
            Invalid::Password,
            Invalid::KeyName,
            Invalid::ExpiresIn,
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(|i| i.code()).collect();
        assert_eq!(codes.len(), all.len());
    }
    #[test]
    fn too_many_api_keys_maps_to_409() {
        let err = ProxyError::TooManyApiKeys(100);
        assert_eq!(
            (err.status().as_u16(), err.code()),
            (409, "too_many_api_keys")
        );
    }
    #[test]
    fn an_unreachable_store_behind_an_api_key_maps_to_503() {
        let err = ProxyError::from(crate::auth::AuthError::StoreUnavailable);
        assert_eq!(
            (err.status().as_u16(), err.code()),
            (503, "store_unavailable")
        );
    }
    #[test]
    fn taken_maps_to_409_naming_the_field() {
        let err = ProxyError::Taken(TakenField::Email);
        assert_eq!((err.status().as_u16(), err.code()), (409, "email_taken"));
        assert_eq!(err.to_string(), "email_taken");
        assert_eq!(
            ProxyError::Taken(TakenField::Username).code(),
            "username_taken"
        );
    }
    #[test]
    fn refused_head_maps_to_400_with_the_reason_as_message() {
        let err = ProxyError::RefusedHead("two Host lines");
        assert_eq!((err.status().as_u16(), err.code()), (400, "bad_request"));
        assert_eq!(err.to_string(), "two Host lines");
    }
    #[test]
    fn long_target_maps_to_414() {
        let err = ProxyError::UriTooLong { len: 9, max: 8 };
        assert_eq!((err.status().as_u16(), err.code()), (414, "uri_too_long"));
    }
    #[test]
    fn too_many_headers_maps_to_431() {
        let err = ProxyError::TooManyHeaders { count: 3, max: 2 };
        assert_eq!(err.status(), 431);
        assert_eq!(err.code(), "request_header_fields_too_large");
    }
    #[test]
    fn large_head_maps_to_431() {
        let err = ProxyError::HeadTooLarge { bytes: 9, max: 8 };
        assert_eq!(err.status(), 431);
        assert_eq!(err.code(), "request_header_fields_too_large");
    }
    #[test]
    fn oversized_body_maps_to_413() {
        assert_eq!(ProxyError::PayloadTooLarge(16).status(), 413);
    }
    #[test]
    fn stalled_request_body_maps_to_408() {
        assert_eq!(
            ProxyError::RequestBodyTimeout(Duration::from_secs(1)).status(),
            408
        );
    }
    #[test]
    fn a_request_body_below_the_minimum_rate_maps_to_408_like_a_stall() {
        let err = ProxyError::RequestBodyTooSlow(240);
        assert_eq!(err.status(), 408);
        assert_eq!(err.code(), "request_timeout");
        assert_eq!(
            err.code(),
            ProxyError::RequestBodyTimeout(Duration::from_secs(1)).code()
        );
    }
    #[test]
    fn non_json_body_maps_to_415() {
        assert_eq!(ProxyError::UnsupportedMediaType.status(), 415);
    }
    #[test]
    fn wrong_credentials_map_to_401() {
        assert_eq!(ProxyError::InvalidCredentials.status(), 401);
        assert_eq!(ProxyError::InvalidGrant.status(), 401);
        assert_eq!(ProxyError::InvalidGrant.code(), "invalid_grant");
        assert_eq!(ProxyError::UnsupportedGrantType.status(), 400);
        assert_eq!(
            ProxyError::UnsupportedGrantType.code(),
            "unsupported_grant_type"
        );
    }
    #[test]
    fn throttled_maps_to_429_with_retry_after() {
        let response = ProxyError::RateLimited(7).into_response();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
    }
    #[test]
    fn store_outage_maps_to_503() {
        assert_eq!(ProxyError::StoreUnavailable.status(), 503);
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
        assert_eq!(
            response.headers()[header::X_CONTENT_TYPE_OPTIONS],
            "nosniff"
        );
    }
}
