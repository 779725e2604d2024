//! Sends a routed request to a backend over a pooled keep-alive client and streams the answer
//! back; a backend that refuses the connection is skipped for the next one.

mod body;
pub(crate) mod headers;

use std::net::SocketAddr;
use std::time::Duration;

use http::uri::{PathAndQuery, Scheme};
use http::{header, HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::balancer::attempt_order;
use crate::error::ProxyError;
use crate::service::Service;
use body::{BodySlot, UpstreamBody};

/// How long one TCP connect to a backend may take before the next backend is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle upstream connections are kept this long for reuse.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// What the forwarder needs to know about the client side of a request.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// `http` or `https`, as the client connected.
    pub proto: &'static str,
}

/// The upstream HTTP client, shared by every service (one pool keyed by backend).
#[derive(Debug, Clone)]
pub struct Forwarder {
    client: Client<HttpConnector, UpstreamBody>,
}

impl Default for Forwarder {
    fn default() -> Self {
        Self::new()
    }
}

impl Forwarder {
    /// A client with keep-alive pooling, `TCP_NODELAY` and a bounded connect time.
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Forwarder { client }
    }

    /// Forwards `request` to one of `service`'s backends; returns the response and the index of
    /// the backend that produced it.
    pub async fn forward(
        &self,
        service: &Service,
        request: Request<Incoming>,
        client: ClientInfo,
    ) -> Result<(Response<Incoming>, usize), ProxyError> {
        let attempts = self.try_backends(service, request, client);
        match tokio::time::timeout(service.timeout, attempts).await {
            Ok(result) => result,
            Err(_) => Err(ProxyError::UpstreamTimeout(service.timeout)),
        }
    }

    async fn try_backends(
        &self,
        service: &Service,
        request: Request<Incoming>,
        client: ClientInfo,
    ) -> Result<(Response<Incoming>, usize), ProxyError> {
        let (mut parts, incoming) = request.into_parts();
        rewrite_request_headers(&mut parts, client);
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let slot = (!http_body::Body::is_end_stream(&incoming)).then(|| {
            let hint = http_body::Body::size_hint(&incoming);
            (BodySlot::new(incoming), hint)
        });

        let first = service.balancer.pick();
        let mut last_error = None;
        for index in attempt_order(first, service.backends.len()) {
            let backend = &service.backends[index];
            let uri = Uri::builder()
                .scheme(Scheme::HTTP)
                .authority(backend.authority.clone())
                .path_and_query(path.clone())
                .build()
                .map_err(|e| ProxyError::Internal(e.to_string()))?;
            let body = match &slot {
                Some((slot, hint)) => UpstreamBody::pending(slot, *hint),
                None => UpstreamBody::Empty,
            };
            let mut upstream = Request::new(body);
            *upstream.method_mut() = parts.method.clone();
            *upstream.uri_mut() = uri;
            *upstream.headers_mut() = parts.headers.clone();
            match self.client.request(upstream).await {
                Ok(mut response) => {
                    headers::strip_hop_by_hop(response.headers_mut());
                    return Ok((response, index));
                }
                Err(error)
                    if error.is_connect() && slot.as_ref().is_none_or(|(s, _)| s.is_unread()) =>
                {
                    tracing::warn!(service = &*service.name, backend = %backend.authority, %error, "backend refused the connection, trying the next");
                    last_error = Some(error);
                }
                Err(error) => {
                    tracing::warn!(service = &*service.name, backend = %backend.authority, error = %error_chain(&error), "backend request failed");
                    return Err(ProxyError::Upstream(format!(
                        "backend {} failed",
                        backend.authority
                    )));
                }
            }
        }
        tracing::debug!(?last_error, "every backend refused");
        Err(ProxyError::AllBackendsFailed(service.name.to_string()))
    }
}

/// Prepares the client's headers for the backend: hop-by-hop and spoofed identity headers out,
/// `X-Forwarded-*` in, and the client's host kept as `Host`.
fn rewrite_request_headers(parts: &mut http::request::Parts, client: ClientInfo) {
    let headers = &mut parts.headers;
    headers::strip_hop_by_hop(headers);
    headers::strip_identity(headers);
    // The authority of an absolute-form URI (or h2 `:authority`) is the host the client asked
    // for and what the router matched; the backend must see the same one.
    if let Some(authority) = parts.uri.authority() {
        if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
            headers.insert(header::HOST, host);
        }
    }
    let host = headers.get(header::HOST).cloned();
    headers::add_forwarded(headers, client.peer.ip(), client.proto, host.as_ref());
}

/// The error and its causes on one line, for logs.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
