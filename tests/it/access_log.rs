//! `--log-format json`: one access line per request with the fields operators filter on.

use crate::common;

use std::time::{Duration, Instant};

use common::binary::Gatehouse;
use common::{backends, raw_exchange, ConfigYaml, ServiceYaml};
use serde_json::Value;

/// The JSON access lines logged so far, waiting up to 5 s for one whose path is `path`
/// (a line is written once its response body has been sent).
async fn access_line(gatehouse: &Gatehouse, path: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let logs = gatehouse.logs();
        let found = logs
            .lines()
            .map(|line| {
                serde_json::from_str::<Value>(line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
            })
            .find(|line| line["target"] == "gatehouse::access" && line["path"] == path);
        if let Some(line) = found {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no access line for {path}:\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_access_lines_carry_the_request_and_its_outcome() {
    let backend = backends(1).await[0];
    let gatehouse = Gatehouse::start(&["serve", "--log-format", "json"], |listen| {
        ConfigYaml::new()
            .listen(listen)
            .service(ServiceYaml::open("app", "app.test").backend(backend))
            .render()
    })
    .await;

    let proxied = raw_exchange(
        gatehouse.addr,
        "GET /logged?secret=1 HTTP/1.1\r\nHost: App.Test:8080\r\nX-Request-Id: trace-42\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(proxied.status, 200);
    let line = access_line(&gatehouse, "/logged").await;
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["host"], "App.Test:8080");
    assert_eq!(line["status"], 200);
    assert_eq!(line["service"], "app");
    assert_eq!(line["backend"], backend.to_string());
    assert_eq!(line["bytes"], proxied.body.len() as u64);
    assert_eq!(line["request_id"], "trace-42");
    assert_eq!(line["client"], "127.0.0.1");
    assert!(
        line["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{line}"
    );
    assert!(
        !line.to_string().contains("secret=1"),
        "the query string is logged: {line}"
    );

    let missing = raw_exchange(
        gatehouse.addr,
        "GET /nowhere HTTP/1.1\r\nHost: control.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(missing.status, 404);
    let line = access_line(&gatehouse, "/nowhere").await;
    assert_eq!(line["status"], 404);
    assert_eq!(line["service"], "control");
    assert_eq!(line["backend"], "-");
    assert_eq!(line["request_id"].as_str().map(str::len), Some(32));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_lines_name_the_authenticated_user() {
    let backend = backends(1).await[0];
    let gatehouse = Gatehouse::start(&["serve", "--log-format", "json"], |listen| {
        ConfigYaml::new()
            .listen(listen)
            .service(ServiceYaml::new("private", "private.test").backend(backend))
            .render()
    })
    .await;
    let client = common::Client::http1(gatehouse.addr);
    let token = client
        .signed_up("logged-user", "logged@example.com", "logged-password")
        .await;

    let reply = client
        .with_token("GET", "private.test", "/mine", &token)
        .await;
    assert_eq!(reply.status, 200);
    let line = access_line(&gatehouse, "/mine").await;
    assert_eq!(
        (line["service"].as_str(), line["user"].as_str()),
        (Some("private"), Some("logged-user"))
    );
    assert_eq!(line["request_id"], reply.header("x-request-id"));

    let refused = client.get("private.test", "/anonymous").await;
    assert_eq!(refused.status, 401);
    let line = access_line(&gatehouse, "/anonymous").await;
    assert_eq!(
        (line["status"].as_u64(), line["user"].as_str()),
        (Some(401), Some("-"))
    );
}

/// The text format (the default) quotes and escapes what the client chose, so a `Host` such as
/// `a user="admin"` cannot add a field to the line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_access_lines_quote_what_the_client_sent() {
    let gatehouse = Gatehouse::start(&["serve"], |listen| {
        ConfigYaml::new().listen(listen).render()
    })
    .await;

    let reply = raw_exchange(
        gatehouse.addr,
        "GET /forged HTTP/1.1\r\nHost: x.test user=\"admin\"\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status, 404);
    let deadline = Instant::now() + Duration::from_secs(5);
    let line = loop {
        let logs = gatehouse.logs();
        if let Some(line) = logs
            .lines()
            .find(|l| l.contains("gatehouse::access") && l.contains("/forged"))
        {
            break line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no access line for /forged:\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        line.contains(r#"host="x.test user=\"admin\"""#),
        "the host is not quoted: {line}"
    );
    assert!(line.contains(r#"path="/forged""#), "{line}");
    assert!(line.contains(r#"user="-""#), "{line}");
    assert!(!line.contains(r#" user="admin""#), "a forged field: {line}");
}
