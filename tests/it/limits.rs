//! Request limits of the server layer: header bytes and count (431), request-target length
//! (414, JSON), and the HTTP/2 SETTINGS that bound streams and header lists. The header-read
//! timeout is tested in `connections.rs` (cleartext) and `tls.rs` (handshake).

use crate::common;

use std::time::Duration;

use common::{
    backends, empty, h2, send_raw, Client, ConfigYaml, CountingRelay, Proxy, ServiceYaml,
};
use http::{Request, Version};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const HOST: &str = "app.test";

async fn proxy_with(limits: &[(&str, &str)]) -> (Proxy, CountingRelay) {
    let backend = backends(1).await[0];
    let relay = CountingRelay::start(backend).await;
    let mut config = ConfigYaml::new()
        .service(ServiceYaml::open("app", HOST).backend(relay.addr))
        // HTTP/2 clients name the target in `:authority`; tests use the proxy's address.
        .service(ServiceYaml::open("loopback", "127.0.0.1").backend(relay.addr));
    for (key, value) in limits {
        config = config.limit(key, value);
    }
    (Proxy::start(&config).await, relay)
}

fn request_with(target: &str, extra_headers: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: {HOST}\r\n{extra_headers}Connection: close\r\n\r\n")
        .into_bytes()
}

fn headers(count: usize) -> String {
    (0..count)
        .map(|i| format!("X-Header-{i}: {i}\r\n"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_70_kib_header_is_answered_431() {
    let (proxy, relay) = proxy_with(&[]).await;
    let big = format!("X-Big: {}\r\n", "a".repeat(70 * 1024));

    let reply = send_raw(proxy.addr, &request_with("/", &big)).await;

    assert_eq!(reply.status, 431, "{reply:?}");
    assert_eq!(relay.connections(), 0, "the backend was contacted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_just_under_64_kib_are_served() {
    let (proxy, _relay) = proxy_with(&[]).await;
    let big = format!("X-Big: {}\r\n", "a".repeat(60 * 1024));

    let reply = send_raw(proxy.addr, &request_with("/", &big)).await;

    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.json()["headers"]["x-big"].as_str().map(str::len),
        Some(60 * 1024)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hundred_and_fifty_headers_are_answered_431() {
    let (proxy, relay) = proxy_with(&[]).await;

    let reply = send_raw(proxy.addr, &request_with("/", &headers(150))).await;

    assert_eq!(reply.status, 431, "{reply:?}");
    assert_eq!(relay.connections(), 0, "the backend was contacted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ninety_headers_are_served() {
    let (proxy, _relay) = proxy_with(&[]).await;

    let reply = send_raw(proxy.addr, &request_with("/", &headers(90))).await;

    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["headers"]["x-header-89"], "89");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_9_kib_uri_is_answered_414_with_a_json_error() {
    let (proxy, relay) = proxy_with(&[]).await;
    let target = format!("/long?q={}", "x".repeat(9 * 1024));

    let reply = send_raw(
        proxy.addr,
        &request_with(&target, "X-Request-Id: mine-414\r\n"),
    )
    .await;

    assert_eq!(reply.status, 414, "{reply:?}");
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body = reply.json();
    assert_eq!(body["error"], "uri_too_long");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(reply.header("x-request-id"), Some("mine-414"));
    assert_eq!(relay.connections(), 0, "the backend was contacted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_7_kib_uri_is_served() {
    let (proxy, _relay) = proxy_with(&[]).await;
    let target = format!("/long?q={}", "x".repeat(7 * 1024));

    let reply = send_raw(proxy.addr, &request_with(&target, "")).await;

    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["path"], target);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_limits_replace_the_defaults() {
    let (proxy, _relay) = proxy_with(&[
        ("max_uri_bytes", "1KiB"),
        ("max_headers", "10"),
        ("max_header_bytes", "16KiB"),
    ])
    .await;
    let uri = format!("/q?{}", "x".repeat(2 * 1024));
    let big = format!("X-Big: {}\r\n", "a".repeat(20 * 1024));

    let long_uri = send_raw(proxy.addr, &request_with(&uri, "")).await;
    let many = send_raw(proxy.addr, &request_with("/", &headers(12))).await;
    let large = send_raw(proxy.addr, &request_with("/", &big)).await;
    let fine = send_raw(proxy.addr, &request_with("/fine", &headers(5))).await;

    assert_eq!(long_uri.status, 414, "{long_uri:?}");
    assert_eq!(long_uri.json()["error"], "uri_too_long");
    assert_eq!(many.status, 431, "{many:?}");
    assert_eq!(large.status, 431, "{large:?}");
    assert_eq!(fine.status, 200, "{fine:?}");
}

// ---------------------------------------------------------------------------------------------
// HTTP/2

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_over_the_limits_get_the_same_statuses() {
    let (proxy, relay) = proxy_with(&[]).await;
    let client = Client::http2(proxy.addr);
    let long_uri = Request::get(format!("/long?q={}", "x".repeat(9 * 1024)))
        .body(empty())
        .unwrap();
    let mut many = Request::get("/many");
    for i in 0..150 {
        many = many.header(format!("x-header-{i}"), i.to_string());
    }
    let big = Request::get("/big")
        .header("x-big", "a".repeat(70 * 1024))
        .body(empty())
        .unwrap();

    let long_uri = client.send(long_uri).await;
    let many = client.send(many.body(empty()).unwrap()).await;
    let big = client.send(big).await;
    let contacted = relay.connections();
    let fine = client
        .send(Request::get("/fine").body(empty()).unwrap())
        .await;

    assert_eq!(long_uri.version, Version::HTTP_2);
    assert_eq!(long_uri.status, 414);
    assert_eq!(long_uri.json()["error"], "uri_too_long");
    assert_eq!(many.status, 431);
    assert_eq!(many.json()["error"], "request_header_fields_too_large");
    assert_eq!(big.status, 431);
    assert_eq!(contacted, 0, "the backend was contacted");
    assert_eq!(fine.status, 200);
}

/// Sends the client preface and an empty SETTINGS, and returns the server's SETTINGS
/// parameters (after acknowledging them).
async fn handshake(stream: &mut TcpStream) -> Vec<(u16, u32)> {
    stream.write_all(&h2::opening()).await.unwrap();
    loop {
        let frame = h2::read(stream).await.expect("a frame");
        if frame.kind == h2::SETTINGS && frame.flags & h2::ACK == 0 {
            h2::write(stream, h2::SETTINGS, h2::ACK, 0, &[]).await;
            return frame
                .payload
                .chunks_exact(6)
                .map(|p| {
                    let id = u16::from_be_bytes([p[0], p[1]]);
                    (id, u32::from_be_bytes([p[2], p[3], p[4], p[5]]))
                })
                .collect();
        }
    }
}

fn setting(settings: &[(u16, u32)], id: u16) -> Option<u32> {
    settings
        .iter()
        .rev()
        .find(|(i, _)| *i == id)
        .map(|(_, v)| *v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_settings_advertise_the_default_stream_and_header_list_limits() {
    let (proxy, _relay) = proxy_with(&[]).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();

    let settings = handshake(&mut stream).await;

    assert_eq!(
        setting(&settings, h2::MAX_CONCURRENT_STREAMS),
        Some(200),
        "{settings:?}"
    );
    assert_eq!(
        setting(&settings, h2::MAX_HEADER_LIST_SIZE),
        Some(64 * 1024),
        "{settings:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_beyond_max_concurrent_streams_are_refused() {
    let (proxy, _relay) = proxy_with(&[("h2_max_concurrent_streams", "2")]).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let settings = handshake(&mut stream).await;
    assert_eq!(
        setting(&settings, h2::MAX_CONCURRENT_STREAMS),
        Some(2),
        "{settings:?}"
    );
    // The server applies its limit once the client acknowledges it: the ACK written by
    // `handshake` precedes these frames on the wire, so the limit is in force for them.

    let flags = h2::END_STREAM | h2::END_HEADERS;
    for id in [1, 3, 5] {
        h2::write(&mut stream, h2::HEADERS, flags, id, &h2::get("/slow/1")).await;
    }

    let mut refused = None;
    let mut answered = Vec::new();
    let collect = async {
        while answered.len() < 2 {
            let frame = h2::read(&mut stream).await.expect("a frame");
            match frame.kind {
                h2::RST_STREAM => {
                    let code = u32::from_be_bytes(frame.payload[..4].try_into().unwrap());
                    refused = Some((frame.stream, code));
                }
                h2::HEADERS => answered.push(frame.stream),
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), collect)
        .await
        .expect("both admitted streams are answered");

    assert_eq!(refused, Some((5, h2::REFUSED_STREAM)));
    answered.sort_unstable();
    assert_eq!(answered, [1, 3]);
}
