//! Sends a routed request to a backend over a pooled keep-alive client and streams the answer
//! back; a backend that refuses the connection is skipped for the next one.

mod body;
pub(crate) mod headers;
mod pool;

use std::net::SocketAddr;

use http::uri::PathAndQuery;
use http::{header, HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use tokio::sync::Notify;

use crate::auth::Identity;
use crate::balancer::attempt_order;
use crate::error::ProxyError;
use crate::service::{Backend, Service};
use body::{ClientBodyError, UpstreamBody};
use pool::{Pool, Sender};

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

/// One worker's upstream side: its keep-alive connections to every backend.
#[derive(Debug, Default)]
pub struct Forwarder {
    pool: Pool,
}

/// How one attempt ended, when it did not produce a response.
enum Attempt {
    /// Nothing was sent; the request comes back for the next backend (boxed: this is the
    /// rare path, and it keeps the common result small).
    Refused(Box<Request<UpstreamBody>>, std::io::Error),
    /// The request is over.
    Failed(ProxyError),
}

impl Forwarder {
    /// A forwarder with an empty pool; create it on the runtime that will use it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forwards `request` to one of `service`'s backends, as `identity` when authenticated;
    /// returns the response and the index of the backend that produced it. A backend that refuses the connection is skipped for the
    /// next (each tried at most once).
    pub async fn forward(
        &self,
        service: &Service,
        request: Request<Incoming>,
        client: &ClientInfo,
        identity: Option<&Identity>,
    ) -> Result<(Response<Incoming>, usize), ProxyError> {
        let (mut parts, incoming) = request.into_parts();
        rewrite_request_headers(&mut parts, client);
        if let Some(identity) = identity {
            headers::add_identity(&mut parts.headers, identity, service.forward_authorization);
        }
        let (body, sent) = UpstreamBody::new(incoming);
        let mut upstream = Request::new(body);
        *upstream.method_mut() = parts.method;
        *upstream.uri_mut() = origin_form(&parts.uri);
        *upstream.headers_mut() = parts.headers;

        for index in attempt_order(service.balancer.pick(), service.backends.len()) {
            let backend = &service.backends[index];
            match self
                .attempt(service, backend, upstream, sent.as_deref())
                .await
            {
                Ok(mut response) => {
                    backend.state.answered(response.status());
                    headers::strip_hop_by_hop(response.headers_mut());
                    return Ok((response, index));
                }
                Err(Attempt::Refused(request, error)) => {
                    backend.state.refused();
                    tracing::warn!(service = &*service.name, backend = %backend.authority, %error, "backend refused the connection, trying the next");
                    upstream = *request;
                }
                Err(Attempt::Failed(error)) => {
                    backend.state.failed(&error);
                    return Err(error);
                }
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
        request: Request<UpstreamBody>,
        sent: Option<&Notify>,
    ) -> Result<Response<Incoming>, Attempt> {
        let sender = match self.pool.checkout(&backend.authority).await {
            Ok(sender) => sender,
            Err(error) => return Err(Attempt::Refused(Box::new(request), error)),
        };
        let exchange = self.exchange(service, backend, sender, request);
        tokio::pin!(exchange);
        if let Some(sent) = sent {
            tokio::select! {
                result = &mut exchange => return result,
                () = sent.notified() => {}
            }
        }
        match tokio::time::timeout(service.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Attempt::Failed(ProxyError::UpstreamTimeout(
                service.timeout,
            ))),
        }
    }

    /// Sends the request and parks the connection again once response headers are in. A parked
    /// connection the backend closed meanwhile hands the request back unsent; it then goes out
    /// on a fresh connection.
    async fn exchange(
        &self,
        service: &Service,
        backend: &Backend,
        mut sender: Sender,
        mut request: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, Attempt> {
        let mut fresh = false;
        loop {
            match sender.try_send_request(request).await {
                Ok(response) => {
                    self.pool.park(&backend.authority, sender);
                    return Ok(response);
                }
                Err(mut error) => match error.take_message() {
                    Some(unsent) if !fresh => {
                        request = unsent;
                        sender = match pool::connect(&backend.authority).await {
                            Ok(sender) => sender,
                            Err(e) => return Err(Attempt::Refused(Box::new(request), e)),
                        };
                        fresh = true;
                    }
                    Some(unsent) => {
                        let closed = std::io::Error::other(error.into_error());
                        return Err(Attempt::Refused(Box::new(unsent), closed));
                    }
                    None => return Err(failed(service, backend, &error.into_error())),
                },
            }
        }
    }
}

/// Upstream requests carry only path and query (origin-form, RFC 9112 §3.2.1).
fn origin_form(uri: &Uri) -> Uri {
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::from(path)
}

/// Maps a failed exchange: the client's broken body is a 400, anything else the backend's 502.
fn failed(service: &Service, backend: &Backend, error: &hyper::Error) -> Attempt {
    if let Some(body_error) = find_cause::<ClientBodyError>(error) {
        tracing::debug!(service = &*service.name, error = %body_error, "client body failed");
        return Attempt::Failed(ProxyError::BadRequest(
            "the request body was malformed or cut short",
        ));
    }
    tracing::warn!(service = &*service.name, backend = %backend.authority, error = %error_chain(error), "backend request failed");
    Attempt::Failed(ProxyError::Upstream(format!(
        "backend {} failed",
        backend.authority
    )))
}

/// Prepares the client's headers for the backend: hop-by-hop and spoofed identity headers out,
/// `X-Forwarded-*` in, and the client's host kept as `Host` (a routed request always has one:
/// the router matched it).
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
