//! Malformed HTTP/1.1 framing is refused with 400 before it can reach a backend: a request the
//! proxy and a backend could frame differently is never forwarded.

use crate::common;

use std::time::Duration;

use common::{backends, parse_raw, raw_exchange, ConfigYaml, CountingRelay, Proxy, ServiceYaml};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The proxy over one backend behind a counting relay.
async fn proxy_with_relay() -> (Proxy, CountingRelay) {
    let backend = backends(1).await[0];
    let relay = CountingRelay::start(backend).await;
    let config =
        ConfigYaml::new().service(ServiceYaml::open("app", "app.test").backend(relay.addr));
    (Proxy::start(&config).await, relay)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_different_content_lengths_are_rejected_with_400() {
    let (proxy, relay) = proxy_with_relay().await;

    let reply = raw_exchange(
        proxy.addr,
        "POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\nContent-Length: 5\r\n\
         Connection: close\r\n\r\nabcde",
    )
    .await;

    assert_eq!(reply.status, 400, "{reply:?}");
    assert_eq!(relay.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_obs_fold_header_is_rejected_with_400() {
    let (proxy, relay) = proxy_with_relay().await;

    let reply = raw_exchange(
        proxy.addr,
        "GET / HTTP/1.1\r\nHost: app.test\r\nX-Folded: one\r\n two\r\nConnection: close\r\n\r\n",
    )
    .await;

    assert_eq!(reply.status, 400, "{reply:?}");
    assert_eq!(relay.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_encoding_other_than_a_final_chunked_is_rejected_with_400() {
    let (proxy, relay) = proxy_with_relay().await;

    let reply = raw_exchange(
        proxy.addr,
        "POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked, gzip\r\n\
         Connection: close\r\n\r\n0\r\n\r\n",
    )
    .await;

    assert_eq!(reply.status, 400, "{reply:?}");
    assert_eq!(relay.connections(), 0);
}

/// The body is forwarded as it streams, so the bad chunk size surfaces while the upstream request
/// is under way; it is still the client's fault and must not be reported as a backend failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_chunking_is_answered_with_400() {
    let (proxy, _relay) = proxy_with_relay().await;

    let reply = raw_exchange(
        proxy.addr,
        "POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    )
    .await;

    assert_eq!(reply.status, 400, "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_is_forwarded_whole() {
    let (proxy, _relay) = proxy_with_relay().await;

    let reply = raw_exchange(
        proxy.addr,
        "POST /chunks HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await;

    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["body_len"], 11);
}

/// RFC 9112 §6.1: with both headers, either refuse, or frame by `Transfer-Encoding` and close the
/// connection after the response so a smuggled second request is never read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_is_refused_or_framed_by_chunked_then_closed() {
    let (proxy, _relay) = proxy_with_relay().await;

    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(
            b"POST /first HTTP/1.1\r\nHost: app.test\r\nContent-Length: 4\r\n\
              Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
              GET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n",
        )
        .await
        .unwrap();
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut bytes)).await;

    assert!(
        read.is_ok(),
        "the connection stayed open after a CL+TE request: {:?}",
        String::from_utf8_lossy(&bytes)
    );
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains("/smuggled"), "{text}");
    let first = parse_raw(&bytes);
    if first.status != 400 {
        assert_eq!(first.status, 200, "{text}");
        assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
    }
}
