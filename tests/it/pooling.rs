//! The upstream keep-alive pool: connections are reused, and a backend that closes idle
//! connections costs no failed request.

use crate::common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{backends, ConfigYaml, CountingRelay, Proxy, ServiceYaml};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_requests_reuse_one_upstream_connection() {
    let relay = CountingRelay::start(backends(1).await[0]).await;
    let config = ConfigYaml::new()
        .workers(1)
        .service(ServiceYaml::open("app", "app.test").backend(relay.addr));
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();

    for i in 0..20 {
        let reply = client.get("app.test", &format!("/seq/{i}")).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["path"], format!("/seq/{i}"));
    }
    assert_eq!(
        relay.connections(),
        1,
        "each request opened its own connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_open_connections_that_later_rounds_reuse() {
    let relay = CountingRelay::start(backends(1).await[0]).await;
    let config = ConfigYaml::new()
        .workers(1)
        .service(ServiceYaml::open("app", "app.test").backend(relay.addr));
    let proxy = Proxy::start(&config).await;

    for round in 0..4 {
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let client = common::Client::http1(proxy.addr);
                tokio::spawn(async move {
                    client
                        .get("app.test", &format!("/r{round}/{i}/slow/0"))
                        .await
                        .status
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), 200);
        }
    }
    let opened = relay.connections();
    assert!(
        (1..=12).contains(&opened),
        "32 requests in rounds of 8 opened {opened} connections"
    );
}

/// Answers each connection's first request, then closes it, as a backend with a short
/// keep-alive timeout does; counts the requests it answered.
async fn closing_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answered = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&answered);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                if stream.write_all(reply).await.is_ok() {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, answered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_closing_idle_connections_costs_no_failed_request() {
    let (backend, answered) = closing_backend().await;
    let config = ConfigYaml::new()
        .workers(1)
        .service(ServiceYaml::open("app", "app.test").backend(backend));
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();

    for _ in 0..5 {
        let reply = client.get("app.test", "/").await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        assert_eq!(reply.body, "ok");
        // Long enough for the proxy to see the backend's close before the next request.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answered.load(Ordering::SeqCst), 5);
}
