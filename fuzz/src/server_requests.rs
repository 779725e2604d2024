//! `server_requests`: the bytes a client sends, served by hyper's HTTP/1 server (the patched
//! copy in `vendor/hyper`, configured as `server::accept` configures it: keep-alive, an 8 KiB
//! read buffer, 100 header fields; no timer) over an in-memory duplex on a current-thread
//! runtime with a paused clock. The service records every request (method, target, version,
//! header fields, the body's bytes and how it ended) and answers `200` with a small body.
//!
//! Properties:
//! - **Split invariance.** The bytes sent in one write and sent in the reads the settings line
//!   gives produce the same requests, the same body outcomes, the same response bytes (`date`
//!   lines removed) and the same end of the connection. Gatehouse's patch changes how hyper
//!   buffers what it reads and writes (`vendor/README.md`), which is exactly what a split
//!   changes; parsing itself is hyper's.
//! - **Agreement with a reference.** `reference` frames the same bytes on its own: `httparse`
//!   for each head (100 fields, at most 8 KiB as hyper's buffer allows), then RFC 9112 §6:
//!   `Transfer-Encoding` ending in `chunked` → strict chunked decoding, otherwise a valid
//!   `Content-Length` → that many bytes, otherwise no body; the connection persists unless
//!   `close`, HTTP/1.0 without `keep-alive`, both length fields, or `CONNECT` (answered 200, so
//!   hyper hands the connection over as a tunnel). hyper must serve exactly the requests the
//!   reference finds, with the same method, target, version, fields and body.
//! - **Gatehouse's own server agrees.** The requests `gatehouse::server::taken_heads` takes
//!   from the bytes (those Gatehouse's HTTP/1 server answers itself before it hands a
//!   connection to hyper) are hyper's first requests, the same in every field, with the same
//!   body, ended without trailers.
//! - The server finishes: after the client's last byte and its close, the connection future
//!   ends (a hang shows as the paused clock reaching `LIMIT`), and nothing panics.
//!
//! Input: a settings line, then the client's bytes:
//! ```text
//! 7 1 4096                  the sizes of the reads, in turn (none: one byte per read)
//! GET / HTTP/1.1\r\n…       possibly several pipelined requests, or garbage
//! ```
//! After the last read the client closes its sending side and reads until the server closes.
//!
//! Deliberate differences, where the reference follows hyper rather than the RFC's grammar
//! (each marked `Deviation` below):
//! - hyper's limits the RFC does not have: 16 KiB of chunk extensions per body, 16 KiB and 100
//!   lines of trailer section, a `Content-Length` up to `u64::MAX - 2`.
//! - `Transfer-Encoding`: hyper decides by the last comma-separated element of the last such
//!   line, and refuses when that element is empty (`chunked,`) or the line is not visible
//!   ASCII; the RFC's list rules would skip empty elements.
//! - `Content-Length` before `Transfer-Encoding` is still validated (an invalid one is a 400);
//!   one after it is ignored. hyper drops `content-length` from a request that has both, and
//!   keeps only the first of repeated equal ones.
//! - A chunk size may be followed by spaces or tabs without an extension; an extension is any
//!   bytes up to CR except LF (the RFC's grammar is tokens and quoted strings).
//! - `Connection` lines that are not visible ASCII are ignored.
//! - A trailer section with a bare LF inside: hyper reads trailer lines up to CRLF and hands
//!   the section to `httparse`, which also splits at the bare LF. The reference does not model
//!   that; the comparison stops at such a request (its head is still compared).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::reads::{read_sizes, settings_and_bytes, split};

/// `server::accept`'s `MIN_H1_BUFFER`: the read buffer, so the longest head hyper reads.
const MAX_BUF: usize = 8 * 1024;
const MAX_HEADERS: usize = 100;
/// On the paused clock: only a server that stopped making progress gets here.
const LIMIT: Duration = Duration::from_secs(3600);
const RESPONSE_BODY: &[u8] = b"ok\n";

/// One request as the service saw it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: Method,
    target: String,
    version: Version,
    /// In the order the request's `HeaderMap` iterates them.
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    end: BodyEnd,
}

#[derive(Debug, Clone, PartialEq)]
enum BodyEnd {
    /// The connection went away before the body ended or failed.
    Unfinished,
    Ended(Option<HeaderMap>),
    Failed,
}

/// What a connection made of the client's bytes.
#[derive(Debug, PartialEq)]
struct Served {
    requests: Vec<Seen>,
    /// Everything the server wrote, `date` lines removed.
    responses: Vec<u8>,
    /// How `serve_connection` ended.
    ended: Result<(), String>,
}

pub fn server_requests(data: &[u8]) {
    let (settings, input) = settings_and_bytes(data);
    let mut sizes = read_sizes(&String::from_utf8_lossy(settings));
    if sizes.is_empty() {
        sizes.push(1);
    }
    let whole = serve(&[input]);
    let split = serve(&split(input, &sizes));
    let reference = reference(input);
    if reference.head_refused {
        // hyper parses a head again only once a read brings an end of head (`is_complete_fast`
        // in `role.rs`): a malformed head that arrives whole is answered 400 at once, one that
        // arrives in pieces may first reach the 8 KiB limit (431) or the client's close (no
        // answer; a clean end when the bytes were only line breaks). Everything before it must
        // still be the same.
        assert_eq!(
            whole.requests, split.requests,
            "one read vs reads of {sizes:?}: requests"
        );
        assert_eq!(
            String::from_utf8_lossy(without_head_error(&whole.responses)),
            String::from_utf8_lossy(without_head_error(&split.responses)),
            "one read vs reads of {sizes:?}: responses"
        );
        assert!(
            whole.ended.is_err() && (split.ended.is_err() || reference.refused_breaks),
            "one read vs reads of {sizes:?}: {:?} vs {:?}",
            whole.ended,
            split.ended
        );
    } else {
        assert_eq!(
            whole,
            split,
            "one read vs reads of {sizes:?}: responses\n{}\nvs\n{}",
            String::from_utf8_lossy(&whole.responses),
            String::from_utf8_lossy(&split.responses)
        );
    }
    compare(&reference, &whole);
    own_server_agrees(input, &whole);
}

/// Every request Gatehouse's own HTTP/1 server takes from these bytes before handing the
/// connection to hyper (`gatehouse::server::taken_heads`) is one hyper serves, in the same
/// place, as the same request: method, target, version, fields in order, and body.
fn own_server_agrees(input: &[u8], served: &Served) {
    let taken = gatehouse::server::taken_heads(input, MAX_BUF, MAX_HEADERS);
    assert!(
        taken.len() <= served.requests.len(),
        "Gatehouse's server took {} requests, hyper served {}",
        taken.len(),
        served.requests.len()
    );
    for (i, (request, seen)) in taken.iter().zip(&served.requests).enumerate() {
        assert_eq!(
            *request.method(),
            seen.method,
            "own server, request {i}: method"
        );
        assert_eq!(
            request.uri().to_string(),
            seen.target,
            "own server, request {i}: target"
        );
        assert_eq!(
            request.version(),
            seen.version,
            "own server, request {i}: version"
        );
        let headers: Vec<(String, Vec<u8>)> = request
            .headers()
            .iter()
            .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
            .collect();
        assert_eq!(headers, seen.headers, "own server, request {i}: fields");
        assert_eq!(
            String::from_utf8_lossy(request.body()),
            String::from_utf8_lossy(&seen.body),
            "own server, request {i}: body"
        );
        assert_eq!(
            seen.end,
            BodyEnd::Ended(None),
            "own server, request {i}: hyper's body did not end"
        );
    }
}

/// The responses without the answer hyper writes itself to a head it cannot parse (in the
/// connection's version; `connection: close` unless that is HTTP/1.0 anyway).
fn without_head_error(responses: &[u8]) -> &[u8] {
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        for status in ["400 Bad Request", "431 Request Header Fields Too Large"] {
            for close in ["connection: close\r\n", ""] {
                let error = format!("{version} {status}\r\n{close}content-length: 0\r\n\r\n");
                if let Some(before) = responses.strip_suffix(error.as_bytes()) {
                    return before;
                }
            }
        }
    }
    responses
}

fn serve(chunks: &[&[u8]]) -> Served {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        tokio::time::timeout(LIMIT, drive(chunks))
            .await
            .unwrap_or_else(|_| {
                let sizes: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
                panic!("the connection did not end (reads {sizes:?})")
            })
    })
}

/// Until every task is waiting: the paused clock moves only when nothing else can run, so the
/// server has taken in (and answered) all it will before the client goes on.
async fn quiesce() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

async fn drive(chunks: &[&[u8]]) -> Served {
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    // Room for every response at once: what is checked is how the server reads. (With a pipe
    // that fills, hyper's error answer after a request that carried `Upgrade` is cut off where
    // the pipe was full: with an upgrade pending, the dispatcher returns the parse error without
    // flushing. That is hyper's, not the patch's, and depends on timing.)
    let (client, server) = tokio::io::duplex(64 * 1024 + 8 * total);
    let seen: Rc<RefCell<Vec<Seen>>> = Rc::default();
    let log = Rc::clone(&seen);
    let service = service_fn(move |request: Request<Incoming>| {
        let log = Rc::clone(&log);
        let (parts, body) = request.into_parts();
        let index = {
            let mut log = log.borrow_mut();
            log.push(Seen {
                method: parts.method,
                target: parts.uri.to_string(),
                version: parts.version,
                headers: parts
                    .headers
                    .iter()
                    .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
                    .collect(),
                body: Vec::new(),
                end: BodyEnd::Unfinished,
            });
            log.len() - 1
        };
        async move {
            let mut body = body;
            loop {
                let frame = body.frame().await;
                let mut log = log.borrow_mut();
                let seen = &mut log[index];
                match frame {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => seen.body.extend_from_slice(&data),
                        Err(frame) => {
                            if let Ok(trailers) = frame.into_trailers() {
                                seen.end = BodyEnd::Ended(Some(trailers));
                            }
                        }
                    },
                    Some(Err(_)) => {
                        seen.end = BodyEnd::Failed;
                        break;
                    }
                    None => {
                        if seen.end == BodyEnd::Unfinished {
                            seen.end = BodyEnd::Ended(None);
                        }
                        break;
                    }
                }
            }
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(RESPONSE_BODY))))
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .keep_alive(true)
        .max_buf_size(MAX_BUF)
        .max_headers(MAX_HEADERS);
    let connection = builder
        .serve_connection(TokioIo::new(server), service)
        .with_upgrades();

    let (mut from_server, mut to_server) = tokio::io::split(client);
    let send = async move {
        quiesce().await;
        for chunk in chunks {
            if to_server.write_all(chunk).await.is_err() {
                break; // the server closed
            }
            quiesce().await;
        }
        let _ = to_server.shutdown().await;
    };
    let receive = async move {
        let mut received = Vec::new();
        let _ = from_server.read_to_end(&mut received).await;
        received
    };
    // The connection's future is dropped (closing its end) once it completes.
    let (ended, (), received) = tokio::join!(connection, send, receive);
    let requests = seen.borrow().clone();
    Served {
        requests,
        responses: without_date(&received),
        ended: ended.map_err(|e| e.to_string()),
    }
}

/// The responses with their `date` lines taken out (the only part that depends on the clock).
fn without_date(responses: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(responses.len());
    let mut rest = responses;
    while let Some(at) = find(rest, b"\r\ndate: ") {
        out.extend_from_slice(&rest[..at]);
        rest = &rest[at + 2..];
        match find(rest, b"\r\n") {
            Some(end) => rest = &rest[end..],
            None => rest = &[],
        }
    }
    out.extend_from_slice(rest);
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// --- The reference ---------------------------------------------------------------------------

/// A request as the reference frames it.
#[derive(Debug)]
struct Expected {
    method: Method,
    target: String,
    version: Version,
    headers: BTreeMap<String, Vec<Vec<u8>>>,
    body: Vec<u8>,
    /// `None`: the body is malformed or cut short.
    end: Option<Option<HeaderMap>>,
}

#[derive(Debug, Default)]
struct Reference {
    requests: Vec<Expected>,
    /// A `Deviation` the reference does not model: compare no further than this request's head.
    stop_at: Option<(usize, &'static str)>,
    /// The connection ends on bytes that are not a head hyper takes (malformed, too large, cut
    /// short, or refused framing), not on the client's close between requests.
    head_refused: bool,
    /// Those bytes are line breaks only, malformed ones (`CR CR LF`): arriving byte by byte,
    /// hyper may take them for the client's clean close.
    refused_breaks: bool,
}

/// Framing of a request's body.
enum Framing {
    Length(u64),
    Chunked,
}

fn reference(input: &[u8]) -> Reference {
    let mut out = Reference::default();
    let mut rest = input;
    loop {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut head = httparse::Request::new(&mut fields);
        let len = match head.parse(rest) {
            Ok(httparse::Status::Complete(len)) if len <= MAX_BUF => len,
            // Malformed, too large (hyper answers 400 or 431), cut short, or the client's end.
            _ => {
                // (Only empty lines left is the client's end too: hyper skips them.)
                out.head_refused = !only_empty_lines(rest);
                out.refused_breaks = rest.iter().all(|&b| b == b'\r' || b == b'\n');
                break;
            }
        };
        // hyper builds these with the `http` crate, so may refuse what httparse accepted.
        let Ok(method) = Method::from_bytes(head.method.unwrap_or_default().as_bytes()) else {
            out.head_refused = true;
            break;
        };
        let Ok(uri) = Uri::try_from(head.path.unwrap_or_default()) else {
            out.head_refused = true;
            break;
        };
        let version = if head.version == Some(1) {
            Version::HTTP_11
        } else {
            Version::HTTP_10
        };
        let http11 = version == Version::HTTP_11;

        let mut lengths: Vec<&[u8]> = Vec::new();
        let mut last_coding: Option<&[u8]> = None;
        let mut valid_length_before_coding = true;
        let (mut close, mut keep_alive) = (false, false);
        let mut headers: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        for field in head.headers.iter() {
            let name = field.name.to_ascii_lowercase();
            match name.as_str() {
                "transfer-encoding" => {
                    // Deviation: the last element of the last line decides, and an empty one or
                    // a line that is not visible ASCII is no coding at all.
                    last_coding = Some(match visible_ascii(field.value) {
                        true => trim(field.value.rsplit(|&b| b == b',').next().unwrap_or(b"")),
                        false => b"",
                    });
                }
                "content-length" => {
                    // Deviation: one before `Transfer-Encoding` is validated all the same.
                    if last_coding.is_none() && digits(field.value).is_none() {
                        valid_length_before_coding = false;
                    }
                    lengths.push(field.value);
                }
                "connection" if visible_ascii(field.value) => {
                    // Deviation (the guard): hyper ignores a line that is not visible ASCII.
                    for token in field.value.split(|&b| b == b',') {
                        close |= trim(token).eq_ignore_ascii_case(b"close");
                        keep_alive |= trim(token).eq_ignore_ascii_case(b"keep-alive");
                    }
                }
                _ => {}
            }
            headers.entry(name).or_default().push(field.value.to_vec());
        }
        let framing = if let Some(coding) = last_coding {
            // RFC 9112 §6.1: HTTP/1.0 has no transfer codings (the framing is faulty), and a
            // request whose final coding is not chunked cannot be framed: 400.
            if !http11 || !coding.eq_ignore_ascii_case(b"chunked") || !valid_length_before_coding {
                out.head_refused = true;
                break;
            }
            // §6.3: Transfer-Encoding overrides Content-Length, and the connection closes after
            // the response. (hyper leaves `content-length` out of such a request's fields.)
            if !lengths.is_empty() {
                close = true;
                headers.remove("content-length");
            }
            Framing::Chunked
        } else if let Some(&first) = lengths.first() {
            // RFC 9110 §8.6: one valid value (repeated lines must agree). Deviation: hyper's
            // ceiling, and it keeps only the first of the repeated lines.
            let Some(length) = digits(first).filter(|&n| n <= u64::MAX - 2) else {
                out.head_refused = true;
                break;
            };
            if lengths.iter().any(|&l| digits(l) != Some(length)) {
                out.head_refused = true;
                break;
            }
            headers.insert("content-length".into(), vec![first.to_vec()]);
            Framing::Length(length)
        } else {
            Framing::Length(0)
        };
        rest = &rest[len..];

        let mut body = Vec::new();
        let end = match framing {
            Framing::Length(length) => {
                let take = usize::try_from(length)
                    .unwrap_or(usize::MAX)
                    .min(rest.len());
                body.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                (take as u64 == length).then_some(None)
            }
            Framing::Chunked => match chunked(rest, &mut body) {
                Chunked::Ended(used, trailers) => {
                    rest = &rest[used..];
                    Some(trailers)
                }
                Chunked::Failed => None,
                Chunked::Unmodelled(why) => {
                    out.stop_at = Some((out.requests.len(), why));
                    None
                }
            },
        };
        let failed = end.is_none();
        out.requests.push(Expected {
            method: method.clone(),
            target: uri.to_string(),
            version,
            headers,
            body,
            end,
        });
        let persistent = !close && (http11 || keep_alive);
        if failed || !persistent || method == Method::CONNECT || out.stop_at.is_some() {
            break;
        }
    }
    out
}

/// Whether `bytes` are empty lines (`CRLF` or a bare `LF`, which httparse skips before a
/// request line), perhaps ending in a lone `CR` still waiting for its `LF`. Anything else, a
/// `CR` followed by another `CR` included, is a malformed head: hyper answers it 400 when it
/// arrives in one read, and may see only the client's close when it arrives byte by byte.
fn only_empty_lines(mut bytes: &[u8]) -> bool {
    loop {
        bytes = match bytes {
            [] | [b'\r'] => return true,
            [b'\r', b'\n', rest @ ..] | [b'\n', rest @ ..] => rest,
            _ => return false,
        };
    }
}

fn visible_ascii(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', tail @ ..] = s {
        s = tail;
    }
    while let [head @ .., b' ' | b'\t'] = s {
        s = head;
    }
    s
}

/// `1*DIGIT` as a number.
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

enum Chunked {
    /// The body ended after this many bytes, with these trailers.
    Ended(usize, Option<HeaderMap>),
    Failed,
    Unmodelled(&'static str),
}

/// hyper's chunk extension and trailer section limits (Deviation).
const EXTENSIONS_LIMIT: usize = 16 * 1024;
const TRAILERS_LIMIT: usize = 16 * 1024;

/// RFC 9112 §7.1, appending the data to `body` as it goes (hyper hands data on before it sees
/// what follows it).
fn chunked(input: &[u8], body: &mut Vec<u8>) -> Chunked {
    let mut at = 0;
    let mut extensions = 0;
    loop {
        // chunk-size = 1*HEXDIG
        let start = at;
        let mut size: u64 = 0;
        while let Some(digit) = input.get(at).and_then(|&b| (b as char).to_digit(16)) {
            let Some(next) = size
                .checked_mul(16)
                .and_then(|s| s.checked_add(u64::from(digit)))
            else {
                return Chunked::Failed;
            };
            size = next;
            at += 1;
        }
        if at == start {
            return Chunked::Failed;
        }
        // Deviation: spaces or tabs may follow the size; an extension is anything but LF up to
        // CR, at most EXTENSIONS_LIMIT bytes over the body.
        while matches!(input.get(at), Some(b' ' | b'\t')) {
            at += 1;
        }
        if input.get(at) == Some(&b';') {
            at += 1;
            loop {
                match input.get(at) {
                    Some(b'\r') => break,
                    Some(b'\n') | None => return Chunked::Failed,
                    Some(_) => {
                        extensions += 1;
                        if extensions >= EXTENSIONS_LIMIT {
                            return Chunked::Failed;
                        }
                        at += 1;
                    }
                }
            }
        }
        if input.get(at..at + 2) != Some(b"\r\n") {
            return Chunked::Failed;
        }
        at += 2;
        if size == 0 {
            return trailer_section(input, at);
        }
        let available = usize::try_from(size)
            .unwrap_or(usize::MAX)
            .min(input.len() - at);
        body.extend_from_slice(&input[at..at + available]);
        at += available;
        if (available as u64) < size || input.get(at..at + 2) != Some(b"\r\n") {
            return Chunked::Failed;
        }
        at += 2;
    }
}

/// trailer-section = *( field-line CRLF ), then CRLF.
fn trailer_section(input: &[u8], start: usize) -> Chunked {
    let mut at = start;
    let mut lines = 0;
    loop {
        let Some(eol) = find(&input[at..], b"\r\n") else {
            return Chunked::Failed;
        };
        if eol == 0 {
            at += 2;
            break;
        }
        lines += 1;
        at += eol + 2;
        // Deviation: hyper's limits (it counts the section up to its final CRLF).
        if lines > MAX_HEADERS || at - start >= TRAILERS_LIMIT {
            return Chunked::Failed;
        }
    }
    if lines == 0 {
        return Chunked::Ended(at, None);
    }
    let section = &input[start..at];
    if at - start >= TRAILERS_LIMIT {
        return Chunked::Failed;
    }
    if section
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || section[i - 1] != b'\r'))
    {
        return Chunked::Unmodelled("a bare LF in a trailer section");
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let Ok(httparse::Status::Complete((_, fields))) = httparse::parse_headers(section, &mut fields)
    else {
        return Chunked::Failed;
    };
    let mut trailers = HeaderMap::new();
    for field in fields.iter() {
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(field.name.as_bytes()),
            http::HeaderValue::from_bytes(field.value),
        ) else {
            return Chunked::Failed;
        };
        trailers.append(name, value);
    }
    Chunked::Ended(at, Some(trailers))
}

fn compare(reference: &Reference, served: &Served) {
    let served_requests = &served.requests;
    let heads = match reference.stop_at {
        Some((index, why)) => {
            assert!(
                served_requests.len() > index,
                "hyper served {} requests, the reference {} before {why}",
                served_requests.len(),
                index + 1
            );
            index + 1
        }
        None => {
            assert_eq!(
                served_requests.len(),
                reference.requests.len(),
                "requests served: hyper {served_requests:#?}, the reference {:#?}",
                reference.requests
            );
            reference.requests.len()
        }
    };
    for (i, (seen, expected)) in served_requests
        .iter()
        .zip(&reference.requests)
        .take(heads)
        .enumerate()
    {
        assert_eq!(seen.method, expected.method, "request {i}: method");
        assert_eq!(seen.target, expected.target, "request {i}: target");
        assert_eq!(seen.version, expected.version, "request {i}: version");
        let mut fields: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        for (name, value) in &seen.headers {
            fields.entry(name.clone()).or_default().push(value.clone());
        }
        assert_eq!(fields, expected.headers, "request {i}: header fields");
        if reference.stop_at.is_some_and(|(index, _)| index == i) {
            break;
        }
        assert_eq!(
            String::from_utf8_lossy(&seen.body),
            String::from_utf8_lossy(&expected.body),
            "request {i}: body"
        );
        match (&seen.end, &expected.end) {
            (BodyEnd::Ended(theirs), Some(ours)) => {
                assert_eq!(theirs, ours, "request {i}: trailers")
            }
            (BodyEnd::Failed, None) => {}
            (theirs, ours) => {
                panic!("request {i}: the body's end: hyper {theirs:?}, the reference {ours:?}")
            }
        }
    }
}
