//! What the backend sees of the client's headers, and what the client gets back.

use crate::common;

use common::{
    app_proxy, backends, empty, is_generated_request_id, raw_exchange, ConfigYaml, Proxy, Reply,
    ServiceYaml,
};
use http::Request;

/// GET `/` on `app.test` with extra headers.
async fn get_with(proxy: &Proxy, headers: &[(&str, &str)]) -> Reply {
    let mut request = Request::get("/").header("host", "app.test");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let reply = proxy.client().send(request.body(empty()).unwrap()).await;
    assert_eq!(reply.status, 200);
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_never_reach_the_backend() {
    let proxy = app_proxy().await;

    let reply = get_with(
        &proxy,
        &[
            ("X-Forwarded-User", "admin"),
            ("X-Forwarded-Email", "admin@example.com"),
            ("X_Forwarded_User", "root"),
            ("x_forwarded_email", "root@example.com"),
            ("X-Custom", "kept"),
        ],
    )
    .await;

    let echo = reply.json();
    let received = echo["headers"].as_object().expect("headers object");
    for name in received.keys() {
        let folded = name.replace('_', "-");
        assert!(
            folded != "x-forwarded-user" && folded != "x-forwarded-email",
            "backend received `{name}`: {echo}"
        );
    }
    assert_eq!(received["x-custom"], "kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_named_in_connection_and_hop_by_hop_headers_are_removed() {
    let proxy = app_proxy().await;

    let reply = raw_exchange(
        proxy.addr,
        "GET /conn HTTP/1.1\r\n\
         Host: app.test\r\n\
         Connection: close, X-Foo\r\n\
         X-Foo: secret\r\n\
         Keep-Alive: timeout=5\r\n\
         Proxy-Authorization: Basic Zm9vOmJhcg==\r\n\
         X-Bar: kept\r\n\
         \r\n",
    )
    .await;

    assert_eq!(reply.status, 200, "{reply:?}");
    let echo = reply.json();
    let received = echo["headers"].as_object().expect("headers object");
    for gone in ["x-foo", "connection", "keep-alive", "proxy-authorization"] {
        assert!(
            !received.contains_key(gone),
            "backend received `{gone}`: {echo}"
        );
    }
    assert_eq!(received["x-bar"], "kept");
    assert_eq!(echo["path"], "/conn");
}

/// From a client that is not a trusted proxy, `X-Forwarded-For`, `X-Real-IP` and `Forwarded`
/// name only the peer: whatever the client wrote there is dropped, not kept leftmost for a
/// backend that reads the first entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_client_s_forwarding_headers_are_replaced_by_its_address() {
    let proxy = app_proxy().await;

    let claimed = get_with(
        &proxy,
        &[
            ("X-Forwarded-For", "1.2.3.4"),
            ("X-Real-IP", "1.2.3.4"),
            ("Forwarded", "for=1.2.3.4;host=evil.test"),
        ],
    )
    .await;
    let fresh = get_with(&proxy, &[]).await;

    for reply in [&claimed, &fresh] {
        assert_eq!(
            reply.echoed_header("x-forwarded-for").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            reply.echoed_header("x-real-ip").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            reply.echoed_header("forwarded").as_deref(),
            Some("for=127.0.0.1;proto=http;host=\"app.test\"")
        );
    }
}

/// `identity_headers` replaces the default list; its names match in any case and `_`
/// spelling, and `prefix-*` entries by prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_identity_header_list_replaces_the_default() {
    let backend = backends(1).await[0];
    let config = ConfigYaml::new()
        .top("identity_headers", "[X-Custom-User, x-team-*]")
        .service(ServiceYaml::open("app", "app.test").backend(backend));
    let proxy = Proxy::start(&config).await;

    let reply = get_with(
        &proxy,
        &[
            ("x-custom-user", "root"),
            ("x_custom_user", "root"),
            ("x-team-role", "admin"),
            ("remote-user", "not on this list"),
        ],
    )
    .await;

    for gone in ["x-custom-user", "x_custom_user", "x-team-role"] {
        assert!(
            reply.echoed_header(gone).is_none(),
            "{gone} reached the backend"
        );
    }
    assert_eq!(
        reply.echoed_header("remote-user").as_deref(),
        Some("not on this list")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_proto_and_host_are_set_and_the_client_host_is_kept() {
    let proxy = app_proxy().await;

    let request = Request::get("/h")
        .header("host", "App.Test:8443")
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "evil.test")
        .body(empty())
        .unwrap();
    let reply = proxy.client().send(request).await;

    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.echoed_header("x-forwarded-proto").as_deref(),
        Some("http")
    );
    assert_eq!(
        reply.echoed_header("x-forwarded-host").as_deref(),
        Some("App.Test:8443")
    );
    assert_eq!(
        reply.echoed_header("host").as_deref(),
        Some("App.Test:8443")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_is_generated_when_missing_and_seen_by_the_backend() {
    let proxy = app_proxy().await;

    let first = get_with(&proxy, &[]).await;
    let second = get_with(&proxy, &[]).await;

    for reply in [&first, &second] {
        let id = reply.header("x-request-id");
        assert!(is_generated_request_id(id), "not 32 hex digits: {id}");
        assert_eq!(reply.echoed_header("x-request-id").as_deref(), Some(id));
    }
    assert_ne!(first.header("x-request-id"), second.header("x-request-id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_request_id_is_echoed_and_passed_to_the_backend() {
    let proxy = app_proxy().await;

    let reply = get_with(&proxy, &[("X-Request-Id", "client-chosen-id-42")]).await;

    assert_eq!(reply.header("x-request-id"), "client-chosen-id-42");
    assert_eq!(
        reply.echoed_header("x-request-id").as_deref(),
        Some("client-chosen-id-42")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_responses_carry_a_request_id_too() {
    let proxy = app_proxy().await;

    let generated = proxy.client().get("nowhere.test", "/missing").await;
    let request = Request::get("/missing")
        .header("host", "nowhere.test")
        .header("x-request-id", "abc-123")
        .body(empty())
        .unwrap();
    let echoed = proxy.client().send(request).await;

    assert_eq!(generated.status, 404);
    assert!(is_generated_request_id(generated.header("x-request-id")));
    assert_eq!(echoed.status, 404);
    assert_eq!(echoed.header("x-request-id"), "abc-123");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_path_query_and_body_reach_the_backend_unchanged() {
    let proxy = app_proxy().await;

    let request = Request::put("/items/7?mode=full&x=%20y")
        .header("host", "app.test")
        .header("content-type", "text/plain")
        .body(common::full("hello, backend"))
        .unwrap();
    let reply = proxy.client().send(request).await;

    assert_eq!(reply.status, 200);
    let echo = reply.json();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["path"], "/items/7?mode=full&x=%20y");
    assert_eq!(echo["body_len"], 14);
    assert_eq!(echo["headers"]["content-type"], "text/plain");
}
