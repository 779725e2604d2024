//! `GET /health`: the process is up and answering.

use http::{Response, StatusCode};

use crate::error::{json_response, ProxyBody};

/// `200 {"status":"ok","version":"…"}`.
pub(super) fn health() -> Response<ProxyBody> {
    json_response(
        StatusCode::OK,
        &serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }),
    )
}
