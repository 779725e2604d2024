//! The requests Gatehouse's own HTTP/1 server takes from a byte stream before it hands the
//! connection to hyper; public for the fuzz target `server_requests` (fuzz/), which checks
//! that hyper, given the same bytes, serves each of them as the same request with the same
//! body.

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http::Request;
use http_body_util::BodyExt;

use super::head::{self, Parsed};

/// The requests the server answers itself from `bytes`, as they arrive at once, in order, with
/// their bodies: up to the first head it leaves to hyper (or one longer than `max_head`,
/// hyper's read buffer), the end of the bytes, or a request after which the connection closes.
pub fn taken_heads(bytes: &[u8], max_head: usize, max_headers: usize) -> Vec<Request<Bytes>> {
    let mut buf = BytesMut::from(bytes);
    let mut taken = Vec::new();
    while !buf.is_empty() {
        let Parsed::Simple(head) = head::parse(&mut buf, max_headers) else {
            break;
        };
        if head.len > max_head {
            break;
        }
        let (parts, mut body) = head.request.into_parts();
        // A body taken with its head is whole: its one frame is ready at once.
        let data = match body.frame().now_or_never() {
            Some(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
            _ => Bytes::new(),
        };
        taken.push(Request::from_parts(parts, data));
        if !head.keep_alive {
            break;
        }
    }
    taken
}
