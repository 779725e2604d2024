//! Active health checks: one task per checked backend sends `GET path` every `interval` on a
//! fresh connection (so a dead listener shows as a failed connect) and feeds the result to the
//! backend's state. A task ends by itself once no config snapshot holds its backend any more.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Authority;
use http::{header, HeaderValue, Request};
use http_body_util::Empty;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::MissedTickBehavior;

use super::{Backend, BackendState};
use crate::config::HealthCheckSettings;

const USER_AGENT: HeaderValue = HeaderValue::from_static("gatehouse-health-check");

/// Starts probing every backend of the service `name` that has no probe running yet (backends
/// carried over from the previous snapshot keep theirs); nothing without `settings`.
pub fn start(name: &str, backends: &[Backend], settings: Option<&HealthCheckSettings>) {
    let Some(settings) = settings else {
        return;
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!(
            service = name,
            "no runtime to run health checks on; skipped"
        );
        return;
    };
    for backend in backends {
        if backend.state.claim_probe() {
            runtime.spawn(probe_loop(
                Arc::downgrade(&backend.state),
                backend.authority.clone(),
                settings.clone(),
            ));
        }
    }
}

async fn probe_loop(
    state: Weak<BackendState>,
    authority: Authority,
    settings: HealthCheckSettings,
) {
    // Spread the first probes so backends of one service are not all checked in the same instant.
    let offset = rand::random::<u64>() % settings.interval.as_millis().max(1) as u64;
    tokio::time::sleep(Duration::from_millis(offset)).await;
    let mut every = tokio::time::interval(settings.interval);
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let passed = probe(&authority, &settings).await;
        match state.upgrade() {
            Some(state) => {
                state.probed(passed, &settings);
            }
            None => return,
        }
    }
}

/// One probe: a 2xx or 3xx answer to `GET path` within the timeout passes.
async fn probe(authority: &Authority, settings: &HealthCheckSettings) -> bool {
    let exchange = async {
        let stream = TcpStream::connect(authority.as_str()).await.ok()?;
        let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await.ok()?;
        tokio::spawn(connection);
        let request = Request::get(settings.path.as_str())
            .header(header::HOST, authority.as_str())
            .header(header::USER_AGENT, USER_AGENT)
            .header(header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .ok()?;
        let response = sender.send_request(request).await.ok()?;
        Some(response.status().is_success() || response.status().is_redirection())
    };
    matches!(
        tokio::time::timeout(settings.timeout, exchange).await,
        Ok(Some(true))
    )
}
