//! One request from arrival to response: route, check the request's limits and framing (after
//! routing, so a refusal is counted under its service), apply the service's policy, forward (or
//! answer from the control plane), and log it once.

pub(crate) mod access_log;
mod framing;
mod limits;

pub use limits::RequestLimits;

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;

use std::borrow::Cow;

use http::uri::PathAndQuery;
use http::{header, HeaderValue, Method, Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::auth::{Auth, AuthError, Identity, Proxied};
use crate::config::ServiceAuth;
use crate::control;
use crate::error::{ProxyBody, ProxyError};
use crate::forwarder::ADDED_REQUEST_HEADERS;
use crate::metrics::{self, AccessResult};
use crate::policy::{decide, Rule};
use crate::request::{normalize_path, ClientInfo, X_REQUEST_ID};
use crate::service::Service;
use crate::signin;
use crate::state::{AppState, Worker};
use access_log::AccessRecord;

/// Who answered and for whom, for metrics and the access log.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// The routed service; `None` for the control plane.
    pub service: Option<Arc<Service>>,
    /// Index of the backend that answered, in `service.backends`.
    pub backend: Option<usize>,
    /// The authenticated account, for the access log.
    pub user: Option<Arc<Identity>>,
    /// The `Access-Control-Allow-Origin` the response gets (the service's CORS policy allowed
    /// the request's `Origin`); kept here so error responses carry it too.
    pub cors_origin: Option<HeaderValue>,
}

impl Outcome {
    /// The `service` label / log field: the service's name, or `control`.
    pub fn service_name(&self) -> &str {
        self.service
            .as_deref()
            .map_or(metrics::CONTROL, |s| &*s.name)
    }

    /// The answering backend's `host:port`, if one answered.
    pub fn backend_name(&self) -> Option<&str> {
        let service = self.service.as_deref()?;
        Some(service.backends[self.backend?].authority.as_str())
    }
}

/// Answers one request; every failure becomes its JSON error response here, logged once. A
/// panic while handling it is answered 500 (and counted and logged like any answer) instead of
/// ending the connection with no answer at all.
pub async fn handle(
    worker: Arc<Worker>,
    mut request: Request<Incoming>,
    client: Arc<ClientInfo>,
    limits: RequestLimits,
) -> Response<ProxyBody> {
    let started = Instant::now();
    // hyper sizes the map for the headers the client sent; growing it one insert at a time
    // (the id here, the forwarding headers later) rehashed it up to four times per request.
    request.headers_mut().reserve(ADDED_REQUEST_HEADERS);
    let request_id = ensure_request_id(&mut request, &worker.state);
    let record = access_log::enabled().then(|| AccessRecord::start(&request, &client, started));
    let method = metrics::method_slot(request.method());
    let mut outcome = Outcome::default();
    // Unwind safety: a future that panicked is dropped, never polled again, and every lock it
    // may have held recovers from poisoning where it is taken.
    let handling = AssertUnwindSafe(handle_inner(
        &worker,
        request,
        &client,
        limits,
        &mut outcome,
    ));
    let mut response = match handling.catch_unwind().await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => {
            tracing::debug!(%error, service = outcome.service_name(), "request failed");
            error.into_response()
        }
        Err(panic) => {
            let panic = panic_message(&*panic);
            tracing::error!(
                panic,
                service = outcome.service_name(),
                "request handler panicked"
            );
            ProxyError::Internal("the request could not be handled".into()).into_response()
        }
    };
    if let Some(service) = &outcome.service {
        let origin = outcome.cors_origin.as_ref();
        service.policy.finish(response.headers_mut(), origin);
    }
    let counters = match &outcome.service {
        Some(service) => &service.metrics,
        None => &*worker.state.metrics.control,
    };
    counters.record(method, response.status(), started.elapsed());
    response.headers_mut().insert(X_REQUEST_ID, request_id);
    match record {
        Some(record) => record.finish(response, outcome),
        None => response,
    }
}

async fn handle_inner(
    worker: &Worker,
    request: Request<Incoming>,
    client: &ClientInfo,
    limits: RequestLimits,
    outcome: &mut Outcome,
) -> Result<Response<ProxyBody>, ProxyError> {
    let service = worker.state.routes.load().route(&request).cloned();
    outcome.service = service.clone();
    // After routing, so a refused request is counted and logged under its service.
    if let Some(refused) = limits.reject(&request) {
        return Ok(refused);
    }
    match service {
        // Gatehouse's own sign-in paths, on every service's host; never forwarded.
        Some(_) if signin::owns(request.uri().path()) => {
            Box::pin(signin::handle(request, &worker.state, client)).await
        }
        Some(service) => proxy(worker, &service, request, client, outcome).await,
        None => Box::pin(control::handle(request, &worker.state, client)).await,
    }
}

/// A routed request: the service's policy, authentication, then the backend. Preflights and
/// IP rate limits come before authentication (browsers preflight without credentials, and a
/// flood of bad tokens should not cost a verification each); a user rate limit after it.
async fn proxy(
    worker: &Worker,
    service: &Service,
    mut request: Request<Incoming>,
    client: &ClientInfo,
    outcome: &mut Outcome,
) -> Result<Response<ProxyBody>, ProxyError> {
    if let Some(refused) = refuse_method(service, request.method()) {
        return Ok(refused);
    }
    let policy = &service.policy;
    outcome.cors_origin = policy.allowed_origin(request.headers());
    if let Some(answer) = policy.preflight(&request, outcome.cors_origin.as_ref()) {
        return answer;
    }
    let ip = client.ip(request.headers());
    policy.admit(&request, ip)?;
    let rule = rule_for(service, &mut request)?;
    let checked = match rule.auth {
        ServiceAuth::None => None,
        ServiceAuth::Required => Some(
            worker
                .state
                .auth
                .authenticate_proxied(request.headers(), ip),
        ),
    };
    let (request, rule, ip, authenticated) = match checked {
        None => (request, rule, ip, Ok(None)),
        Some(Proxied::Done(identity)) => (request, rule, ip, identity.map(Some)),
        // An API key this replica has not seen: wait for the store. What the rest of the
        // request needs waits inside the box, because every local held across an await here
        // would grow this future's state, allocated (and copied) for every request whether or
        // not it ever waits.
        Some(Proxied::Pending(lookup)) => {
            Box::pin(async move {
                let identity = lookup.await.map(Some);
                (request, rule, ip, identity)
            })
            .await
        }
    };
    outcome.user = match authorize(service, &rule, authenticated) {
        // A browser without a (valid) session is sent to the sign-in form; others get 401.
        Err(error @ (ProxyError::MissingToken | ProxyError::InvalidToken(_))) => {
            let redirect = signin::redirect_for(&request);
            let result = match redirect {
                Some(_) => AccessResult::SignIn,
                None => AccessResult::Deny401,
            };
            service.access_metrics.record(rule.route, result);
            return redirect.ok_or(error);
        }
        identity => identity?,
    };
    let identity = outcome.user.as_deref();
    policy.admit_identity(identity, ip)?;
    let assertion = match identity {
        Some(identity) if service.assertion => {
            Some(assertion_for(&worker.state.auth, service, identity)?)
        }
        _ => None,
    };
    // Boxed, as are the control plane's and sign-in's in handle_inner: the exchange's state
    // (4 KiB) is then allocated only for proxied requests, not in every request's handler
    // future (which hyper, as patched, boxes per request). Unboxed, callgrind counted no fewer
    // instructions.
    let (response, index) = Box::pin(worker.forwarder.forward(
        service,
        request,
        client,
        identity.map(|i| &i.caller),
        assertion,
    ))
    .await?;
    outcome.backend = Some(index);
    Ok(response.map(BodyExt::boxed_unsync))
}

/// The methods a service is told to allow in a 405 (the backend decides the rest).
const ALLOWED_METHODS: HeaderValue =
    HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS");

/// 405 for a method Gatehouse does not proxy. `CONNECT` never: sent on as `CONNECT /` it would
/// ask a backend to open a tunnel nobody checks. `TRACE` only where the service allows it: the
/// backend echoes the request, cookies and headers included, to whoever reads the answer.
fn refuse_method(service: &Service, method: &Method) -> Option<Response<ProxyBody>> {
    let refused = *method == Method::CONNECT || (*method == Method::TRACE && !service.allow_trace);
    refused.then(|| {
        let mut response = ProxyError::MethodNotAllowed.into_response();
        response
            .headers_mut()
            .insert(header::ALLOW, ALLOWED_METHODS);
        response
    })
}

/// The access rule for the request. A service with routes decides on the normalised path, and
/// forwards that same path (the query untouched), so the rule and the backend never read the
/// path differently; a path normalisation cannot make safe is refused (400).
fn rule_for<'s, B>(service: &'s Service, request: &mut Request<B>) -> Result<Rule<'s>, ProxyError> {
    if !service.access.has_routes() {
        return Ok(service.access.rule(request.method(), request.uri().path()));
    }
    let path = request.uri().path();
    let normalized = normalize_path(path).map_err(ProxyError::AmbiguousPath)?;
    if let Cow::Owned(normalized) = normalized {
        let uri = with_path(request.uri(), &normalized)?;
        *request.uri_mut() = uri;
    }
    Ok(service.access.rule(request.method(), request.uri().path()))
}

/// `uri` with its path replaced (scheme, authority and query kept).
fn with_path(uri: &Uri, path: &str) -> Result<Uri, ProxyError> {
    let mut parts = uri.clone().into_parts();
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_string(),
    };
    parts.path_and_query = Some(
        PathAndQuery::try_from(path_and_query)
            .map_err(|_| ProxyError::BadRequest("the normalised path is not a valid target"))?,
    );
    Uri::from_parts(parts)
        .map_err(|_| ProxyError::BadRequest("the normalised path is not a valid target"))
}

/// The request's verified identity (bearer token or API key, else session cookie; `None` where
/// `rule` needs none) if its role may pass; an allowed or role-refused decision is counted here
/// (a missing or bad credential by the caller, which decides between 401 and sign-in).
fn authorize(
    service: &Service,
    rule: &Rule<'_>,
    authenticated: Result<Option<Arc<Identity>>, AuthError>,
) -> Result<Option<Arc<Identity>>, ProxyError> {
    let identity = authenticated?;
    let result = decide(rule, identity.as_ref().map(|i| i.claims.role), false);
    service.access_metrics.record(rule.route, result);
    match result {
        AccessResult::Deny403 => Err(ProxyError::Forbidden(service.name.to_string())),
        _ => Ok(identity),
    }
}

/// The `X-Gatehouse-Assertion` for `identity` at `service` (cached per caller and service by
/// `auth::Assertions`). Without signing keys, which start refuses for a config with
/// `assertion: true`, the request fails rather than reach a backend that expects one.
fn assertion_for(
    auth: &Auth,
    service: &Service,
    identity: &Identity,
) -> Result<HeaderValue, ProxyError> {
    auth.assertions
        .as_ref()
        .and_then(|assertions| assertions.header_for(identity, &service.name))
        .ok_or_else(|| ProxyError::Internal("no signing key for the assertion".to_string()))
}

/// The text a panic was raised with, for the log.
fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)")
}

/// Keeps the client's `X-Request-Id` (passed to the backend too) if it is a plain token, or
/// assigns a new one.
fn ensure_request_id(request: &mut Request<Incoming>, state: &AppState) -> HeaderValue {
    if let Some(id) = request.headers().get(X_REQUEST_ID) {
        if is_plain_request_id(id.as_bytes()) {
            return id.clone();
        }
    }
    let id = state.request_ids.next();
    request.headers_mut().insert(X_REQUEST_ID, id.clone());
    id
}

/// Longest client request id kept.
const MAX_REQUEST_ID_BYTES: usize = 128;

/// 1 to 128 visible ASCII characters without quotes or backslashes: an id that log readers and
/// backends can take as one field. Anything else (a space and `user="admin"`, say, forging a
/// field in a text log line) is replaced, not escaped, so every consumer sees the same id.
fn is_plain_request_id(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_BYTES).contains(&id.len())
        && id
            .iter()
            .all(|&b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'\\'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_id_is_kept_only_as_a_short_plain_token() {
        assert!(is_plain_request_id(b"trace-42"));
        assert!(is_plain_request_id(b"00-4bf92f3577b34da6-01:a/b_c.d"));
        assert!(is_plain_request_id(&[b'a'; 128]));
        assert!(!is_plain_request_id(&[b'a'; 129]));
        assert!(!is_plain_request_id(b""));
        for forged in [
            &b"abc user=\"admin\""[..],
            b"abc\tx",
            b"it's",
            b"back\\slash",
            "caf\u{e9}".as_bytes(),
        ] {
            assert!(!is_plain_request_id(forged), "{forged:?}");
        }
    }

    fn future_size<F, Fut>(_: F) -> usize
    where
        F: FnOnce(Arc<Worker>, Request<Incoming>, Arc<ClientInfo>, RequestLimits) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// hyper allocates a connection's handler future once and keeps it while the connection
    /// lives, so its size is memory per idle keep-alive connection (6.8 KB release before the
    /// exchange and the control plane were boxed, 2.1 KB after).
    #[test]
    fn the_handler_future_stays_small() {
        let size = future_size(handle);
        eprintln!("handler future: {size} bytes");
        assert!(size <= 4096, "the handler future grew to {size} bytes");
    }

    #[tokio::test]
    async fn a_panicking_future_comes_out_as_err_with_its_message() {
        let caught = AssertUnwindSafe(async {
            if std::hint::black_box(true) {
                panic!("boom {}", 1);
            }
        })
        .catch_unwind()
        .await;
        let panic = caught.expect_err("the panic is caught");
        assert_eq!(panic_message(&*panic), "boom 1");
    }
}
