//! `POST /login`, `POST /logout` and `GET /.well-known/jwks.json`.

use std::sync::Arc;

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;

use super::json_body;
use crate::auth::{AuditEvent, Auth, LoginRefused, LoginSource};
use crate::error::{json_response, ProxyBody, ProxyError};
use crate::policy::BodyPace;
use crate::request::ClientInfo;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    email: String,
    password: String,
}

/// `POST /login`: the credentials check of `auth::login` (throttled per client network, then
/// held to the failure back-off of `auth::lockout`, shared by replicas through the store; the
/// same 401 for an unknown email, a wrong password and a disabled account, each after a full
/// argon2id verification). A body arriving slower than `pace` allows is answered 408.
pub(super) async fn login(
    auth: &Arc<Auth>,
    request: Request<Incoming>,
    client: &ClientInfo,
    pace: BodyPace,
) -> Result<Response<ProxyBody>, ProxyError> {
    let ip = client.ip(request.headers());
    let login: Login = json_body::read_json(request, pace).await?;
    let credentials = auth
        .check_login(ip, LoginSource::Api, login.email, login.password)
        .await
        .map_err(refused)?;
    let (token, _) = auth
        .keys
        .issue(&credentials)
        .map_err(|error| ProxyError::Internal(error.to_string()))?;
    let mut response = json_response(
        StatusCode::OK,
        &serde_json::json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": auth.keys.ttl().as_secs(),
        }),
    );
    // RFC 6749 §5.1: responses carrying tokens must not be cached.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The answer to a refused login (the check has logged and counted it already).
fn refused(refusal: LoginRefused) -> ProxyError {
    match refusal {
        LoginRefused::Throttled(t) => ProxyError::RateLimited(t.retry_after_secs),
        LoginRefused::InvalidCredentials => ProxyError::InvalidCredentials,
        LoginRefused::StoreUnavailable => ProxyError::StoreUnavailable,
    }
}

/// `POST /logout`: the presented token is rejected from now on, here at once and on every
/// replica within a second; recorded as `logout` in the audit trail.
pub(super) async fn logout(
    auth: &Arc<Auth>,
    request: &Request<Incoming>,
    client: &ClientInfo,
) -> Result<Response<ProxyBody>, ProxyError> {
    let identity = auth.authenticate(request.headers())?;
    // This replica stops accepting the token even if the store is down; the 503 then tells
    // the client that other replicas may not have heard of it.
    auth.revoke(&identity.claims).await.map_err(|error| {
        tracing::error!(%error, "logout could not reach the account store");
        ProxyError::StoreUnavailable
    })?;
    auth.audit.record(
        AuditEvent::Logout,
        Some(&identity.claims.username),
        Some(client.ip(request.headers())),
        serde_json::json!({ "source": "api" }),
    );
    let mut response = Response::new(crate::error::full_body(bytes::Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

/// `GET /.well-known/jwks.json`: the public key when tokens are EdDSA-signed; an HS256 secret
/// is never published, so then there is nothing here (404).
pub(super) fn jwks(auth: &Auth, path: &str) -> Result<Response<ProxyBody>, ProxyError> {
    let set = auth
        .keys
        .jwks()
        .ok_or_else(|| ProxyError::NotFound(path.to_string()))?;
    let value = serde_json::to_value(set).map_err(|e| ProxyError::Internal(e.to_string()))?;
    let mut response = json_response(StatusCode::OK, &value);
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(response)
}
