//! `POST /login`, `POST /token` (refresh), `POST /logout`, `POST /logout/all` and
//! `GET /.well-known/jwks.json`.

use std::sync::Arc;

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;

use super::json_body;
use crate::auth::{AuditEvent, Auth, Issued, LoginRefused, LoginSource, RefreshRefused};
use crate::error::{json_response, Invalid, ProxyBody, ProxyError};
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
    let issued = auth.start_family(&credentials).await.map_err(|error| {
        tracing::error!(%error, "login could not start a refresh family");
        ProxyError::StoreUnavailable
    })?;
    Ok(token_response(auth, &issued))
}

/// The login and refresh answer: a new access token and a new refresh token (RFC 6749 §5.1),
/// never cached.
fn token_response(auth: &Auth, issued: &Issued) -> Response<ProxyBody> {
    let mut response = json_response(
        StatusCode::OK,
        &serde_json::json!({
            "access_token": issued.access_token,
            "token_type": "Bearer",
            "expires_in": auth.keys.ttl().as_secs(),
            "refresh_token": issued.refresh_token,
            "refresh_expires_in": issued.refresh_expires_in,
        }),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[derive(Deserialize)]
struct TokenRequest {
    grant_type: String,
    refresh_token: Option<String>,
}

/// `POST /token`: `grant_type=refresh_token` as JSON or as a form (RFC 6749 §6). The refresh
/// token is spent and a new pair of the same family returned; an unknown, spent or expired
/// one is `401 invalid_grant`, and a spent one also ends its family (`auth::refresh`).
pub(super) async fn token(
    auth: &Arc<Auth>,
    request: Request<Incoming>,
    client: &ClientInfo,
    pace: BodyPace,
) -> Result<Response<ProxyBody>, ProxyError> {
    let ip = client.ip(request.headers());
    let grant: TokenRequest =
        if json_body::is_media_type(request.headers(), "application/x-www-form-urlencoded") {
            let body = json_body::read_small(request, pace).await?;
            let mut grant = TokenRequest {
                grant_type: String::new(),
                refresh_token: None,
            };
            for (name, value) in form_urlencoded::parse(&body) {
                match &*name {
                    "grant_type" => grant.grant_type = value.into_owned(),
                    "refresh_token" => grant.refresh_token = Some(value.into_owned()),
                    _ => {}
                }
            }
            grant
        } else {
            json_body::read_json(request, pace).await?
        };
    if grant.grant_type != "refresh_token" {
        return Err(ProxyError::UnsupportedGrantType);
    }
    let Some(presented) = grant.refresh_token else {
        return Err(ProxyError::InvalidField(
            Invalid::Request,
            "refresh_token is required".to_string(),
        ));
    };
    match auth.refresh(ip, &presented).await {
        Ok(issued) => Ok(token_response(auth, &issued)),
        Err(RefreshRefused::InvalidGrant) => Err(ProxyError::InvalidGrant),
        Err(RefreshRefused::Throttled(t)) => Err(ProxyError::RateLimited(t.retry_after_secs)),
        Err(RefreshRefused::StoreUnavailable) => Err(ProxyError::StoreUnavailable),
    }
}

/// The answer to a refused login (the check has logged and counted it already).
fn refused(refusal: LoginRefused) -> ProxyError {
    match refusal {
        LoginRefused::Throttled(t) => ProxyError::RateLimited(t.retry_after_secs),
        LoginRefused::InvalidCredentials => ProxyError::InvalidCredentials,
        LoginRefused::StoreUnavailable => ProxyError::StoreUnavailable,
    }
}

/// `POST /logout`: the presented token and its whole family (the login it came from, with
/// its refresh token) are rejected from now on, here at once and on every replica within a
/// second; recorded as `logout` in the audit trail.
pub(super) async fn logout(
    auth: &Arc<Auth>,
    request: &Request<Incoming>,
    client: &ClientInfo,
) -> Result<Response<ProxyBody>, ProxyError> {
    let identity = auth.authenticate(request.headers(), client.ip(request.headers()))?;
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

/// `POST /logout/all`: every family and every access token of the caller's account end (its
/// token generation is bumped and its families revoked), on every replica within a second.
pub(super) async fn logout_all(
    auth: &Arc<Auth>,
    request: &Request<Incoming>,
    client: &ClientInfo,
) -> Result<Response<ProxyBody>, ProxyError> {
    let identity = auth.authenticate(request.headers(), client.ip(request.headers()))?;
    let ended = auth
        .end_all_sessions(&identity.claims)
        .await
        .map_err(|error| {
            tracing::error!(%error, "logout/all could not reach the account store");
            ProxyError::StoreUnavailable
        })?;
    if !ended {
        return Err(ProxyError::InvalidToken(crate::auth::TokenError::Revoked));
    }
    auth.audit.record(
        AuditEvent::LogoutAll,
        Some(&identity.claims.username),
        Some(client.ip(request.headers())),
        serde_json::json!({}),
    );
    let mut response = Response::new(crate::error::full_body(bytes::Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

/// `GET /.well-known/jwks.json`: the `key_file` public key when tokens are EdDSA-signed with
/// one, and every published key of the store's keyring (assertions, EdDSA tokens without a
/// `key_file`). An HS256 secret is never published, so with neither there is nothing here (404).
///
/// With store keys, `max-age` is half of `auth.keys.publish_delay`: a rotated key is in every
/// verifier's cache before it signs (see `auth::keyring`). The `key_file` key never changes
/// without a restart, so alone it keeps the five minutes it always had.
pub(super) fn jwks(auth: &Auth, path: &str) -> Result<Response<ProxyBody>, ProxyError> {
    let mut keys = auth
        .keys
        .jwks()
        .map(|set| set.keys.clone())
        .unwrap_or_default();
    let mut max_age = 300;
    if let Some(keyring) = &auth.keyring {
        keys.extend(keyring.jwks().keys);
        max_age = keyring.max_age();
    }
    if keys.is_empty() {
        return Err(ProxyError::NotFound(path.to_string()));
    }
    let set = jsonwebtoken::jwk::JwkSet { keys };
    let value = serde_json::to_value(set).map_err(|e| ProxyError::Internal(e.to_string()))?;
    let mut response = json_response(StatusCode::OK, &value);
    let cache_control = HeaderValue::try_from(format!("public, max-age={max_age}"))
        .map_err(|e| ProxyError::Internal(e.to_string()))?;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, cache_control);
    Ok(response)
}
