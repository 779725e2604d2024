//! A response body's decoder over the connection's read buffer, whatever its framing: the
//! bytes in, frames out, no I/O (the body in `body.rs` reads; the fuzz target feeds).

use bytes::BytesMut;
use http_body::SizeHint;

use super::chunked::Chunked;
pub(crate) use super::chunked::Decoded;
use super::parse::{BodyKind, ParseError};

#[derive(Debug)]
pub(crate) enum Decoder {
    /// Bytes left of a `Content-Length` body.
    Length(u64),
    Chunked(Chunked),
    /// Until the connection closes.
    Close,
    /// The body has been handed on in full.
    Done,
}

impl Decoder {
    pub(crate) fn new(kind: BodyKind) -> Self {
        match kind {
            BodyKind::Empty | BodyKind::Upgrade | BodyKind::Length(0) => Decoder::Done,
            BodyKind::Length(len) => Decoder::Length(len),
            BodyKind::Chunked => Decoder::Chunked(Chunked::new()),
            BodyKind::Close => Decoder::Close,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        match self {
            Decoder::Done => true,
            Decoder::Chunked(chunked) => chunked.is_done(),
            _ => false,
        }
    }

    /// The next frame from `buf`, consuming what it decodes.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ParseError> {
        match self {
            Decoder::Done => Ok(Decoded::End),
            _ if self.is_done() => {
                *self = Decoder::Done;
                Ok(Decoded::End)
            }
            Decoder::Length(left) => {
                if buf.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                let take = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                *left -= take as u64;
                let data = buf.split_to(take).freeze();
                if *left == 0 {
                    *self = Decoder::Done;
                }
                Ok(Decoded::Data(data))
            }
            Decoder::Chunked(chunked) => chunked.decode(buf),
            Decoder::Close if buf.is_empty() => Ok(Decoded::NeedMore),
            Decoder::Close => Ok(Decoded::Data(buf.split().freeze())),
        }
    }

    /// The connection ended: the end of a close-delimited body, an error for any other that
    /// has not ended.
    pub(crate) fn eof(&mut self) -> Result<(), ParseError> {
        match self {
            Decoder::Close => {
                *self = Decoder::Done;
                Ok(())
            }
            _ if self.is_done() => Ok(()),
            _ => Err(ParseError::Incomplete),
        }
    }

    pub(crate) fn size_hint(&self) -> SizeHint {
        match self {
            Decoder::Length(left) => SizeHint::with_exact(*left),
            Decoder::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
