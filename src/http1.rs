//! HTTP/1.1 wire rules both of Gatehouse's HTTP/1 sides apply (its server, `server/h1`, and its
//! client to backends, `forwarder/h1`): reading list-valued fields, and the pieces a message
//! goes out in, chunk-size lines included, so that neither side formats or reads them its own
//! way. A leaf: it imports nothing from the rest of the crate.

use bytes::{Buf, Bytes};
use http::HeaderValue;

/// Whether the comma-separated `value` has `token` (any case), as hyper reads `Connection` and
/// `TE`; a value that is not visible ASCII has none.
pub fn has_token(value: &HeaderValue, token: &str) -> bool {
    value.to_str().is_ok_and(|value| {
        value
            .split(',')
            .any(|element| element.trim().eq_ignore_ascii_case(token))
    })
}

/// Whether the last transfer coding of a `Transfer-Encoding` value is `chunked` (hyper's
/// `is_chunked_`); a value that is not visible ASCII has none.
pub fn last_coding_is_chunked(value: &HeaderValue) -> bool {
    value.to_str().is_ok_and(|value| {
        value
            .rsplit(',')
            .next()
            .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("chunked"))
    })
}

/// A piece of an outgoing message, queued for a vectored write.
#[derive(Debug)]
pub enum Piece {
    Bytes(Bytes),
    /// A chunk-size line: up to 16 hex digits and CRLF, kept inline (no allocation per chunk).
    Size([u8; 18], u8),
    Static(&'static [u8]),
}

impl Piece {
    /// The line that starts a chunk of `len` bytes (upper-case hex, as hyper writes it).
    pub fn chunk_size(len: usize) -> Piece {
        let mut line = [0u8; 18];
        let digits = format_hex(len as u64, &mut line);
        line[digits] = b'\r';
        line[digits + 1] = b'\n';
        Piece::Size(line, (digits + 2) as u8)
    }

    /// What is still to be written.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Piece::Bytes(bytes) => bytes,
            Piece::Size(line, len) => &line[..usize::from(*len)],
            Piece::Static(bytes) => bytes,
        }
    }

    /// Drops the first `n` bytes, which were written.
    pub fn advance(&mut self, n: usize) {
        match self {
            Piece::Bytes(bytes) => bytes.advance(n),
            Piece::Size(line, len) => {
                line.copy_within(n..usize::from(*len), 0);
                *len -= n as u8;
            }
            Piece::Static(bytes) => *bytes = &bytes[n..],
        }
    }
}

fn format_hex(mut n: u64, out: &mut [u8; 18]) -> usize {
    let mut digits = [0u8; 16];
    let mut count = 0;
    loop {
        digits[count] = b"0123456789ABCDEF"[(n & 0xf) as usize];
        count += 1;
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    for i in 0..count {
        out[i] = digits[count - 1 - i];
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_lines_are_upper_case_hex_and_advance() {
        for (len, line) in [(0, "0\r\n"), (10, "A\r\n"), (65536, "10000\r\n")] {
            assert_eq!(Piece::chunk_size(len).bytes(), line.as_bytes());
        }
        let mut piece = Piece::chunk_size(0xABC);
        piece.advance(2);
        assert_eq!(piece.bytes(), b"C\r\n");
    }

    #[test]
    fn tokens_and_the_last_coding() {
        let value = HeaderValue::from_static("keep-alive, Close");
        assert!(has_token(&value, "close") && !has_token(&value, "upgrade"));
        assert!(last_coding_is_chunked(&HeaderValue::from_static(
            "gzip, Chunked "
        )));
        assert!(!last_coding_is_chunked(&HeaderValue::from_static(
            "chunked, gzip"
        )));
    }
}
