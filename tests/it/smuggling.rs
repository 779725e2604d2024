//! Request smuggling against the real binary: every payload carries a complete second request
//! (`GET /smuggled`) hidden behind an ambiguous frame, and a raw backend records every byte the
//! proxy sends it, so a test sees both what the client got and what reached the backend.
//!
//! `framing.rs` covers the single-request basics in-process (two Content-Lengths, obs-fold,
//! `chunked, gzip`, a bad chunk size, CL+TE in one order, judged by the client's reply only);
//! this file adds the smuggled payloads, the backend's view, the upstream connection's fate and
//! the backend's own ambiguous framing.

use crate::common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::binary::Gatehouse;
use common::{parse_raw, ConfigYaml, ServiceYaml};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long a reply and the close after it may take. The proxy answers these in milliseconds;
/// the bound only has to survive a loaded 2-core CI machine. A connection still open after it
/// counts as left open.
const REPLY_WITHIN: Duration = Duration::from_secs(10);

/// The request every payload tries to smuggle.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n";

// ---------------------------------------------------------------------------------------------
// A backend that records raw bytes

/// One request the backend read whole.
#[derive(Debug, Clone)]
struct Recorded {
    /// Index of the connection it came on, in accept order.
    connection: usize,
    /// Where on that connection it started, in bytes.
    offset: usize,
    /// The request line, e.g. `POST /first HTTP/1.1`.
    line: String,
    /// The body, de-chunked.
    body: Vec<u8>,
}

#[derive(Debug, Default)]
struct Log {
    /// Every byte received, per connection in accept order.
    connections: Vec<Vec<u8>>,
    requests: Vec<Recorded>,
}

/// The bytes the backend answers its `n`th request (counted from 0) with.
type Answer = fn(usize) -> &'static [u8];

/// A raw HTTP/1.1 backend: reads requests framed by `Content-Length` or chunking, records them
/// and the bytes around them, and answers each with `answer`.
struct RecordingBackend {
    addr: SocketAddr,
    log: Arc<Mutex<Log>>,
}

impl RecordingBackend {
    /// Answers every request `200 ok`.
    async fn start() -> Self {
        Self::answering(|_| b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await
    }

    async fn answering(answer: Answer) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let log = Arc::new(Mutex::new(Log::default()));
        let shared = Arc::clone(&log);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let index = {
                    let mut log = shared.lock().unwrap();
                    log.connections.push(Vec::new());
                    log.connections.len() - 1
                };
                tokio::spawn(serve(stream, index, Arc::clone(&shared), answer));
            }
        });
        RecordingBackend { addr, log }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().requests.clone()
    }

    fn connections(&self) -> usize {
        self.log.lock().unwrap().connections.len()
    }

    /// Everything received on every connection, lossily as text, for messages and searches.
    fn received_text(&self) -> String {
        let log = self.log.lock().unwrap();
        let all: Vec<u8> = log.connections.concat();
        String::from_utf8_lossy(&all).into_owned()
    }

    /// The bytes received on connection `index`.
    fn connection_bytes(&self, index: usize) -> Vec<u8> {
        self.log.lock().unwrap().connections[index].clone()
    }
}

async fn serve(mut stream: TcpStream, index: usize, log: Arc<Mutex<Log>>, answer: Answer) {
    let mut pending = Vec::new();
    let mut consumed = 0;
    let mut buf = [0u8; 4096];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        log.lock().unwrap().connections[index].extend_from_slice(&buf[..n]);
        pending.extend_from_slice(&buf[..n]);
        while let Some((line, body, used)) = parse_request(&pending) {
            pending.drain(..used);
            let nth = {
                let mut log = log.lock().unwrap();
                log.requests.push(Recorded {
                    connection: index,
                    offset: consumed,
                    line,
                    body,
                });
                log.requests.len() - 1
            };
            consumed += used;
            if stream.write_all(answer(nth)).await.is_err() {
                return;
            }
        }
    }
}

/// One whole request at the start of `bytes`: its request line, de-chunked body and length on
/// the wire; `None` while incomplete (or unreadable, which then never completes).
fn parse_request(bytes: &[u8]) -> Option<(String, Vec<u8>, usize)> {
    let end = find(bytes, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    let line = String::from_utf8_lossy(&bytes[..find(bytes, b"\r\n")?]).into_owned();
    let header = |name: &str| {
        head.split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim() == name)
            .map(|(_, v)| v.trim().to_string())
    };
    let rest = &bytes[end..];
    if header("transfer-encoding").is_some_and(|te| te.ends_with("chunked")) {
        let (body, used) = dechunk(rest)?;
        return Some((line, body, end + used));
    }
    let length: usize = header("content-length").map_or(Some(0), |v| v.parse().ok())?;
    let body = rest.get(..length)?.to_vec();
    Some((line, body, end + length))
}

/// A chunked body at the start of `bytes` and its length on the wire (trailers skipped).
fn dechunk(bytes: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let line_end = at + find(&bytes[at..], b"\r\n")?;
        let size = String::from_utf8_lossy(&bytes[at..line_end]);
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            let trailers_end = at + find(&bytes[at..], b"\r\n")?;
            // Trailer lines, if any, end with an empty line.
            let end = if trailers_end == at {
                at + 2
            } else {
                at + find(&bytes[at..], b"\r\n\r\n")? + 4
            };
            return Some((body, end));
        }
        body.extend_from_slice(bytes.get(at..at + size)?);
        at += size;
        if bytes.get(at..at + 2)? != b"\r\n" {
            return None;
        }
        at += 2;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// The proxy and the client side

/// The real binary with one open service, `app.test`, over `backend`. Idle connections are
/// kept well past [`REPLY_WITHIN`], so a connection the proxy should have closed cannot pass
/// for closed by timing out.
async fn gatehouse_over(backend: SocketAddr) -> Gatehouse {
    Gatehouse::start(&["serve"], |listen| {
        ConfigYaml::new()
            .listen(listen)
            .limit("header_read_timeout", "60s")
            .service(ServiceYaml::open("app", "app.test").backend(backend))
            .render()
    })
    .await
}

/// What came back on one connection.
struct Exchange {
    bytes: Vec<u8>,
    /// Whether the proxy closed the connection within [`REPLY_WITHIN`].
    closed: bool,
}

impl Exchange {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The first response's status; panics with the bytes when there is none.
    fn status(&self) -> u16 {
        parse_raw(&self.bytes).status
    }

    /// How many responses arrived (status lines at the start of a line).
    fn responses(&self) -> usize {
        let text = self.text();
        usize::from(text.starts_with("HTTP/1.1 ")) + text.matches("\nHTTP/1.1 ").count()
    }
}

/// Writes `payload` on a new connection and reads until the proxy closes it, or
/// [`REPLY_WITHIN`] passes.
async fn exchange(addr: SocketAddr, payload: &[u8]) -> Exchange {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // The proxy may close as soon as it has seen enough to refuse, before the payload's tail.
    let _ = stream.write_all(payload).await;
    let mut bytes = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
    };
    let closed = tokio::time::timeout(REPLY_WITHIN, read).await.is_ok();
    Exchange { bytes, closed }
}

/// A request the backend must receive after the payloads, on a connection of its own: proof
/// that the proxy still works and a happens-after point for checking what the backend got.
async fn sentinel(gatehouse: &Gatehouse) -> Exchange {
    let reply = exchange(
        gatehouse.addr,
        b"GET /sentinel HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status(), 200, "{}", reply.text());
    reply
}

/// Sends each `(name, head)` with [`SMUGGLED`] appended, and asserts the proxy answered one 400
/// and closed the connection. Every case is tried before failing, so one run lists them all.
async fn assert_each_refused(gatehouse: &Gatehouse, cases: &[(&str, &str)]) {
    let mut wrong = Vec::new();
    for (name, head) in cases {
        let payload = format!("{head}{SMUGGLED}");
        let reply = exchange(gatehouse.addr, payload.as_bytes()).await;
        let refused =
            reply.closed && reply.responses() == 1 && reply.text().starts_with("HTTP/1.1 400 ");
        if !refused {
            wrong.push(format!(
                "{name} (closed: {}): {:?}",
                reply.closed,
                reply.text()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "not refused with one 400 and a close:\n{}",
        wrong.join("\n")
    );
}

/// After refused payloads: the backend's only request is the sentinel, and nothing else, not
/// even a partial head, ever reached it.
async fn assert_backend_saw_only_the_sentinel(gatehouse: &Gatehouse, backend: &RecordingBackend) {
    sentinel(gatehouse).await;
    let requests = backend.requests();
    let lines: Vec<&str> = requests.iter().map(|r| r.line.as_str()).collect();
    assert_eq!(
        lines,
        ["GET /sentinel HTTP/1.1"],
        "{}",
        backend.received_text()
    );
    assert_eq!(backend.connections(), 1, "{}", backend.received_text());
    assert!(!backend.received_text().contains("smuggled"));
}

// ---------------------------------------------------------------------------------------------
// Requests refused at parse time

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_content_lengths_are_refused_and_nothing_reaches_the_backend() {
    let backend = RecordingBackend::start().await;
    let gatehouse = gatehouse_over(backend.addr).await;

    // Each body is exactly what one reading of the framing would consume, so that reading
    // would take the smuggled request for the next one.
    assert_each_refused(
        &gatehouse,
        &[
            (
                "two differing lengths",
                "POST /first HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\n\
                 Content-Length: 5\r\n\r\nhello",
            ),
            (
                "a signed length",
                "POST /first HTTP/1.1\r\nHost: app.test\r\nContent-Length: +5\r\n\r\nhello",
            ),
            (
                "an empty length",
                "POST /first HTTP/1.1\r\nHost: app.test\r\nContent-Length: \r\n\r\n",
            ),
            (
                "a trailing comma",
                "POST /first HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5,\r\n\r\nhello",
            ),
            (
                "a list of equal lengths",
                "POST /first HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5, 5\r\n\r\nhello",
            ),
            (
                "a hexadecimal length",
                "POST /first HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0x5\r\n\r\nhello",
            ),
            (
                "a length beyond u64",
                "POST /first HTTP/1.1\r\nHost: app.test\r\n\
                 Content-Length: 18446744073709551621\r\n\r\nhello",
            ),
        ],
    )
    .await;

    assert_backend_saw_only_the_sentinel(&gatehouse, &backend).await;
}

/// Transfer-Encoding spellings other front ends read differently. Only exactly one `chunked` is
/// a framing Gatehouse can pass on: the upstream request is re-framed and `Transfer-Encoding`
/// dropped as hop-by-hop, so any other coding (a second `chunked`, `gzip`) would reach the
/// backend still applied, with nothing saying so. Whitespace *inside* the value
/// (`Transfer-Encoding:\tchunked`) is legal OWS and is covered with CL+TE below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obfuscated_transfer_encodings_are_refused_and_nothing_reaches_the_backend() {
    let backend = RecordingBackend::start().await;
    let gatehouse = gatehouse_over(backend.addr).await;

    let chunked_empty = "0\r\n\r\n";
    let cases: Vec<(&str, String)> = [
        (
            "chunked twice in one line",
            "Transfer-Encoding: chunked, chunked\r\n",
        ),
        (
            "chunked in two lines",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        ),
        (
            "chunked then identity",
            "Transfer-Encoding: chunked, identity\r\n",
        ),
        ("xchunked", "Transfer-Encoding: xchunked\r\n"),
        ("chunked with a suffix", "Transfer-Encoding: chunkedx\r\n"),
        ("quoted chunked", "Transfer-Encoding: \"chunked\"\r\n"),
        ("space before the colon", "Transfer-Encoding : chunked\r\n"),
        ("tab before the colon", "Transfer-Encoding\t: chunked\r\n"),
        (
            "a line starting with a space",
            "X-A: 1\r\n Transfer-Encoding: chunked\r\n",
        ),
        (
            "a line starting with a tab",
            "X-A: 1\r\n\tTransfer-Encoding: chunked\r\n",
        ),
        (
            "a coding Gatehouse cannot undo",
            "Transfer-Encoding: gzip, chunked\r\n",
        ),
    ]
    .into_iter()
    .map(|(name, te)| {
        (
            name,
            format!("POST /first HTTP/1.1\r\nHost: app.test\r\n{te}\r\n{chunked_empty}"),
        )
    })
    .collect();
    let cases: Vec<(&str, &str)> = cases.iter().map(|(n, h)| (*n, h.as_str())).collect();
    assert_each_refused(&gatehouse, &cases).await;

    assert_backend_saw_only_the_sentinel(&gatehouse, &backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_header_lines_are_refused_and_nothing_reaches_the_backend() {
    let backend = RecordingBackend::start().await;
    let gatehouse = gatehouse_over(backend.addr).await;

    assert_each_refused(
        &gatehouse,
        &[
            (
                "obs-fold hiding a Content-Length",
                "POST /first HTTP/1.1\r\nHost: app.test\r\nX-A: 1\r\n Content-Length: 5\r\n\r\nhello",
            ),
            (
                "NUL in a value",
                "POST /first HTTP/1.1\r\nHost: app.test\r\nX-A: a\0b\r\nContent-Length: 0\r\n\r\n",
            ),
            (
                "bare CR inside a value",
                "POST /first HTTP/1.1\r\nHost: app.test\r\nX-A: a\rContent-Length: 5\r\n\r\nhello",
            ),
            (
                "bare CR ending a line",
                "POST /first HTTP/1.1\r\nHost: app.test\rContent-Length: 5\r\n\r\nhello",
            ),
            (
                "NUL in a name",
                "POST /first HTTP/1.1\r\nHost: app.test\r\nX-\0A: 1\r\nContent-Length: 0\r\n\r\n",
            ),
            (
                "a header line without a colon",
                "POST /first HTTP/1.1\r\nHost: app.test\r\nContent-Length 5\r\n\r\nhello",
            ),
        ],
    )
    .await;

    assert_backend_saw_only_the_sentinel(&gatehouse, &backend).await;
}

/// `Transfer_Encoding` and `Content_Length` are not framing headers to Gatehouse (nor to RFC
/// 9110), so the request below has no body and `0\r\n\r\n` is a second, malformed request. A
/// backend that folds `_` into `-` (CGI-style environments) would take them for framing and
/// read the next request on the pooled connection, another client's, as this one's body. They
/// are dropped, never forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn underscored_framing_headers_never_reach_the_backend() {
    let backend = RecordingBackend::start().await;
    let gatehouse = gatehouse_over(backend.addr).await;

    let reply = exchange(
        gatehouse.addr,
        b"POST /first HTTP/1.1\r\nHost: app.test\r\nTransfer_Encoding: chunked\r\n\
          content_length: 40\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;

    assert_eq!(reply.status(), 200, "{}", reply.text());
    let received = backend.received_text().to_ascii_lowercase();
    assert!(
        received.starts_with("post /first http/1.1\r\n"),
        "{received}"
    );
    for name in ["transfer_encoding", "content_length"] {
        assert!(
            !received.contains(name),
            "{name} reached the backend: {received:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Bodies refused while they stream

/// A chunked body is forwarded as it arrives, so its head may already be upstream when a bad
/// chunk shows up. The client still gets 400 and a closed connection; the upstream connection
/// carrying the half-sent request is dropped, never reused for the next request (that would
/// glue the next request onto a body the backend is still reading); and the smuggled request
/// never reaches the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_chunk_framing_is_refused_and_the_upstream_connection_is_dropped() {
    let backend = RecordingBackend::start().await;
    let gatehouse = gatehouse_over(backend.addr).await;
    let head = "POST /first HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n";

    let cases = [
        (
            "a chunk size that is not hex",
            "5\r\nhello\r\n5g\r\nworld\r\n0\r\n\r\n",
        ),
        ("no CRLF after the chunk data", "5\r\nhelloXX0\r\n\r\n"),
        (
            "a chunk size past u64",
            "5\r\nhello\r\n10000000000000005\r\nworld\r\n0\r\n\r\n",
        ),
        (
            "a negative chunk size",
            "5\r\nhello\r\n-5\r\nworld\r\n0\r\n\r\n",
        ),
        ("a bare LF after the size", "5\nhello\r\n0\r\n\r\n"),
        ("a chunk longer than its size", "3\r\nhello\r\n0\r\n\r\n"),
    ];
    for (name, body) in cases {
        let payload = format!("{head}{body}{SMUGGLED}");
        let reply = exchange(gatehouse.addr, payload.as_bytes()).await;

        assert!(
            reply.closed,
            "{name}: connection left open: {}",
            reply.text()
        );
        assert_eq!(reply.status(), 400, "{name}: {}", reply.text());
        assert_eq!(reply.responses(), 1, "{name}: {}", reply.text());
        sentinel(&gatehouse).await;
        assert_no_request_followed_a_refused_one(&backend, name);
    }

    let lines: Vec<String> = backend.requests().into_iter().map(|r| r.line).collect();
    assert!(
        lines.iter().all(|line| line == "GET /sentinel HTTP/1.1"),
        "a refused request reached the backend whole: {lines:?}\n{}",
        backend.received_text()
    );
    assert!(!backend.received_text().contains("smuggled"));
}

/// No request was read from an upstream connection after it had carried part of a refused
/// `/first`: a backend still reading that body would take the next request for body bytes.
fn assert_no_request_followed_a_refused_one(backend: &RecordingBackend, case: &str) {
    for request in backend.requests() {
        let carried = backend.connection_bytes(request.connection);
        assert!(
            find(&carried[..request.offset], b"POST /first ").is_none(),
            "{case}: `{}` was sent on the upstream connection of a refused request: {:?}",
            request.line,
            String::from_utf8_lossy(&carried)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Content-Length with Transfer-Encoding

/// RFC 9112 §6.1 lets a server refuse CL+TE or frame by TE alone and close after answering.
/// Gatehouse (hyper) does the latter: the chunked body (`abc`, 3 bytes) is what the backend
/// gets, whatever Content-Length says, and the pipelined `/smuggled` behind it is never read.
/// Both header orders, and TE values with legal whitespace (OWS) around `chunked`, which a
/// front end blind to the OWS would frame by Content-Length instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_is_framed_by_chunked_then_closed() {
    let backend = RecordingBackend::start().await;
    let gatehouse = gatehouse_over(backend.addr).await;
    let body = "3\r\nabc\r\n0\r\n\r\n";

    let cases = [
        (
            "CL first",
            "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
        ),
        (
            "TE first",
            "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
        ),
        (
            "tab before chunked",
            "Content-Length: 3\r\nTransfer-Encoding:\tchunked\r\n",
        ),
        (
            "spaces around chunked",
            "Transfer-Encoding:   chunked  \r\nContent-Length: 3\r\n",
        ),
        (
            "upper-case chunked",
            "Content-Length: 3\r\nTransfer-Encoding: CHUNKED\r\n",
        ),
    ];
    for (name, headers) in cases {
        let payload =
            format!("POST /first HTTP/1.1\r\nHost: app.test\r\n{headers}\r\n{body}{SMUGGLED}");
        let seen = backend.requests().len();

        let reply = exchange(gatehouse.addr, payload.as_bytes()).await;

        assert!(
            reply.closed,
            "{name}: connection left open: {}",
            reply.text()
        );
        assert_eq!(reply.status(), 200, "{name}: {}", reply.text());
        assert_eq!(reply.responses(), 1, "{name}: {}", reply.text());
        let requests = backend.requests();
        let new: Vec<&Recorded> = requests[seen..].iter().collect();
        assert_eq!(new.len(), 1, "{name}: {}", backend.received_text());
        assert_eq!(new[0].line, "POST /first HTTP/1.1", "{name}");
        assert_eq!(new[0].body, b"abc", "{name}: framed by Content-Length");
    }

    assert!(
        !backend.received_text().contains("smuggled"),
        "{}",
        backend.received_text()
    );
}

// ---------------------------------------------------------------------------------------------
// Bare LF

/// httparse takes a bare LF as a line end, which RFC 9112 §2.2 permits ("MAY recognize a single
/// LF"), so Gatehouse does not refuse it. What matters is that it reads the bytes one way and
/// hands the backend that reading, re-serialised with CRLF: the `Content-Length: 45` after a
/// bare LF is a header here, so the following 45 bytes (a request line and all) are the body,
/// and the backend receives a body, never a `/smuggled` request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_lf_is_a_line_end_and_the_backend_gets_the_same_framing() {
    let backend = RecordingBackend::start().await;
    let gatehouse = gatehouse_over(backend.addr).await;
    let hidden = SMUGGLED;
    let payload = format!(
        "POST /first HTTP/1.1\r\nHost: app.test\r\nX-A: 1\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{hidden}",
        hidden.len()
    );

    let reply = exchange(gatehouse.addr, payload.as_bytes()).await;

    assert!(reply.closed, "{}", reply.text());
    assert_eq!(reply.status(), 200, "{}", reply.text());
    let requests = backend.requests();
    assert_eq!(requests.len(), 1, "{}", backend.received_text());
    assert_eq!(requests[0].line, "POST /first HTTP/1.1");
    assert_eq!(requests[0].body, hidden.as_bytes());
    let received = backend.received_text();
    let head = &received[..received.find("\r\n\r\n").expect("a head")];
    assert!(
        !head.replace("\r\n", "").contains('\n'),
        "a bare LF reached the backend: {received:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The backend's own framing

/// Responses whose length a proxy cannot know for sure: both Content-Length and
/// Transfer-Encoding (RFC 9112 §6.3: "ought to be handled as an error"), in either order, and
/// lengths that disagree or do not parse. Passing one on would let the backend split the
/// client's response stream.
const AMBIGUOUS_RESPONSES: [&[u8]; 4] = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
      5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n\
      5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello",
];

/// Each ambiguous response is answered 502, and the upstream connection that carried it, whose
/// framing can no longer be trusted, is closed rather than parked: the next request (answered
/// plainly) arrives on a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ambiguous_backend_response_is_a_502_and_its_connection_is_not_reused() {
    let backend = RecordingBackend::answering(|nth| match AMBIGUOUS_RESPONSES.get(nth / 2) {
        Some(ambiguous) if nth % 2 == 0 => ambiguous,
        _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    })
    .await;
    let gatehouse = gatehouse_over(backend.addr).await;

    for (case, response) in AMBIGUOUS_RESPONSES.iter().enumerate() {
        let response = String::from_utf8_lossy(response);
        let first = exchange(
            gatehouse.addr,
            b"GET /ambiguous HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
        )
        .await;
        let second = sentinel(&gatehouse).await;

        assert!(first.closed, "{response:?}: {}", first.text());
        assert_eq!(first.status(), 502, "{response:?}: {}", first.text());
        assert!(
            !first.text().contains("hel"),
            "{response:?}: {}",
            first.text()
        );
        assert_eq!(parse_raw(&second.bytes).body, b"ok", "{response:?}");
        let requests = backend.requests();
        assert_eq!(requests.len(), 2 * case + 2, "{}", backend.received_text());
        assert_ne!(
            requests[2 * case].connection,
            requests[2 * case + 1].connection,
            "{response:?}: the connection that carried it was reused"
        );
    }
}
