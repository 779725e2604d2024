//! Host → service routing and the control plane for every other host.

use crate::common;

use common::{app_proxy, backends, raw_exchange, ConfigYaml, Proxy, ServiceYaml};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_with_port_and_upper_case_routes_to_the_service() {
    let proxy = app_proxy().await;
    let client = proxy.client();

    for host in ["APP.Test:8080", "app.test", "App.TEST:1", "app.test."] {
        let reply = client.get(host, "/where?x=1").await;
        assert_eq!(reply.status, 200, "{host}");
        assert_eq!(reply.backend(), "b0", "{host}");
        let echo = reply.json();
        assert_eq!(echo["backend"], "b0");
        assert_eq!(echo["method"], "GET");
        assert_eq!(echo["path"], "/where?x=1");
        assert_eq!(echo["headers"]["host"], host, "the client's Host is kept");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_uri_routes_by_its_authority() {
    let proxy = app_proxy().await;

    let reply = raw_exchange(
        proxy.addr,
        "GET http://App.Test:9999/abs?q=2 HTTP/1.1\r\nHost: unknown.test\r\nConnection: close\r\n\r\n",
    )
    .await;

    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("x-backend"), Some("b0"));
    let echo = reply.json();
    assert_eq!(echo["path"], "/abs?q=2");
    // The authority the router matched is the host the backend sees.
    assert_eq!(echo["headers"]["host"], "App.Test:9999");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_uri_for_an_unknown_authority_goes_to_the_control_plane() {
    let proxy = app_proxy().await;

    let reply = raw_exchange(
        proxy.addr,
        "GET http://elsewhere.test/health HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await;

    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("x-backend"), None);
    assert_eq!(reply.json()["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_gets_the_control_plane_404_as_json() {
    let proxy = app_proxy().await;

    let reply = proxy.client().get("other.test", "/anything").await;

    assert_eq!(reply.status, 404);
    assert_eq!(reply.header("content-type"), "application/json");
    assert!(reply.headers.get("x-backend").is_none());
    assert!(!reply.header("x-request-id").is_empty());
    let body = reply.json();
    assert_eq!(body["error"], "not_found");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_200_with_status_ok_and_the_version() {
    let proxy = app_proxy().await;

    let reply = proxy
        .client()
        .get("gatehouse.internal:8080", "/health")
        .await;

    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), "application/json");
    assert!(!reply.header("x-request-id").is_empty());
    assert_eq!(
        reply.json(),
        serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") })
    );
}

/// Every JSON answer Gatehouse writes itself says `nosniff`, so no browser renders an echoed
/// value as HTML.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_json_is_marked_nosniff() {
    let proxy = app_proxy().await;
    let client = proxy.client();
    for (path, status) in [("/health", 200), ("/nowhere", 404), ("/accounts", 401)] {
        let reply = client.get("gatehouse.internal", path).await;
        assert_eq!(reply.status, status, "{path}");
        assert_eq!(reply.header("content-type"), "application/json", "{path}");
        assert_eq!(reply.header("x-content-type-options"), "nosniff", "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_on_a_service_host_is_proxied_not_answered_by_the_control_plane() {
    let proxy = app_proxy().await;

    let reply = proxy.client().get("app.test", "/health").await;

    assert_eq!(reply.status, 200);
    assert_eq!(reply.backend(), "b0");
    assert_eq!(reply.json()["path"], "/health");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_to_health_is_405_as_json() {
    let proxy = app_proxy().await;

    let request = http::Request::post("/health")
        .header("host", "control.test")
        .body(common::full("{}"))
        .unwrap();
    let reply = proxy.client().send(request).await;

    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("content-type"), "application/json");
    assert_eq!(reply.json()["error"], "method_not_allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_status_and_body_pass_through_unchanged() {
    let proxy = app_proxy().await;

    let reply = proxy.client().get("app.test", "/status/418").await;

    assert_eq!(reply.status, 418);
    assert_eq!(reply.backend(), "b0");
    assert_eq!(reply.header("content-type"), "application/json");
    assert_eq!(reply.json()["path"], "/status/418");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_host_of_a_service_routes_to_it() {
    let addrs = backends(2).await;
    let config = ConfigYaml::new()
        .service(
            ServiceYaml::open("one", "one.test")
                .host("uno.test")
                .backend(addrs[0]),
        )
        .service(ServiceYaml::open("two", "two.test").backend(addrs[1]));
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();

    assert_eq!(client.get("one.test", "/").await.backend(), "b0");
    assert_eq!(client.get("UNO.test:80", "/").await.backend(), "b0");
    assert_eq!(client.get("two.test", "/").await.backend(), "b1");
    assert_eq!(client.get("three.test", "/").await.status, 404);
}
