//! The response parser and body decoder over bytes given in chunks, as the connection would
//! read them; public for the fuzz targets (fuzz/), which compare it with hyper's client. The
//! proxy reads through `send` and `BackendBody`, which drive the same two pieces.

use bytes::BytesMut;
use http::{HeaderMap, StatusCode, Version};

use super::decode::{Decoded, Decoder};
use super::parse::{parse_head, BodyKind, ParseError};

/// What the client makes of one response.
#[derive(Debug)]
pub struct Replayed {
    /// The final response's status, version, headers and framing, once its head was read.
    pub head: Option<(StatusCode, Version, HeaderMap, BodyKind)>,
    /// The body's bytes, as far as they were decoded.
    pub body: Vec<u8>,
    pub trailers: Option<HeaderMap>,
    /// `Ok` once the whole response was read; otherwise why not (`Incomplete`: the bytes ended
    /// first).
    pub outcome: Result<(), ParseError>,
    /// Whether the connection would be parked for another request: the backend keeps it
    /// alive, the response ended before the connection did, and nothing followed it.
    pub reusable: bool,
    /// The bytes after the response (after a 101: the new protocol's).
    pub rest: Vec<u8>,
}

/// Reads one response to a request (a `HEAD` one when `head_request`) from `chunks`, in turn,
/// after which the connection ends.
pub fn replay_response(chunks: &[&[u8]], head_request: bool) -> Replayed {
    let mut replayed = Replayed {
        head: None,
        body: Vec::new(),
        trailers: None,
        outcome: Ok(()),
        reusable: false,
        rest: Vec::new(),
    };
    let mut buf = BytesMut::new();
    let mut chunks = chunks.iter();
    let mut head = None;
    // Until the head is in.
    while head.is_none() {
        match parse_head(&mut buf, head_request) {
            Ok(Some(parsed)) => head = Some(parsed),
            Ok(None) => match chunks.next() {
                Some(chunk) => buf.extend_from_slice(chunk),
                None => {
                    replayed.outcome = Err(ParseError::Incomplete);
                    return replayed;
                }
            },
            Err(error) => {
                replayed.outcome = Err(error);
                return replayed;
            }
        }
    }
    let head = head.expect("read above");
    replayed.head = Some((head.status, head.version, head.headers, head.body));
    if head.body == BodyKind::Upgrade {
        replayed.rest = buf.to_vec();
        chunks.for_each(|chunk| replayed.rest.extend_from_slice(chunk));
        return replayed;
    }
    let mut decoder = Decoder::new(head.body);
    let mut ended_before_close = true;
    loop {
        match decoder.decode(&mut buf) {
            Ok(Decoded::Data(data)) => replayed.body.extend_from_slice(&data),
            Ok(Decoded::Trailers(trailers)) => replayed.trailers = Some(trailers),
            Ok(Decoded::End) => break,
            Ok(Decoded::NeedMore) => match chunks.next() {
                Some(chunk) => buf.extend_from_slice(chunk),
                None => {
                    ended_before_close = false;
                    if let Err(error) = decoder.eof() {
                        replayed.outcome = Err(error);
                        return replayed;
                    }
                }
            },
            Err(error) => {
                replayed.outcome = Err(error);
                return replayed;
            }
        }
    }
    replayed.rest = buf.to_vec();
    chunks.for_each(|chunk| replayed.rest.extend_from_slice(chunk));
    replayed.reusable = head.keep_alive && ended_before_close && replayed.rest.is_empty();
    replayed
}
