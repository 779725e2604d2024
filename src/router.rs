//! Host → service. Anything no service claims goes to the control plane.

use std::collections::HashMap;
use std::sync::Arc;

use http::{header, Request};

use crate::config::Settings;
use crate::service::Service;

/// The routing table of one config snapshot.
#[derive(Debug, Default)]
pub struct Router {
    by_host: HashMap<Box<str>, Arc<Service>>,
}

impl Router {
    /// Builds the table; hosts were validated unique and lowercase by the config.
    pub fn build(settings: &Settings) -> Self {
        let mut by_host = HashMap::new();
        for service_settings in &settings.services {
            let service = Arc::new(Service::from_settings(service_settings));
            for host in service_settings.hosts.iter() {
                by_host.insert(host.0.as_str().into(), Arc::clone(&service));
            }
        }
        Router { by_host }
    }

    /// The service that claims this request's host, if any.
    pub fn route<B>(&self, request: &Request<B>) -> Option<&Arc<Service>> {
        let host = request_host(request)?;
        self.lookup(host)
    }

    /// The service claiming `host` as sent (any case, with or without a port).
    pub fn lookup(&self, host: &str) -> Option<&Arc<Service>> {
        let host = strip_port(host);
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            self.by_host.get(host.to_ascii_lowercase().as_str())
        } else {
            self.by_host.get(host)
        }
    }
}

/// The host a request is for: the authority of an absolute-form URI (or HTTP/2 `:authority`)
/// wins over the `Host` header, as RFC 9112 §3.2.2 requires; forwarding uses the same rule.
pub fn request_host<B>(request: &Request<B>) -> Option<&str> {
    match request.uri().authority() {
        Some(authority) => Some(authority.as_str()),
        None => request.headers().get(header::HOST)?.to_str().ok(),
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // IPv6 literal: the port, if any, follows the closing bracket.
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rfind(':') {
        Some(colon) if host[colon + 1..].bytes().all(|b| b.is_ascii_digit()) => &host[..colon],
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;

    fn router() -> Router {
        let yaml = "services:\n  - name: s1\n    hosts: [service1.my-company.com]\n    backends: [{url: 'http://127.0.0.1:1'}]\n";
        Router::build(&parse_str(yaml, "t").unwrap())
    }

    #[test]
    fn host_with_port_and_upper_case_is_routed() {
        let r = router();
        assert_eq!(
            &*r.lookup("Service1.MY-company.com:8080").unwrap().name,
            "s1"
        );
        assert_eq!(&*r.lookup("service1.my-company.com.").unwrap().name, "s1");
    }

    #[test]
    fn unknown_host_is_not_routed() {
        assert!(router().lookup("other.my-company.com").is_none());
        assert!(router().lookup("").is_none());
    }

    #[test]
    fn absolute_form_authority_wins_over_host_header() {
        let request = Request::get("http://service1.my-company.com/x")
            .header(header::HOST, "other.com")
            .body(())
            .unwrap();
        assert_eq!(request_host(&request), Some("service1.my-company.com"));
    }

    #[test]
    fn ipv6_literal_port_is_stripped() {
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("a.com:80"), "a.com");
    }
}
