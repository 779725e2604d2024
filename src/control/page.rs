//! `GET /accounts_page`: not served yet (404) until the page lands in the next commit.

use http::Response;

use crate::error::{ProxyBody, ProxyError};

/// The accounts page.
pub(super) fn accounts_page() -> Response<ProxyBody> {
    ProxyError::NotFound("/accounts_page".into()).into_response()
}
