//! The writer against hyper's server: the same response to the same request must come out as
//! the same bytes (the `date` line aside), or, where hyper sends nothing, as nothing.

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{write, Asked};
use crate::error::{BodyError, ProxyBody};

#[derive(Clone, Copy, Debug)]
enum Kind {
    Empty,
    Full,
    /// Two data frames then trailers `x-t` and `content-type`, length unknown.
    Stream,
}

fn body(kind: Kind) -> ProxyBody {
    match kind {
        Kind::Empty => Empty::new().map_err(|never| match never {}).boxed_unsync(),
        Kind::Full => Full::new(Bytes::from_static(b"hello"))
            .map_err(|never| match never {})
            .boxed_unsync(),
        Kind::Stream => {
            let mut trailers = HeaderMap::new();
            trailers.insert("x-t", "1".parse().expect("value"));
            trailers.insert("content-type", "y".parse().expect("value"));
            let frames = vec![
                Ok::<_, BodyError>(Frame::data(Bytes::from_static(b"ab"))),
                Ok(Frame::data(Bytes::from_static(b"cde"))),
                Ok(Frame::trailers(trailers)),
            ];
            StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
        }
    }
}

fn response(status: u16, headers: &[(&str, &str)], kind: Kind) -> Response<ProxyBody> {
    let mut response = Response::new(body(kind));
    *response.status_mut() = StatusCode::from_u16(status).expect("status");
    for (name, value) in headers {
        response.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            value.parse().expect("value"),
        );
    }
    response
}

/// The response bytes hyper's server writes, `date` line removed.
async fn hyper_writes(
    request: &str,
    make: impl Fn() -> Response<ProxyBody> + Clone + Send + 'static,
) -> String {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let service = service_fn(move |_: Request<Incoming>| {
        let make = make.clone();
        async move { Ok::<_, Infallible>(make()) }
    });
    let serving = tokio::spawn(async move {
        let _ = http1::Builder::new()
            .half_close(true)
            .serve_connection(TokioIo::new(server), service)
            .await;
    });
    client.write_all(request.as_bytes()).await.expect("send");
    client.shutdown().await.expect("half close");
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.expect("read");
    serving.await.expect("served");
    without_date(&out)
}

async fn gatehouse_writes(response: Response<ProxyBody>, asked: Asked) -> String {
    let mut out = Vec::new();
    let _ = write(&mut out, response, asked).await;
    without_date(&out)
}

fn without_date(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.split_inclusive("\r\n")
        .filter(|line| !line.starts_with("date: "))
        .collect()
}

/// One case: the request's method and fields, and the response.
async fn check(
    method: &str,
    request_fields: &str,
    status: u16,
    headers: &[(&str, &str)],
    kind: Kind,
) {
    let request = format!("{method} / HTTP/1.1\r\nhost: a\r\n{request_fields}\r\n");
    let owned: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| ((*n).to_string(), (*v).to_string()))
        .collect();
    let make = move || {
        let pairs: Vec<(&str, &str)> = owned
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        response(status, &pairs, kind)
    };
    let expected = hyper_writes(&request, make.clone()).await;
    assert!(
        expected.starts_with("HTTP/1.1 "),
        "hyper answered {expected:?}"
    );
    let lower = request_fields.to_ascii_lowercase();
    let asked = Asked {
        head: method == "HEAD",
        keep_alive: !lower.contains("connection: close"),
        trailers: lower.contains("te: trailers"),
    };
    let got = gatehouse_writes(make(), asked).await;
    assert_eq!(
        got, expected,
        "{method} {request_fields:?} -> {status} {headers:?} {kind:?}"
    );
}

#[tokio::test]
async fn responses_are_written_as_hyper_writes_them() {
    let kinds = [Kind::Empty, Kind::Full, Kind::Stream];
    let requests = ["", "connection: close\r\n", "te: trailers\r\n"];
    let statuses = [200, 204, 304, 404, 502];
    let header_sets: &[&[(&str, &str)]] = &[
        &[],
        &[("content-type", "text/plain"), ("x-a", "1"), ("x-a", "2")],
        &[("content-length", "5")],
        &[("connection", "close")],
        &[("connection", "keep-alive"), ("connection", "x-hop")],
        &[("date", "Mon, 01 Jan 2024 00:00:00 GMT")],
        &[("trailer", "x-t, content-type")],
        &[("transfer-encoding", "gzip")],
        &[("transfer-encoding", "gzip"), ("x-after", "1")],
    ];
    for method in ["GET", "HEAD", "DELETE"] {
        for fields in requests {
            for status in statuses {
                for headers in header_sets {
                    for kind in kinds {
                        // A `content-length` that disagrees with a known body is a debug
                        // assertion in hyper, not something a handler sends.
                        if headers.iter().any(|(n, _)| *n == "content-length")
                            && !matches!(kind, Kind::Full | Kind::Stream)
                        {
                            continue;
                        }
                        check(method, fields, status, headers, kind).await;
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn a_custom_reason_phrase_is_kept() {
    let make = || {
        let mut response = response(599, &[], Kind::Full);
        response
            .extensions_mut()
            .insert(hyper::ext::ReasonPhrase::from_static(b"Odd Thing"));
        response
    };
    let expected = hyper_writes("GET / HTTP/1.1\r\n\r\n", make).await;
    let asked = Asked {
        head: false,
        keep_alive: true,
        trailers: false,
    };
    assert!(
        expected.starts_with("HTTP/1.1 599 Odd Thing\r\n"),
        "{expected}"
    );
    assert_eq!(gatehouse_writes(make(), asked).await, expected);
}

#[tokio::test]
async fn a_body_shorter_than_its_length_ends_the_connection() {
    let response = response(200, &[("content-length", "9")], Kind::Stream);
    let asked = Asked {
        head: false,
        keep_alive: true,
        trailers: false,
    };
    let mut out = Vec::new();
    let written = write(&mut out, response, asked).await;
    assert!(written.is_err(), "{written:?}");
    let text = String::from_utf8_lossy(&out);
    assert!(text.ends_with("\r\n\r\nabcde"), "{text}");
}
