//! The JSON echo: what the backend reports about the request it received.

mod common;

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use common::{get, send, Conn};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame};
use hyper::header::HeaderValue;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::TcpStream;

#[tokio::test]
async fn echo_reports_backend_method_path_and_headers() {
    let addr = gatehouse_backend::spawn("alpha").await;
    let reply = send(
        addr,
        Request::get("/a/b")
            .header("host", "example.test")
            .header("X-Custom", "Value")
            .body(Empty::<Bytes>::new())
            .unwrap(),
    )
    .await;

    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-backend"), "alpha");
    assert_eq!(reply.header("content-type"), "application/json");
    assert_eq!(
        reply.json(),
        json!({
            "backend": "alpha",
            "method": "GET",
            "path": "/a/b",
            "headers": {"host": "example.test", "x-custom": "Value"},
            "body_len": 0,
        })
    );
}

#[tokio::test]
async fn query_string_is_kept_in_the_echoed_path() {
    let addr = gatehouse_backend::spawn("b").await;
    let reply = get(addr, "/a/b?x=1&y=%20z").await;
    assert_eq!(reply.json()["path"], "/a/b?x=1&y=%20z");
}

#[tokio::test]
async fn repeated_headers_are_joined_with_comma_and_space() {
    let addr = gatehouse_backend::spawn("b").await;
    let reply = send(
        addr,
        Request::get("/")
            .header("x-forwarded-for", "10.0.0.1")
            .header("x-forwarded-for", "10.0.0.2")
            .header("x-forwarded-for", "10.0.0.3")
            .body(Empty::<Bytes>::new())
            .unwrap(),
    )
    .await;
    assert_eq!(
        reply.json()["headers"]["x-forwarded-for"],
        "10.0.0.1, 10.0.0.2, 10.0.0.3"
    );
}

#[tokio::test]
async fn non_utf8_header_values_are_converted_lossily() {
    let addr = gatehouse_backend::spawn("b").await;
    let reply = send(
        addr,
        Request::get("/")
            .header("x-latin1", HeaderValue::from_bytes(b"caf\xe9").unwrap())
            .body(Empty::<Bytes>::new())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.json()["headers"]["x-latin1"], "caf\u{FFFD}");
}

#[tokio::test]
async fn posted_body_length_is_reported() {
    let addr = gatehouse_backend::spawn("b").await;
    let reply = send(
        addr,
        Request::post("/upload")
            .body(Full::new(Bytes::from(vec![7u8; 12345])))
            .unwrap(),
    )
    .await;
    let json = reply.json();
    assert_eq!(json["method"], "POST");
    assert_eq!(json["body_len"], 12345);
    assert_eq!(json["headers"]["content-length"], "12345");
}

/// A chunked upload of `remaining` bytes sent 64 KiB at a time, so the
/// backend sees many frames rather than one.
struct Chunks {
    remaining: usize,
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        static CHUNK: [u8; 64 * 1024] = [b'u'; 64 * 1024];
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let len = self.remaining.min(CHUNK.len());
        self.remaining -= len;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&CHUNK[..len])))))
    }
}

#[tokio::test]
async fn chunked_upload_is_counted_across_frames() {
    let addr = gatehouse_backend::spawn("b").await;
    let len = 32 * 1024 * 1024 + 3;
    let reply = send(
        addr,
        Request::put("/big")
            .body(Chunks { remaining: len })
            .unwrap(),
    )
    .await;
    let json = reply.json();
    assert_eq!(json["body_len"], len);
    assert_eq!(json["headers"]["transfer-encoding"], "chunked");
}

#[tokio::test]
async fn keep_alive_connection_serves_several_requests() {
    let addr = gatehouse_backend::spawn("b").await;
    let mut conn = Conn::open(addr).await;
    for i in 0..5 {
        let path = format!("/n/{i}");
        let body = Full::new(Bytes::from(vec![0u8; i]));
        let reply = conn.send(Request::post(&path).body(body).unwrap()).await;
        assert_eq!(reply.json()["path"], path);
        assert_eq!(reply.json()["body_len"], i);
    }
}

#[tokio::test]
async fn cleartext_http2_is_served_with_prior_knowledge() {
    let addr = gatehouse_backend::spawn("h2").await;
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2c handshake");
    tokio::spawn(conn);

    let req = Request::post(format!("http://{addr}/over/h2?v=2"))
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.version(), hyper::Version::HTTP_2);
    assert_eq!(res.headers()["x-backend"], "h2");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["path"], "/over/h2?v=2");
    assert_eq!(json["body_len"], 5);
}
