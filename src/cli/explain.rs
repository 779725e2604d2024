//! `gatehouse explain`: what the access rules of a config file decide for one request, without
//! a running proxy, so an operator can test a rule change before reloading.
//!
//! The first line is the decision (`allow`, `deny 401`, `deny 403`, `signin`, or `deny 400`
//! for a path that would be refused), the second the route that made it, as
//! `FILE:LINE:COLUMN`, or `service default`. The same code decides live requests.

use std::path::Path;

use http::Method;

use crate::config::{self, ServiceSettings, Settings};
use crate::metrics::AccessResult;
use crate::policy::{decide, AccessRules};
use crate::request::normalize_path;
use crate::router::strip_port;
use crate::store::Role;

/// The request to explain.
#[derive(Debug, Clone)]
pub struct Question {
    /// The `Host` (any case, with or without a port).
    pub host: String,
    /// The method.
    pub method: String,
    /// The path as a client would send it (a query is ignored).
    pub path: String,
    /// The caller's role, or `None` for an anonymous caller.
    pub role: Option<Role>,
    /// Whether it is a browser opening a page (`GET`/`HEAD` accepting HTML).
    pub html: bool,
}

/// Why a question cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{0:?} is not an HTTP method")]
    Method(String),
    #[error("no service claims the host {0:?}: the request would go to the control plane")]
    NoService(String),
}

/// The two lines `gatehouse explain` prints.
pub fn explain(path: &Path, question: &Question) -> Result<[String; 2], ExplainError> {
    let settings = config::load(path)?;
    let text = std::fs::read_to_string(path).map_err(|error| ExplainError::Read {
        path: path.display().to_string(),
        error,
    })?;
    let method = Method::from_bytes(question.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| ExplainError::Method(question.method.clone()))?;
    let (index, service) = service_for(&settings, &question.host)
        .ok_or_else(|| ExplainError::NoService(question.host.clone()))?;
    let rules = AccessRules::from_settings(service);
    let request_path = question.path.split('?').next().unwrap_or("");
    let normalized = if rules.has_routes() {
        match normalize_path(request_path) {
            Ok(path) => path.into_owned(),
            Err(refused) => return Ok(["deny 400".into(), format!("path refused: {refused}")]),
        }
    } else {
        request_path.to_string()
    };
    let rule = rules.rule(&method, &normalized);
    let navigation = question.html && (method == Method::GET || method == Method::HEAD);
    let decision = match decide(&rule, question.role, navigation) {
        AccessResult::Allow => "allow",
        AccessResult::Deny401 => "deny 401",
        AccessResult::Deny403 => "deny 403",
        AccessResult::SignIn => "signin",
    };
    let matched = match rule.route {
        Some(route) => match config::route_location(&text, index, route) {
            Some((line, column)) => format!("{}:{line}:{column}", path.display()),
            None => format!(
                "{}: route {} of service {}",
                path.display(),
                route + 1,
                service.name.0
            ),
        },
        None => "service default".to_string(),
    };
    Ok([decision.to_string(), matched])
}

/// The service claiming `host` (port and a final dot ignored, any case), with its index.
fn service_for<'s>(settings: &'s Settings, host: &str) -> Option<(usize, &'s ServiceSettings)> {
    // As the router does: port and a final dot ignored, any letter case.
    let host = host.trim().to_ascii_lowercase();
    let host = strip_port(&host);
    let host = host.strip_suffix('.').unwrap_or(host);
    settings
        .services
        .iter()
        .enumerate()
        .find(|(_, service)| service.hosts.iter().any(|h| h.0 == host))
}
