//! `GET /health` (the process answers) and `GET /ready` (it can do its whole job).

use std::sync::Arc;
use std::time::Duration;

use http::{Response, StatusCode};

use crate::error::{json_response, ProxyBody};
use crate::state::AppState;

/// How long the account store has to answer a readiness ping.
const STORE_PING_TIMEOUT: Duration = Duration::from_secs(1);

/// `200 {"status":"ok","version":"…"}`.
pub(crate) fn health() -> Response<ProxyBody> {
    json_response(
        StatusCode::OK,
        &serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }),
    )
}

/// `200 {"status":"ready"}` when a config is loaded (always, once serving) and the account
/// store answers a ping within a second; else `503` with the reason, so a load balancer or
/// Kubernetes stops sending logins to a replica that cannot serve them.
pub(crate) async fn ready(state: &AppState) -> Response<ProxyBody> {
    let store = Arc::clone(&state.auth.store);
    let ping = state
        .auth
        .run(async move { tokio::time::timeout(STORE_PING_TIMEOUT, store.ping()).await });
    // The outer bound also covers a control runtime too busy to start the ping.
    let problem = match tokio::time::timeout(STORE_PING_TIMEOUT, ping).await {
        Ok(Ok(Ok(Ok(())))) => None,
        Ok(Ok(Ok(Err(error)))) | Ok(Err(error)) => Some(error.to_string()),
        Ok(Ok(Err(_))) | Err(_) => Some(format!(
            "the account store did not answer within {} s",
            STORE_PING_TIMEOUT.as_secs()
        )),
    };
    match problem {
        None => json_response(StatusCode::OK, &serde_json::json!({ "status": "ready" })),
        Some(reason) => {
            tracing::warn!(%reason, "not ready");
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({
                    "error": "not_ready",
                    "message": format!("not ready: {reason}"),
                }),
            )
        }
    }
}
