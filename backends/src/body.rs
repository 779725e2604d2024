//! Response bodies that never hold more than one small buffer in memory.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

/// Size of each generated chunk: large enough that per-frame overhead is
/// negligible at multi-GB/s, small enough to stay well under socket buffers.
const CHUNK_LEN: usize = 64 * 1024;

/// Backing storage for generated bodies. Being `static`, every chunk is a
/// zero-copy `Bytes::from_static` slice, so streaming costs no allocation.
static CHUNK: [u8; CHUNK_LEN] = [b'x'; CHUNK_LEN];

/// The body of every response the backend sends.
///
/// A hand-written enum rather than `Either<Full, StreamBody>` keeps the error
/// type `Infallible` and the exact size hint, which lets hyper frame the
/// response with `Content-Length` instead of chunked encoding.
#[derive(Debug)]
pub(crate) enum ResponseBody {
    /// A fully built buffer (the JSON echo), sent as a single frame.
    Full(Option<Bytes>),
    /// `remaining` bytes of `b'x'`, produced on demand.
    Generated { remaining: u64 },
}

impl ResponseBody {
    pub(crate) fn full(bytes: Bytes) -> Self {
        ResponseBody::Full((!bytes.is_empty()).then_some(bytes))
    }

    pub(crate) fn empty() -> Self {
        ResponseBody::Full(None)
    }

    pub(crate) fn generated(len: u64) -> Self {
        ResponseBody::Generated { remaining: len }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let frame = match self.get_mut() {
            ResponseBody::Full(bytes) => bytes.take().map(Frame::data),
            ResponseBody::Generated { remaining: 0 } => None,
            ResponseBody::Generated { remaining } => {
                // Bounded by CHUNK_LEN, so the narrowing cast cannot truncate.
                let len = (*remaining).min(CHUNK_LEN as u64) as usize;
                *remaining -= len as u64;
                Some(Frame::data(Bytes::from_static(&CHUNK[..len])))
            }
        };
        Poll::Ready(frame.map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Full(bytes) => bytes.is_none(),
            ResponseBody::Generated { remaining } => *remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            ResponseBody::Generated { remaining } => SizeHint::with_exact(*remaining),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn drain(mut body: ResponseBody) -> (u64, usize) {
        let (mut total, mut frames) = (0, 0);
        while let Some(frame) = body.frame().await {
            let data = frame.unwrap().into_data().unwrap();
            assert!(data.iter().all(|&b| b == b'x'));
            total += data.len() as u64;
            frames += 1;
        }
        (total, frames)
    }

    #[tokio::test]
    async fn generated_body_yields_exactly_the_requested_length() {
        let len = 3 * CHUNK_LEN as u64 + 17;
        let body = ResponseBody::generated(len);
        assert_eq!(body.size_hint().exact(), Some(len));
        assert_eq!(drain(body).await, (len, 4));
    }

    #[tokio::test]
    async fn zero_length_generated_body_is_already_finished() {
        let body = ResponseBody::generated(0);
        assert!(body.is_end_stream());
        assert_eq!(drain(body).await, (0, 0));
    }

    #[test]
    fn empty_full_body_reports_end_of_stream() {
        assert!(ResponseBody::full(Bytes::new()).is_end_stream());
        assert!(!ResponseBody::full(Bytes::from_static(b"{}")).is_end_stream());
    }
}
