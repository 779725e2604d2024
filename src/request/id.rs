//! Request ids: the header that correlates a request across client, proxy logs and backend, and
//! the generator of new ids.

use std::sync::atomic::{AtomicU64, Ordering};

use http::header::{HeaderName, HeaderValue};

/// Correlates a request across client, proxy logs and backend.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request ids unique across restarts and replicas: a random per-process prefix and a counter.
#[derive(Debug)]
pub struct RequestIds {
    prefix: u64,
    counter: AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestIds {
    /// A generator with a fresh random prefix.
    pub fn new() -> Self {
        RequestIds {
            prefix: rand::random(),
            counter: AtomicU64::new(0),
        }
    }

    /// The next id: 32 lowercase hex digits (hand-encoded: `format!` showed in profiles).
    pub fn next(&self) -> HeaderValue {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut id = [0u8; 32];
        for (i, digit) in id.iter_mut().enumerate() {
            let word = if i < 16 { self.prefix } else { n };
            let shift = 60 - 4 * (i % 16);
            *digit = HEX[((word >> shift) & 0xf) as usize];
        }
        HeaderValue::from_bytes(&id).expect("hex digits are a valid header value")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_distinct_32_hex_digits() {
        let ids = RequestIds::new();
        let (a, b) = (ids.next(), ids.next());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.to_str().unwrap().bytes().all(|c| c.is_ascii_hexdigit()));
        let expected = format!("{:016x}{:016x}", ids.prefix, 1);
        assert_eq!(b.to_str().unwrap(), expected);
    }
}
