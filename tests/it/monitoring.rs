//! The monitoring files in `deploy/`: alert rules and their unit tests, the example Prometheus
//! config, the Grafana dashboard, and a real Prometheus scraping the live proxy.
//!
//! How to run:
//! `while IFS= read -r l; do export "$l"; done < <(scripts/install-prometheus-tools); cargo test --test it monitoring::`
//! Without `GATEHOUSE_PROMTOOL` / `GATEHOUSE_PROMETHEUS` the tests that need them print
//! `SKIPPED: …` and return, unless `GATEHOUSE_REQUIRE_TOOLS=1` makes that a failure. The metric
//! name and dashboard checks need no tools and always run.

use crate::common;

use std::collections::BTreeSet;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::binary::{free_addr, TempDir};
use common::scrape::scrape;
use common::{backends, Client, ConfigYaml, Proxy, ServiceYaml};

const PROMTOOL: &str = "GATEHOUSE_PROMTOOL";
const PROMETHEUS: &str = "GATEHOUSE_PROMETHEUS";
/// Every wait on a live process is bounded by this.
const PATIENCE: Duration = Duration::from_secs(30);

/// The metric families Gatehouse exports (`src/metrics.rs`), by the names a query selects: the
/// histogram only through its `_bucket`/`_sum`/`_count` series.
const DESIGN_METRICS: &[&str] = &[
    "gatehouse_requests_total",
    "gatehouse_request_duration_seconds_bucket",
    "gatehouse_request_duration_seconds_sum",
    "gatehouse_request_duration_seconds_count",
    "gatehouse_upstream_requests_total",
    "gatehouse_backend_up",
    "gatehouse_auth_failures_total",
    "gatehouse_logins_total",
    "gatehouse_token_refreshes_total",
    "gatehouse_connections_active",
    "gatehouse_config_reloads_total",
    "gatehouse_health_checks_total",
    "gatehouse_audit_events_total",
    "gatehouse_audit_events_dropped_total",
    "gatehouse_api_key_lookups_total",
];

/// The rule groups alerts.yml defines.
const RULE_GROUPS: &[&str] = &[
    "gatehouse.availability",
    "gatehouse.backends",
    "gatehouse.auth",
    "gatehouse.process",
];

// ---------------------------------------------------------------------------------------------
// Files and tools

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

fn read_yaml(path: &str) -> serde_yaml_ng::Value {
    let text = std::fs::read_to_string(deploy(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

fn dashboard() -> Value {
    let path = deploy("grafana/gatehouse-dashboard.json");
    let text = std::fs::read_to_string(&path).expect("read the dashboard");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("the dashboard is not JSON: {e}"))
}

/// The tool named by `var`, or `None` after saying the test is skipped; with
/// `GATEHOUSE_REQUIRE_TOOLS=1` a missing tool fails the test instead.
fn tool(var: &str, test: &str) -> Option<PathBuf> {
    let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) else {
        let reason = format!("{var} is not set (scripts/install-prometheus-tools prints it)");
        if std::env::var("GATEHOUSE_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!("GATEHOUSE_REQUIRE_TOOLS=1 but {reason}");
        }
        eprintln!("SKIPPED: {test}: {reason}");
        return None;
    };
    let path = PathBuf::from(path);
    assert!(path.is_file(), "{var}={} is not a file", path.display());
    Some(path)
}

/// Runs `program args…` with `stdin` and asserts it succeeded; returns its stdout and stderr.
fn run_ok(program: &Path, args: &[&str], stdin: &[u8]) -> String {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("wait");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    assert!(
        status.success(),
        "{} {args:?} failed ({status}):\n{text}",
        program.display()
    );
    text
}

// ---------------------------------------------------------------------------------------------
// Metric names in queries

/// The metric names a PromQL expression (or a Grafana panel query) selects: the identifiers left
/// once strings, label matchers, ranges, `$variables`, numbers and durations are skipped, and
/// that are not functions, keywords or grouping labels.
fn metric_names(expr: &str) -> Vec<String> {
    // Aggregations too: `sum without (le) (…)` puts no `(` right after `sum`.
    const KEYWORDS: &str = "and or unless bool offset by without on ignoring group_left \
        group_right inf nan sum min max avg group stddev stdvar count count_values bottomk topk \
        quantile";
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i);
        } else if c == '{' || c == '[' || (c == '(' && follows_grouping(&chars, i)) {
            i = skip_group(&chars, i);
        } else if c == '#' {
            i = chars[i..]
                .iter()
                .position(|&c| c == '\n')
                .map_or(chars.len(), |n| i + n);
        } else if c == '$' || c.is_ascii_digit() || c == '.' {
            i = skip_word(&chars, i + 1);
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let end = skip_word(&chars, i);
            let word: String = chars[i..end].iter().collect();
            let next = chars[end..].iter().find(|c| !c.is_whitespace());
            if next != Some(&'(') && !KEYWORDS.split_whitespace().any(|k| k == word) {
                names.push(word);
            }
            i = end;
        } else {
            i += 1;
        }
    }
    names
}

fn skip_word(chars: &[char], from: usize) -> usize {
    let len = chars[from..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == '_' || **c == ':' || **c == '.')
        .count();
    from + len
}

/// Past the string opening at `start` (backslash escapes honoured, except in raw `` ` `` strings).
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() && chars[i] != quote {
        i += if chars[i] == '\\' && quote != '`' {
            2
        } else {
            1
        };
    }
    i + 1
}

/// Past the bracket opening at `start` and its match; strings inside may hold brackets.
fn skip_group(chars: &[char], start: usize) -> usize {
    let (open, close) = match chars[start] {
        '{' => ('{', '}'),
        '[' => ('[', ']'),
        _ => ('(', ')'),
    };
    let mut depth = 0;
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => i = skip_string(chars, i) - 1,
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    i
}

/// Whether the `(` at `paren` opens the label list of `by`, `on` and the like.
fn follows_grouping(chars: &[char], paren: usize) -> bool {
    let before: String = chars[..paren].iter().collect();
    let word = before
        .trim_end()
        .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .next()
        .unwrap_or_default();
    [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ]
    .contains(&word)
}

fn is_design_metric(name: &str) -> bool {
    DESIGN_METRICS.contains(&name) || name == "up" || name.starts_with("process_")
}

/// Names in `expr` that Gatehouse does not export (nor Prometheus's own `up` and the
/// `process_*` family); panics when `expr` selects no metric.
fn unknown_metrics(expr: &str) -> Vec<String> {
    let names = metric_names(expr);
    assert!(!names.is_empty(), "no metric found in {expr:?}");
    names.into_iter().filter(|n| !is_design_metric(n)).collect()
}

// ---------------------------------------------------------------------------------------------
// The rule and dashboard files

/// `(alert name, rule)` for every alerting rule.
fn alert_rules() -> Vec<(String, serde_yaml_ng::Value)> {
    let rules = read_yaml("prometheus/alerts.yml");
    let groups = rules["groups"].as_sequence().expect("groups");
    groups
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules").clone())
        .map(|rule| {
            let name = rule["alert"]
                .as_str()
                .expect("only alerting rules")
                .to_string();
            (name, rule)
        })
        .collect()
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        all.push(panel);
        all.extend(panel["panels"].as_array().into_iter().flatten());
    }
    all
}

/// The query expressions of one panel.
fn exprs(panel: &Value) -> Vec<&str> {
    let targets = panel["targets"].as_array().into_iter().flatten();
    targets.filter_map(|t| t["expr"].as_str()).collect()
}

fn panel_title(panel: &Value) -> &str {
    panel["title"].as_str().unwrap_or("(untitled)")
}

#[test]
fn metric_name_extraction_finds_selected_metrics_only() {
    let expr = r#"histogram_quantile(0.99, sum by (service, le) (rate(gatehouse_request_duration_seconds_bucket{service=~"$service", code!="5{0}"}[$__rate_interval] offset 5m)))
        / on (service) group_left sum without (le) (x_total) > bool 1e3 and up{job="a"} # my_comment"#;
    assert_eq!(
        metric_names(expr),
        ["gatehouse_request_duration_seconds_bucket", "x_total", "up"]
    );
}

#[test]
fn a_misspelt_metric_name_is_caught() {
    let typo = r#"sum(rate(gatehouse_request_total{code=~"5.."}[5m])) / sum(rate(gatehouse_requests_total[5m]))"#;
    assert_eq!(unknown_metrics(typo), ["gatehouse_request_total"]);
    // A histogram is selected through its series, never by its bare name.
    assert_eq!(
        unknown_metrics("gatehouse_request_duration_seconds"),
        ["gatehouse_request_duration_seconds"]
    );
}

#[test]
fn alert_expressions_use_only_design_metrics() {
    let rules = alert_rules();
    assert!(
        rules.len() >= 6,
        "expected the alerts of the issue and more"
    );
    for (name, rule) in &rules {
        let expr = rule["expr"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no expr"));
        assert_eq!(unknown_metrics(expr), Vec::<String>::new(), "alert {name}");
    }
}

#[test]
fn dashboard_queries_use_only_design_metrics() {
    let dashboard = dashboard();
    let queried: Vec<_> = panels(&dashboard)
        .into_iter()
        .filter(|p| p["type"] != "row")
        .collect();
    assert!(!queried.is_empty());
    for panel in queried {
        let exprs = exprs(panel);
        assert!(
            !exprs.is_empty(),
            "panel {:?} has no query",
            panel_title(panel)
        );
        for expr in exprs {
            assert_eq!(
                unknown_metrics(expr),
                Vec::<String>::new(),
                "panel {:?}",
                panel_title(panel)
            );
        }
    }
}

#[test]
fn every_alert_has_a_severity_and_templated_annotations() {
    for (name, rule) in alert_rules() {
        let severity = rule["labels"]["severity"].as_str();
        assert!(
            matches!(severity, Some("critical" | "warning" | "info")),
            "{name}: severity {severity:?}"
        );
        for key in ["summary", "description"] {
            let text = rule["annotations"][key].as_str().unwrap_or_default();
            assert!(!text.trim().is_empty(), "{name} has no {key}");
        }
        let all = format!("{:?}", rule["annotations"]);
        assert!(
            all.contains("{{ $"),
            "{name}: annotations name no label or value"
        );
    }
}

#[test]
fn every_alert_has_a_firing_and_a_quiet_unit_test() {
    let tests = read_yaml("prometheus/alerts_test.yml");
    let (mut firing, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for test in tests["tests"].as_sequence().expect("tests") {
        for check in test["alert_rule_test"].as_sequence().into_iter().flatten() {
            let name = check["alertname"].as_str().expect("alertname").to_string();
            match check["exp_alerts"].as_sequence() {
                Some(alerts) if !alerts.is_empty() => firing.insert(name),
                _ => quiet.insert(name),
            };
        }
    }
    for (name, _) in alert_rules() {
        assert!(firing.contains(&name), "no unit test makes {name} fire");
        assert!(quiet.contains(&name), "no unit test keeps {name} quiet");
    }
}

#[test]
fn dashboard_covers_traffic_errors_latency_backends_and_logins() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "gatehouse");
    let panels = panels(&dashboard);
    let ids: BTreeSet<_> = panels
        .iter()
        .map(|p| p["id"].as_u64().expect("numeric id"))
        .collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    let has = |what: &str, test: &dyn Fn(&str) -> bool| {
        let found = panels.iter().any(|p| test(&exprs(p).join("\n")));
        assert!(found, "no panel shows {what}");
    };
    has("the request rate", &|e| {
        e.starts_with("sum by (service) (rate(gatehouse_requests_total") && !e.contains('/')
    });
    has("the 5xx ratio", &|e| {
        e.contains(r#"code=~"5..""#) && e.contains('/') && e.contains("gatehouse_requests_total")
    });
    has("p50, p90 and p99 per service", &|e| {
        ["0.5", "0.9", "0.99"]
            .iter()
            .all(|q| e.contains(&format!("histogram_quantile({q}, sum by (service, le)")))
    });
    has("backend health", &|e| e.contains("gatehouse_backend_up"));
    has("logins", &|e| e.contains("gatehouse_logins_total"));
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(
            panel["datasource"]["uid"],
            "${datasource}",
            "{}",
            panel_title(panel)
        );
    }
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let test = "alert_rules_pass_promtool_check_and_unit_tests";
    let Some(promtool) = tool(PROMTOOL, test) else {
        return;
    };
    let rules = deploy("prometheus/alerts.yml");
    let checked = run_ok(&promtool, &["check", "rules", path_str(&rules)], b"");
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tests = deploy("prometheus/alerts_test.yml");
    let tested = run_ok(&promtool, &["test", "rules", path_str(&tests)], b"");
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn example_prometheus_config_passes_promtool_check() {
    let test = "example_prometheus_config_passes_promtool_check";
    let Some(promtool) = tool(PROMTOOL, test) else {
        return;
    };
    let config = deploy("prometheus/prometheus.yml");
    let checked = run_ok(&promtool, &["check", "config", path_str(&config)], b"");
    assert!(
        checked.contains("is valid prometheus config file"),
        "{checked}"
    );
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

// ---------------------------------------------------------------------------------------------
// The live proxy

/// A proxy with an open service `svc` (two backends) and a protected one, after a little of
/// every kind of traffic: proxied, refused, control plane, a failed login.
async fn proxy_with_traffic() -> Proxy {
    let addrs = backends(2).await;
    let config = ConfigYaml::new()
        .service(ServiceYaml::open("svc", "svc.test").backends(&addrs))
        .service(ServiceYaml::new("private", "private.test").backends(&addrs));
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();
    for _ in 0..6 {
        assert_eq!(client.get("svc.test", "/hello").await.status, 200);
    }
    assert_eq!(client.get("svc.test", "/status/503").await.status, 503);
    assert_eq!(client.get("private.test", "/").await.status, 401);
    assert_eq!(client.get("localhost", "/health").await.status, 200);
    let login = json!({"email": "nobody@example.com", "password": "not-the-password"});
    assert_eq!(client.post_json("/login", &login).await.status, 401);
    proxy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_metrics_pass_promtool_lint() {
    let Some(promtool) = tool(PROMTOOL, "live_metrics_pass_promtool_lint") else {
        return;
    };
    let proxy = proxy_with_traffic().await;
    let metrics = scrape(proxy.addr).await;
    assert!(metrics.contains(r#"service="svc""#), "{metrics}");

    let problems = run_ok(&promtool, &["check", "metrics"], metrics.as_bytes());
    assert_eq!(problems.trim(), "", "promtool check metrics complained");
}

/// A Prometheus server on a free loopback port; killed on drop, its log shown if a test failed.
struct Prometheus {
    addr: SocketAddr,
    child: Child,
    dir: TempDir,
}

impl Prometheus {
    /// Starts `binary` scraping `target` every second as job `gatehouse`, with alerts.yml loaded,
    /// and waits until it is ready. A port taken between choosing and binding it is retried.
    async fn start(binary: &Path, target: SocketAddr) -> Self {
        for _ in 0..5 {
            let dir = TempDir::new("prometheus");
            let config = dir.write("prometheus.yml", &scrape_config(target));
            let addr = free_addr();
            let log = std::fs::File::create(dir.path().join("log")).expect("create the log");
            let child = Command::new(binary)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn prometheus");
            let mut prometheus = Prometheus { addr, child, dir };
            if prometheus.wait_ready().await {
                return prometheus;
            }
            assert!(
                prometheus.log().contains("address already in use"),
                "prometheus exited"
            );
        }
        panic!("no free port for prometheus after 5 attempts");
    }

    /// Polls `/-/ready` until 200 (true) or the process exits (false); panics after [`PATIENCE`].
    async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if self.child.try_wait().expect("poll prometheus").is_some() {
                return false;
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                let reply = Client::http1(self.addr).get("127.0.0.1", "/-/ready").await;
                if reply.status == 200 {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("prometheus was not ready within {PATIENCE:?}");
    }

    /// `GET path` on the HTTP API: the whole JSON body.
    async fn get(&self, path: &str) -> Value {
        Client::http1(self.addr).get("127.0.0.1", path).await.json()
    }

    /// `GET path` on the HTTP API: its `data`, asserting `"status":"success"`.
    async fn api(&self, path: &str) -> Value {
        let body = self.get(path).await;
        assert_eq!(body["status"], "success", "GET {path}: {body}");
        body["data"].clone()
    }

    /// The series an instant query returns.
    async fn query(&self, expr: &str) -> Vec<Value> {
        let data = self.api(&query_path(expr)).await;
        data["result"].as_array().cloned().unwrap_or_default()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("prometheus log:\n{}", self.log());
        }
    }
}

fn query_path(expr: &str) -> String {
    let encoded: String = form_urlencoded::byte_serialize(expr.as_bytes()).collect();
    format!("/api/v1/query?query={encoded}")
}

fn scrape_config(target: SocketAddr) -> String {
    let rules = deploy("prometheus/alerts.yml");
    format!(
        "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
         rule_files: [{rules:?}]\n\
         scrape_configs:\n  - job_name: gatehouse\n    static_configs: [{{ targets: [\"{target}\"] }}]\n"
    )
}

/// Polls `probe` every 100 ms until it returns `Some`; panics naming `what` after [`PATIENCE`].
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {what} after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The dashboard's queries with Grafana's variables replaced, as Prometheus would receive them.
fn dashboard_queries() -> Vec<(String, String)> {
    let dashboard = dashboard();
    let mut queries = Vec::new();
    for panel in panels(&dashboard) {
        for expr in exprs(panel) {
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("$__range", "5m")
                .replace("$instance", ".*")
                .replace("$service", ".*");
            queries.push((panel_title(panel).to_string(), expr));
        }
    }
    queries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_proxy_and_loads_the_alert_rules() {
    let test = "prometheus_scrapes_the_proxy_and_loads_the_alert_rules";
    let Some(binary) = tool(PROMETHEUS, test) else {
        return;
    };
    let proxy = proxy_with_traffic().await;
    let prometheus = &Prometheus::start(&binary, proxy.addr).await;

    eventually(r#"up{job="gatehouse"} == 1"#, move || async move {
        let up = prometheus.query(r#"up{job="gatehouse"}"#).await;
        (up.first()?["value"][1] == "1").then_some(())
    })
    .await;
    let series = prometheus
        .query(r#"gatehouse_requests_total{service="svc"}"#)
        .await;
    assert!(
        series
            .iter()
            .any(|s| s["metric"]["code"] == "200" && s["metric"]["method"] == "GET"),
        "{series:?}"
    );

    let groups = eventually("every alert rule evaluated", move || async move {
        let groups = prometheus.api("/api/v1/rules").await["groups"].clone();
        let groups = groups.as_array()?.clone();
        let mut rules = groups
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default());
        rules.all(|r| r["health"] == "ok").then_some(groups)
    })
    .await;
    let loaded: BTreeSet<_> = groups.iter().filter_map(|g| g["name"].as_str()).collect();
    assert_eq!(loaded, RULE_GROUPS.iter().copied().collect(), "rule groups");

    for (panel, expr) in dashboard_queries() {
        let body = prometheus.get(&query_path(&expr)).await;
        assert_eq!(body["status"], "success", "panel {panel:?}: {expr}\n{body}");
    }
    let (_, rate) = dashboard_queries()
        .into_iter()
        .find(|(title, _)| title == "Request rate by service")
        .expect("the request-rate panel");
    let rate = &rate;
    eventually("the request-rate panel to show svc", move || async move {
        let rates = prometheus.query(rate).await;
        rates
            .iter()
            .any(|s| s["metric"]["service"] == "svc")
            .then_some(())
    })
    .await;
}
