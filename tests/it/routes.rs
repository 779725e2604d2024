//! Access rules per path, method and role (`services[].routes`): the first matching route
//! decides, on the normalised path that is also forwarded; ambiguous paths are refused; the
//! rules hold on SQLite and PostgreSQL accounts alike; `gatehouse explain` and `gatehouse
//! check` report them with file, line and column; and routes reload under load with no failed
//! request.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::accounts::gatehouse_accounts;
use common::binary::{check, Gatehouse, TempDir, GATEHOUSE};
use common::postgres::{drop_database, fresh_database};
use common::scrape::{count, scrape};
use common::{assert_json_error, backends, Client, ConfigYaml, Proxy, Reply, ServiceYaml};

const APP: &str = "app.test";
const PASSWORD: &str = "correct horse battery";
const ROUTES: &str = "[{path: /public, auth: none}, {path: /admin, roles: [admin]}, \
                      {path: /reports, methods: [POST, PUT, DELETE], roles: [admin]}]";

fn app(backend: std::net::SocketAddr) -> ServiceYaml {
    ServiceYaml::new("app", APP)
        .backend(backend)
        .set("routes", ROUTES)
}

/// The path the backend received, or `None` when nothing was forwarded.
fn forwarded_path(reply: &Reply) -> Option<String> {
    (reply.status == 200).then(|| {
        reply.json()["path"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    })
}

/// A user's and an admin's tokens on the proxy's store.
async fn tokens(client: &Client, database_url: &str) -> (String, String) {
    let user = client.signed_up("ursa", "ursa@example.com", PASSWORD).await;
    gatehouse_accounts(
        database_url,
        &[
            "create",
            "--email",
            "ada@example.com",
            "--username",
            "ada",
            "--admin",
        ],
        &format!("{PASSWORD}\n"),
    )
    .await;
    let admin = client.token("ada@example.com", PASSWORD).await;
    (user, admin)
}

async fn routes_decide_by_path_method_and_role(config: ConfigYaml) {
    let database_url = config.database_url();
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();
    let (user, admin) = tokens(&client, &database_url).await;

    // Anonymous: only the public route is open; /publication is not under /public.
    assert_eq!(
        forwarded_path(&client.get(APP, "/public").await).as_deref(),
        Some("/public")
    );
    assert_eq!(client.get(APP, "/public/docs?x=1").await.status, 200);
    for path in ["/publication", "/", "/admin", "/reports"] {
        let reply = client.get(APP, path).await;
        assert_eq!(reply.status, 401, "{path}");
        assert_eq!(reply.header("www-authenticate"), "Bearer");
    }
    // A user: the service default lets them in, the admin route refuses with 403 JSON.
    assert_eq!(
        client.with_token("GET", APP, "/home", &user).await.status,
        200
    );
    assert_json_error(
        &client.with_token("GET", APP, "/admin", &user).await,
        403,
        "forbidden",
    );
    assert_json_error(
        &client.with_token("GET", APP, "/admin/x", &user).await,
        403,
        "forbidden",
    );
    assert_eq!(
        client
            .with_token("GET", APP, "/administrator", &user)
            .await
            .status,
        200
    );
    // Methods: reading reports is the service default, writing them is for admins.
    assert_eq!(
        client
            .with_token("GET", APP, "/reports/1", &user)
            .await
            .status,
        200
    );
    for method in ["POST", "PUT", "DELETE"] {
        let refused = client.with_token(method, APP, "/reports/1", &user).await;
        assert_json_error(&refused, 403, "forbidden");
        assert_eq!(
            client
                .with_token(method, APP, "/reports/1", &admin)
                .await
                .status,
            200
        );
    }
    assert_eq!(
        client
            .with_token("GET", APP, "/admin/x", &admin)
            .await
            .status,
        200
    );

    let metrics = scrape(proxy.addr).await;
    let decided = |route, result| {
        count(
            &metrics,
            "gatehouse_access_decisions_total",
            &[("service", "app"), ("route", route), ("result", result)],
        )
    };
    assert_eq!(decided("0", "allow"), 2);
    assert_eq!(decided("1", "deny_403"), 2);
    assert_eq!(decided("2", "deny_403"), 3);
    assert_eq!(decided("1", "deny_401"), 1, "anonymous /admin");
    assert_eq!(
        decided("default", "deny_401"),
        3,
        "/publication, / and GET /reports"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_decide_by_path_method_and_role_on_sqlite() {
    let backend = backends(1).await[0];
    routes_decide_by_path_method_and_role(ConfigYaml::new().service(app(backend))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_decide_by_path_method_and_role_on_postgres() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let backend = backends(1).await[0];
    routes_decide_by_path_method_and_role(ConfigYaml::new().database(&url).service(app(backend)))
        .await;
    drop_database(&url).await;
}

/// Dot segments, encoded dots and letters, repeated slashes and path parameters cannot take a
/// request past a rule: the rule sees the normalised path and the backend gets that same
/// path; what servers would read differently is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encodings_and_dot_segments_cannot_slip_past_a_rule() {
    let backend = backends(1).await[0];
    let config = ConfigYaml::new().service(app(backend));
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();
    let (user, _) = tokens(&client, &config.database_url()).await;

    for sneaky in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/%2E%2E/admin",
        "/public/./../admin/x",
        "//admin",
        "/%61dmin",
        "/public/../../admin",
    ] {
        let reply = client.get(APP, sneaky).await;
        assert_eq!(reply.status, 401, "{sneaky}: {}", reply.text());
        let refused = client.with_token("GET", APP, sneaky, &user).await;
        assert_eq!(refused.status, 403, "{sneaky}");
    }
    for ambiguous in [
        "/public%2F..%2Fadmin",
        "/public/..%2Fadmin",
        "/public/..%5Cadmin",
        "/public/..;/admin",
        "/public/%2e%2e;x/admin",
        "/public/%00",
        "/public/%zz",
    ] {
        let reply = client.get(APP, ambiguous).await;
        assert_json_error(&reply, 400, "ambiguous_path");
    }
    // What passes is forwarded exactly as it was decided.
    for (sent, received) in [
        ("/public/./docs", "/public/docs"),
        ("/public//docs/../faq?q=%2e", "/public/faq?q=%2e"),
        ("/%70ublic", "/public"),
        ("/public/a%20b", "/public/a%20b"),
    ] {
        let reply = client.get(APP, sent).await;
        assert_eq!(forwarded_path(&reply).as_deref(), Some(received), "{sent}");
    }
    // A service without routes forwards the path byte for byte, as before.
    let open_backend = backends(1).await[0];
    let open = Proxy::start(
        &ConfigYaml::new().service(ServiceYaml::open("open", "open.test").backend(open_backend)),
    )
    .await;
    let reply = open.client().get("open.test", "/a/../b%2Fc").await;
    assert_eq!(forwarded_path(&reply).as_deref(), Some("/a/../b%2Fc"));
}

const EXPLAINED: &str = "\
services:
  - name: service1
    hosts: [service1.my-company.com]
    auth: required
    routes:
      - path: /public
        auth: none
      - { path: /admin, roles: [admin] }
      - path: /reports
        methods: [POST, PUT, DELETE]
        roles: [admin]
    backends:
      - url: http://127.0.0.1:9001
";

fn explain(path: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(GATEHOUSE)
        .args(["explain", "--config"])
        .arg(path)
        .args(["--host", "Service1.My-Company.com:8080"])
        .args(args)
        .output()
        .expect("run gatehouse explain");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn explain_names_the_decision_and_the_deciding_route_for_every_rule_kind() {
    let dir = TempDir::new("explain");
    let file = dir.write("rules.yaml", EXPLAINED);
    let shown = file.display().to_string();
    for (args, decision, route) in [
        (&["--path", "/public/x", "--anonymous"][..], "allow", ":6:9"),
        (
            &["--path", "/publication", "--anonymous"],
            "deny 401",
            "service default",
        ),
        (
            &["--path", "/publication", "--anonymous", "--html"],
            "signin",
            "service default",
        ),
        (
            &["--path", "/admin/x", "--anonymous", "--html"],
            "signin",
            ":8:11",
        ),
        (
            &["--path", "/admin/x", "--role", "user"],
            "deny 403",
            ":8:11",
        ),
        (&["--path", "/admin", "--role", "admin"], "allow", ":8:11"),
        (
            &["--path", "/public/../admin", "--role", "user"],
            "deny 403",
            ":8:11",
        ),
        (
            &["--path", "/reports/1", "--method", "post", "--role", "user"],
            "deny 403",
            ":9:9",
        ),
        (
            &["--path", "/reports/1", "--method", "GET", "--role", "user"],
            "allow",
            "service default",
        ),
        (
            &[
                "--path",
                "/reports",
                "--method",
                "POST",
                "--anonymous",
                "--html",
            ],
            "deny 401",
            ":9:9",
        ),
    ] {
        let (ok, out, err) = explain(&file, args);
        assert!(ok, "{args:?}: {err}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{args:?}: {out}");
        assert_eq!(lines[0], decision, "{args:?}");
        if route == "service default" {
            assert_eq!(lines[1], route, "{args:?}");
        } else {
            assert_eq!(lines[1], format!("{shown}{route}"), "{args:?}");
        }
    }
    let (ok, out, _) = explain(&file, &["--path", "/public%2F..%2Fadmin", "--anonymous"]);
    assert!(ok);
    assert!(out.starts_with("deny 400\n"), "{out}");
    let unclaimed = std::process::Command::new(GATEHOUSE)
        .args(["explain", "--config"])
        .arg(&file)
        .args(["--host", "nobody.test", "--path", "/", "--anonymous"])
        .output()
        .unwrap();
    assert!(!unclaimed.status.success());
    assert!(String::from_utf8_lossy(&unclaimed.stderr).contains("no service claims"));
    let (ok, _, err) = explain(&file, &["--path", "/"]);
    assert!(
        !ok && err.contains("--role"),
        "a caller must be named: {err}"
    );
}

#[test]
fn check_reports_bad_routes_with_line_and_column() {
    let dir = TempDir::new("routes-check");
    let service = |routes: &str| {
        format!(
            "services:\n  - name: s\n    hosts: [s.test]\n    routes:\n{routes}    backends:\n      - url: http://127.0.0.1:1\n"
        )
    };
    for (routes, location, words) in [
        ("      - path: /admin\n        roles: [admin]\n      - path: /admin/users\n        methods: [GET]\n        auth: none\n",
         ":7:9:", "can never match: route 1 (line 5)"),
        ("      - { path: /x, auth: none }\n      - { path: /x, methods: [GET], auth: required }\n",
         ":6:11:", "can never match"),
        ("      - { path: admin, auth: none }\n", ":5:17:", "must start with /"),
        ("      - { path: '', auth: none }\n", ":5:17:", "must not be empty"),
        ("      - { path: /x, auth: none, rolez: [admin] }\n", ":5:", "unknown field `rolez`"),
        ("      - { path: /x }\n", ":5:", "neither `auth` nor `roles`"),
        ("      - { path: /a/../b, auth: none }\n", ":5:17:", "`..` segment"),
        ("      - { path: /a%2Fb, auth: none }\n", ":5:17:", "decoded"),
        ("      - { path: /x, methods: [G E T], auth: none }\n", ":5:", "not an HTTP method"),
    ] {
        let file = dir.write("bad.yaml", &service(routes));
        let output = check(&file);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{routes}");
        assert!(
            stderr.starts_with(&format!("{}{location}", file.display())) && stderr.contains(words),
            "{routes}\n{stderr}"
        );
    }
    let fine = dir.write(
        "fine.yaml",
        &service("      - { path: /admin/users, auth: none }\n      - { path: /admin, roles: [admin] }\n"),
    );
    assert!(
        check(&fine).status.success(),
        "a narrower route first is fine"
    );
}

fn with_routes(
    listen: std::net::SocketAddr,
    backend: std::net::SocketAddr,
    round: usize,
) -> String {
    let routes = if round % 2 == 0 {
        "[{path: /open, auth: none}, {path: /admin, roles: [admin]}]"
    } else {
        "[{path: /admin, roles: [admin]}, {path: /open, auth: none}, {path: /other, auth: none}]"
    };
    ConfigYaml::new()
        .listen(listen)
        .service(
            ServiceYaml::new("live", "live.test")
                .backend(backend)
                .set("routes", routes),
        )
        .render()
}

/// Twenty reloads that reorder and add routes while 200 requests a second go to a route open
/// in every version: none fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_reload_under_load_with_no_failed_request() {
    let backend = backends(1).await[0];
    let gatehouse =
        Arc::new(Gatehouse::start(&["serve"], |listen| with_routes(listen, backend, 0)).await);
    let client = Client::http1(gatehouse.addr);
    let load = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(5));
            let mut requests = Vec::new();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(6) {
                every.tick().await;
                let client = client.clone();
                requests.push(tokio::spawn(async move {
                    let open = client.get("live.test", "/open/x").await.status.as_u16();
                    let closed = client.get("live.test", "/admin").await.status.as_u16();
                    (open, closed)
                }));
            }
            let mut statuses = Vec::new();
            for request in requests {
                statuses.push(request.await.expect("request task"));
            }
            statuses
        })
    };
    for round in 1..=20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        gatehouse.rewrite_config(&with_routes(gatehouse.addr, backend, round));
        gatehouse.signal(libc::SIGHUP);
    }
    let statuses = load.await.unwrap();
    let wrong = statuses.iter().filter(|&&s| s != (200, 401)).count();
    assert!(
        statuses.len() >= 1000,
        "only {} request pairs sent",
        statuses.len()
    );
    assert_eq!(
        wrong,
        0,
        "{wrong} of {} request pairs answered wrongly",
        statuses.len()
    );
    let reloads = common::holds_within(Duration::from_secs(5), async || {
        count(
            &scrape(gatehouse.addr).await,
            "gatehouse_config_reloads_total",
            &[("result", "success")],
        ) >= 20
    })
    .await;
    assert!(reloads, "{}", gatehouse.logs());
}

/// The `gatehouse explain` sessions shown in the README give the answers shown, on the demo
/// config they name.
#[test]
fn the_readme_explain_examples_hold() {
    let readme = std::fs::read_to_string(common::files::repo("README.md")).unwrap();
    let lines: Vec<&str> = readme.lines().collect();
    let mut checked = 0;
    for (at, line) in lines.iter().enumerate() {
        let Some(command) = line.strip_prefix("$ gatehouse explain ") else {
            continue;
        };
        let output = std::process::Command::new(GATEHOUSE)
            .arg("explain")
            .args(command.split_whitespace())
            .current_dir(common::files::repo(""))
            .output()
            .unwrap();
        let shown = format!("{}\n{}\n", lines[at + 1], lines[at + 2]);
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            shown,
            "README: {line}"
        );
        checked += 1;
    }
    assert!(checked >= 2, "the README shows explain examples");
}
