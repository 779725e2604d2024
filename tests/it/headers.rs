//! What the backend sees of the client's headers, and what the client gets back.

use crate::common;

use common::{app_proxy, empty, is_generated_request_id, raw_exchange, Proxy, Reply};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_appends_the_peer_to_the_client_chain() {
    let proxy = app_proxy().await;

    let chained = get_with(&proxy, &[("X-Forwarded-For", "1.2.3.4")]).await;
    let fresh = get_with(&proxy, &[]).await;

    assert_eq!(
        chained.echoed_header("x-forwarded-for").as_deref(),
        Some("1.2.3.4, 127.0.0.1")
    );
    assert_eq!(
        fresh.echoed_header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
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
