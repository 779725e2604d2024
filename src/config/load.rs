//! Reading a config file and reporting failures as `PATH:LINE:COLUMN: message`.

use std::fmt;
use std::path::Path;

use super::locate::{locate, Step};
use super::routes::first_unreachable;
use super::schema::Settings;
use super::values::with_scope;

/// A config that could not be used, with where the problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file as the user named it.
    pub path: String,
    /// 1-based line and column of the offending node, when the parser knows it.
    pub location: Option<(usize, usize)>,
    /// What is wrong, as a sentence.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.location {
            Some((line, column)) => write!(f, "{}:{line}:{column}: {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Reads and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let label = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: label.clone(),
        location: None,
        message: format!("cannot read the config file: {e}"),
    })?;
    parse_str(&text, &label)
}

/// Validates config text; `label` names it in errors.
pub fn parse_str(text: &str, label: &str) -> Result<Settings, ConfigError> {
    let blank = |line: &str| line.trim().is_empty() || line.trim_start().starts_with('#');
    if text.lines().all(blank) {
        return Err(ConfigError {
            path: label.to_string(),
            location: Some((1, 1)),
            message: "the config file is empty: it needs at least `services:`".to_string(),
        });
    }
    let settings = with_scope(|| serde_yaml_ng::from_str::<Settings>(text))
        .map_err(|e| from_yaml(e, label, text))?;
    check_routes(&settings, text, label)?;
    Ok(settings)
}

/// Refuses a route that can never match because an earlier route of its service covers its
/// path and methods: a rule an operator wrote but Gatehouse would never apply.
fn check_routes(settings: &Settings, text: &str, label: &str) -> Result<(), ConfigError> {
    for (index, service) in settings.services.iter().enumerate() {
        let Some((later, earlier)) = first_unreachable(&service.routes) else {
            continue;
        };
        let at = |route| route_location(text, index, route);
        let earlier_at = at(earlier).map_or(String::new(), |(line, _)| format!(" (line {line})"));
        return Err(ConfigError {
            path: label.to_string(),
            location: at(later).or(Some((1, 1))),
            message: format!(
                "this route of service {} can never match: route {}{earlier_at} comes first and \
                 covers its path {} and its methods",
                service.name.0,
                earlier + 1,
                service.routes[later].path.0
            ),
        });
    }
    Ok(())
}

/// Line and column of `services[service].routes[route]` in the config text.
pub fn route_location(text: &str, service: usize, route: usize) -> Option<(usize, usize)> {
    locate(
        text,
        &[
            Step::Key("services"),
            Step::Index(service),
            Step::Key("routes"),
            Step::Index(route),
        ],
    )
}

fn from_yaml(error: serde_yaml_ng::Error, label: &str, text: &str) -> ConfigError {
    let location = error
        .location()
        .map(|l| within_text(text, l.line(), l.column()));
    let full = error.to_string();
    // The parser appends " at line L column C"; the location already leads our line.
    let message = match full.rfind(" at line ") {
        Some(at) if location.is_some() => full[..at].to_string(),
        _ => full,
    };
    ConfigError {
        path: label.to_string(),
        location: location.or(Some((1, 1))),
        message,
    }
}

/// The parser reports an error at the end of a file without a final newline one line past it
/// (`3:1` for a two-line file), a place no editor or CI annotation can show: such a location
/// becomes the end of the last line.
fn within_text(text: &str, line: usize, column: usize) -> (usize, usize) {
    let lines = text.split('\n').count();
    if line <= lines {
        return (line, column);
    }
    let last = text.rsplit('\n').next().unwrap_or("");
    (lines, last.chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_past_the_last_line_points_at_its_end() {
        let error = parse_str("listen: 127.0.0.1:8080\nservices", "c.yaml").unwrap_err();
        assert_eq!(error.location, Some((2, 9)), "{error}");
    }

    const GOOD: &str = "\
listen: 127.0.0.1:8080
services:
  - name: service1
    hosts: [Service1.My-Company.com]
    backends:
      - url: http://127.0.0.1:9001
      - url: http://127.0.0.1:9002
        weight: 3
  - name: service2
    hosts: [service2.my-company.com]
    strategy: random
    auth: none
    timeout: 5s
    backends:
      - url: http://127.0.0.1:9003
";

    fn error_of(text: &str) -> String {
        parse_str(text, "app.yaml").unwrap_err().to_string()
    }

    #[test]
    fn a_full_config_parses_with_defaults() {
        let s = parse_str(GOOD, "app.yaml").unwrap();
        assert_eq!(s.services.len(), 2);
        assert_eq!(s.services[0].hosts[0].0, "service1.my-company.com");
        assert_eq!(s.services[0].strategy, super::super::Strategy::RoundRobin);
        assert_eq!(s.services[0].auth, super::super::ServiceAuth::Required);
        assert_eq!(s.services[0].backends[1].weight.0, 3);
        assert_eq!(s.services[1].timeout, std::time::Duration::from_secs(5));
        assert_eq!(s.limits.max_connections, 10_000);
        assert_eq!(s.database.url, "sqlite://data/gatehouse.db");
        assert_eq!(s.workers, super::super::Workers::Auto);
    }

    #[test]
    fn workers_take_auto_or_a_count() {
        let with = |w: &str| parse_str(&format!("workers: {w}\n{GOOD}"), "app.yaml");
        assert_eq!(with("auto").unwrap().workers, super::super::Workers::Auto);
        assert_eq!(with("3").unwrap().workers, super::super::Workers::Count(3));
        let err = with("many").unwrap_err().to_string();
        assert!(err.starts_with("app.yaml:1:10: "), "{err}");
        assert!(with("0")
            .unwrap_err()
            .to_string()
            .contains("auto or 1 to 1024"));
    }

    #[test]
    fn the_verification_bucket_has_defaults_turns_off_at_zero_and_needs_a_burst() {
        let limits = parse_str(GOOD, "app.yaml").unwrap().auth.limits;
        assert_eq!(limits.token_verifications_per_second.0, 20);
        assert_eq!(limits.token_verification_burst.0, 50);
        let with = |line: &str| format!("auth:\n  limits:\n    {line}\n{GOOD}");
        let off = parse_str(&with("token_verifications_per_second: 0"), "app.yaml").unwrap();
        assert_eq!(off.auth.limits.token_verifications_per_second.0, 0);
        let err = error_of(&with("token_verification_burst: 0"));
        assert!(err.starts_with("app.yaml:3:31: "), "{err}");
        assert!(err.contains("from 1 to 1000000"), "{err}");
        let err = error_of(&with("token_verifications_per_second: -1"));
        assert!(err.contains("from 0 to 1000000"), "{err}");
    }

    #[test]
    fn unknown_key_is_reported_with_line_and_column() {
        let text = GOOD.replace("    timeout: 5s\n", "    timeout: 5s\n    retires: 3\n");
        let err = error_of(&text);
        assert!(err.starts_with("app.yaml:14:5: "), "{err}");
        assert!(err.contains("unknown field `retires`"), "{err}");
    }

    #[test]
    fn body_rate_and_buffering_have_their_defaults_and_take_off_as_zero() {
        let s = parse_str(GOOD, "app.yaml").unwrap();
        let rate = s.limits.min_body_rate;
        assert_eq!(rate.bytes_per_second.0, 240);
        assert_eq!(rate.grace, std::time::Duration::from_secs(5));
        assert_eq!(s.services[0].request_buffering.0, None);

        let limits = "limits:\n  min_body_rate: {bytes_per_second: 0}\n";
        let s = parse_str(&format!("{limits}{GOOD}"), "app.yaml").unwrap();
        assert_eq!(s.limits.min_body_rate.bytes_per_second.0, 0);
        assert_eq!(s.limits.min_body_rate.grace.as_secs(), 5);
        for (value, bytes) in [("64KiB", Some(65536)), ("0", None), ("512", Some(512))] {
            let text = GOOD.replace(
                "    timeout: 5s\n",
                &format!("    timeout: 5s\n    request_buffering: {value}\n"),
            );
            let s = parse_str(&text, "app.yaml").unwrap();
            assert_eq!(s.services[1].request_buffering.0, bytes, "{value}");
        }
    }

    #[test]
    fn bad_body_rate_and_buffering_values_are_reported_where_they_are() {
        let limits = "limits:\n  min_body_rate: {bytes_per_second: 240, period: 5s}\n";
        let err = error_of(&format!("{limits}{GOOD}"));
        assert!(err.starts_with("app.yaml:2:"), "{err}");
        assert!(err.contains("unknown field `period`"), "{err}");
        assert!(err.contains("grace"), "{err}");

        let limits = "limits:\n  min_body_rate:\n    bytes_per_second: fast\n";
        let err = error_of(&format!("{limits}{GOOD}"));
        assert!(err.starts_with("app.yaml:3:23: "), "{err}");

        let text = GOOD.replace(
            "    timeout: 5s\n",
            "    timeout: 5s\n    request_buffering: 1GiB\n",
        );
        let err = error_of(&text);
        assert!(err.starts_with("app.yaml:14:24: "), "{err}");
        assert!(err.contains("at most 16MiB"), "{err}");
    }

    #[test]
    fn duplicate_host_is_reported_at_the_second_claim() {
        let text = GOOD.replace("[service2.my-company.com]", "[SERVICE1.my-company.com]");
        let err = error_of(&text);
        assert!(err.starts_with("app.yaml:10:13: "), "{err}");
        assert!(
            err.contains("duplicate host `service1.my-company.com`"),
            "{err}"
        );
    }

    #[test]
    fn empty_backend_list_is_reported_at_the_list() {
        let text = "services:\n  - name: a\n    hosts: [a.com]\n    backends: []\n";
        let err = error_of(text);
        assert!(err.starts_with("app.yaml:4:15: "), "{err}");
        assert!(err.contains("must not be empty"), "{err}");
    }

    #[test]
    fn bad_url_is_reported_at_the_url() {
        let text = GOOD.replace("http://127.0.0.1:9003", "ftp://127.0.0.1:9003");
        let err = error_of(&text);
        assert!(err.starts_with("app.yaml:15:14: "), "{err}");
        assert!(err.contains("scheme `ftp`"), "{err}");
    }

    #[test]
    fn bad_duration_is_reported_at_the_value() {
        let text = GOOD.replace("timeout: 5s", "timeout: 5 seconds");
        let err = error_of(&text);
        assert!(err.starts_with("app.yaml:13:14: "), "{err}");
        assert!(err.contains("invalid duration `5 seconds`"), "{err}");
    }

    #[test]
    fn unknown_strategy_is_reported_with_the_choices() {
        let text = GOOD.replace("strategy: random", "strategy: fastest");
        let err = error_of(&text);
        assert!(err.starts_with("app.yaml:11:15: "), "{err}");
        assert!(err.contains("unknown variant `fastest`"), "{err}");
        assert!(err.contains("round_robin"), "{err}");
    }

    #[test]
    fn yaml_syntax_error_has_a_location() {
        let err = error_of("services: [\n");
        assert!(err.starts_with("app.yaml:2:1: "), "{err}");
    }

    #[test]
    fn empty_file_is_an_error() {
        for empty in ["", "\n", "# only a comment\n"] {
            let err = error_of(empty);
            assert_eq!(
                err,
                "app.yaml:1:1: the config file is empty: it needs at least `services:`"
            );
        }
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = load(Path::new("/nonexistent/gatehouse.yaml")).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("/nonexistent/gatehouse.yaml: cannot read"));
    }

    #[test]
    fn the_scope_does_not_leak_between_parses() {
        parse_str(GOOD, "a").unwrap();
        parse_str(GOOD, "b").unwrap();
    }
}
