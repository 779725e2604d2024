//! Slow request bodies against the real proxy: the minimum body rate (`limits.min_body_rate`)
//! on proxied and control-plane bodies, not charging the client for a backend's back-pressure,
//! and `request_buffering`, which reads a body before any backend connection is taken.

use crate::common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{backends, parse_raw, ConfigYaml, Proxy, RawReply, ServiceYaml};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// 100 B/s after 1 s of waiting: a byte every 300 ms is far below it, 50 bytes every 100 ms
/// far above it.
const RATE: &str = "{bytes_per_second: 100, grace: 1s}";

/// Sends `head` and then `body` in `parts` pieces, `pause` apart, on one connection, while
/// reading whatever comes back; returns the reply once the proxy closes the connection, and
/// when it arrived.
async fn trickle(
    addr: SocketAddr,
    head: &str,
    body: &[u8],
    parts: usize,
    pause: Duration,
) -> (RawReply, Duration) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let head = head.as_bytes().to_vec();
    let pieces: Vec<Vec<u8>> = body
        .chunks(body.len().div_ceil(parts))
        .map(<[u8]>::to_vec)
        .collect();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        write.write_all(&head).await.unwrap();
        for piece in pieces {
            tokio::time::sleep(pause).await;
            if write.write_all(&piece).await.is_err() {
                return;
            }
        }
        // Keep the write side open: a half-close is not what a slow client does.
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(write);
    });
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    writer.abort();
    assert!(
        closed.is_ok(),
        "the connection was not closed within 15 s: {:?}",
        String::from_utf8_lossy(&received)
    );
    (parse_raw(&received), started.elapsed())
}

fn post(host: &str, path: &str, length: usize, extra: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {length}\r\n{extra}Connection: close\r\n\r\n")
}

fn assert_too_slow(reply: &RawReply) {
    assert_eq!(reply.status, 408, "{reply:?}");
    let body = reply.json();
    assert_eq!(body["error"], "request_timeout", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("100 bytes per second"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxied_body_below_the_minimum_rate_is_answered_408_and_closed() {
    let backend = backends(1).await[0];
    let config = ConfigYaml::new()
        .limit("min_body_rate", RATE)
        .service(ServiceYaml::open("up", "up.test").backend(backend));
    let proxy = Proxy::start(&config).await;
    // A byte every 300 ms: always inside the 30 s pause limit, never near 100 B/s.
    let head = post("up.test", "/upload", 100, "");
    let (reply, took) = trickle(
        proxy.addr,
        &head,
        &[b'x'; 100],
        100,
        Duration::from_millis(300),
    )
    .await;
    assert_too_slow(&reply);
    // Cut off once 1 s has been spent waiting (a byte per 300 ms earns 10 ms each).
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "answered after {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sent_fast_enough_passes_at_the_same_settings() {
    let backend = backends(1).await[0];
    let config = ConfigYaml::new()
        .limit("min_body_rate", RATE)
        .service(ServiceYaml::open("up", "up.test").backend(backend));
    let proxy = Proxy::start(&config).await;
    // 50 bytes every 100 ms (500 B/s) for 2 s: well past the grace, five times the minimum.
    let head = post("up.test", "/upload", 1000, "");
    let (reply, _) = trickle(
        proxy.addr,
        &head,
        &[b'x'; 1000],
        20,
        Duration::from_millis(100),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["body_len"], 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_body_below_the_minimum_rate_is_answered_408() {
    let proxy = Proxy::start(&ConfigYaml::new().limit("min_body_rate", RATE)).await;
    let body = br#"{"email":"slow@example.com","password":"correct horse battery"}"#;
    let head = post(
        "localhost",
        "/login",
        body.len(),
        "Content-Type: application/json\r\n",
    );
    let (reply, took) = trickle(
        proxy.addr,
        &head,
        body,
        body.len(),
        Duration::from_millis(300),
    )
    .await;
    assert_too_slow(&reply);
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
}

/// A backend that reads the request head, then nothing for `pause` (its socket fills, the
/// proxy stops reading the client), then the whole body; it answers with the body's length.
async fn pausing_backend(pause: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                tokio::time::sleep(pause).await;
                let mut body = vec![0u8; length];
                if stream.read_exact(&mut body).await.is_err() {
                    return;
                }
                let text = length.to_string();
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
    addr
}

/// The client sends 4 MiB in 64 KiB pieces 10 ms apart (about 6 MiB/s while it is waited for),
/// and a minimum of 2 MiB/s is set; the backend stops reading for 3 s meanwhile, so the proxy
/// stops reading the client. Counted over wall time, the client would fall below the minimum
/// (4 MiB in over 3 s); counted over the time spent waiting on it, it is well above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_stops_reading_does_not_make_a_fast_client_too_slow() {
    let backend = pausing_backend(Duration::from_secs(3)).await;
    let config = ConfigYaml::new()
        .limit("min_body_rate", "{bytes_per_second: 2097152, grace: 1s}")
        .service(ServiceYaml::open("up", "up.test").backend(backend));
    let proxy = Proxy::start(&config).await;
    let length = 4 << 20;
    let head = post("up.test", "/upload", length, "");
    let (reply, took) = trickle(
        proxy.addr,
        &head,
        &vec![b'x'; length],
        64,
        Duration::from_millis(10),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, length.to_string().as_bytes());
    assert!(took >= Duration::from_secs(3), "{took:?}");
}

/// A backend that records how many connections it accepted and sends each request body it
/// receives to a channel, answering 200.
struct RecordingBackend {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    bodies: mpsc::UnboundedReceiver<Bytes>,
}

impl RecordingBackend {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let (send, bodies) = mpsc::unbounded_channel();
        let counter = Arc::clone(&connections);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let send = send.clone();
                let service = hyper::service::service_fn(
                    move |request: http::Request<hyper::body::Incoming>| {
                        let send = send.clone();
                        async move {
                            let body = request.into_body().collect().await?.to_bytes();
                            let _ = send.send(body);
                            Ok::<_, hyper::Error>(http::Response::new(Full::new(
                                Bytes::from_static(b"stored"),
                            )))
                        }
                    },
                );
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        RecordingBackend {
            addr,
            connections,
            bodies,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A body of `len` bytes in which every position differs from its neighbours, so a lost,
/// repeated or reordered piece shows.
fn patterned(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buffered_body_is_read_whole_before_a_backend_connection_is_opened() {
    let mut backend = RecordingBackend::start().await;
    let service = ServiceYaml::open("up", "up.test")
        .backend(backend.addr)
        .set("request_buffering", "64KiB");
    let proxy = Proxy::start(&ConfigYaml::new().service(service)).await;
    let body = patterned(3000);
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    write
        .write_all(post("up.test", "/upload", body.len(), "").as_bytes())
        .await
        .unwrap();
    for piece in body[..2000].chunks(500) {
        write.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            backend.connections(),
            0,
            "a backend connection was opened before the body was in"
        );
    }
    write.write_all(&body[2000..]).await.unwrap();
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut received))
        .await
        .unwrap()
        .unwrap();
    let reply = parse_raw(&received);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(backend.connections(), 1);
    assert_eq!(backend.bodies.recv().await.unwrap(), body);
}

/// With a 1 KiB buffer, a 100 KiB chunked body: nothing reaches a backend until the first
/// kilobyte is in, then the rest streams, and the backend gets every byte in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_larger_than_the_buffer_streams_on_after_the_part_read_ahead() {
    let mut backend = RecordingBackend::start().await;
    let service = ServiceYaml::open("up", "up.test")
        .backend(backend.addr)
        .set("request_buffering", "1KiB");
    let proxy = Proxy::start(&ConfigYaml::new().service(service)).await;
    let body = patterned(100 * 1024);
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let head = "POST /upload HTTP/1.1\r\nHost: up.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    write.write_all(head.as_bytes()).await.unwrap();
    let chunk = |piece: &[u8]| {
        let mut framed = format!("{:x}\r\n", piece.len()).into_bytes();
        framed.extend_from_slice(piece);
        framed.extend_from_slice(b"\r\n");
        framed
    };
    write.write_all(&chunk(&body[..600])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        backend.connections(),
        0,
        "connected before the buffer was full"
    );
    write.write_all(&chunk(&body[600..1200])).await.unwrap();
    let connected =
        common::holds_within(Duration::from_secs(5), async || backend.connections() == 1).await;
    assert!(connected, "no backend connection once the buffer was full");
    for piece in body[1200..].chunks(8 * 1024) {
        write.write_all(&chunk(piece)).await.unwrap();
    }
    write.write_all(b"0\r\n\r\n").await.unwrap();
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut received))
        .await
        .unwrap()
        .unwrap();
    let reply = parse_raw(&received);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(backend.bodies.recv().await.unwrap(), body);
}

/// A buffered body that stalls is answered 408 from the buffer, and no backend is contacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buffered_body_below_the_minimum_rate_never_reaches_a_backend() {
    let backend = RecordingBackend::start().await;
    let service = ServiceYaml::open("up", "up.test")
        .backend(backend.addr)
        .set("request_buffering", "64KiB");
    let proxy = Proxy::start(
        &ConfigYaml::new()
            .limit("min_body_rate", RATE)
            .service(service),
    )
    .await;
    let head = post("up.test", "/upload", 100, "");
    let (reply, _) = trickle(
        proxy.addr,
        &head,
        &[b'x'; 100],
        100,
        Duration::from_millis(300),
    )
    .await;
    assert_too_slow(&reply);
    assert_eq!(backend.connections(), 0);
}
