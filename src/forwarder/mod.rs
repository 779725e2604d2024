//! Sends a routed request to a backend over a pooled keep-alive client and streams the answer
//! back; a backend that refuses the connection is skipped for the next one.

mod body;
pub mod h1;
pub(crate) mod headers;
mod pool;
mod upgrade;

use body::ResponseBody;
// Public for the fuzz targets (fuzz/), which drive the real header rewrite.
pub use headers::add_identity;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, Uri};
use hyper::body::Incoming;
use tokio::sync::Notify;

use crate::balancer::{attempt_order, Backend};
use crate::clock::now_ms;
use crate::error::ProxyError;
use crate::policy::{retry, IdentityHeaders};
use crate::request::{Caller, ClientInfo};
use crate::service::Service;
use body::{ClientBodyError, UpstreamBody, WAITING_ON_CLIENT};
use h1::{BackendBody, Conn, Outbound, RequestHead, SendError};
use pool::{Home, Pool};

/// The most headers a request gains on its way to a backend: `X-Request-Id`, the five
/// forwarding headers (`X-Forwarded-For`/`-Proto`/`-Host`, `X-Real-IP`, `Forwarded`), the
/// caller's `X-Forwarded-User`/`-Email` and `X-Gatehouse-Assertion`.
pub(crate) const ADDED_REQUEST_HEADERS: usize = 9;

/// One worker's upstream side: its keep-alive connections to every backend.
#[derive(Debug, Default)]
pub struct Forwarder {
    /// Shared with the response bodies, which park their connection once read (weakly: a body
    /// outliving its worker just closes it).
    pool: Arc<Pool>,
    /// The browser session cookie's name: taken out of every request's `Cookie` header.
    session_cookie: Box<str>,
}

/// How one attempt ended, when it did not produce a response.
enum Attempt {
    /// Nothing was sent; the request comes back for the next backend (boxed: this is the
    /// rare path, and it keeps the common result small).
    Refused(Box<Outbound>, std::io::Error),
    /// The request is over.
    Failed(ProxyError),
}

impl Forwarder {
    /// A forwarder with an empty pool that keeps the cookie `session_cookie` from backends;
    /// create it on the runtime that will use it.
    pub fn new(session_cookie: &str) -> Self {
        Forwarder {
            pool: Arc::default(),
            session_cookie: session_cookie.into(),
        }
    }

    /// Forwards `request` to one of `service`'s available backends, as `caller` when
    /// authenticated; returns the response and the index of the backend that produced it. The
    /// response body may pause at most the service's `timeout` between frames, and for the
    /// load-aware strategies keeps the request counted on its backend until it is done.
    ///
    /// With the service's `request_buffering`, the body is read ahead up to that size (whole,
    /// when it is no larger) before a backend is picked.
    ///
    /// A backend that refuses the connection is skipped for the next available one (always,
    /// each at most once). An idempotent request without a body is tried again on another
    /// backend after a 502/503 answer or a broken connection, up to `service.retries` times and
    /// only while the service's retry budget allows. An `Upgrade` request becomes a tunnel once
    /// the backend answers 101.
    ///
    /// Not an `async fn`, which would keep the request and the assertion twice in its state
    /// (as passed and as moved apart) for the whole exchange: this state is part of every
    /// proxied request's, copied in full when it is boxed, and memory touched per request costs
    /// kernel time too (README, Performance). The request is taken apart first, and the async
    /// block keeps only its parts.
    pub(crate) fn forward<'a>(
        &'a self,
        service: &'a Service,
        mut request: Request<Incoming>,
        client: &'a ClientInfo,
        caller: Option<&'a Caller>,
        assertion: Option<HeaderValue>,
    ) -> impl Future<Output = Result<(Response<ResponseBody>, usize), ProxyError>> + 'a {
        let upgrade = upgrade::requested(&request).then(|| upgrade::client_side(&mut request));
        let (mut parts, incoming) = request.into_parts();
        let upgrade = upgrade.map(|client_side| (client_side, upgrade::protocol(&parts.headers)));
        rewrite_request_headers(&mut parts, client, &service.identity_headers);
        headers::strip_session_cookie(&mut parts.headers, &self.session_cookie);
        if let Some((_, protocol)) = &upgrade {
            upgrade::restore_request_headers(&mut parts.headers, protocol.clone());
        }
        if let Some(caller) = caller {
            headers::add_identity(&mut parts.headers, caller, service.forward_authorization);
        }
        if let Some(assertion) = assertion {
            parts
                .headers
                .insert(headers::X_GATEHOUSE_ASSERTION, assertion);
        }
        let (mut body, sent) = UpstreamBody::new(incoming, service.body_limits);
        async move {
            if let (Some(limit), Some(_), None) = (service.request_buffering, &sent, &upgrade) {
                // Before a backend is picked: a slow client holds no backend connection meanwhile.
                body.read_ahead(limit).await.map_err(|error| {
                    tracing::debug!(service = &*service.name, %error, "client body failed");
                    client_body_error(&error)
                })?;
            }
            parts.uri = origin_form(&parts.uri);
            let head = RequestHead::new(&mut parts, &body);
            let bodiless = sent.is_none() && upgrade.is_none() && head.is_bodiless();
            let retry = Retry::plan(service, &parts.method, &head, bodiless);
            let mut upstream = Outbound { head, body };

            let now = now_ms();
            let mut index = service
                .balancer
                .pick(&service.backends, now)
                .ok_or_else(|| ProxyError::NoHealthyBackend(service.name.to_string()))?;
            let mut tried = Tried::default();
            let mut retry = retry;
            loop {
                tried.add(index, service.backends.len());
                let backend = &service.backends[index];
                let in_flight = service
                    .balancer
                    .counts_in_flight()
                    .then(|| backend.state.start_request());
                let attempt = self
                    .attempt(service, backend, upstream, sent.as_deref())
                    .await;
                let failure = match attempt {
                    Ok(mut response) => {
                        backend.state.answered(response.status());
                        let status = response.status();
                        let retriable = matches!(status.as_u16(), 502 | 503);
                        let again = retry.as_mut().filter(|_| retriable);
                        if let Some((next, request)) =
                            again.and_then(|plan| plan.next(service, &tried, index))
                        {
                            tracing::debug!(service = &*service.name, backend = %backend.authority, %status, "retrying on another backend");
                            (index, upstream) = (next, request);
                            continue;
                        }
                        if let Some((client_side, _)) = upgrade {
                            upgrade::tunnel_if_switched(
                                &mut response,
                                client_side,
                                service.tunnel_idle,
                            );
                        } else {
                            headers::strip_hop_by_hop(response.headers_mut());
                        }
                        let response = response
                            .map(|body| ResponseBody::new(body, service.timeout, in_flight));
                        return Ok((response, index));
                    }
                    Err(Attempt::Refused(request, error)) => {
                        backend.state.refused();
                        tracing::warn!(service = &*service.name, backend = %backend.authority, %error, "backend refused the connection, trying the next");
                        upstream = *request;
                        ProxyError::AllBackendsFailed(service.name.to_string())
                    }
                    Err(Attempt::Failed(error)) => {
                        backend.state.failed(&error);
                        let broken = matches!(error, ProxyError::Upstream(_));
                        if let Some(plan) = retry.as_mut().filter(|_| broken) {
                            if let Some((next, request)) = plan.next(service, &tried, index) {
                                (index, upstream) = (next, request);
                                continue;
                            }
                        }
                        return Err(error);
                    }
                };
                // Refused: nothing was sent, so any untried available backend may take it.
                match tried.next_available(service, index, now_ms()) {
                    Some(next) => index = next,
                    None => return Err(failure),
                }
            }
        }
    }

    /// One try against one backend. `service.timeout` bounds the wait for response headers and
    /// starts once the request body has been sent, so a slow upload is not blamed on the backend;
    /// while the body is being sent, a backend that stops reading it for `service.timeout` (the
    /// body has data ready, nobody takes it) is timed out the same way.
    async fn attempt(
        &self,
        service: &Service,
        backend: &Backend,
        request: Outbound,
        sent: Option<&Notify>,
    ) -> Result<Response<BackendBody>, Attempt> {
        let (conn, fresh) = match self
            .pool
            .checkout(&backend.authority, service.connect_timeout)
            .await
        {
            Ok(checked_out) => checked_out,
            Err(error) => return Err(Attempt::Refused(Box::new(request), error)),
        };
        let handed_on = request.body.handed_on();
        let exchange = self.exchange(service, backend, conn, fresh, request);
        tokio::pin!(exchange);
        if let (Some(sent), Some(handed_on)) = (sent, handed_on) {
            tokio::select! {
                result = &mut exchange => return result,
                () = sent.notified() => {}
                () = backend_stops_reading(&handed_on, service.timeout) => {
                    return Err(Attempt::Failed(ProxyError::UpstreamTimeout(service.timeout)));
                }
            }
        }
        match tokio::time::timeout(service.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Attempt::Failed(ProxyError::UpstreamTimeout(
                service.timeout,
            ))),
        }
    }

    /// Sends the request and returns the response once its head is in; its body parks the
    /// connection again once read. A parked connection the backend closed meanwhile hands the
    /// request back unsent; it then goes out on a fresh connection.
    async fn exchange(
        &self,
        service: &Service,
        backend: &Backend,
        mut conn: Conn,
        mut fresh: bool,
        mut request: Outbound,
    ) -> Result<Response<BackendBody>, Attempt> {
        loop {
            let home = Home {
                pool: Arc::downgrade(&self.pool),
                backend: backend.authority.clone(),
                idle: service.idle_timeout,
            };
            // The reconnect is outside the match, so the send's result is not kept across it
            // (it would be part of every request's state).
            let unsent = match h1::send(conn, request, home).await {
                Ok(response) if ambiguous_length(response.headers()) => {
                    // RFC 9112 §6.3: "ought to be handled as an error". Passing it on would let
                    // the backend pick the client's framing, and this connection's own framing
                    // is in doubt: it is never parked (see `h1::Head::keep_alive`), so it
                    // closes once dropped here.
                    tracing::warn!(service = &*service.name, backend = %backend.authority, "backend response has both Content-Length and Transfer-Encoding");
                    return Err(Attempt::Failed(ProxyError::Upstream(format!(
                        "backend {} sent an ambiguous response length",
                        backend.authority
                    ))));
                }
                Ok(response) => return Ok(response),
                Err(SendError::Unsent(unsent, _)) if !fresh => unsent,
                Err(SendError::Unsent(unsent, closed)) => {
                    return Err(Attempt::Refused(unsent, closed));
                }
                Err(SendError::Failed(error)) => return Err(failed(service, backend, &error)),
            };
            request = *unsent;
            conn = match Conn::connect(backend.authority.as_str(), service.connect_timeout).await {
                Ok(conn) => conn,
                Err(e) => return Err(Attempt::Refused(Box::new(request), e)),
            };
            fresh = true;
        }
    }
}

/// Completes when the request body has had data ready for the backend and the backend has not
/// taken any for `timeout` (checked a few times per timeout); never while the body waits on the
/// client (that is the client's stall or slowness, see `body_read_timeout` and `min_body_rate`).
async fn backend_stops_reading(handed_on: &AtomicU64, timeout: Duration) {
    let limit = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    let mut every = tokio::time::interval((timeout / 4).max(Duration::from_millis(10)));
    loop {
        every.tick().await;
        let last = handed_on.load(Ordering::Relaxed);
        if last != WAITING_ON_CLIENT && now_ms().saturating_sub(last) > limit {
            return;
        }
    }
}

/// The backends a request has been sent to (or refused by), so none is tried twice. Empty
/// until a second backend is needed: the common case allocates nothing.
#[derive(Default)]
struct Tried {
    first: Option<usize>,
    more: Vec<bool>,
}

impl Tried {
    fn add(&mut self, index: usize, count: usize) {
        match self.first {
            None => self.first = Some(index),
            Some(first) => {
                if self.more.is_empty() {
                    self.more = vec![false; count];
                    self.more[first] = true;
                }
                self.more[index] = true;
            }
        }
    }

    fn contains(&self, index: usize) -> bool {
        self.first == Some(index) || self.more.get(index).copied().unwrap_or(false)
    }

    /// The next backend after `from`, in turn, that is available and not tried yet.
    fn next_available(&self, service: &Service, from: usize, now: u64) -> Option<usize> {
        attempt_order(from, service.backends.len())
            .skip(1)
            .find(|&i| !self.contains(i) && service.backends[i].state.is_available(now))
    }
}

/// What a retry needs: the request's head as it went on the wire (its body is empty), and the
/// tries left.
struct Retry {
    head: RequestHead,
    left: u32,
}

impl Retry {
    /// A retry plan when the request may be retried: retries configured, another backend to
    /// retry on, an idempotent method and no body. The plan shares the head's bytes, so having
    /// one costs a reference count. Every request of a retrying service feeds the retry budget.
    fn plan(
        service: &Service,
        method: &Method,
        head: &RequestHead,
        bodiless: bool,
    ) -> Option<Self> {
        if service.retries == 0 {
            return None;
        }
        service.retry_budget.deposit();
        let retriable = bodiless && service.backends.len() > 1 && retry::is_idempotent(method);
        retriable.then(|| Retry {
            head: head.clone(),
            left: service.retries,
        })
    }

    /// The backend and request for one more try, if tries are left, another backend is
    /// available and the budget holds a retry.
    fn next(&mut self, service: &Service, tried: &Tried, from: usize) -> Option<(usize, Outbound)> {
        if self.left == 0 {
            return None;
        }
        let next = tried.next_available(service, from, now_ms())?;
        if !service.retry_budget.withdraw() {
            return None;
        }
        self.left -= 1;
        let request = Outbound {
            head: self.head.clone(),
            body: UpstreamBody::empty(service.body_limits),
        };
        Some((next, request))
    }
}

/// Whether a response states its length two ways (`Content-Length` and `Transfer-Encoding`).
fn ambiguous_length(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING) && headers.contains_key(header::CONTENT_LENGTH)
}

/// Upstream requests carry only path and query (origin-form, RFC 9112 §3.2.1).
fn origin_form(uri: &Uri) -> Uri {
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::from(path)
}

/// Maps a failed exchange: the client's broken, oversized, stalled or too slow body is the
/// client's fault (400/413/408); anything else is the backend's (502).
fn failed(service: &Service, backend: &Backend, error: &h1::Error) -> Attempt {
    if let h1::Error::ClientBody(body_error) = error {
        tracing::debug!(service = &*service.name, error = %body_error, "client body failed");
        return Attempt::Failed(client_body_error(body_error));
    }
    tracing::warn!(service = &*service.name, backend = %backend.authority, error = %error_chain(error), "backend request failed");
    Attempt::Failed(ProxyError::Upstream(format!(
        "backend {} failed",
        backend.authority
    )))
}

/// The client's answer for its failed body.
fn client_body_error(error: &ClientBodyError) -> ProxyError {
    match error {
        ClientBodyError::TooLarge(max) => {
            ProxyError::PayloadTooLarge(usize::try_from(*max).unwrap_or(usize::MAX))
        }
        ClientBodyError::Slow(slow) => ProxyError::from(*slow),
        ClientBodyError::Read(_) => {
            ProxyError::BadRequest("the request body was malformed or cut short")
        }
    }
}

/// Prepares the client's headers for the backend: hop-by-hop and spoofed identity headers (those
/// in `identity` too) out, `X-Forwarded-*`, `X-Real-IP` and `Forwarded` in, and the client's
/// host kept as `Host` (a routed request always has one: the router matched it). Public for the
/// fuzz targets (fuzz/); [`Forwarder::forward`] is its only caller in the proxy.
pub fn rewrite_request_headers(
    parts: &mut http::request::Parts,
    client: &ClientInfo,
    identity: &IdentityHeaders,
) {
    let headers = &mut parts.headers;
    headers::strip_request(headers, identity);
    // The authority of an absolute-form URI (or h2 `:authority`) is the host the client asked
    // for and what the router matched; the backend must see the same one.
    if let Some(authority) = parts.uri.authority() {
        if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
            headers.insert(header::HOST, host);
        }
    }
    let host = headers.get(header::HOST).cloned();
    let scheme = client.scheme(headers);
    headers::add_forwarded(headers, client, scheme, host.as_ref());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_length_stated_two_ways_is_ambiguous() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        assert!(!ambiguous_length(&headers));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        assert!(ambiguous_length(&headers));
        headers.remove(header::CONTENT_LENGTH);
        assert!(!ambiguous_length(&headers));
    }
}
