//! `gatehouse check`: exit 0 for a valid file, or exit 1 with `PATH:LINE:COLUMN: message`.

use crate::common;

use common::binary::{check, TempDir};

/// A valid config; each test breaks one rule by replacing one piece of text.
const VALID: &str = "\
listen: 127.0.0.1:8080
limits:
  header_read_timeout: 10s
services:
  - name: app
    hosts: [app.test, www.app.test]
    strategy: round_robin
    auth: none
    timeout: 5s
    backends:
      - url: http://127.0.0.1:9001
        weight: 2
      - url: http://127.0.0.1:9002
  - name: api
    hosts:
      - api.test
    backends:
      - url: http://127.0.0.1:9003
";

/// Writes `VALID` with `from` replaced by `to`, runs `check`, and asserts exit 1 with stderr
/// starting `PATH:line:column: ` and containing every phrase.
fn assert_rejected(from: &str, to: &str, line: usize, column: usize, phrases: &[&str]) {
    assert!(VALID.contains(from), "the test text has no `{from}`");
    let text = VALID.replacen(from, to, 1);
    assert_rejected_text(&text, line, column, phrases);
}

fn assert_rejected_text(text: &str, line: usize, column: usize, phrases: &[&str]) {
    let dir = TempDir::new("check");
    let path = dir.write("gatehouse.yaml", text);
    let output = check(&path);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);

    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout: {stdout}\nstderr: {stderr}\nconfig:\n{text}"
    );
    let prefix = format!("{}:{line}:{column}: ", path.display());
    assert!(
        stderr.starts_with(&prefix),
        "expected stderr to start with `{prefix}`, got: {stderr}"
    );
    for phrase in phrases {
        assert!(stderr.contains(phrase), "no `{phrase}` in: {stderr}");
    }
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}

#[test]
fn a_valid_config_passes_check_with_exit_0() {
    let dir = TempDir::new("check");
    let path = dir.write("gatehouse.yaml", VALID);

    let output = check(&path);

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.starts_with(&format!("{}: ok", path.display())),
        "{stdout}"
    );
    assert!(output.stderr.is_empty());
}

#[test]
fn an_unknown_service_key_is_reported_at_the_key() {
    assert_rejected(
        "    timeout: 5s\n",
        "    timeout: 5s\n    retry: 3\n",
        10,
        5,
        &["unknown field `retry`"],
    );
}

#[test]
fn an_unknown_top_level_key_is_reported_at_the_key() {
    assert_rejected("limits:\n", "limitz:\n", 2, 1, &["unknown field `limitz`"]);
}

#[test]
fn a_host_claimed_by_two_services_is_reported_at_the_second_claim() {
    assert_rejected(
        "      - api.test",
        "      - WWW.App.Test",
        16,
        9,
        &["duplicate host `www.app.test`"],
    );
}

#[test]
fn a_host_listed_twice_in_one_service_is_reported_at_the_repeat() {
    assert_rejected(
        "[app.test, www.app.test]",
        "[app.test, App.Test]",
        6,
        23,
        &["duplicate host `app.test`"],
    );
}

#[test]
fn an_empty_backend_list_is_reported_at_the_list() {
    assert_rejected(
        "    backends:\n      - url: http://127.0.0.1:9003",
        "    backends: []",
        17,
        15,
        &["backends", "must not be empty"],
    );
}

#[test]
fn a_backend_url_with_another_scheme_is_reported_at_the_url() {
    assert_rejected(
        "http://127.0.0.1:9003",
        "ftp://127.0.0.1:9003",
        18,
        14,
        &["scheme `ftp`", "ftp://127.0.0.1:9003"],
    );
}

#[test]
fn a_backend_url_without_a_scheme_is_reported_at_the_url() {
    assert_rejected(
        "http://127.0.0.1:9002",
        "127.0.0.1:9002",
        13,
        14,
        &["needs a scheme"],
    );
}

#[test]
fn a_backend_url_with_a_path_is_reported_at_the_url() {
    assert_rejected(
        "http://127.0.0.1:9002",
        "http://127.0.0.1:9002/api",
        13,
        14,
        &["must not have a path"],
    );
}

/// `http::Uri` accepts any text after the colon as a port; `Authority::port()` then yields
/// `None` and the upstream connector silently falls back to port 80.
#[test]
fn a_backend_url_with_an_invalid_port_is_reported_at_the_url() {
    for url in ["http://127.0.0.1:notaport", "http://127.0.0.1:99999"] {
        assert_rejected(
            "http://127.0.0.1:9002",
            url,
            13,
            14,
            &["port", url.trim_start_matches("http://")],
        );
    }
}

#[test]
fn a_bad_service_timeout_is_reported_at_the_value() {
    assert_rejected(
        "timeout: 5s",
        "timeout: 5 seconds",
        9,
        14,
        &["invalid duration `5 seconds`"],
    );
}

#[test]
fn a_duration_without_a_unit_is_reported_at_the_value() {
    assert_rejected(
        "header_read_timeout: 10s",
        "header_read_timeout: 10",
        3,
        24,
        &["invalid duration `10`"],
    );
}

#[test]
fn an_unknown_strategy_is_reported_with_the_choices() {
    assert_rejected(
        "strategy: round_robin",
        "strategy: least_conn",
        7,
        15,
        &["unknown variant `least_conn`", "round_robin", "random"],
    );
}

#[test]
fn an_out_of_range_weight_is_reported_at_the_value() {
    assert_rejected("weight: 2", "weight: 0", 12, 17, &["invalid weight 0"]);
}

#[test]
fn an_unknown_auth_policy_is_reported_with_the_choices() {
    assert_rejected(
        "auth: none",
        "auth: optional",
        8,
        11,
        &["unknown variant `optional`", "required", "none"],
    );
}

#[test]
fn a_yaml_syntax_error_is_reported_with_a_location() {
    assert_rejected_text("services: [\n", 2, 1, &[]);
}

#[test]
fn a_missing_file_is_reported_with_its_path() {
    let dir = TempDir::new("check");
    let path = dir.path().join("absent.yaml");

    let output = check(&path);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with(&format!("{}: cannot read", path.display())),
        "{stderr}"
    );
}

#[test]
fn an_identity_header_that_is_not_a_header_name_is_a_located_error() {
    assert_rejected(
        "listen: 127.0.0.1:8080\n",
        "listen: 127.0.0.1:8080\nidentity_headers: [remote-user, \"bad header\"]\n",
        2,
        33,
        &["invalid identity header `bad header`"],
    );
    assert_rejected(
        "listen: 127.0.0.1:8080\n",
        "listen: 127.0.0.1:8080\nidentity_headers: [Host]\n",
        2,
        20,
        &["cannot be an identity header"],
    );
}
