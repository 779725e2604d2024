//! `config_load`: config text → `config::parse_str` (what `gatehouse check` and every reload
//! run) → each service's runtime form (`Service::from_settings`, what a reload builds) and the
//! token keys (`TokenKeys::from_settings`, what `serve` starts with).
//!
//! Input: the config file's bytes. Promised: a refusal is `LABEL:LINE:COLUMN: message` with a
//! location inside the text; an accepted config keeps the config rules (unique lowercase
//! hosts without a port, unique service names, non-empty http backend lists, weights 1–100,
//! durations above zero), builds without panicking, and issues tokens that verify.

use std::collections::HashSet;
use std::time::Duration;

use gatehouse::auth::TokenKeys;
use gatehouse::clock::now_ms;
use gatehouse::config::{parse_str, ConfigError, JwtAlgorithm, Settings};
use gatehouse::metrics::Metrics;
use gatehouse::service::{BuildContext, IdentityHeaders, Service};
use gatehouse::store::{Account, Credentials, Role};

const LABEL: &str = "fuzz.yaml";

/// Parses `data` as a config file and checks what came out: `Some(accepted)`, or `None` when
/// the bytes are not UTF-8.
pub fn config_load(data: &[u8]) -> Option<bool> {
    // `config::load` reads the file with `read_to_string`: other bytes never reach the parser.
    let text = std::str::from_utf8(data).ok()?;
    match parse_str(text, LABEL) {
        Ok(settings) => {
            check_settings(&settings);
            build_services(&settings);
            issue_and_verify(&settings);
            Some(true)
        }
        Err(error) => {
            check_error(text, &error);
            Some(false)
        }
    }
}

fn check_error(text: &str, error: &ConfigError) {
    assert_eq!(error.path, LABEL);
    let (line, column) = error.location.expect("every refusal has a location");
    // The parser may point just past the last line (an unterminated flow sequence), never further.
    let lines = text.split('\n').count();
    assert!(
        (1..=lines).contains(&line) && column >= 1,
        "location {line}:{column} outside a {lines}-line text: {error}"
    );
    assert!(!error.message.is_empty());
    let shown = error.to_string();
    assert!(
        shown.starts_with(&format!("{LABEL}:{line}:{column}: ")),
        "{shown}"
    );
}

fn check_settings(settings: &Settings) {
    let mut hosts = HashSet::new();
    let mut names = HashSet::new();
    for service in &settings.services {
        let name = service.name.0.as_str();
        assert!(
            names.insert(name),
            "duplicate service name {name:?} accepted"
        );
        assert_ne!(
            name, "control",
            "the control plane's name accepted for a service"
        );
        assert!(!service.hosts.is_empty(), "{name}: no hosts");
        for host in service.hosts.iter() {
            let host = host.0.as_str();
            assert!(hosts.insert(host), "duplicate host {host:?} accepted");
            assert!(
                !host.is_empty() && !host.contains(':'),
                "host {host:?} accepted"
            );
            assert_eq!(host, host.to_ascii_lowercase(), "host not lowercased");
        }
        assert!(!service.backends.is_empty(), "{name}: no backends");
        for backend in service.backends.iter() {
            assert_eq!(backend.url.0.scheme_str(), Some("http"));
            let authority = backend.url.authority();
            assert!(!authority.host().is_empty());
            assert_ne!(authority.port_u16(), Some(0), "port 0 accepted");
            assert!(
                (1..=100).contains(&backend.weight.0),
                "weight {}",
                backend.weight.0
            );
        }
        assert!(
            service.request_timeout() > Duration::ZERO,
            "{name}: zero timeout"
        );
    }
    assert!(
        settings.auth.jwt.ttl > Duration::ZERO,
        "zero token lifetime accepted"
    );
}

/// What a reload does with an accepted config, short of starting health probes (which need a
/// runtime and the network).
fn build_services(settings: &Settings) {
    // A registry per config: the fuzzer makes up service names without end.
    let metrics = Metrics::new();
    let identity_headers = std::sync::Arc::new(IdentityHeaders::new(&settings.identity_headers));
    for (index, service) in settings.services.iter().enumerate() {
        let context = BuildContext {
            metrics: &metrics,
            tls: index % 2 == 1,
            limits: &settings.limits,
            identity_headers: &identity_headers,
        };
        let built = Service::from_settings(service, context, None);
        // A reload of the same config carries the old service's state over.
        let again = Service::from_settings(service, context, Some(&built));
        assert_eq!(again.backends.len(), service.backends.len());
        // Fresh backends are all available, so the balancer must pick one of them.
        for _ in 0..3 {
            let picked = again.balancer.pick(&again.backends, now_ms());
            assert!(
                picked.is_some_and(|i| i < again.backends.len()),
                "{picked:?}"
            );
        }
    }
}

/// What the first login does with an accepted config: a token issued under its `auth.jwt`
/// settings must verify under them. HS256 only: EdDSA would read a key file the fuzzer names.
fn issue_and_verify(settings: &Settings) {
    let jwt = &settings.auth.jwt;
    if jwt.algorithm != JwtAlgorithm::HS256 {
        return;
    }
    let keys = TokenKeys::from_settings(jwt, Some(super::auth_bearer::HS256_SECRET))
        .expect("a 32-byte secret is accepted");
    let credentials = Credentials {
        account: Account {
            id: "fuzz-account".into(),
            username: "fuzz".into(),
            email: "fuzz@example.com".into(),
            role: Role::User,
            created_at_ms: 0,
            disabled: false,
        },
        password_hash: String::new(),
        token_generation: 0,
    };
    let (token, claims) = keys.issue(&credentials).expect("a token is issued");
    assert_eq!(keys.verify(&token), Ok(claims), "a fresh token is refused");
}
