//! Connection-level behaviour: HTTP/2 prior knowledge, the header-read timeout and the
//! connection cap.

use crate::common;

use std::time::{Duration, Instant};

use common::{
    backends, empty, full, raw_exchange, read_until_closed, Client, ConfigYaml, Proxy, ServiceYaml,
};
use http::{Request, Version};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_prior_knowledge_request_is_proxied_to_an_open_service() {
    let addrs = backends(1).await;
    // An h2 client sends its target as `:authority` (here the proxy's own address), so the
    // service claims the loopback address.
    let config = ConfigYaml::new().service(ServiceYaml::open("app", "127.0.0.1").backends(&addrs));
    let proxy = Proxy::start(&config).await;
    let client = Client::http2(proxy.addr);

    let get = client
        .send(Request::get("/h2?x=1").body(empty()).unwrap())
        .await;
    let post = client
        .send(Request::post("/h2/upload").body(full("hello h2")).unwrap())
        .await;

    assert_eq!(get.status, 200);
    assert_eq!(get.version, Version::HTTP_2);
    assert_eq!(get.backend(), "b0");
    assert!(!get.header("x-request-id").is_empty());
    let echo = get.json();
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], "/h2?x=1");
    assert_eq!(echo["headers"]["host"], proxy.addr.to_string());
    assert_eq!(echo["headers"]["x-forwarded-proto"], "http");
    assert_eq!(echo["headers"]["x-forwarded-for"], "127.0.0.1");

    assert_eq!(post.status, 200);
    assert_eq!(post.version, Version::HTTP_2);
    assert_eq!(post.json()["body_len"], 8);
}

/// An open service `app.test` on `addrs` with a 1 s header-read timeout (also for
/// `http1_server.rs`).
pub(crate) fn timeout_config(addrs: &[std::net::SocketAddr]) -> ConfigYaml {
    ConfigYaml::new()
        .limit("header_read_timeout", "1s")
        .service(ServiceYaml::open("app", "app.test").backends(addrs))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stalling_mid_headers_is_disconnected_while_others_are_served() {
    let addrs = backends(1).await;
    let proxy = Proxy::start(&timeout_config(&addrs)).await;

    let started = Instant::now();
    let mut stalled = TcpStream::connect(proxy.addr).await.unwrap();
    stalled
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let watcher =
        tokio::spawn(async move { read_until_closed(&mut stalled, Duration::from_secs(3)).await });

    tokio::time::sleep(Duration::from_millis(300)).await;
    let served = raw_exchange(
        proxy.addr,
        "GET /fine HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(served.status, 200);
    assert_eq!(served.json()["path"], "/fine");

    let closed = watcher.await.unwrap();
    let elapsed = started.elapsed();
    let received = closed.expect("the stalled connection is still open after 3 s");
    assert!(
        elapsed >= Duration::from_millis(900),
        "closed after {elapsed:?}"
    );
    // Whatever was sent before closing, it was not a successful response.
    assert!(
        !String::from_utf8_lossy(&received).contains(" 200 "),
        "{received:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_nothing_is_disconnected_after_the_header_read_timeout() {
    let addrs = backends(1).await;
    let proxy = Proxy::start(&timeout_config(&addrs)).await;

    let started = Instant::now();
    let mut silent = TcpStream::connect(proxy.addr).await.unwrap();
    let closed = read_until_closed(&mut silent, Duration::from_secs(3)).await;

    assert!(
        closed.is_some(),
        "a connection that sent no bytes is still open after {:?} (header_read_timeout 1s)",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stalling_inside_the_http2_preface_is_disconnected_after_the_header_read_timeout()
{
    let addrs = backends(1).await;
    let proxy = Proxy::start(&timeout_config(&addrs)).await;

    let started = Instant::now();
    let mut stalled = TcpStream::connect(proxy.addr).await.unwrap();
    stalled.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let closed = read_until_closed(&mut stalled, Duration::from_secs(3)).await;

    assert!(
        closed.is_some(),
        "a connection stalled in the h2 preface is still open after {:?} (header_read_timeout 1s)",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_beyond_max_connections_wait_until_a_slot_frees() {
    let addrs = backends(1).await;
    let config = ConfigYaml::new()
        .limit("max_connections", "1")
        .service(ServiceYaml::open("app", "app.test").backends(&addrs));
    let proxy = Proxy::start(&config).await;

    // The first connection holds the only slot, mid-request.
    let mut holder = TcpStream::connect(proxy.addr).await.unwrap();
    holder
        .write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let waiting = tokio::spawn(raw_exchange(
        proxy.addr,
        "GET /second HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "a second client was served while max_connections is 1"
    );

    drop(holder);
    let reply = tokio::time::timeout(Duration::from_secs(3), waiting)
        .await
        .expect("the waiting client is served once the slot frees")
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["path"], "/second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connections_serve_many_requests() {
    let addrs = backends(1).await;
    let proxy = Proxy::start(
        &ConfigYaml::new().service(ServiceYaml::open("app", "app.test").backends(&addrs)),
    )
    .await;
    let client = proxy.client();

    for i in 0..20 {
        let reply = client.get("app.test", &format!("/k/{i}")).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["path"], format!("/k/{i}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_in_process_proxy_drains_and_returns_ok() {
    let addrs = backends(1).await;
    let config = ConfigYaml::new()
        .limit("shutdown_timeout", "5s")
        .service(ServiceYaml::open("app", "app.test").backends(&addrs));
    let proxy = Proxy::start(&config).await;
    let addr = proxy.addr;
    let client = proxy.client();

    let in_flight = tokio::spawn(async move { client.get("app.test", "/slow/1").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    proxy.stop().await.expect("run returns Ok");

    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["path"], "/slow/1");
    assert!(started.elapsed() < Duration::from_secs(3));
    let refused = TcpStream::connect(addr).await;
    assert!(
        refused.is_err(),
        "the listener is still open after run returned"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_workers_serve_concurrent_clients_and_all_drain_on_stop() {
    let addrs = backends(2).await;
    let config = ConfigYaml::new()
        .workers(3)
        .limit("shutdown_timeout", "5s")
        .service(ServiceYaml::open("app", "app.test").backends(&addrs));
    let proxy = Proxy::start(&config).await;

    // Separate clients, so connections land on whichever worker accepts them.
    let mut tasks = Vec::new();
    for i in 0..24 {
        let client = Client::http1(proxy.addr);
        tasks.push(tokio::spawn(async move {
            let reply = client.get("app.test", &format!("/c{i}")).await;
            (
                reply.status,
                reply.json()["path"].as_str().map(str::to_string),
            )
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let (status, path) = task.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(path.as_deref(), Some(format!("/c{i}").as_str()));
    }

    let slow: Vec<_> = (0..3)
        .map(|_| {
            let client = Client::http1(proxy.addr);
            tokio::spawn(async move { client.get("app.test", "/slow/1").await.status })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let addr = proxy.addr;
    proxy
        .stop()
        .await
        .expect("every worker drains and returns Ok");
    for task in slow {
        assert_eq!(task.await.unwrap(), 200, "an in-flight request was cut off");
    }
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "a worker still listens"
    );
}
