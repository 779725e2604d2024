//! The special paths: /status, /slow and /bytes.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{get, Conn};
use http_body_util::Full;
use hyper::Request;

#[tokio::test]
async fn status_path_answers_that_code() {
    let addr = gatehouse_backend::spawn("s").await;
    let reply = get(addr, "/status/418?why=teapot").await;
    assert_eq!(reply.status, 418);
    assert_eq!(reply.header("x-backend"), "s");
    assert_eq!(reply.header("content-type"), "application/json");
    assert_eq!(reply.json()["path"], "/status/418?why=teapot");
}

#[tokio::test]
async fn status_path_rejects_unusable_codes_with_400() {
    let addr = gatehouse_backend::spawn("s").await;
    for path in ["/status/99", "/status/101", "/status/1000", "/status/abc"] {
        let reply = get(addr, path).await;
        assert_eq!(reply.status, 400, "{path}");
        assert_eq!(reply.json()["path"], path);
    }
}

#[tokio::test]
async fn status_path_sends_no_body_where_http_forbids_one() {
    let addr = gatehouse_backend::spawn("s").await;
    let mut conn = Conn::open(addr).await;
    let reply = conn
        .send(
            Request::get("/status/204")
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 204);
    assert!(reply.body.is_empty());
    // The connection must still be in sync for the next request.
    let reply = conn
        .send(
            Request::get("/after")
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.json()["path"], "/after");
}

#[tokio::test]
async fn slow_path_waits_before_answering() {
    let addr = gatehouse_backend::spawn("s").await;
    let started = Instant::now();
    let reply = get(addr, "/slow/0.2").await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["path"], "/slow/0.2");
}

#[tokio::test]
async fn slow_path_rejects_unparsable_seconds_with_400() {
    let addr = gatehouse_backend::spawn("s").await;
    assert_eq!(get(addr, "/slow/soon").await.status, 400);
    assert_eq!(get(addr, "/slow/-1").await.status, 400);
}

#[tokio::test]
async fn bytes_path_streams_exactly_n_bytes() {
    let addr = gatehouse_backend::spawn("s").await;
    let reply = get(addr, "/bytes/100000").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-length"), "100000");
    assert_eq!(reply.header("content-type"), "application/octet-stream");
    assert_eq!(reply.header("x-backend"), "s");
    assert!(!reply.headers.contains_key("transfer-encoding"));
    assert_eq!(reply.body.len(), 100_000);
    assert!(reply.body.iter().all(|&b| b == b'x'));
}

#[tokio::test]
async fn bytes_path_consumes_the_upload_and_keeps_the_connection() {
    let addr = gatehouse_backend::spawn("s").await;
    let mut conn = Conn::open(addr).await;
    let upload = Full::new(Bytes::from(vec![1u8; 200_000]));
    let reply = conn
        .send(Request::post("/bytes/0").body(upload).unwrap())
        .await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.is_empty());
    let reply = conn
        .send(
            Request::get("/next")
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.json()["body_len"], 0);
}
