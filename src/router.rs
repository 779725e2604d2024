//! Host → service. Anything no service claims goes to the control plane.

use std::collections::HashMap;
use std::sync::Arc;

use foldhash::fast::RandomState;

use http::Request;

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::policy::{BodyPace, IdentityHeaders};
use crate::request::request_host;
use crate::service::{BuildContext, Service};

/// The routing table of one config snapshot.
#[derive(Debug, Default)]
pub struct Router {
    /// foldhash, not SipHash: looked up on every request, and only config-declared hosts are
    /// ever inserted, so a client-chosen `Host` cannot grow a collision chain.
    by_host: HashMap<Box<str>, Arc<Service>, RandomState>,
    /// `limits.body_read_timeout` and `min_body_rate`, for the bodies the control plane reads
    /// itself.
    body_pace: BodyPace,
}

impl Router {
    /// Builds the table; hosts were validated unique and lowercase by the config. Backends
    /// that `previous` (the table being replaced) already had keep their health and counters.
    /// `tls` is whether the running listener serves TLS (not what a reloaded file says: a TLS
    /// change needs a restart, and HSTS must follow what clients really get).
    pub fn build(
        settings: &Settings,
        metrics: &Metrics,
        previous: Option<&Router>,
        tls: bool,
    ) -> Self {
        let mut by_host = HashMap::default();
        let identity_headers = Arc::new(IdentityHeaders::new(&settings.identity_headers));
        for service_settings in &settings.services {
            let name = service_settings.name.0.as_str();
            let old = previous.and_then(|p| p.service(name)).map(|s| &**s);
            let context = BuildContext {
                metrics,
                tls,
                limits: &settings.limits,
                identity_headers: &identity_headers,
            };
            let service = Arc::new(Service::from_settings(service_settings, context, old));
            let checks = service.health_check.as_ref();
            crate::balancer::active_check::start(&service.name, &service.backends, checks);
            for host in service_settings.hosts.iter() {
                by_host.insert(host.0.as_str().into(), Arc::clone(&service));
            }
        }
        Router {
            by_host,
            body_pace: BodyPace::from(&settings.limits),
        }
    }

    /// How fast a request body must arrive: the longest pause between its chunks and its
    /// minimum rate (408 beyond).
    pub fn body_pace(&self) -> BodyPace {
        self.body_pace
    }

    /// The service named `name`.
    pub fn service(&self, name: &str) -> Option<&Arc<Service>> {
        self.by_host.values().find(|s| &*s.name == name)
    }

    /// `(service, backend)` pairs of this table that `next` no longer has.
    pub fn departed_backends(&self, next: &Router) -> Vec<(Arc<str>, String)> {
        let mut gone = Vec::new();
        for service in self.services() {
            let kept = next.service(&service.name);
            for backend in service.backends.iter() {
                if kept.and_then(|k| k.backend(&backend.authority)).is_none() {
                    gone.push((service.name.clone(), backend.authority.to_string()));
                }
            }
        }
        gone
    }

    /// Each service once (a service claiming several hosts appears once).
    fn services(&self) -> impl Iterator<Item = &Arc<Service>> {
        let mut seen: Vec<&Arc<Service>> = Vec::new();
        self.by_host.values().filter(move |s| {
            let new = !seen.iter().any(|x| Arc::ptr_eq(x, s));
            if new {
                seen.push(s);
            }
            new
        })
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

/// `host` without its `:port` (an IPv6 literal keeps its brackets).
pub(crate) fn strip_port(host: &str) -> &str {
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
        Router::build(&parse_str(yaml, "t").unwrap(), &Metrics::new(), None, false)
    }

    fn two_backends(second: u16) -> Router {
        let yaml = format!("services:\n  - name: s1\n    hosts: [a.test, b.test]\n    backends: [{{url: 'http://127.0.0.1:1'}}, {{url: 'http://127.0.0.1:{second}'}}]\n");
        Router::build(
            &parse_str(&yaml, "t").unwrap(),
            &Metrics::new(),
            None,
            false,
        )
    }

    #[test]
    fn rebuilt_table_keeps_the_state_of_unchanged_backends() {
        let metrics = Metrics::new();
        let yaml = "services:\n  - name: s1\n    hosts: [a.test]\n    backends: [{url: 'http://127.0.0.1:1'}]\n";
        let settings = parse_str(yaml, "t").unwrap();
        let old = Router::build(&settings, &metrics, None, false);
        old.lookup("a.test").unwrap().backends[0].state.refused();
        let new = Router::build(&settings, &metrics, Some(&old), false);
        let (a, b) = (
            &old.lookup("a.test").unwrap().backends[0],
            &new.lookup("a.test").unwrap().backends[0],
        );
        assert!(Arc::ptr_eq(&a.state, &b.state));
        assert!(!b.state.is_available(crate::clock::now_ms()));
    }

    #[test]
    fn departed_backends_are_listed_once_per_service() {
        let (old, new) = (two_backends(2), two_backends(3));
        let gone = old.departed_backends(&new);
        assert_eq!(gone, [(Arc::from("s1"), "127.0.0.1:2".to_string())]);
        assert!(new.departed_backends(&new).is_empty());
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
    fn ipv6_literal_port_is_stripped() {
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("a.com:80"), "a.com");
    }
}
