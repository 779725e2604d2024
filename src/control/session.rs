//! `POST /login`, `POST /logout` and `GET /.well-known/jwks.json`.

use std::sync::Arc;

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;

use super::json_body;
use crate::auth::{Auth, Throttled};
use crate::error::{json_response, ProxyBody, ProxyError};
use crate::metrics::LoginResult;
use crate::policy::BodyPace;
use crate::request::{ClientInfo, ClientNetwork};
use crate::store::Revocation;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    email: String,
    password: String,
}

/// `POST /login`: throttled per client network, then held to the failure back-off of
/// `auth::lockout` (per account and per account + network, shared by replicas through the
/// store); the same 401 for an unknown email, a wrong password and a disabled account, each
/// after a full argon2id verification. A body arriving slower than
/// `pace` allows is answered 408.
pub(super) async fn login(
    auth: &Arc<Auth>,
    request: Request<Incoming>,
    client: &ClientInfo,
    pace: BodyPace,
) -> Result<Response<ProxyBody>, ProxyError> {
    let network = ClientNetwork::from(client.ip(request.headers()));
    let login: Login = json_body::read_json(request, pace).await?;
    let rate_limited = |t: Throttled| {
        auth.count_login(LoginResult::RateLimited);
        ProxyError::RateLimited(t.retry_after_secs)
    };
    auth.throttle.login(network).map_err(rate_limited)?;
    let worker = Arc::clone(auth);
    let checked = auth
        .run(async move {
            let store = &*worker.store;
            let attempt = match worker.lockout.begin(store, &login.email, network).await? {
                Ok(attempt) => attempt,
                Err(throttled) => return Ok(Err(throttled)),
            };
            let found = store.credentials(&login.email).await?;
            let hash = found.as_ref().map(|c| c.password_hash.clone());
            let matched = worker.passwords.verify(login.password, hash).await;
            let found = found.filter(|c| matched && !c.account.disabled);
            if found.is_some() {
                // Not being able to take the count back only leaves one failure too many.
                if let Err(error) = attempt.succeeded(store).await {
                    tracing::warn!(%error, "could not clear a login failure counter");
                }
            }
            Ok(Ok(found))
        })
        .await
        .and_then(|checked| checked)
        .map_err(|error| {
            tracing::error!(%error, "login could not reach the account store");
            ProxyError::StoreUnavailable
        })?;
    let Some(credentials) = checked.map_err(rate_limited)? else {
        auth.count_login(LoginResult::Failure);
        return Err(ProxyError::InvalidCredentials);
    };
    auth.count_login(LoginResult::Success);
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

/// `POST /logout`: the presented token is rejected from now on, here at once and on every
/// replica within a second.
pub(super) async fn logout(
    auth: &Arc<Auth>,
    request: &Request<Incoming>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let identity = auth.authenticate(request.headers())?;
    let jti = identity.claims.jti.clone();
    // Remembered for as long as verification could still accept the token, not only until its
    // `exp`: tokens pass for a few seconds of clock skew after it.
    let expires_at = i64::try_from(identity.claims.accepted_until()).unwrap_or(i64::MAX);
    // This replica stops accepting the token even if the store is down; the 503 then tells
    // the client that other replicas may not have heard of it.
    auth.revocations.apply(&Revocation::Token {
        jti: jti.clone(),
        expires_at,
    });
    let store = Arc::clone(&auth.store);
    auth.run(async move { store.revoke_token(&jti, expires_at).await })
        .await
        .and_then(|stored| stored)
        .map_err(|error| {
            tracing::error!(%error, "logout could not reach the account store");
            ProxyError::StoreUnavailable
        })?;
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
