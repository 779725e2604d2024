//! `GET /audit`: the audit trail of credential events, newest first, for admins only.

use std::sync::Arc;

use http::{header, HeaderValue, Request, Response, StatusCode};
use serde::Serialize;

use super::account::number;
use crate::auth::{AuditEvent, Auth};
use crate::clock::rfc3339;
use crate::error::{json_response, Invalid, ProxyBody, ProxyError};
use crate::request::ClientInfo;
use crate::store::{AuditQuery, AuditRecord, Role};

/// One event as the API shows it.
#[derive(Serialize)]
struct EventView<'a> {
    id: &'a str,
    time: String,
    event: &'a str,
    username: Option<&'a str>,
    client: Option<&'a str>,
    detail: serde_json::Value,
}

impl<'a> From<&'a AuditRecord> for EventView<'a> {
    fn from(record: &'a AuditRecord) -> Self {
        EventView {
            id: &record.id,
            time: rfc3339(record.time_ms),
            event: &record.event,
            username: record.username.as_deref(),
            client: record.client.as_deref(),
            detail: serde_json::from_str(&record.detail).unwrap_or_else(|_| serde_json::json!({})),
        }
    }
}

/// `GET /audit?limit=&before=&event=&username=`: admins only (401 without a valid token, 403
/// for others). `before` is the `id` of the last event seen (the next page); `event` and
/// `username` are exact filters.
pub(super) async fn list<B>(
    auth: &Arc<Auth>,
    request: &Request<B>,
    client: &ClientInfo,
) -> Result<Response<ProxyBody>, ProxyError> {
    let identity = auth.authenticate(request.headers(), client.ip(request.headers()))?;
    if identity.claims.role != Role::Admin {
        return Err(ProxyError::Forbidden("the audit trail".into()));
    }
    let query = parse(request.uri().query().unwrap_or(""))?;
    let store = Arc::clone(&auth.store);
    let events = auth
        .run(async move { store.audit_events(&query).await })
        .await
        .and_then(|listed| listed)
        .map_err(|error| {
            tracing::error!(%error, "listing audit events failed");
            ProxyError::StoreUnavailable
        })?;
    let events: Vec<EventView> = events.iter().map(EventView::from).collect();
    let mut response = json_response(StatusCode::OK, &serde_json::json!({ "events": events }));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;
const MAX_USERNAME_BYTES: usize = 254;

fn bad(message: impl Into<String>) -> ProxyError {
    ProxyError::InvalidField(Invalid::Query, message.into())
}

/// The query string; anything out of range or unknown is a 400 naming the parameter.
fn parse(query: &str) -> Result<AuditQuery, ProxyError> {
    let mut parsed = AuditQuery {
        limit: DEFAULT_LIMIT,
        ..AuditQuery::default()
    };
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "limit" => {
                parsed.limit = number("limit", &value)?;
                if !(1..=MAX_LIMIT).contains(&parsed.limit) {
                    return Err(bad(format!("limit must be 1 to {MAX_LIMIT}")));
                }
            }
            "event" => {
                let event = AuditEvent::parse(&value).ok_or_else(|| {
                    let names: Vec<&str> = AuditEvent::ALL.iter().map(|e| e.as_str()).collect();
                    bad(format!("event must be one of {}", names.join(", ")))
                })?;
                parsed.event = Some(event.as_str().to_string());
            }
            "username" => {
                if value.len() > MAX_USERNAME_BYTES || value.chars().any(char::is_control) {
                    return Err(bad(format!(
                        "username must be at most {MAX_USERNAME_BYTES} bytes, without control characters"
                    )));
                }
                parsed.username = Some(value.into_owned());
            }
            "before" => parsed.before = Some(cursor(&value)?),
            _ => {}
        }
    }
    Ok(parsed)
}

/// The (time, id) of the event whose `id` is `value`: a UUID v7, whose timestamp is the
/// event's time.
fn cursor(value: &str) -> Result<(i64, String), ProxyError> {
    let invalid = || bad("before must be the id of an event");
    let id = uuid::Uuid::parse_str(value.trim()).map_err(|_| invalid())?;
    let (secs, nanos) = id.get_timestamp().ok_or_else(invalid)?.to_unix();
    let secs = i64::try_from(secs).map_err(|_| invalid())?;
    let time_ms = secs * 1000 + i64::from(nanos / 1_000_000);
    Ok((time_ms, id.hyphenated().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(query: &str) -> (u16, &'static str) {
        let error = parse(query).unwrap_err();
        (error.status().as_u16(), error.code())
    }

    #[test]
    fn defaults_to_the_newest_hundred() {
        let query = parse("").unwrap();
        assert_eq!(query.limit, 100);
        assert_eq!(
            (query.event, query.username, query.before),
            (None, None, None)
        );
    }

    #[test]
    fn limit_event_and_before_are_validated() {
        assert_eq!(parse("limit=1000").unwrap().limit, 1000);
        for bad in [
            "limit=0",
            "limit=1001",
            "limit=x",
            "event=nope",
            "before=abc",
        ] {
            assert_eq!(status(bad), (400, "invalid_query"), "{bad}");
        }
        assert_eq!(
            parse("event=login_failure").unwrap().event.as_deref(),
            Some("login_failure")
        );
        assert_eq!(status("username=a%0Ab"), (400, "invalid_query"));
    }

    #[test]
    fn the_cursor_is_an_event_id_and_carries_its_time() {
        let record =
            crate::auth::audit::record_of(AuditEvent::Logout, None, None, serde_json::json!({}));
        let query = parse(&format!("before={}", record.id.to_uppercase())).unwrap();
        assert_eq!(query.before, Some((record.time_ms, record.id)));
    }
}
