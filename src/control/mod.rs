//! The control plane: requests for any host no service claims.
//!
//! - `account`: `POST /account` (register) and `GET /accounts` (list).
//! - `audit`: `GET /audit`, the audit trail (admins only).
//! - `session`: `POST /login`, `POST /logout`, `GET /.well-known/jwks.json`.
//! - `status`: `GET /health`, `GET /ready`.
//! - `scrape`: `GET /metrics` (Prometheus text format).
//! - `page`: `GET /accounts_page`, the self-contained HTML accounts page.
//! - `api_keys`: `POST /api_keys`, `GET /api_keys`, `DELETE /api_keys/{id}`.
//! - `json_body`, `validate`: JSON bodies and field rules shared by the handlers.

mod account;
mod api_keys;
mod audit;
mod json_body;
mod page;
mod scrape;
mod session;
mod status;
mod validate;

use http::{header, HeaderValue, Method, Request, Response};
use hyper::body::Incoming;

use crate::error::{ProxyBody, ProxyError};
use crate::request::ClientInfo;
use crate::state::AppState;

pub(crate) use json_body::read_small as read_small_body;
pub(crate) use scrape::render as metrics;
pub(crate) use status::{health, ready};
pub(crate) use validate::{
    email as validate_email, password as validate_password, username as validate_username,
};

/// Answers a control-plane request.
pub async fn handle(
    request: Request<Incoming>,
    state: &AppState,
    client: &ClientInfo,
) -> Result<Response<ProxyBody>, ProxyError> {
    let allow = allow_header(request.uri().path());
    match dispatch(request, state, client).await {
        Err(error @ ProxyError::MethodNotAllowed) => {
            let mut response = error.into_response();
            if let Some(allow) = allow {
                response.headers_mut().insert(header::ALLOW, allow);
            }
            Ok(response)
        }
        other => other,
    }
}

async fn dispatch(
    request: Request<Incoming>,
    state: &AppState,
    client: &ClientInfo,
) -> Result<Response<ProxyBody>, ProxyError> {
    let auth = &state.auth;
    let path = request.uri().path();
    match path {
        "/health" => only(&request, &[Method::GET, Method::HEAD]).map(|()| status::health()),
        "/ready" => {
            only(&request, &[Method::GET, Method::HEAD])?;
            Ok(status::ready(state).await)
        }
        "/metrics" if state.metrics_on_main_listener() => {
            only(&request, &[Method::GET, Method::HEAD])?;
            Ok(scrape::render(&state.metrics))
        }
        "/accounts_page" => {
            only(&request, &[Method::GET, Method::HEAD])?;
            Ok(page::accounts_page())
        }
        "/account" => {
            only(&request, &[Method::POST])?;
            let pace = state.routes.load().body_pace();
            account::register(auth, request, client, pace).await
        }
        "/login" => {
            only(&request, &[Method::POST])?;
            let pace = state.routes.load().body_pace();
            session::login(auth, request, client, pace).await
        }
        "/logout" => {
            only(&request, &[Method::POST])?;
            session::logout(auth, &request, client).await
        }
        "/logout/all" => {
            only(&request, &[Method::POST])?;
            session::logout_all(auth, &request, client).await
        }
        "/token" => {
            only(&request, &[Method::POST])?;
            let pace = state.routes.load().body_pace();
            session::token(auth, request, client, pace).await
        }
        "/accounts" => {
            only(&request, &[Method::GET, Method::HEAD])?;
            account::list(auth, &request, client).await
        }
        "/audit" => {
            only(&request, &[Method::GET, Method::HEAD])?;
            audit::list(auth, &request, client).await
        }
        "/.well-known/jwks.json" => {
            only(&request, &[Method::GET, Method::HEAD])?;
            session::jwks(auth, path)
        }
        "/api_keys" => match *request.method() {
            Method::POST => {
                let pace = state.routes.load().body_pace();
                api_keys::create(auth, request, client, pace).await
            }
            Method::GET | Method::HEAD => api_keys::list(auth, &request, client).await,
            _ => Err(ProxyError::MethodNotAllowed),
        },
        path if path.starts_with(api_keys::KEY_PATH) => {
            only(&request, &[Method::DELETE])?;
            api_keys::revoke(auth, &request, client).await
        }
        path => Err(ProxyError::NotFound(path.to_string())),
    }
}

/// `Ok` for the allowed methods, else 405 (`handle` adds the `Allow` header).
fn only<B>(request: &Request<B>, allowed: &[Method]) -> Result<(), ProxyError> {
    if allowed.contains(request.method()) {
        Ok(())
    } else {
        Err(ProxyError::MethodNotAllowed)
    }
}

/// The methods a control-plane path accepts, for the `Allow` header of a 405 (RFC 9110 §15.5.6).
fn allow_header(path: &str) -> Option<HeaderValue> {
    let methods = match path {
        "/health"
        | "/ready"
        | "/metrics"
        | "/accounts"
        | "/accounts_page"
        | "/audit"
        | "/.well-known/jwks.json" => "GET, HEAD",
        "/account" | "/login" | "/logout" | "/logout/all" | "/token" => "POST",
        "/api_keys" => "GET, HEAD, POST",
        path if path.starts_with("/api_keys/") => "DELETE",
        _ => return None,
    };
    Some(HeaderValue::from_static(methods))
}
