//! The chunked transfer coding (RFC 9112 §7.1), decoded strictly: hexadecimal sizes checked
//! for overflow, optional whitespace then extensions after the size (ignored, but at most
//! [`EXTENSIONS_LIMIT`] bytes of them per body), every line ended by CRLF, and trailer fields
//! (at most [`MAX_TRAILERS`] lines in [`TRAILERS_LIMIT`] bytes) handed on as a trailers frame.
//! Byte for byte the states and limits of hyper's decoder, which the proxy used before, so a
//! backend's body ends where it did then (the `upstream_response` fuzz target compares them).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::parse::ParseError;

/// Extension bytes allowed in one body, over all its chunks.
const EXTENSIONS_LIMIT: u64 = 16 * 1024;
/// Bytes allowed for all trailer fields.
const TRAILERS_LIMIT: usize = 16 * 1024;
/// Trailer lines allowed.
const MAX_TRAILERS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The first digit of a size.
    Start,
    Size,
    /// Whitespace after the size.
    SizeLws,
    Extension,
    SizeLf,
    Body,
    BodyCr,
    BodyLf,
    /// After the last chunk's size line: CR (the end) or a trailer line.
    EndCr,
    Trailer,
    TrailerLf,
    EndLf,
    End,
}

/// What a decoding step produced.
#[derive(Debug, PartialEq)]
pub(crate) enum Decoded {
    Data(Bytes),
    Trailers(HeaderMap),
    /// Nothing more can be decoded from the bytes at hand.
    NeedMore,
    End,
}

/// A chunked body's decoder; feed it the connection's buffer.
#[derive(Debug)]
pub(crate) struct Chunked {
    state: State,
    /// The size being read, then what is left of the chunk.
    size: u64,
    extensions: u64,
    trailers: Option<BytesMut>,
    trailer_lines: usize,
    /// An error met in the framing after a data frame, reported on the next call.
    failed: Option<ParseError>,
}

impl Chunked {
    pub(crate) fn new() -> Self {
        Chunked {
            state: State::Start,
            size: 0,
            extensions: 0,
            trailers: None,
            trailer_lines: 0,
            failed: None,
        }
    }

    /// Whether the body and its trailers have been handed on in full.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::End && self.trailers.is_none() && self.failed.is_none()
    }

    /// The next frame from `buf`, consuming what it decodes. After data, the framing bytes
    /// already at hand are read too, so the end of the body is known as early as possible.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ParseError> {
        if let Some(error) = self.failed.take() {
            return Err(error);
        }
        loop {
            if self.state == State::Body && !buf.is_empty() {
                let take = usize::try_from(self.size)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                let data = buf.split_to(take).freeze();
                self.size -= take as u64;
                if self.size == 0 {
                    self.state = State::BodyCr;
                }
                if let Err(error) = self.framing(buf) {
                    self.failed = Some(error);
                }
                return Ok(Decoded::Data(data));
            }
            self.framing(buf)?;
            match self.state {
                State::Body if !buf.is_empty() => continue,
                State::End => {
                    return match self.trailers.take() {
                        Some(trailers) => {
                            let lines = self.trailer_lines;
                            decode_trailers(&trailers, lines).map(Decoded::Trailers)
                        }
                        None => Ok(Decoded::End),
                    }
                }
                _ => return Ok(Decoded::NeedMore),
            }
        }
    }

    /// Steps through framing bytes until the body's data, the end, or the end of `buf`.
    fn framing(&mut self, buf: &mut BytesMut) -> Result<(), ParseError> {
        let mut used = 0;
        let result = loop {
            if matches!(self.state, State::Body | State::End) {
                break Ok(());
            }
            let Some(&byte) = buf.get(used) else {
                break Ok(());
            };
            used += 1;
            if let Err(error) = self.step(byte) {
                break Err(error);
            }
        };
        buf.advance(used);
        result
    }

    fn step(&mut self, byte: u8) -> Result<(), ParseError> {
        use State::*;
        self.state = match (self.state, byte) {
            (Start | Size, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                let digit = u64::from((byte as char).to_digit(16).unwrap_or(0));
                self.size = self
                    .size
                    .checked_mul(16)
                    .and_then(|s| s.checked_add(digit))
                    .ok_or(ParseError::Invalid("chunk size overflows"))?;
                Size
            }
            (Start, _) => return Err(ParseError::Invalid("chunk size missing")),
            (Size | SizeLws, b'\t' | b' ') => SizeLws,
            (Size | SizeLws, b';') => Extension,
            (Size | SizeLws | Extension, b'\r') => SizeLf,
            (Size, _) => return Err(ParseError::Invalid("invalid chunk size")),
            (SizeLws, _) => return Err(ParseError::Invalid("invalid chunk size line")),
            (Extension, b'\n') => return Err(ParseError::Invalid("LF in a chunk extension")),
            (Extension, _) => {
                self.extensions += 1;
                if self.extensions >= EXTENSIONS_LIMIT {
                    return Err(ParseError::Invalid("chunk extensions over their limit"));
                }
                Extension
            }
            (SizeLf, b'\n') if self.size == 0 => EndCr,
            (SizeLf, b'\n') => Body,
            (SizeLf, _) => return Err(ParseError::Invalid("chunk size line without LF")),
            (BodyCr, b'\r') => BodyLf,
            (BodyCr, _) => return Err(ParseError::Invalid("chunk data without CR")),
            (BodyLf, b'\n') => Start,
            (BodyLf, _) => return Err(ParseError::Invalid("chunk data without LF")),
            (EndCr, b'\r') => {
                if let Some(trailers) = &mut self.trailers {
                    put(trailers, byte)?;
                }
                EndLf
            }
            (EndCr, _) => {
                match &mut self.trailers {
                    Some(trailers) => put(trailers, byte)?,
                    None => {
                        let mut trailers = BytesMut::with_capacity(64);
                        trailers.put_u8(byte);
                        self.trailers = Some(trailers);
                    }
                }
                Trailer
            }
            (Trailer, _) => {
                put(self.trailers.as_mut().expect("trailer bytes"), byte)?;
                if byte == b'\r' {
                    TrailerLf
                } else {
                    Trailer
                }
            }
            (TrailerLf, b'\n') => {
                if self.trailer_lines >= MAX_TRAILERS {
                    return Err(ParseError::Invalid("more than 100 trailer fields"));
                }
                self.trailer_lines += 1;
                put(self.trailers.as_mut().expect("trailer bytes"), byte)?;
                EndCr
            }
            (TrailerLf, _) => return Err(ParseError::Invalid("trailer line without LF")),
            (EndLf, b'\n') => {
                if let Some(trailers) = &mut self.trailers {
                    put(trailers, byte)?;
                }
                End
            }
            (EndLf, _) => return Err(ParseError::Invalid("last chunk without final LF")),
            (Body | End, _) => unreachable!("framing stops at data and at the end"),
        };
        Ok(())
    }
}

fn put(trailers: &mut BytesMut, byte: u8) -> Result<(), ParseError> {
    trailers.put_u8(byte);
    if trailers.len() >= TRAILERS_LIMIT {
        return Err(ParseError::Invalid("trailers over their limit"));
    }
    Ok(())
}

fn decode_trailers(bytes: &[u8], lines: usize) -> Result<HeaderMap, ParseError> {
    let mut fields = vec![httparse::EMPTY_HEADER; lines];
    match httparse::parse_headers(bytes, &mut fields) {
        Ok(httparse::Status::Complete((_, fields))) => {
            let mut trailers = HeaderMap::with_capacity(fields.len());
            for field in fields {
                let name = HeaderName::from_bytes(field.name.as_bytes())
                    .map_err(|_| ParseError::Invalid("invalid trailer name"))?;
                let value = HeaderValue::from_bytes(field.value)
                    .map_err(|_| ParseError::Invalid("invalid trailer value"))?;
                trailers.append(name, value);
            }
            Ok(trailers)
        }
        Ok(httparse::Status::Partial) | Err(_) => Err(ParseError::Invalid("malformed trailers")),
    }
}
