//! Which host a request is for, by the one rule routing, forwarding and logging share.

use http::{header, Request};

/// The host a request is for: the authority of an absolute-form URI (or HTTP/2 `:authority`)
/// wins over the `Host` header, as RFC 9112 §3.2.2 requires; forwarding uses the same rule.
pub fn request_host<B>(request: &Request<B>) -> Option<&str> {
    match request.uri().authority() {
        Some(authority) => Some(authority.as_str()),
        None => request.headers().get(header::HOST)?.to_str().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_form_authority_wins_over_host_header() {
        let request = Request::get("http://service1.my-company.com/x")
            .header(header::HOST, "other.com")
            .body(())
            .unwrap();
        assert_eq!(request_host(&request), Some("service1.my-company.com"));
    }
}
