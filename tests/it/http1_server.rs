//! Cleartext HTTP/1.1 on one kept-alive connection: Gatehouse's own server answers requests
//! without a body or with a small `Content-Length` body that arrives with its head, and hands
//! the connection to hyper at the first one it does not take (here: a chunked body, or a body
//! that comes after its head), so these tests mix both kinds, in separate writes, pipelined in
//! one write, and split into single bytes, and check that every answer arrives complete and in
//! order.

use crate::common;

use std::time::Duration;

use common::{backends, parse_raw, ConfigYaml, Proxy, RawReply, ServiceYaml};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn proxy() -> Proxy {
    let addrs = backends(1).await;
    Proxy::start(&ConfigYaml::new().service(ServiceYaml::open("app", "app.test").backends(&addrs)))
        .await
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n\r\n")
}

fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: app.test\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn post_chunked(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    )
}

/// Reads one response from a connection that stays open: its head, then as many body bytes as
/// it states (`Content-Length` or chunked; none for `HEAD`). `pending` holds what was read past
/// the previous response.
async fn next_response(stream: &mut TcpStream, pending: &mut Vec<u8>, head: bool) -> RawReply {
    let read = async {
        loop {
            if let Some(len) = response_len(pending, head) {
                let reply = parse_raw(&pending[..len]);
                pending.drain(..len);
                return reply;
            }
            let mut buf = [0u8; 8192];
            let n = stream.read(&mut buf).await.expect("read");
            assert!(
                n > 0,
                "closed before a whole response: {:?}",
                String::from_utf8_lossy(pending)
            );
            pending.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("a whole response within 10 s")
}

/// The length of the whole response at the start of `bytes`, once it is there.
fn response_len(bytes: &[u8], head: bool) -> Option<usize> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    if head {
        return Some(end);
    }
    if let Some(len) = text
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
    {
        let len: usize = len.trim().parse().expect("a length");
        return (bytes.len() >= end + len).then_some(end + len);
    }
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    let last = bytes[end..].windows(5).position(|w| w == b"0\r\n\r\n")?;
    Some(end + last + 5)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_carries_bodiless_requests_then_a_body_then_more() {
    let proxy = proxy().await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let mut pending = Vec::new();

    stream
        .write_all(get("/first?a=1").as_bytes())
        .await
        .unwrap();
    let first = next_response(&mut stream, &mut pending, false).await;
    stream
        .write_all(b"HEAD /head HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    let head = next_response(&mut stream, &mut pending, true).await;
    // The first request the own server does not take: hyper serves it and the rest of the
    // connection.
    stream
        .write_all(post_chunked("/upload", "hello").as_bytes())
        .await
        .unwrap();
    let upload = next_response(&mut stream, &mut pending, false).await;
    stream.write_all(get("/after").as_bytes()).await.unwrap();
    let after = next_response(&mut stream, &mut pending, false).await;

    assert_eq!(first.status, 200);
    assert_eq!(first.json()["path"], "/first?a=1");
    assert_eq!(first.json()["method"], "GET");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert!(
        head.header("content-length").is_some(),
        "{:?}",
        head.headers
    );
    assert_eq!(upload.status, 200);
    assert_eq!(upload.json()["method"], "POST");
    assert_eq!(upload.json()["body_len"], 5);
    assert_eq!(after.status, 200);
    assert_eq!(after.json()["path"], "/after");
    assert!(
        pending.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&pending)
    );
    for reply in [&first, &head, &upload, &after] {
        assert!(reply.header("date").is_some(), "{:?}", reply.headers);
        assert!(
            reply.header("x-request-id").is_some(),
            "{:?}",
            reply.headers
        );
        assert_ne!(reply.header("connection"), Some("close"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_across_the_hand_over() {
    let proxy = proxy().await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let all = [
        get("/1"),
        post("/2", "ab"),
        post_chunked("/3", "abc"),
        get("/4"),
    ]
    .concat();
    stream.write_all(all.as_bytes()).await.unwrap();

    let mut pending = Vec::new();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let reply = next_response(&mut stream, &mut pending, false).await;
        assert_eq!(reply.status, 200);
        let json = reply.json();
        seen.push((
            json["path"].as_str().unwrap().to_string(),
            json["body_len"].as_u64(),
        ));
    }
    let expected = [("/1", 0), ("/2", 2), ("/3", 3), ("/4", 0)];
    let expected: Vec<_> = expected
        .iter()
        .map(|(p, n)| (p.to_string(), Some(*n)))
        .collect();
    assert_eq!(seen, expected);
}

/// A `Content-Length` body that arrives with its head is read with it; one that comes after its
/// head (here 100 ms later) is left to hyper, which reads it as it arrives. Both are forwarded
/// whole, and the connection goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_with_their_head_and_bodies_after_it_are_both_forwarded() {
    let proxy = proxy().await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let mut pending = Vec::new();
    let large = "x".repeat(64 * 1024);

    stream
        .write_all([post("/with", "hello"), get("/then")].concat().as_bytes())
        .await
        .unwrap();
    let with = next_response(&mut stream, &mut pending, false).await;
    let then = next_response(&mut stream, &mut pending, false).await;
    stream
        .write_all(post("/large", &large).as_bytes())
        .await
        .unwrap();
    let whole = next_response(&mut stream, &mut pending, false).await;
    let late = post("/late", "later");
    let (head, body) = late.split_at(late.len() - 5);
    stream.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream.write_all(body.as_bytes()).await.unwrap();
    let after = next_response(&mut stream, &mut pending, false).await;
    stream.write_all(get("/last").as_bytes()).await.unwrap();
    let last = next_response(&mut stream, &mut pending, false).await;

    for (reply, path, len) in [
        (&with, "/with", 5),
        (&then, "/then", 0),
        (&whole, "/large", large.len()),
        (&after, "/late", 5),
        (&last, "/last", 0),
    ] {
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.json()["path"], path);
        assert_eq!(reply.json()["body_len"], len, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_sent_a_byte_at_a_time_is_answered() {
    let proxy = proxy().await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    for byte in get("/slow").as_bytes() {
        stream.write_all(&[*byte]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let reply = next_response(&mut stream, &mut Vec::new(), false).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["path"], "/slow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_asking_to_close_gets_connection_close_and_the_connection_ends() {
    let proxy = proxy().await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let mut pending = Vec::new();
    stream.write_all(get("/keep").as_bytes()).await.unwrap();
    let kept = next_response(&mut stream, &mut pending, false).await;
    stream
        .write_all(b"GET /last HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let last = next_response(&mut stream, &mut pending, false).await;
    let rest = common::read_until_closed(&mut stream, Duration::from_secs(5)).await;

    assert_eq!(kept.status, 200);
    assert_eq!(last.status, 200);
    assert_eq!(last.json()["path"], "/last");
    assert_eq!(last.header("connection"), Some("close"));
    assert_eq!(rest.as_deref(), Some(&b""[..]), "the connection stays open");
}

/// The header-read timeout runs from the end of each answer: a connection that keeps sending
/// requests stays open for longer than the timeout in all, and is closed one timeout after it
/// goes quiet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_header_read_timeout_restarts_with_each_request_and_closes_an_idle_connection() {
    let addrs = backends(1).await;
    let proxy = Proxy::start(&crate::connections::timeout_config(&addrs)).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let mut pending = Vec::new();
    for i in 0..6 {
        stream
            .write_all(get(&format!("/{i}")).as_bytes())
            .await
            .unwrap();
        let reply = next_response(&mut stream, &mut pending, false).await;
        assert_eq!(
            reply.status,
            200,
            "request {i}, {:?} into the connection",
            Duration::from_millis(400 * i)
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // 2.4 s of requests on a 1 s timeout; now quiet (0.4 s of it already passed).
    let quiet = std::time::Instant::now();
    let closed = common::read_until_closed(&mut stream, Duration::from_secs(3)).await;
    let after = quiet.elapsed();
    assert_eq!(
        closed.as_deref(),
        Some(&b""[..]),
        "still open 3 s after the last answer"
    );
    assert!(
        after >= Duration::from_millis(400),
        "closed {after:?} after going quiet"
    );
}
