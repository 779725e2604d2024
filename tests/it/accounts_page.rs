//! The accounts page (`/accounts_page`, the account list in a browser): served with its security headers and a CSP whose hashes
//! match its inline script and style; and used for real in headless Chromium, driven by
//! playwright-core (`tests/browser/accounts_page.mjs`): a failed and a good login, the list,
//! paging, search, an XSS username shown as text, the phone layout, logout, public mode and the
//! admin-only refusal.
//!
//! The browser test needs `GATEHOUSE_BROWSER_TOOLS` and `GATEHOUSE_CHROMIUM`, which
//! `eval "$(scripts/install-browser-tools)"` exports. Without them it prints
//! `SKIPPED: accounts page browser test: …` and returns, unless `GATEHOUSE_REQUIRE_BROWSER=1`.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use aws_lc_rs::digest::{digest, SHA256};
use base64::engine::{general_purpose::STANDARD, Engine};
use serde_json::{json, Value};

use common::accounts::{gatehouse_accounts, CONTROL};
use common::{ConfigYaml, Proxy, Reply};

const PASSWORD: &str = "correct horse battery";
/// Forbidden by the API's username rule, so written straight into the store.
const XSS_USERNAME: &str = "<img src=x onerror=alert(1)>";
/// How long the whole browser script may take before the test gives up on it.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// Plain HTTP

/// `'sha256-…'` of the text between `<tag>` and `</tag>` in `html`.
fn inline_hash(html: &str, tag: &str) -> String {
    let inner = html
        .split(&format!("<{tag}>"))
        .nth(1)
        .and_then(|rest| rest.split(&format!("</{tag}>")).next())
        .unwrap_or_else(|| panic!("the page has no inline <{tag}>"));
    format!(
        "'sha256-{}'",
        STANDARD.encode(digest(&SHA256, inner.as_bytes()))
    )
}

fn assert_page_headers(reply: &Reply) {
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), "text/html; charset=utf-8");
    assert_eq!(reply.header("x-content-type-options"), "nosniff");
    assert_eq!(reply.header("referrer-policy"), "no-referrer");
    assert_eq!(reply.header("x-frame-options"), "DENY");
    assert_eq!(reply.header("cache-control"), "no-store");
}

#[tokio::test]
async fn the_page_is_html_with_security_headers_and_a_csp_matching_its_inline_code() {
    let proxy = Proxy::start(&ConfigYaml::new()).await;
    let reply = proxy.client().get(CONTROL, "/accounts_page").await;
    assert_page_headers(&reply);
    let html = std::str::from_utf8(&reply.body).expect("UTF-8 page");
    assert!(html.starts_with("<!doctype html>"), "{html:.80}");
    assert!(
        html.contains("<form id=\"login\""),
        "the page has a login form"
    );

    let csp = reply.header("content-security-policy");
    let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
    let script_src = format!("script-src {}", inline_hash(html, "script"));
    let style_src = format!("style-src {}", inline_hash(html, "style"));
    for expected in [
        "default-src 'none'",
        &script_src,
        &style_src,
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(
            directives.contains(&expected),
            "`{expected}` missing: {csp}"
        );
    }

    let head = proxy
        .client()
        .send(
            http::Request::head("/accounts_page")
                .header(http::header::HOST, CONTROL)
                .body(common::empty())
                .unwrap(),
        )
        .await;
    assert_page_headers(&head);
    assert_eq!(head.header("content-security-policy"), csp);
    assert!(head.body.is_empty(), "HEAD has no body");
}

// ---------------------------------------------------------------------------------------------
// In Chromium

/// Where the browser tools are, or why they are not usable.
pub(crate) struct BrowserTools {
    pub(crate) tools: PathBuf,
    pub(crate) chromium: PathBuf,
}

impl BrowserTools {
    pub(crate) fn find() -> Result<Self, String> {
        let var = |name: &str| {
            std::env::var_os(name).map(PathBuf::from).ok_or(format!(
                "{name} is not set (eval \"$(scripts/install-browser-tools)\")"
            ))
        };
        let tools = var("GATEHOUSE_BROWSER_TOOLS")?;
        let chromium = var("GATEHOUSE_CHROMIUM")?;
        let playwright = tools.join("node_modules/playwright-core/package.json");
        if !playwright.is_file() {
            return Err(format!("{} is missing", playwright.display()));
        }
        if !chromium.is_file() {
            return Err(format!("{} is missing", chromium.display()));
        }
        let node = std::process::Command::new("node").arg("--version").output();
        if !node.is_ok_and(|out| out.status.success()) {
            return Err("node is not on PATH".into());
        }
        Ok(BrowserTools { tools, chromium })
    }
}

/// The tools, or `None` after saying loudly why the test is skipped (a panic when required).
fn browser_tools_or_skip() -> Option<BrowserTools> {
    match BrowserTools::find() {
        Ok(tools) => Some(tools),
        Err(reason) if std::env::var("GATEHOUSE_REQUIRE_BROWSER").as_deref() == Ok("1") => {
            panic!("GATEHOUSE_REQUIRE_BROWSER=1 but the browser test cannot run: {reason}")
        }
        Err(reason) => {
            // Straight to stderr, past libtest's capture, so a skip shows even when tests pass.
            let line = format!("SKIPPED: accounts page browser test: {reason}\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            None
        }
    }
}

fn user(n: usize) -> (String, String) {
    (format!("user{n:02}"), format!("user{n:02}@example.test"))
}

/// Registers `count` accounts `user01`… through `POST /account`; returns the first one's JSON.
async fn register_users(proxy: &Proxy, count: usize) -> Value {
    let client = proxy.client();
    let mut first = Value::Null;
    for n in 1..=count {
        let (username, email) = user(n);
        let reply = client.register(&username, &email, PASSWORD).await;
        assert_eq!(reply.status, 201, "register {username}: {:?}", reply.body);
        if n == 1 {
            first = reply.json();
        }
    }
    first
}

/// Writes an account the API would refuse straight into the proxy's store.
async fn insert_directly(proxy: &Proxy, username: &str, email: &str) {
    use gatehouse::store::{NewAccount, Role};
    let store = gatehouse::store::open(&proxy.database_url)
        .await
        .expect("open the proxy's store");
    let passwords = std::sync::Arc::new(gatehouse::auth::Passwords::new(1));
    let password_hash = passwords.hash(PASSWORD.into()).await.expect("hash");
    store
        .create(NewAccount {
            username: username.into(),
            email: email.into(),
            password_hash,
            role: Role::User,
        })
        .await
        .expect("insert the account");
}

/// An admin (made with the CLI) and a `login_success` event of an account whose username looks
/// like HTML, written to the store before this returns; the admin's email.
async fn audit_with_an_html_username(proxy: &Proxy) -> String {
    let email = "boss@example.test";
    let args = [
        "create",
        "--email",
        email,
        "--username",
        "boss",
        "--admin",
        "--password-stdin",
    ];
    gatehouse_accounts(&proxy.database_url, &args, &format!("{PASSWORD}\n")).await;
    insert_directly(proxy, XSS_USERNAME, "xss@example.test").await;
    let client = proxy.client();
    client.token("xss@example.test", PASSWORD).await;
    let admin = client.token(email, PASSWORD).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = client
            .with_token(
                "GET",
                CONTROL,
                "/audit?username=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E",
                &admin,
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        if reply.json()["events"]
            .as_array()
            .is_some_and(|e| !e.is_empty())
        {
            return email.to_string();
        }
        assert!(Instant::now() < deadline, "the event was not written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn page_url(proxy: &Proxy) -> String {
    format!("http://{}/accounts_page", proxy.addr)
}

/// Runs the browser script; its exit status, stdout and stderr.
async fn run_browser(tools: &BrowserTools, args: &[(&str, String)]) -> (bool, String, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/accounts_page.mjs");
    let mut command = tokio::process::Command::new("node");
    command
        .arg(script)
        .env("GATEHOUSE_BROWSER_TOOLS", &tools.tools)
        .env("GATEHOUSE_CHROMIUM", &tools.chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in args {
        command.arg(format!("--{name}")).arg(value);
    }
    let output = tokio::time::timeout(BROWSER_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("the browser script took over {BROWSER_TIMEOUT:?}"))
        .expect("run node");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Width and height from a PNG's IHDR chunk; panics unless `path` is a PNG.
pub(crate) fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        path.display()
    );
    let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (word(16), word(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_logs_in_pages_searches_and_logs_out_in_chromium_with_data_shown_as_text() {
    let Some(tools) = browser_tools_or_skip() else {
        return;
    };
    let started = Instant::now();
    let proxy = Proxy::start(&ConfigYaml::new()).await;
    let first = register_users(&proxy, 25).await;
    insert_directly(&proxy, XSS_USERNAME, "xss@example.test").await;
    let public = Proxy::start(&ConfigYaml::new().auth("accounts_page", "public")).await;
    register_users(&public, 1).await;
    let admin_only = Proxy::start(&ConfigYaml::new().auth("accounts_page", "admin")).await;
    register_users(&admin_only, 1).await;
    let admin_email = audit_with_an_html_username(&admin_only).await;

    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let screenshot = target.join("accounts_page.png");
    let mobile_screenshot = target.join("accounts_page_mobile.png");
    for stale in [&screenshot, &mobile_screenshot] {
        let _ = std::fs::remove_file(stale);
    }
    let (email, password) = (user(1).1, PASSWORD.to_string());
    let (ok, stdout, stderr) = run_browser(
        &tools,
        &[
            ("url", page_url(&proxy)),
            ("email", email),
            ("password", password),
            ("search", "user07".into()),
            ("xss-search", "onerror".into()),
            ("screenshot", screenshot.display().to_string()),
            ("mobile-screenshot", mobile_screenshot.display().to_string()),
            ("public-url", page_url(&public)),
            ("forbidden-url", page_url(&admin_only)),
            ("admin-url", page_url(&admin_only)),
            ("admin-email", admin_email),
            ("admin-password", PASSWORD.to_string()),
        ],
    )
    .await;
    let line = stdout.lines().last().unwrap_or_default();
    let findings: Value = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "the browser script printed no JSON findings ({e})\nstdout: {stdout}\nstderr: {stderr}"
        )
    });
    assert!(
        ok,
        "the browser script failed: {:#}\nstderr: {stderr}",
        findings
    );
    assert_findings(&findings, &first);
    assert_eq!(png_size(&screenshot).0, 1280, "desktop screenshot width");
    assert_eq!(
        png_size(&mobile_screenshot).0,
        375,
        "phone screenshot width"
    );
    eprintln!("accounts page browser findings: {line}");
    eprintln!(
        "accounts page browser test: passed in {:.1} s; screenshots {} and {}",
        started.elapsed().as_secs_f64(),
        screenshot.display(),
        mobile_screenshot.display()
    );
}

fn assert_findings(f: &Value, first: &Value) {
    let all = format!("{f:#}");
    let check = |pointer: &str, expected: Value| {
        assert_eq!(f.pointer(pointer), Some(&expected), "{pointer} in {all}");
    };
    check("/loginFormFirst", json!(true));
    check("/wrongPasswordMessage", json!("Email or password is wrong"));

    check("/firstPage/rows", json!(20));
    check("/firstPage/total", json!("26 accounts"));
    check("/firstPage/pageInfo", json!("Page 1 of 2"));
    check("/firstPage/prevDisabled", json!(true));
    check("/firstPage/logoutVisible", json!(true));
    check("/firstPage/createdIso", first["created_at"].clone());
    let created = f.pointer("/firstPage/created").and_then(Value::as_str);
    assert!(
        created.is_some_and(|c| !c.is_empty()),
        "created date shown: {all}"
    );
    check(
        "/storage",
        json!({"localStorage": 0, "sessionStorage": 0, "cookie": ""}),
    );

    check("/secondPage/rows", json!(6));
    check("/secondPage/pageInfo", json!("Page 2 of 2"));
    check("/secondPage/nextDisabled", json!(true));
    let second: Vec<&str> = f["secondPage"]["usernames"]
        .as_array()
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(
        second,
        [
            "user21",
            "user22",
            "user23",
            "user24",
            "user25",
            XSS_USERNAME
        ],
        "{all}"
    );

    check("/search/usernames", json!(["user07"]));
    check("/search/emails", json!(["user07@example.test"]));
    check("/search/total", json!("1 matching"));
    check("/search/pageInfo", json!("Page 1 of 1"));

    check("/xss/usernames", json!([XSS_USERNAME]));
    check("/xss/imagesInTable", json!(0));
    check("/xss/imagesInPage", json!(0));
    check("/events/dialogs", json!([]));
    check("/events/pageErrors", json!([]));
    check("/events/foreignRequests", json!([]));
    assert_console_errors_are_only_refusals(f, &all);

    check("/mobile/headerHidden", json!(true));
    let (scroll, viewport) = (&f["mobile"]["scrollWidth"], &f["mobile"]["viewportWidth"]);
    assert!(
        scroll.as_u64() <= viewport.as_u64(),
        "no sideways scroll at phone width: {all}"
    );

    check("/afterLogout/loginVisible", json!(true));
    check("/afterLogout/accountsHidden", json!(true));
    check("/afterLogout/rowsLeft", json!(0));
    check("/afterLogout/passwordLeft", json!(""));
    check("/afterLogout/oldTokenStatus", json!(401));

    check("/public/loginVisible", json!(false));
    check("/public/logoutVisible", json!(false));
    check("/public/total", json!("1 account"));

    check(
        "/forbidden/message",
        json!("This account may not access the account list"),
    );
    check("/forbidden/accountsHidden", json!(true));

    check("/firstPage/auditHidden", json!(true));
    check("/audit/visible", json!(true));
    check("/audit/imagesInAudit", json!(0));
    check("/audit/imagesInPage", json!(0));
    check("/audit/hiddenAfterLogout", json!(true));
    check("/audit/rowsAfterLogout", json!(0));
    let texts = |name: &str| -> Vec<String> {
        f["audit"][name]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    let usernames = texts("usernames");
    assert!(
        usernames.iter().any(|u| u == XSS_USERNAME),
        "the HTML-looking username shown as text: {all}"
    );
    assert!(usernames.iter().any(|u| u == "boss"), "{all}");
    let events = texts("events");
    for event in ["login_success", "account_created"] {
        assert!(events.iter().any(|e| e == event), "{event}: {all}");
    }
    assert!(
        texts("details")
            .iter()
            .any(|d| d == r#"{"role":"admin","source":"cli"}"#),
        "{all}"
    );
    assert!(texts("clients").iter().any(|c| c == "127.0.0.1"), "{all}");
}

/// Chromium logs each 401/403 answer (the probe before login, the wrong password, the refusal)
/// and the 404 of its own `/favicon.ico` request as console errors; anything else there (a CSP
/// refusal, a script error) is a failure.
fn assert_console_errors_are_only_refusals(f: &Value, all: &str) {
    const FAILED: &str = "Failed to load resource: the server responded with a status of";
    let errors = f["events"]["consoleErrors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for error in errors {
        let text = error.as_str().unwrap_or_default();
        let expected = text.starts_with(&format!("{FAILED} 401 "))
            || text.starts_with(&format!("{FAILED} 403 "))
            || (text.starts_with(&format!("{FAILED} 404 ")) && text.ends_with("/favicon.ico"));
        assert!(expected, "unexpected console error `{text}`: {all}");
    }
}
