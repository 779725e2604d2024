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
use hyper_util::client::legacy::{Client, Error as ClientError};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::balancer::attempt_order;
use crate::error::ProxyError;
use crate::service::{Backend, Service};
use body::{BodySlot, ClientBodyError, UpstreamBody};

/// How long one TCP connect to a backend may take before the next backend is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle upstream connections are kept this long for reuse.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// What the forwarder needs to know about the client side of a request; built once per
/// connection.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// `http` or `https`, as the client connected.
    pub proto: &'static str,
    /// The peer's IP rendered for `X-Forwarded-For`.
    peer_ip: HeaderValue,
}

impl ClientInfo {
    /// Describes a client connected from `peer` over `proto`.
    pub fn new(peer: SocketAddr, proto: &'static str) -> Self {
        ClientInfo {
            peer,
            proto,
            peer_ip: headers::ip_header_value(peer.ip()),
        }
    }
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

/// The request as it will be sent to whichever backend takes it.
struct Outgoing {
    parts: http::request::Parts,
    path: PathAndQuery,
    body: Option<(BodySlot, http_body::SizeHint)>,
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
        client: &ClientInfo,
    ) -> Result<(Response<Incoming>, usize), ProxyError> {
        let outgoing = Outgoing::new(request, client);
        let first = service.balancer.pick();
        for index in attempt_order(first, service.backends.len()) {
            let backend = &service.backends[index];
            match self.attempt(service, backend, &outgoing).await {
                Ok(mut response) => {
                    headers::strip_hop_by_hop(response.headers_mut());
                    return Ok((response, index));
                }
                Err(Attempt::Refused(error)) => {
                    tracing::warn!(service = &*service.name, backend = %backend.authority, %error, "backend refused the connection, trying the next");
                }
                Err(Attempt::Failed(error)) => return Err(error),
            }
        }
        Err(ProxyError::AllBackendsFailed(service.name.to_string()))
    }

    /// One try against one backend. `service.timeout` bounds the wait for response headers and
    /// starts once the request body has been sent, so a slow upload is not blamed on the backend.
    async fn attempt(
        &self,
        service: &Service,
        backend: &Backend,
        outgoing: &Outgoing,
    ) -> Result<Response<Incoming>, Attempt> {
        let upstream = outgoing.to(backend)?;
        let response = self.client.request(upstream);
        tokio::pin!(response);
        if let Some((slot, _)) = &outgoing.body {
            tokio::select! {
                result = &mut response => return result.map_err(|e| Attempt::classify(e, service, backend, outgoing)),
                () = slot.sent() => {}
            }
        }
        match tokio::time::timeout(service.timeout, response).await {
            Ok(result) => result.map_err(|e| Attempt::classify(e, service, backend, outgoing)),
            Err(_) => Err(Attempt::Failed(ProxyError::UpstreamTimeout(
                service.timeout,
            ))),
        }
    }
}

impl Outgoing {
    fn new(request: Request<Incoming>, client: &ClientInfo) -> Self {
        let (mut parts, incoming) = request.into_parts();
        rewrite_request_headers(&mut parts, client);
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let body = (!http_body::Body::is_end_stream(&incoming)).then(|| {
            let hint = http_body::Body::size_hint(&incoming);
            (BodySlot::new(incoming), hint)
        });
        Outgoing { parts, path, body }
    }

    /// The upstream request for `backend`. Headers are copied because a refused attempt
    /// consumes its request and the next backend needs them again.
    fn to(&self, backend: &Backend) -> Result<Request<UpstreamBody>, Attempt> {
        let uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(backend.authority.clone())
            .path_and_query(self.path.clone())
            .build()
            .map_err(|e| Attempt::Failed(ProxyError::Internal(e.to_string())))?;
        let body = match &self.body {
            Some((slot, hint)) => UpstreamBody::pending(slot, *hint),
            None => UpstreamBody::Empty,
        };
        let mut upstream = Request::new(body);
        *upstream.method_mut() = self.parts.method.clone();
        *upstream.uri_mut() = uri;
        *upstream.headers_mut() = self.parts.headers.clone();
        Ok(upstream)
    }

    fn body_unread(&self) -> bool {
        self.body.as_ref().is_none_or(|(slot, _)| slot.is_unread())
    }
}

/// How one attempt ended, when it did not produce a response.
enum Attempt {
    /// Nothing was sent; the next backend may be tried.
    Refused(ClientError),
    /// The request is over.
    Failed(ProxyError),
}

impl Attempt {
    fn classify(
        error: ClientError,
        service: &Service,
        backend: &Backend,
        outgoing: &Outgoing,
    ) -> Self {
        if error.is_connect() && outgoing.body_unread() {
            return Attempt::Refused(error);
        }
        if let Some(body_error) = find_cause::<ClientBodyError>(&error) {
            tracing::debug!(service = &*service.name, error = %body_error, "client body failed");
            return Attempt::Failed(ProxyError::BadRequest(
                "the request body was malformed or cut short",
            ));
        }
        tracing::warn!(service = &*service.name, backend = %backend.authority, error = %error_chain(&error), "backend request failed");
        Attempt::Failed(ProxyError::Upstream(format!(
            "backend {} failed",
            backend.authority
        )))
    }
}

/// Prepares the client's headers for the backend: hop-by-hop and spoofed identity headers out,
/// `X-Forwarded-*` in, and the client's host kept as `Host`.
fn rewrite_request_headers(parts: &mut http::request::Parts, client: &ClientInfo) {
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
    headers::add_forwarded(headers, &client.peer_ip, client.proto, host.as_ref());
}

/// The first error of type `T` in `error`'s chain of causes.
fn find_cause<'e, T: std::error::Error + 'static>(
    error: &'e (dyn std::error::Error + 'static),
) -> Option<&'e T> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
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
