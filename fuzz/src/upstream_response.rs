//! `upstream_response`: a backend's response, read by Gatehouse's HTTP/1.1 client
//! (`forwarder::h1::replay_response`, the parser and body decoder the proxy runs) and by
//! hyper's client (`hyper::client::conn::http1` over an in-memory duplex on a current-thread
//! runtime), which the proxy used before. Both must agree on the message's boundaries: the
//! final status, version and headers, the body's bytes and trailers, whether the response
//! ended or failed, whether the connection could carry another request, and (after a 101)
//! the bytes that follow the head.
//!
//! Input: a settings line, then the response's bytes as the backend sends them:
//! ```text
//! HEAD 3 7 1               `HEAD`: the request was HEAD (else GET); numbers: the sizes of
//! HTTP/1.1 200 OK\r\n…     the reads, in turn (none: one read of everything)
//! ```
//! After the last read the backend closes the connection.
//!
//! Deliberate differences, allowed here: Gatehouse refuses a response head over
//! `h1::MAX_HEAD` (64 KiB; hyper ~408 KiB), and never reuses a connection whose response had
//! both `Content-Length` and `Transfer-Encoding` (the proxy answers those 502 anyway, as it did
//! with hyper).

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use gatehouse::forwarder::h1::{replay_response, ParseError, Replayed};
use http::{header, HeaderMap, Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::reads::{read_sizes, settings_and_bytes, split};

/// What hyper's client made of the response.
#[derive(Debug, Default)]
struct HyperSide {
    head: Option<(StatusCode, Version, HeaderMap)>,
    /// The response future failed (no head).
    head_failed: bool,
    body: Vec<u8>,
    trailers: Option<HeaderMap>,
    /// The body failed mid-way.
    body_failed: bool,
    /// The body ended (without error).
    body_ended: bool,
    reusable: bool,
    /// After a 101.
    rest: Vec<u8>,
}

pub fn upstream_response(data: &[u8]) {
    let (settings, response) = settings_and_bytes(data);
    let settings = String::from_utf8_lossy(settings);
    let head_request = settings.contains("HEAD");
    let sizes = read_sizes(&settings);
    let chunks = split(response, &sizes);
    let ours = replay_response(&chunks, head_request);
    if matches!(ours.outcome, Err(ParseError::HeadTooLarge)) {
        return;
    }
    let theirs = hyper_side(&chunks, head_request);
    compare(&ours, &theirs);
    // The same bytes in other reads must make no difference to ours.
    let whole = replay_response(&[response], head_request);
    assert_eq!(
        format!("{ours:?}"),
        format!("{whole:?}"),
        "one read vs {sizes:?}"
    );
}

fn compare(ours: &Replayed, theirs: &HyperSide) {
    let Some((status, version, headers, _)) = &ours.head else {
        assert!(
            theirs.head.is_none(),
            "hyper read a head ({:?}) where Gatehouse failed: {:?}",
            theirs.head,
            ours.outcome
        );
        assert!(theirs.head_failed, "hyper neither failed nor answered");
        return;
    };
    let Some((their_status, their_version, their_headers)) = &theirs.head else {
        panic!("Gatehouse read a head ({status}) where hyper failed");
    };
    assert_eq!(status, their_status, "status");
    assert_eq!(version, their_version, "version");
    assert_eq!(headers, their_headers, "headers");
    if *status == StatusCode::SWITCHING_PROTOCOLS {
        assert_eq!(ours.rest, theirs.rest, "the bytes after a 101");
        return;
    }
    assert_eq!(ours.body, theirs.body, "body bytes");
    assert_eq!(
        ours.outcome.is_ok(),
        theirs.body_ended && !theirs.body_failed,
        "whether the body ended: ours {:?}, hyper {theirs:?}",
        ours.outcome
    );
    if ours.outcome.is_ok() {
        assert_eq!(ours.trailers, theirs.trailers, "trailers");
        let ambiguous = headers.contains_key(header::CONTENT_LENGTH)
            && headers.contains_key(header::TRANSFER_ENCODING);
        if !ambiguous {
            assert_eq!(
                ours.reusable, theirs.reusable,
                "whether the connection is reusable"
            );
        }
    }
}

/// Polls `future` once (with the task's waker).
async fn poll_once<F: Future + Unpin>(future: &mut F) -> Option<F::Output> {
    poll_fn(|cx| {
        Poll::Ready(match Pin::new(&mut *future).poll(cx) {
            Poll::Ready(value) => Some(value),
            Poll::Pending => None,
        })
    })
    .await
}

/// Lets the connection task take in what was written.
async fn settle() {
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
}

fn hyper_side(chunks: &[&[u8]], head_request: bool) -> HyperSide {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(drive_hyper(chunks, head_request))
}

async fn drive_hyper(chunks: &[&[u8]], head_request: bool) -> HyperSide {
    let mut side = HyperSide::default();
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    let (client, mut server) = tokio::io::duplex(total + 64 * 1024);
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(client))
            .await
            .expect("handshake");
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    let method = if head_request {
        Method::HEAD
    } else {
        Method::GET
    };
    let request = Request::builder()
        .method(method)
        .uri("/")
        .body(Empty::new())
        .expect("a request");
    let mut response_future = Box::pin(sender.send_request(request));
    // The request goes out first: bytes before it would be an unexpected message to hyper.
    let mut request_head = Vec::new();
    while !request_head.ends_with(b"\r\n\r\n") {
        assert!(poll_once(&mut response_future).await.is_none());
        let mut byte = [0u8; 1];
        server.read_exact(&mut byte).await.expect("the request");
        request_head.push(byte[0]);
    }
    for chunk in chunks {
        server.write_all(chunk).await.expect("duplex write");
        settle().await;
    }
    // First without the close: does the response end, and is the connection kept?
    let mut response = None;
    let mut closed = false;
    for _round in 0..64 {
        if response.is_none() {
            match poll_once(&mut response_future).await {
                Some(Ok(r)) => response = Some(r),
                None if !closed => {
                    settle().await;
                    if let Some(result) = poll_once(&mut response_future).await {
                        match result {
                            Ok(r) => response = Some(r),
                            Err(_) => {
                                side.head_failed = true;
                                return side;
                            }
                        }
                    }
                }
                Some(Err(_)) => {
                    side.head_failed = true;
                    return side;
                }
                None => {}
            }
        }
        if let Some(r) = &mut response {
            if side.head.is_none() {
                side.head = Some((r.status(), r.version(), r.headers().clone()));
            }
            if r.status() == StatusCode::SWITCHING_PROTOCOLS {
                let mut r = response.take().expect("a response");
                side.rest = upgraded_rest(&mut r, &mut server).await;
                return side;
            }
            // The body's frames come from the connection task: pending means no more only once
            // that task has had its turns.
            let mut idle_rounds = 0;
            while !side.body_ended && !side.body_failed {
                match poll_once(&mut r.body_mut().frame()).await {
                    Some(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) => {
                            idle_rounds = 0;
                            side.body.extend_from_slice(&data);
                        }
                        Err(frame) => side.trailers = frame.into_trailers().ok(),
                    },
                    Some(Some(Err(_))) => side.body_failed = true,
                    Some(None) => {
                        side.body_ended = true;
                        if !closed {
                            settle().await;
                            side.reusable = !sender.is_closed() && sender.is_ready();
                        }
                    }
                    None if idle_rounds < 4 => {
                        idle_rounds += 1;
                        settle().await;
                    }
                    None => break,
                }
            }
            if side.body_ended || side.body_failed {
                return side;
            }
        }
        if !closed {
            server.shutdown().await.expect("duplex shutdown");
            closed = true;
        }
        settle().await;
    }
    panic!("hyper neither answered nor failed after the connection closed: {side:?}");
}

/// After a 101: the bytes hyper read past the head, then the rest of the stream.
async fn upgraded_rest(
    response: &mut hyper::Response<hyper::body::Incoming>,
    server: &mut DuplexStream,
) -> Vec<u8> {
    server.shutdown().await.expect("duplex shutdown");
    let Ok(upgraded) = hyper::upgrade::on(response).await else {
        return Vec::new();
    };
    let Ok(parts) = upgraded.downcast::<TokioIo<DuplexStream>>() else {
        return Vec::new();
    };
    let mut rest = parts.read_buf.to_vec();
    let mut io = parts.io.into_inner();
    let _ = io.read_to_end(&mut rest).await;
    rest
}
