//! The control plane: requests for any host no service claims.

mod health;

use http::{Method, Request, Response};

use crate::error::{ProxyBody, ProxyError};

/// Answers a control-plane request.
pub async fn handle<B>(request: Request<B>) -> Result<Response<ProxyBody>, ProxyError> {
    match request.uri().path() {
        "/health" => only_get(&request).map(|()| health::health()),
        path => Err(ProxyError::NotFound(path.to_string())),
    }
}

fn only_get<B>(request: &Request<B>) -> Result<(), ProxyError> {
    match *request.method() {
        Method::GET | Method::HEAD => Ok(()),
        _ => Err(ProxyError::MethodNotAllowed),
    }
}
