//! One log line per request, written when the response body has been sent (or abandoned), so
//! it carries the real byte count and total duration.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use crate::error::{BodyError, ProxyBody};
use crate::request::{request_host, ClientInfo, X_REQUEST_ID};

use super::Outcome;

/// The tracing target of access lines (`RUST_LOG=gatehouse::access=off` silences them).
pub(crate) const TARGET: &str = "gatehouse::access";

/// Whether access lines are wanted; checked first so a silenced log costs no allocation.
pub(crate) fn enabled() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::INFO)
}

/// The request half of an access line.
pub(crate) struct AccessRecord {
    method: http::Method,
    host: String,
    path: String,
    peer: std::net::IpAddr,
    request_id: String,
    started: Instant,
}

impl AccessRecord {
    pub(crate) fn start<B>(request: &Request<B>, client: &ClientInfo, started: Instant) -> Self {
        AccessRecord {
            method: request.method().clone(),
            host: request_host(request).unwrap_or_default().to_string(),
            path: request.uri().path().to_string(),
            peer: client.ip(request.headers()),
            request_id: header_text(request.headers().get(X_REQUEST_ID)),
            started,
        }
    }

    /// Wraps the response body so the line is written when it completes.
    pub(crate) fn finish(
        self,
        response: Response<ProxyBody>,
        outcome: Outcome,
    ) -> Response<ProxyBody> {
        let status = response.status().as_u16();
        response.map(|inner| {
            LoggedBody {
                inner,
                bytes: 0,
                status,
                outcome,
                record: self,
            }
            .boxed_unsync()
        })
    }
}

fn header_text(value: Option<&http::HeaderValue>) -> String {
    value
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

struct LoggedBody {
    inner: ProxyBody,
    bytes: u64,
    status: u16,
    outcome: Outcome,
    record: AccessRecord,
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.bytes += data.len() as u64;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        let r = &self.record;
        // Text fields go in as strings, never `%` (Display): the text log format then quotes and
        // escapes them, so a client's Host or path cannot forge a field (`host=a user="admin"`);
        // the JSON format writes them as JSON strings either way.
        tracing::info!(
            target: TARGET,
            method = r.method.as_str(),
            host = r.host.as_str(),
            path = r.path.as_str(),
            status = self.status,
            service = self.outcome.service_name(),
            backend = self.outcome.backend_name().unwrap_or("-"),
            user = self.outcome.user.as_deref().map_or("-", |u| &*u.claims.username),
            duration_ms = r.started.elapsed().as_secs_f64() * 1000.0,
            bytes = self.bytes,
            client = %r.peer,
            request_id = r.request_id.as_str(),
        );
    }
}
