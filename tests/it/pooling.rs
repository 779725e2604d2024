//! The upstream keep-alive pool: connections are reused, and a backend that closes idle
//! connections costs no failed request.

use crate::common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{backends, read_head, ConfigYaml, CountingRelay, Proxy, ServiceYaml};
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
                if read_head(&mut stream).await.is_none() {
                    return;
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

/// What [`early_answering_backend`] saw: connections accepted, requests answered, and request
/// body bytes received after the answers.
#[derive(Default)]
struct EarlyStats {
    connections: AtomicUsize,
    answered: AtomicUsize,
    body_bytes: AtomicUsize,
}

/// Answers every request as soon as its head is in, before reading its body (as nginx's
/// `return 200` does), then reads and drops the body (its `Content-Length`) and serves the
/// connection's next request, as a keep-alive HTTP/1.1 server does.
async fn early_answering_backend() -> (SocketAddr, Arc<EarlyStats>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(EarlyStats::default());
    let seen = Arc::clone(&stats);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            seen.connections.fetch_add(1, Ordering::SeqCst);
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let mut received = Vec::new();
                let mut buf = [0u8; 16 * 1024];
                loop {
                    let end = loop {
                        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                            break end + 4;
                        }
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => received.extend_from_slice(&buf[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&received[..end]).to_lowercase();
                    let mut length: usize = head
                        .lines()
                        .find_map(|line| line.strip_prefix("content-length: "))
                        .and_then(|n| n.trim().parse().ok())
                        .unwrap_or(0);
                    received.drain(..end);
                    let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nearly";
                    if stream.write_all(reply).await.is_err() {
                        return;
                    }
                    seen.answered.fetch_add(1, Ordering::SeqCst);
                    while length > 0 {
                        if received.is_empty() {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => received.extend_from_slice(&buf[..n]),
                            }
                        }
                        let taken = received.len().min(length);
                        received.drain(..taken);
                        length -= taken;
                        seen.body_bytes.fetch_add(taken, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    (addr, stats)
}

/// Reads one response with a `content-length` from `stream`; returns its head and body.
async fn read_response(stream: &mut tokio::net::TcpStream) -> (String, String) {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length: "))
                .and_then(|n| n.trim().parse().ok())
                .expect("a content-length");
            if received.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&received[end + 4..end + 4 + length]);
                return (head, body.into_owned());
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("a response within 5 s")
            .expect("read");
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&buf[..n]);
    }
}

/// A proxy with one open service, one worker, over an [`early_answering_backend`].
async fn early_proxy() -> (Proxy, Arc<EarlyStats>) {
    let (backend, stats) = early_answering_backend().await;
    let config = ConfigYaml::new()
        .workers(1)
        .service(ServiceYaml::open("app", "app.test").backend(backend));
    (Proxy::start(&config).await, stats)
}

/// Sends a POST's head and the first 1 KiB of `body`, and reads the backend's early answer;
/// the caller sends the rest.
async fn answered_early(stream: &mut tokio::net::TcpStream, body: &[u8]) {
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..1024]).await.unwrap();
    // The answer comes while most of the body is still to be sent.
    let (status, text) = read_response(stream).await;
    assert!(status.starts_with("http/1.1 200"), "{status}");
    assert_eq!(text, "early");
}

/// A GET on `stream`, answered by the early-answering backend.
async fn next_get(stream: &mut tokio::net::TcpStream) {
    stream
        .write_all(b"GET /next HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    let (status, text) = read_response(stream).await;
    assert!(status.starts_with("http/1.1 200"), "{status}");
    assert_eq!(text, "early");
}

/// A backend that answers before it has the request body ends that upstream exchange, but the
/// client's connection stays usable: the rest of its body is read and dropped, as nginx does,
/// and its next request is served on the same connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_the_backend_answered_early_is_discarded_and_the_client_connection_kept() {
    let (proxy, _) = early_proxy().await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let body = vec![b'x'; 256 * 1024];
    answered_early(&mut stream, &body).await;
    stream.write_all(&body[1024..]).await.unwrap();
    next_get(&mut stream).await;
}

/// A backend that answers before it has the body, and keeps the connection, reads and drops the
/// rest: the rest is sent to it after the answer, and the connection serves the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_answering_before_the_body_keeps_its_connection() {
    let (proxy, stats) = early_proxy().await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let body = vec![b'x'; 64 * 1024];
    for _ in 0..3 {
        answered_early(&mut stream, &body).await;
        stream.write_all(&body[1024..]).await.unwrap();
        // The rest reaches the backend before the connection is parked for the next request.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    next_get(&mut stream).await;
    assert_eq!(stats.answered.load(Ordering::SeqCst), 4);
    assert_eq!(stats.body_bytes.load(Ordering::SeqCst), 3 * body.len());
    assert_eq!(
        stats.connections.load(Ordering::SeqCst),
        1,
        "an early answer cost a new backend connection"
    );
}

/// More than 1 MiB still to send when the backend answers: the rest is not sent, and that
/// backend connection is closed rather than reused (the client's connection too: its rest is
/// more than the proxy reads and drops).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_rest_after_an_early_answer_is_not_sent() {
    let (proxy, stats) = early_proxy().await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let body = vec![b'x'; 2 * 1024 * 1024];
    answered_early(&mut stream, &body).await;
    // The proxy stops reading somewhere in the rest; the write may fail then.
    let _ = stream.write_all(&body[1024..]).await;
    drop(stream);

    let reply = proxy.client().get("app.test", "/next").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "early");
    assert!(stats.body_bytes.load(Ordering::SeqCst) < body.len());
    assert_eq!(stats.connections.load(Ordering::SeqCst), 2);
}
