//! Methods and targets a proxy must not pass on as they are: `CONNECT` (sent on as `CONNECT /`
//! it would ask the backend to open a tunnel), `TRACE` unless the service allows it (the echo
//! shows a request's cookies and headers to whoever reads the answer), and absolute-form
//! targets whose scheme is not `http` or `https` (routed by their host, forwarded as a path).

use crate::common;

use common::{backends, raw_exchange, ConfigYaml, CountingRelay, Proxy, RawReply, ServiceYaml};

const APP: &str = "app.test";

/// A proxy with one open service behind a connection-counting relay; `extra` are settings of
/// the service.
async fn open_app(extra: &[(&str, &str)]) -> (Proxy, CountingRelay) {
    let relay = CountingRelay::start(backends(1).await[0]).await;
    let mut service = ServiceYaml::open("app", APP).backend(relay.addr);
    for (key, value) in extra {
        service = service.set(key, value);
    }
    (
        Proxy::start(&ConfigYaml::new().service(service)).await,
        relay,
    )
}

async fn send(proxy: &Proxy, request_line: &str) -> RawReply {
    raw_exchange(
        proxy.addr,
        &format!("{request_line}\r\nHost: {APP}\r\nConnection: close\r\n\r\n"),
    )
    .await
}

fn assert_method_not_allowed(reply: &RawReply, what: &str) {
    assert_eq!(reply.status, 405, "{what}: {reply:?}");
    assert_eq!(reply.json()["error"], "method_not_allowed", "{what}");
    let allow = reply.header("allow").unwrap_or_default();
    assert!(
        allow.contains("GET") && !allow.contains("CONNECT"),
        "{what}: Allow: {allow}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_a_service_is_405_and_never_forwarded() {
    let (proxy, relay) = open_app(&[]).await;
    for target in [format!("{APP}:443"), format!("{APP}:80")] {
        let reply = send(&proxy, &format!("CONNECT {target} HTTP/1.1")).await;
        assert_method_not_allowed(&reply, &target);
    }
    assert_eq!(relay.connections(), 0, "a CONNECT reached the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_is_405_unless_the_service_allows_it() {
    let (proxy, relay) = open_app(&[]).await;
    assert_method_not_allowed(&send(&proxy, "TRACE / HTTP/1.1").await, "TRACE");
    assert_eq!(relay.connections(), 0, "a TRACE reached the backend");

    let (proxy, relay) = open_app(&[("allow_trace", "true")]).await;
    let reply = send(&proxy, "TRACE /echo HTTP/1.1").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["method"], "TRACE");
    assert_eq!(relay.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absolute_target_with_another_scheme_is_400_and_closes() {
    let (proxy, relay) = open_app(&[]).await;
    for target in [format!("ftp://{APP}/file"), format!("ws://{APP}/socket")] {
        let reply = send(&proxy, &format!("GET {target} HTTP/1.1")).await;
        assert_eq!(reply.status, 400, "{target}: {reply:?}");
        assert_eq!(reply.json()["error"], "bad_request", "{target}");
        assert_eq!(reply.header("connection"), Some("close"), "{target}");
    }
    let plain = send(&proxy, &format!("GET http://{APP}/fine HTTP/1.1")).await;
    assert_eq!(plain.status, 200, "{plain:?}");
    assert_eq!(
        relay.connections(),
        1,
        "only the http:// target was forwarded"
    );
}
