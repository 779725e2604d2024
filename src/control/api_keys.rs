//! `POST /api_keys`, `GET /api_keys` and `DELETE /api_keys/{id}`: an account's API keys.
//!
//! All three want an access token (`Auth::authenticate`): an API key is refused here (401), so
//! a leaked key cannot mint more keys or revoke the owner's others. Keys are the caller's
//! own: another account's key id is answered as an unknown one (404).

use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::json_body;
use crate::auth::api_keys::{self, CreateRefused};
use crate::auth::{AuditEvent, Auth};
use crate::clock::rfc3339;
use crate::error::{json_response, Invalid, ProxyBody, ProxyError};
use crate::policy::BodyPace;
use crate::request::ClientInfo;
use crate::store::{ApiKey, StoreError};

/// The path prefix of one key.
pub(super) const KEY_PATH: &str = "/api_keys/";

/// Longest id looked for (a UUID is 36); anything longer is unknown without a query.
const MAX_ID_LEN: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    name: String,
    #[serde(default)]
    expires_in: Option<Lifetime>,
}

/// `expires_in`: seconds as a JSON number, or a string such as `"90d"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Lifetime {
    Seconds(u64),
    Text(String),
}

impl Lifetime {
    fn parse(&self) -> Result<Duration, ProxyError> {
        let checked = match self {
            Lifetime::Seconds(secs) => api_keys::parse_lifetime(&secs.to_string()),
            Lifetime::Text(text) => api_keys::parse_lifetime(text),
        };
        checked.map_err(|message| ProxyError::InvalidField(Invalid::ExpiresIn, message))
    }
}

/// A key as listed: never the key, never its hash.
#[derive(Serialize)]
struct KeyView<'a> {
    id: &'a str,
    name: &'a str,
    created_at: String,
    expires_at: Option<String>,
    last_used_at: Option<String>,
    revoked_at: Option<String>,
}

impl<'a> From<&'a ApiKey> for KeyView<'a> {
    fn from(key: &'a ApiKey) -> Self {
        KeyView {
            id: &key.id,
            name: &key.name,
            created_at: rfc3339(key.created_at_ms),
            expires_at: key.expires_at_ms.map(rfc3339),
            last_used_at: key.last_used_at_ms.map(rfc3339),
            revoked_at: key.revoked_at_ms.map(rfc3339),
        }
    }
}

/// `POST /api_keys` `{"name", "expires_in"?}` → `201 {"id","name","key","created_at",
/// "expires_at"}`; the key is in this answer and nowhere else. A bad name or lifetime is 400,
/// an account at its limit 409, and nothing is written.
pub(super) async fn create(
    auth: &Arc<Auth>,
    request: Request<Incoming>,
    client: &ClientInfo,
    pace: BodyPace,
) -> Result<Response<ProxyBody>, ProxyError> {
    let ip = client.ip(request.headers());
    let identity = auth.authenticate(request.headers(), ip)?;
    let new: NewKey = json_body::read_json(request, pace).await?;
    api_keys::check_name(&new.name)
        .map_err(|message| ProxyError::InvalidField(Invalid::KeyName, message))?;
    let lifetime = new.expires_in.as_ref().map(Lifetime::parse).transpose()?;
    let store = Arc::clone(&auth.store);
    let account_id = identity.claims.sub.clone();
    let name = new.name.clone();
    let created = auth
        .run(async move { api_keys::create(&*store, &account_id, &name, lifetime).await })
        .await
        .map_err(unavailable)?;
    let (key, secret) = created.map_err(|refused| match refused {
        CreateRefused::TooMany => ProxyError::TooManyApiKeys(api_keys::MAX_LIVE_KEYS),
        // The day's window slides: an hour is a fair first wait.
        CreateRefused::TooManyToday => ProxyError::RateLimited(3600),
        // The token was valid a moment ago: the account has just been disabled.
        CreateRefused::NoAccount => ProxyError::InvalidToken(crate::auth::TokenError::Revoked),
        CreateRefused::Store(error) => unavailable(error),
    })?;
    auth.audit.record(
        AuditEvent::ApiKeyCreated,
        Some(&identity.claims.username),
        Some(ip),
        serde_json::json!({ "source": "api", "key_id": key.id, "name": key.name }),
    );
    let body = serde_json::json!({
        "id": key.id,
        "name": key.name,
        "key": secret,
        "created_at": rfc3339(key.created_at_ms),
        "expires_at": key.expires_at_ms.map(rfc3339),
    });
    Ok(no_store(json_response(StatusCode::CREATED, &body)))
}

/// `GET /api_keys`: the caller's keys, oldest first, revoked and expired ones included (until
/// they are pruned), without the keys.
pub(super) async fn list(
    auth: &Arc<Auth>,
    request: &Request<Incoming>,
    client: &ClientInfo,
) -> Result<Response<ProxyBody>, ProxyError> {
    let identity = auth.authenticate(request.headers(), client.ip(request.headers()))?;
    let store = Arc::clone(&auth.store);
    let account_id = identity.claims.sub.clone();
    let keys = auth
        .run(async move { store.api_keys(&account_id).await })
        .await
        .and_then(|listed| listed)
        .map_err(unavailable)?;
    let views: Vec<KeyView<'_>> = keys.iter().map(KeyView::from).collect();
    let body = serde_json::json!({ "api_keys": views });
    Ok(no_store(json_response(StatusCode::OK, &body)))
}

/// `DELETE /api_keys/{id}` → `204`: the key is refused from now on, here at once and on every
/// replica within a second. Unknown, already revoked, or another account's: 404.
pub(super) async fn revoke(
    auth: &Arc<Auth>,
    request: &Request<Incoming>,
    client: &ClientInfo,
) -> Result<Response<ProxyBody>, ProxyError> {
    let identity = auth.authenticate(request.headers(), client.ip(request.headers()))?;
    let path = request.uri().path();
    let id = path.strip_prefix(KEY_PATH).unwrap_or_default();
    let not_found = || ProxyError::NotFound(path.to_string());
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(not_found());
    }
    let store = Arc::clone(&auth.store);
    let (key_id, account_id) = (id.to_string(), identity.claims.sub.clone());
    let now = crate::clock::unix_millis();
    let revoked = auth
        .run(async move { store.revoke_api_key(&key_id, Some(&account_id), now).await })
        .await
        .and_then(|revoked| revoked)
        .map_err(unavailable)?
        .ok_or_else(not_found)?;
    if let Some(revocation) = revoked.revocation() {
        // This replica at once; the others through the store's feed or poll.
        auth.revocations.apply(&revocation);
    }
    auth.audit.record(
        AuditEvent::ApiKeyRevoked,
        Some(&identity.claims.username),
        Some(client.ip(request.headers())),
        serde_json::json!({ "source": "api", "key_id": revoked.id, "name": revoked.name }),
    );
    let mut response = Response::new(crate::error::full_body(bytes::Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

fn unavailable(error: StoreError) -> ProxyError {
    tracing::error!(%error, "API keys: the account store failed");
    ProxyError::StoreUnavailable
}

fn no_store(mut response: Response<ProxyBody>) -> Response<ProxyBody> {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lifetime(json: &str) -> Result<Duration, ProxyError> {
        let new: NewKey = serde_json::from_str(&format!(r#"{{"name":"n","expires_in":{json}}}"#))
            .expect("parses");
        new.expires_in.expect("present").parse()
    }

    #[test]
    fn expires_in_takes_seconds_or_a_duration_text_within_bounds() {
        assert_eq!(lifetime("3600").unwrap(), Duration::from_secs(3600));
        assert_eq!(
            lifetime(r#""90d""#).unwrap(),
            Duration::from_secs(90 * 86_400)
        );
        for bad in ["59", "0", r#""1w""#, "999999999999", r#""""#] {
            let error = lifetime(bad).expect_err(bad);
            assert_eq!(error.code(), "invalid_expires_in", "{bad}");
        }
    }

    #[test]
    fn expires_in_of_another_type_is_not_a_request() {
        for bad in [r#"-5"#, "1.5", "true", "[]"] {
            let body = format!(r#"{{"name":"n","expires_in":{bad}}}"#);
            assert!(serde_json::from_str::<NewKey>(&body).is_err(), "{bad}");
        }
    }
}
