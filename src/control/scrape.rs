//! `GET /metrics`: the Prometheus text exposition.

use http::{header, HeaderValue, Response};

use crate::error::{full_body, ProxyBody};
use crate::metrics::Metrics;

/// Every metric in the text format (version 0.0.4), uncached.
pub(crate) fn render(metrics: &Metrics) -> Response<ProxyBody> {
    let mut response = Response::new(full_body(metrics.encode()));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
