//! Request ids: the header that correlates a request across client, proxy logs and backend, and
//! the generator of new ids.

use std::sync::atomic::{AtomicU64, Ordering};

use http::header::{HeaderName, HeaderValue};

/// Correlates a request across client, proxy logs and backend.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request ids unique across restarts and replicas: a random per-process prefix and a counter.
#[derive(Debug)]
pub struct RequestIds {
    /// The random prefix as hex digits, spelled once rather than for every id.
    prefix_hex: [u8; 16],
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
            prefix_hex: hex(rand::random()),
            counter: AtomicU64::new(0),
        }
    }

    /// The next id: 32 lowercase hex digits (hand-encoded: `format!` showed in profiles).
    pub fn next(&self) -> HeaderValue {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut id = [0u8; 32];
        id[..16].copy_from_slice(&self.prefix_hex);
        id[16..].copy_from_slice(&hex(n));
        HeaderValue::from_bytes(&id).expect("hex digits are a valid header value")
    }
}

/// `word` as 16 lowercase hex digits, most significant first.
fn hex(word: u64) -> [u8; 16] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    for (i, digit) in digits.iter_mut().enumerate() {
        *digit = HEX[((word >> (60 - 4 * i)) & 0xf) as usize];
    }
    digits
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
        let prefix = std::str::from_utf8(&ids.prefix_hex).unwrap();
        assert_eq!(prefix, &a.to_str().unwrap()[..16]);
        let expected = format!("{prefix}{:016x}", 1);
        assert_eq!(b.to_str().unwrap(), expected);
        assert_eq!(&hex(0x0123_4567_89ab_cdef), b"0123456789abcdef");
    }
}
