//! Per-service policy end to end: CORS (preflights answered by the proxy, actual responses and
//! proxy errors tagged), security headers, rate limits by IP and by account, and the request
//! body limit.

use crate::common;

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use common::fixed_backend::FixedBackend;
use common::tls::{self, client_config, connect, CertFiles, Sender, TestCert, TlsGatehouse};
use common::{
    assert_rate_limited, backends, empty, full, raw_exchange, ChannelBody, Client, ConfigYaml,
    CountingRelay, Proxy, Reply, ServiceYaml, TestBody,
};
use http::Request;

const APP: &str = "https://app.test";
const EVIL: &str = "https://evil.test";

/// `METHOD path` on `host` with extra headers and an empty body.
fn request(method: &str, host: &str, path: &str, headers: &[(&str, &str)]) -> Request<TestBody> {
    with_body(method, host, path, headers, empty())
}

fn with_body(
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: TestBody,
) -> Request<TestBody> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(body).expect("valid request")
}

/// A browser's preflight from `origin` for `method` with `headers` (may be empty).
fn preflight(host: &str, origin: &str, method: &str, headers: &str) -> Request<TestBody> {
    let mut asked = vec![
        ("origin", origin),
        ("access-control-request-method", method),
    ];
    if !headers.is_empty() {
        asked.push(("access-control-request-headers", headers));
    }
    request("OPTIONS", host, "/api/items", &asked)
}

fn vary(reply: &Reply) -> Vec<String> {
    reply
        .headers
        .get_all("vary")
        .iter()
        .flat_map(|v| v.to_str().expect("ASCII").split(','))
        .map(|v| v.trim().to_ascii_lowercase())
        .collect()
}

fn assert_no_cors_headers(reply: &Reply) {
    for name in [
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "access-control-expose-headers",
        "access-control-allow-methods",
    ] {
        assert!(
            reply.headers.get(name).is_none(),
            "{name}: {:?}",
            reply.headers
        );
    }
}

const CORS_LISTED: &str = "{allowed_origins: ['https://app.test'], allowed_methods: [GET, PUT], \
    allowed_headers: [content-type, x-custom], expose_headers: [x-backend, x-request-id], max_age: 10m}";

async fn cors_proxy(auth: &str, cors: &str) -> (Proxy, CountingRelay) {
    let relay = CountingRelay::start(backends(1).await[0]).await;
    let config = ConfigYaml::new().service(
        ServiceYaml::new("api", "api.test")
            .set("auth", auth)
            .set("cors", cors)
            .backend(relay.addr),
    );
    (Proxy::start(&config).await, relay)
}

// ---------------------------------------------------------------------------------------------
// CORS

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_preflight_is_answered_204_by_the_proxy_and_never_reaches_the_backend() {
    let (proxy, relay) = cors_proxy("none", CORS_LISTED).await;

    let reply = proxy
        .client()
        .send(preflight("api.test", APP, "PUT", "Content-Type, X-Custom"))
        .await;

    assert_eq!(reply.status, 204, "{:?}", reply.body);
    assert_eq!(reply.header("access-control-allow-origin"), APP);
    assert_eq!(reply.header("access-control-allow-methods"), "GET, PUT");
    assert_eq!(
        reply.header("access-control-allow-headers"),
        "content-type, x-custom"
    );
    assert_eq!(reply.header("access-control-max-age"), "600");
    assert!(reply
        .headers
        .get("access-control-allow-credentials")
        .is_none());
    assert!(
        vary(&reply).contains(&"origin".to_string()),
        "{:?}",
        reply.headers
    );
    assert!(reply.body.is_empty());
    assert!(reply.headers.get("x-backend").is_none());
    assert_eq!(relay.connections(), 0, "the backend was contacted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preflight_from_a_disallowed_origin_method_or_header_is_refused_with_403() {
    let (proxy, relay) = cors_proxy("none", CORS_LISTED).await;
    let client = proxy.client();

    for (origin, method, headers) in [
        (EVIL, "PUT", ""),
        (APP, "DELETE", ""),
        (APP, "PUT", "x-custom, x-secret"),
    ] {
        let reply = client
            .send(preflight("api.test", origin, method, headers))
            .await;
        assert_eq!(reply.status, 403, "{origin} {method} {headers}");
        assert_eq!(reply.json()["error"], "cors_forbidden");
        if origin == EVIL {
            assert_no_cors_headers(&reply);
        }
    }
    assert_eq!(relay.connections(), 0, "the backend was contacted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preflight_to_a_service_that_requires_a_token_needs_none() {
    let (proxy, relay) = cors_proxy("required", CORS_LISTED).await;

    let reply = proxy
        .client()
        .send(preflight("api.test", APP, "GET", "x-custom"))
        .await;

    assert_eq!(reply.status, 204, "{:?}", reply.body);
    assert_eq!(reply.header("access-control-allow-origin"), APP);
    assert!(reply.headers.get("www-authenticate").is_none());
    assert_eq!(relay.connections(), 0, "the backend was contacted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_cors_policy_a_preflight_is_an_ordinary_request() {
    let backend = backends(1).await[0];
    let config = ConfigYaml::new().service(ServiceYaml::open("api", "api.test").backend(backend));
    let proxy = Proxy::start(&config).await;

    let reply = proxy
        .client()
        .send(preflight("api.test", APP, "PUT", ""))
        .await;

    assert_eq!(reply.status, 200);
    assert_eq!(reply.backend(), "b0");
    assert!(reply.headers.get("access-control-allow-origin").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_origin_gets_cors_headers_on_the_actual_response_and_others_get_none() {
    let (proxy, _relay) = cors_proxy("none", CORS_LISTED).await;
    let client = proxy.client();

    let allowed = client
        .send(request("GET", "api.test", "/items", &[("origin", APP)]))
        .await;
    assert_eq!(allowed.status, 200);
    assert_eq!(allowed.backend(), "b0");
    assert_eq!(allowed.header("access-control-allow-origin"), APP);
    assert_eq!(
        allowed.header("access-control-expose-headers"),
        "x-backend, x-request-id"
    );
    assert!(allowed
        .headers
        .get("access-control-allow-credentials")
        .is_none());
    assert!(vary(&allowed).contains(&"origin".to_string()));
    assert_eq!(allowed.echoed_header("origin").as_deref(), Some(APP));

    let refused = client
        .send(request("GET", "api.test", "/items", &[("origin", EVIL)]))
        .await;
    assert_eq!(refused.status, 200, "the browser, not the proxy, blocks it");
    assert_no_cors_headers(&refused);
    assert!(vary(&refused).contains(&"origin".to_string()));

    let same_origin = client.get("api.test", "/items").await;
    assert_no_cors_headers(&same_origin);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_origin_without_credentials_is_answered_with_a_star() {
    let (proxy, _relay) = cors_proxy("none", "{allowed_origins: ['*']}").await;

    let reply = proxy
        .client()
        .send(request("GET", "api.test", "/", &[("origin", EVIL)]))
        .await;

    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("access-control-allow-origin"), "*");
    assert!(reply
        .headers
        .get("access-control-allow-credentials")
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_credentials_the_origin_is_echoed_and_credentials_allowed() {
    let cors =
        "{allowed_origins: ['https://other.test', 'https://app.test'], allow_credentials: true}";
    let (proxy, _relay) = cors_proxy("none", cors).await;
    let client = proxy.client();

    let actual = client
        .send(request("GET", "api.test", "/", &[("origin", APP)]))
        .await;
    assert_eq!(actual.header("access-control-allow-origin"), APP);
    assert_eq!(actual.header("access-control-allow-credentials"), "true");

    let preflight = client.send(preflight("api.test", APP, "POST", "")).await;
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-allow-origin"), APP);
    assert_eq!(preflight.header("access-control-allow-credentials"), "true");
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        "GET, HEAD, POST"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_for_an_allowed_origin_carries_cors_headers_so_the_app_can_read_it() {
    let cors = "{allowed_origins: ['https://app.test'], allow_credentials: true}";
    let (proxy, relay) = cors_proxy("required", cors).await;
    let client = proxy.client();

    let reply = client
        .send(request("GET", "api.test", "/me", &[("origin", APP)]))
        .await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.header("www-authenticate"), "Bearer");
    assert_eq!(reply.header("access-control-allow-origin"), APP);
    assert_eq!(reply.header("access-control-allow-credentials"), "true");
    assert!(vary(&reply).contains(&"origin".to_string()));

    let stranger = client
        .send(request("GET", "api.test", "/me", &[("origin", EVIL)]))
        .await;
    assert_eq!(stranger.status, 401);
    assert_no_cors_headers(&stranger);
    assert_eq!(relay.connections(), 0, "the backend was contacted");
}

// ---------------------------------------------------------------------------------------------
// Security headers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers_are_added_to_backend_and_proxy_responses_without_hsts_on_cleartext() {
    let backend = backends(1).await[0];
    let config = ConfigYaml::new()
        .service(
            ServiceYaml::open("open", "open.test")
                .set("security_headers", "true")
                .backend(backend),
        )
        .service(
            ServiceYaml::new("locked", "locked.test")
                .set("security_headers", "true")
                .backend(backend),
        );
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();

    for reply in [
        client.get("open.test", "/").await,
        client.get("locked.test", "/").await,
    ] {
        assert_eq!(reply.header("x-content-type-options"), "nosniff");
        assert_eq!(reply.header("x-frame-options"), "DENY");
        assert_eq!(
            reply.header("referrer-policy"),
            "strict-origin-when-cross-origin"
        );
        assert!(
            reply.headers.get("strict-transport-security").is_none(),
            "HSTS on a cleartext listener"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_security_headers_include_hsts() {
    let cert = TestCert::new("gatehouse", 1);
    let files = CertFiles::new(&cert);
    let (backend, tls) = (backends(1).await[0], files.yaml());
    let gatehouse = TlsGatehouse::start(|listen, admin| {
        let service = ServiceYaml::open("app", "app.test")
            .set("security_headers", "true")
            .backend(backend);
        let yaml = ConfigYaml::new()
            .listen(listen)
            .admin_listen(admin)
            .service(service)
            .render();
        format!("{tls}{yaml}")
    })
    .await;
    let stream = connect(gatehouse.addr, client_config(&[&cert], &[b"http/1.1"])).await;

    let reply = Sender::http1(stream)
        .await
        .send(tls::get("app.test", "/", false))
        .await;

    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("strict-transport-security"),
        "max-age=31536000; includeSubDomains"
    );
    assert_eq!(reply.header("x-frame-options"), "DENY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers_never_override_the_backends_own() {
    let backend = FixedBackend::start(&[
        ("x-frame-options", "SAMEORIGIN"),
        ("referrer-policy", "no-referrer"),
    ])
    .await;
    let config = ConfigYaml::new().service(
        ServiceYaml::open("open", "open.test")
            .set("security_headers", "true")
            .backend(backend.addr),
    );
    let proxy = Proxy::start(&config).await;

    let reply = proxy.client().get("open.test", "/").await;

    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-frame-options"), "SAMEORIGIN");
    assert_eq!(reply.header("referrer-policy"), "no-referrer");
    assert_eq!(reply.header("x-content-type-options"), "nosniff");
    assert_eq!(backend.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_security_headers_nothing_is_added() {
    let backend = backends(1).await[0];
    let config = ConfigYaml::new().service(ServiceYaml::open("open", "open.test").backend(backend));
    let proxy = Proxy::start(&config).await;

    let reply = proxy.client().get("open.test", "/").await;

    for name in [
        "x-frame-options",
        "x-content-type-options",
        "referrer-policy",
        "vary",
    ] {
        assert!(reply.headers.get(name).is_none(), "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Rate limits

fn client_from(proxy: &Proxy, ip: &str) -> Client {
    Client::http1_from(proxy.addr, ip.parse::<IpAddr>().expect("IP"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_ip_over_its_burst_gets_429_with_retry_after_and_others_pass() {
    let backend = backends(1).await[0];
    let config = ConfigYaml::new().service(
        ServiceYaml::open("api", "api.test")
            .set("rate_limit", "{requests_per_second: 1, burst: 3}")
            .backend(backend),
    );
    let proxy = Proxy::start(&config).await;
    let first = client_from(&proxy, "127.0.0.1");

    for _ in 0..3 {
        assert_eq!(first.get("api.test", "/").await.status, 200);
    }
    assert_rate_limited(&first.get("api.test", "/").await);

    let second = client_from(&proxy, "127.0.0.2");
    assert_eq!(second.get("api.test", "/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_keyed_limit_holds_back_one_account_and_not_another() {
    let backend = backends(1).await[0];
    let config = ConfigYaml::new().service(
        ServiceYaml::new("api", "api.test")
            .set(
                "rate_limit",
                "{requests_per_second: 1, burst: 2, key: user}",
            )
            .backend(backend),
    );
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();
    let alice = client
        .signed_up("alice", "alice@example.com", "password-alice")
        .await;
    let bob = client
        .signed_up("bob", "bob@example.com", "password-bob")
        .await;

    for _ in 0..2 {
        let reply = client.with_token("GET", "api.test", "/", &alice).await;
        assert_eq!(reply.status, 200);
    }
    assert_rate_limited(&client.with_token("GET", "api.test", "/", &alice).await);

    // Same client IP, other account: its own bucket.
    for _ in 0..2 {
        let reply = client.with_token("GET", "api.test", "/", &bob).await;
        assert_eq!(reply.status, 200);
    }
    // Requests without a token are refused by authentication, not counted against anyone.
    assert_eq!(client.get("api.test", "/").await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_keyed_limit_on_an_open_service_falls_back_to_the_client_ip() {
    let backend = backends(1).await[0];
    let config = ConfigYaml::new().service(
        ServiceYaml::open("api", "api.test")
            .set(
                "rate_limit",
                "{requests_per_second: 1, burst: 2, key: user}",
            )
            .backend(backend),
    );
    let proxy = Proxy::start(&config).await;
    let first = client_from(&proxy, "127.0.0.1");

    for _ in 0..2 {
        assert_eq!(first.get("api.test", "/").await.status, 200);
    }
    assert_rate_limited(&first.get("api.test", "/").await);
    let second = client_from(&proxy, "127.0.0.3");
    assert_eq!(second.get("api.test", "/").await.status, 200);
}

// ---------------------------------------------------------------------------------------------
// Request body limit

async fn limited_proxy(max: &str) -> (Proxy, CountingRelay) {
    let relay = CountingRelay::start(backends(1).await[0]).await;
    let config = ConfigYaml::new().service(
        ServiceYaml::open("upload", "upload.test")
            .set("max_request_body", max)
            .backend(relay.addr),
    );
    (Proxy::start(&config).await, relay)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_length_over_max_request_body_gets_413_without_contacting_the_backend() {
    let (proxy, relay) = limited_proxy("1KiB").await;

    let reply = proxy
        .client()
        .send(with_body(
            "POST",
            "upload.test",
            "/",
            &[],
            full(vec![b'x'; 1025]),
        ))
        .await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["error"], "payload_too_large");

    // Refused on the header alone: the body is never waited for.
    let raw = raw_exchange(
        proxy.addr,
        "POST / HTTP/1.1\r\nHost: upload.test\r\nContent-Length: 10000000\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw.status, 413);
    assert_eq!(relay.connections(), 0, "the backend was contacted");

    let fits = proxy
        .client()
        .send(with_body(
            "POST",
            "upload.test",
            "/",
            &[],
            full(vec![b'x'; 1024]),
        ))
        .await;
    assert_eq!(fits.status, 200);
    assert_eq!(fits.json()["body_len"], 1024, "{:?}", fits.json());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_growing_past_max_request_body_fails_with_413() {
    let (proxy, _relay) = limited_proxy("4KiB").await;
    let (tx, body) = ChannelBody::pair();
    let feed = tokio::spawn(async move {
        for _ in 0..8 {
            if tx.send(Bytes::from(vec![b'x'; 1024])).await.is_err() {
                return;
            }
        }
    });

    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        proxy
            .client()
            .send(with_body("POST", "upload.test", "/", &[], body)),
    )
    .await
    .expect("answered");

    assert_eq!(reply.status, 413, "{:?}", reply.body);
    feed.abort();
}
