//! The optional `admin_listen` port: `/metrics`, `/health` and `/ready` only, so metrics can be
//! kept off the public listener. Probes and scrapes here are not client requests and are not
//! counted in `gatehouse_requests_total`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::control;
use crate::error::{ProxyBody, ProxyError};
use crate::state::AppState;

/// Scrapers and probes are few; this bounds what a flood of them can hold open.
const MAX_ADMIN_CONNECTIONS: usize = 64;
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the admin endpoints on `listener` until `shutdown` completes.
pub async fn serve_admin(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(MAX_ADMIN_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => return,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            continue; // Over the cap: dropping the stream closes it.
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |request| {
                let state = Arc::clone(&state);
                async move { Ok::<_, std::convert::Infallible>(answer(&state, &request).await) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(state: &AppState, request: &Request<Incoming>) -> Response<ProxyBody> {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return ProxyError::MethodNotAllowed.into_response();
    }
    match request.uri().path() {
        "/metrics" => control::metrics(&state.metrics),
        "/health" => control::health(),
        "/ready" => control::ready(state).await,
        path => ProxyError::NotFound(path.to_string()).into_response(),
    }
}
