//! The codec without sockets: responses read at every split into two reads, the chunked
//! decoder's edge cases, the limits, and the request head's framing.

use std::time::Duration;

use http::{HeaderMap, Method, StatusCode, Uri};

use super::super::body::UpstreamBody;
use super::parse::{BodyKind, ParseError, MAX_HEAD};
use super::replay::{replay_response, Replayed};
use super::write::{self, Framing};
use crate::policy::{BodyLimits, BodyPace};

fn read(response: &str) -> Replayed {
    replay_response(&[response.as_bytes()], false)
}

fn status(replayed: &Replayed) -> StatusCode {
    replayed.head.as_ref().expect("a head").0
}

const RESPONSES: &[&str] = &[
    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n1 \r\n!\r\n0\r\nX-T: 1\r\n\r\n",
    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
    "HTTP/1.1 200 OK\r\n\r\nuntil the close",
    "HTTP/1.1 204 No Content\r\n\r\n",
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\nframes",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokextra",
];

#[test]
fn a_response_reads_the_same_whatever_the_reads_it_arrives_in() {
    for response in RESPONSES {
        let whole = format!("{:?}", read(response));
        let bytes = response.as_bytes();
        for at in 0..=bytes.len() {
            let split = replay_response(&[&bytes[..at], &bytes[at..]], false);
            assert_eq!(format!("{split:?}"), whole, "{response:?} split at {at}");
        }
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        let split = replay_response(&bytewise, false);
        assert_eq!(format!("{split:?}"), whole, "{response:?} byte by byte");
    }
}

#[test]
fn content_length_bodies_end_at_their_length_and_keep_the_connection() {
    let r = read("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(
        (r.body.as_slice(), r.outcome.clone(), r.reusable),
        (&b"hello"[..], Ok(()), true)
    );
    let same = read("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\nok");
    assert_eq!((same.body.as_slice(), same.reusable), (&b"ok"[..], true));
    let differing = read("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok");
    assert!(matches!(differing.outcome, Err(ParseError::Invalid(_))));
    let signed = read("HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok");
    assert!(matches!(signed.outcome, Err(ParseError::Invalid(_))));
    let short = read("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nok");
    assert_eq!(
        (short.body.as_slice(), short.outcome),
        (&b"ok"[..], Err(ParseError::Incomplete))
    );
    let extra = read("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP");
    assert_eq!(
        (extra.reusable, extra.rest.as_slice()),
        (false, &b"HTTP"[..])
    );
}

#[test]
fn chunked_bodies_hand_on_data_and_trailers_and_ignore_extensions() {
    let r = read(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
         4;x=\"y\"\r\nwiki\r\nA \t; e\r\npedia in\r\n\r\n0\r\nX-Sum: abc\r\nX-Two: 2\r\n\r\n",
    );
    assert_eq!(r.outcome, Ok(()));
    assert_eq!(r.body, b"wikipedia in\r\n");
    let trailers = r.trailers.expect("trailers");
    assert_eq!(
        (trailers["x-sum"].as_bytes(), trailers["x-two"].as_bytes()),
        (&b"abc"[..], &b"2"[..])
    );
    assert!(r.reusable);
    let upper = read("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfF\r\n");
    assert_eq!(upper.outcome, Err(ParseError::Incomplete));
}

#[test]
fn malformed_chunking_is_an_error() {
    for (body, what) in [
        ("x\r\n", "no size"),
        ("5x\r\nhello\r\n0\r\n\r\n", "a bad size"),
        ("10000000000000000\r\n", "a size over 64 bits"),
        ("5\nhello\r\n0\r\n\r\n", "a bare LF after the size"),
        ("5\r\nhelloX\r\n0\r\n\r\n", "data longer than its size"),
        ("5\r\nhello\rX0\r\n\r\n", "CR without LF after the data"),
        ("5;a\nb\r\nhello\r\n0\r\n\r\n", "LF in an extension"),
        ("5 5\r\nhello\r\n0\r\n\r\n", "digits after whitespace"),
        ("0\r\n\r\r", "a bad final line"),
        ("0\r\nno colon\r\n\r\n", "a trailer without a colon"),
    ] {
        let r = read(&format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        ));
        assert!(
            matches!(r.outcome, Err(ParseError::Invalid(_))),
            "{what}: {r:?}"
        );
    }
}

#[test]
fn chunk_extensions_and_trailers_are_bounded() {
    let long_extension = format!("1;{}\r\na\r\n0\r\n\r\n", "e".repeat(16 * 1024));
    let many_trailers: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
    let big_trailer = format!("X-Big: {}\r\n", "v".repeat(16 * 1024));
    for body in [
        long_extension,
        format!("0\r\n{many_trailers}\r\n"),
        format!("0\r\n{big_trailer}\r\n"),
    ] {
        let r = read(&format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        ));
        assert!(matches!(r.outcome, Err(ParseError::Invalid(_))), "{r:?}");
    }
    let hundred: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
    let r = read(&format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n{hundred}\r\n"
    ));
    assert_eq!(r.trailers.map(|t| t.len()), Some(100));
}

#[test]
fn the_head_is_bounded_in_bytes_and_fields() {
    let huge = format!("HTTP/1.1 200 OK\r\nX-Big: {}\r\n\r\n", "v".repeat(MAX_HEAD));
    assert_eq!(read(&huge).outcome, Err(ParseError::HeadTooLarge));
    let endless = "HTTP/1.1 200 OK\r\nX-Big: ".to_string() + &"v".repeat(MAX_HEAD);
    let chunks: Vec<&[u8]> = endless.as_bytes().chunks(1000).collect();
    assert_eq!(
        replay_response(&chunks, false).outcome,
        Err(ParseError::HeadTooLarge)
    );
    let fields = |n: usize| -> String {
        let lines: String = (0..n).map(|i| format!("X-{i}: v\r\n")).collect();
        format!("HTTP/1.1 200 OK\r\n{lines}Content-Length: 0\r\n\r\n")
    };
    assert_eq!(read(&fields(99)).outcome, Ok(()));
    assert!(matches!(
        read(&fields(100)).outcome,
        Err(ParseError::Invalid(_))
    ));
}

#[test]
fn invalid_heads_are_errors() {
    for head in [
        "HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX Bad: a\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-Bad: a\x01b\r\n\r\n",
        "HTTP/1.1 099 Low\r\n\r\n",
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ] {
        assert!(
            matches!(read(head).outcome, Err(ParseError::Invalid(_))),
            "{head:?}"
        );
    }
}

#[test]
fn framing_follows_rfc_9112() {
    let head = replay_response(&[b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"], true);
    assert_eq!(
        (head.body.len(), head.outcome, head.reusable),
        (0, Ok(()), true)
    );
    for status in ["204 No Content", "304 Not Modified"] {
        let r = read(&format!("HTTP/1.1 {status}\r\nContent-Length: 4\r\n\r\n"));
        assert_eq!(
            (r.head.unwrap().3, r.reusable),
            (BodyKind::Empty, true),
            "{status}"
        );
    }
    let informational = read(
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: <a>\r\n\r\n\
         HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(status(&informational), StatusCode::OK);
    let close = read("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzipped");
    assert_eq!(
        (close.body.as_slice(), close.reusable),
        (&b"zipped"[..], false)
    );
    let no_length = read("HTTP/1.1 200 OK\r\n\r\nall of it");
    assert_eq!(
        (
            no_length.body.as_slice(),
            no_length.outcome,
            no_length.reusable
        ),
        (&b"all of it"[..], Ok(()), false)
    );
    let switched = read("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x7f\x00");
    assert_eq!(
        (switched.head.unwrap().3, switched.rest.as_slice()),
        (BodyKind::Upgrade, &b"\x7f\x00"[..])
    );
}

#[test]
fn keep_alive_follows_the_version_and_connection() {
    let reusable = |head: &str| read(&format!("{head}Content-Length: 0\r\n\r\n")).reusable;
    assert!(reusable("HTTP/1.1 200 OK\r\n"));
    assert!(!reusable("HTTP/1.1 200 OK\r\nConnection: close\r\n"));
    assert!(!reusable(
        "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: Close\r\n"
    ));
    assert!(!reusable("HTTP/1.0 200 OK\r\n"));
    assert!(reusable("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n"));
    // Framing in doubt: the forwarder answers 502, and the connection is never reused.
    assert!(!reusable(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
    ));
}

fn limits() -> BodyLimits {
    BodyLimits {
        max_bytes: None,
        pace: BodyPace {
            read_timeout: Duration::from_secs(10),
            min_rate: None,
        },
    }
}

#[test]
fn a_request_without_a_body_gets_no_framing_headers() {
    let mut headers = HeaderMap::new();
    headers.insert("host", "app.test".parse().unwrap());
    headers.insert("transfer-encoding", "chunked".parse().unwrap());
    let body = UpstreamBody::empty(limits());
    let uri = Uri::from_static("/a/b?c=d");
    let (head, framing) = write::head(&Method::GET, &uri, &mut headers, &body);
    assert_eq!(framing, Framing::None);
    assert_eq!(
        &head[..],
        b"GET /a/b?c=d HTTP/1.1\r\nhost: app.test\r\n\r\n"
    );
    let (head, _) = write::head(
        &Method::DELETE,
        &Uri::from_static("/"),
        &mut HeaderMap::new(),
        &body,
    );
    assert_eq!(&head[..], b"DELETE / HTTP/1.1\r\n\r\n");
}
