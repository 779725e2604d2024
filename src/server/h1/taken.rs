//! The heads Gatehouse's own HTTP/1 server takes from a byte stream before it hands the
//! connection to hyper; public for the fuzz target `server_requests` (fuzz/), which checks
//! that hyper, given the same bytes, serves each of them as the same request without a body.

use bytes::BytesMut;
use http::Request;
use hyper::body::Incoming;

use super::head::{self, Parsed};

/// The requests the server answers itself from `bytes`, as they arrive at once, in order: up
/// to the first head it leaves to hyper (or one longer than `max_head`, hyper's read buffer),
/// the end of the bytes, or a request after which the connection closes.
pub fn taken_heads(bytes: &[u8], max_head: usize, max_headers: usize) -> Vec<Request<Incoming>> {
    let mut buf = BytesMut::from(bytes);
    let mut taken = Vec::new();
    while !buf.is_empty() {
        let before = buf.len();
        let Parsed::Simple(head) = head::parse(&mut buf, max_headers) else {
            break;
        };
        if before - buf.len() > max_head {
            break;
        }
        taken.push(head.request);
        if !head.keep_alive {
            break;
        }
    }
    taken
}
