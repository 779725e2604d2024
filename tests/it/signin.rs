//! Signing in with a browser (`/.gatehouse/signin`, `signout`, `me` on service hosts): the 302
//! for anonymous page loads only, the form and its cookie, what the backend then receives, the
//! refusals (credentials, throttle, cross-site posts, CSRF), `rd` never leading off-site, and
//! sign-out and disabling ending sessions, on a second replica too. Then the whole flow in
//! headless Chromium (`tests/browser/signin.mjs`; skipped with a `SKIPPED:` line unless
//! `eval "$(scripts/install-browser-tools)"` has exported the tools, failing instead when
//! `GATEHOUSE_REQUIRE_BROWSER=1`).

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use http::{header, Request};
use serde_json::Value;

use common::accounts::{gatehouse_accounts, CONTROL};
use common::binary::Gatehouse;
use common::tls::{client_config, connect, CertFiles, Sender, TestCert, TlsGatehouse};
use common::{
    assert_json_error, assert_missing_token, backends, empty, full, Client, ConfigYaml, Proxy,
    Reply, ServiceYaml, TestBody,
};

const S1: &str = "service1.my-company.com";
const S2: &str = "service2.my-company.com";
const OPEN: &str = "open.my-company.com";
const USERNAME: &str = "alice";
const EMAIL: &str = "alice@example.test";
const PASSWORD: &str = "correct horse battery";
/// What Chromium sends with a page load.
const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// Two `auth: required` services and an open one over `backend`, sessions for `my-company.com`.
fn config(backend: SocketAddr) -> ConfigYaml {
    ConfigYaml::new()
        .auth("session", "{ cookie_domain: my-company.com }")
        .service(ServiceYaml::new("service1", S1).backend(backend))
        .service(ServiceYaml::new("service2", S2).backend(backend))
        .service(ServiceYaml::open("open", OPEN).backend(backend))
}

async fn proxy_with_alice(config: &ConfigYaml) -> Proxy {
    let proxy = Proxy::start(config).await;
    let registered = proxy.client().register(USERNAME, EMAIL, PASSWORD).await;
    assert_eq!(registered.status, 201, "{}", registered.text());
    proxy
}

fn request(method: &str, host: &str, path: &str, headers: &[(&str, &str)]) -> Request<TestBody> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, host);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(empty()).expect("valid request")
}

/// The `Set-Cookie` values of `reply` for cookie `name`.
pub(crate) fn set_cookies<'r>(reply: &'r Reply, name: &str) -> Vec<&'r str> {
    reply
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| v.starts_with(&format!("{name}=")))
        .collect()
}

/// The value a `Set-Cookie` line sets.
pub(crate) fn value_of(set_cookie: &str) -> &str {
    let pair = set_cookie.split(';').next().unwrap_or_default();
    pair.split_once('=').map_or("", |(_, value)| value)
}

/// `GET /.gatehouse/signin` as a browser; the form's CSRF token (the cookie's, which the
/// hidden field must repeat).
pub(crate) async fn csrf_token(client: &Client, host: &str) -> String {
    let reply = client
        .send(request(
            "GET",
            host,
            "/.gatehouse/signin",
            &[("accept", BROWSER)],
        ))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let cookies = set_cookies(&reply, "gatehouse_csrf");
    assert_eq!(cookies.len(), 1, "{:?}", reply.headers);
    let token = value_of(cookies[0]).to_string();
    assert!(
        html(&reply).contains(&format!(
            r#"<input type="hidden" name="csrf" value="{token}">"#
        )),
        "the form repeats the cookie's token"
    );
    token
}

pub(crate) fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// `POST path` on `host` with a form body and these headers.
pub(crate) async fn post_form(
    client: &Client,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: String,
) -> Reply {
    let mut builder = Request::post(path)
        .header(header::HOST, host)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    client
        .send(builder.body(full(body)).expect("valid request"))
        .await
}

/// Signs in on `host` as a browser would: the form's token in the cookie and the field, and
/// `Origin` this host.
pub(crate) async fn sign_in(
    client: &Client,
    host: &str,
    email: &str,
    password: &str,
    rd: &str,
) -> Reply {
    let token = csrf_token(client, host).await;
    let cookie = format!("gatehouse_csrf={token}");
    let origin = format!("http://{host}");
    let body = form(&[
        ("csrf", &token),
        ("rd", rd),
        ("email", email),
        ("password", password),
    ]);
    let headers = [("cookie", cookie.as_str()), ("origin", origin.as_str())];
    post_form(client, host, "/.gatehouse/signin", &headers, body).await
}

/// Signs in (303 expected) and returns the session cookie's value.
async fn session(client: &Client, host: &str) -> String {
    let reply = sign_in(client, host, EMAIL, PASSWORD, "/").await;
    assert_eq!(reply.status, 303, "{}", reply.text());
    let cookies = set_cookies(&reply, "gatehouse_session");
    value_of(cookies.first().expect("a session cookie")).to_string()
}

/// `GET path` on `host` with `Cookie: cookie` and `Accept: accept`.
async fn with_cookie(client: &Client, host: &str, path: &str, cookie: &str, accept: &str) -> Reply {
    let headers = [("cookie", cookie), ("accept", accept)];
    client.send(request("GET", host, path, &headers)).await
}

/// The body as text.
fn html(reply: &Reply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}

fn assert_page(reply: &Reply, status: u16) {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert_eq!(reply.header("content-type"), "text/html; charset=utf-8");
    assert_eq!(reply.header("x-content-type-options"), "nosniff");
    assert_eq!(reply.header("x-frame-options"), "DENY");
    assert_eq!(reply.header("cache-control"), "no-store");
    // `same-origin`, not `no-referrer`: under that, browsers post the form with `Origin: null`.
    assert_eq!(reply.header("referrer-policy"), "same-origin");
}

// ---------------------------------------------------------------------------------------------
// Who is sent to the form

#[tokio::test]
async fn an_anonymous_page_load_is_sent_to_the_form_with_its_path_and_query() {
    let backend = backends(1).await[0];
    let proxy = Proxy::start(&config(backend)).await;
    let client = proxy.client();
    for method in ["GET", "HEAD"] {
        let reply = client
            .send(request(
                method,
                S1,
                "/dashboard?x=1",
                &[("accept", BROWSER)],
            ))
            .await;
        assert_eq!(reply.status, 302, "{method}: {}", reply.text());
        assert_eq!(
            reply.header("location"),
            "/.gatehouse/signin?rd=%2Fdashboard%3Fx%3D1"
        );
        assert_eq!(reply.header("cache-control"), "no-store");
        assert!(reply.headers.get("x-backend").is_none());
    }
}

#[tokio::test]
async fn scripts_posts_and_bad_tokens_get_401_json_never_a_redirect() {
    let backend = backends(1).await[0];
    let proxy = Proxy::start(&config(backend)).await;
    let client = proxy.client();
    let xhr = client
        .send(request(
            "GET",
            S1,
            "/api",
            &[("accept", "application/json")],
        ))
        .await;
    assert_missing_token(&xhr);
    let fetch = client
        .send(request(
            "GET",
            S1,
            "/api",
            &[("accept", BROWSER), ("sec-fetch-mode", "cors")],
        ))
        .await;
    assert_missing_token(&fetch);
    let post = client
        .send(request("POST", S1, "/form", &[("accept", BROWSER)]))
        .await;
    assert_missing_token(&post);
    let bad_token = client
        .send(request(
            "GET",
            S1,
            "/",
            &[("accept", BROWSER), ("authorization", "Bearer not-a-token")],
        ))
        .await;
    assert_json_error(&bad_token, 401, "invalid_token");
    assert_eq!(
        bad_token.header("www-authenticate"),
        "Bearer error=\"invalid_token\""
    );
    // The contrast: the same path loaded as a page is sent to the form.
    let page = client
        .send(request("GET", S1, "/api", &[("accept", BROWSER)]))
        .await;
    assert_eq!(page.status, 302, "{}", page.text());
    // An open service forwards anonymous page loads as before.
    let open = client
        .send(request("GET", OPEN, "/page", &[("accept", BROWSER)]))
        .await;
    assert_eq!(open.status, 200, "{}", open.text());
    assert_eq!(open.json()["path"], "/page");
}

// ---------------------------------------------------------------------------------------------
// The form

#[tokio::test]
async fn the_form_is_escaped_html_with_the_page_headers_and_a_strict_csrf_cookie() {
    let backend = backends(1).await[0];
    let proxy = Proxy::start(&config(backend)).await;
    let client = proxy.client();
    let rd = "/x?a=\"><script>alert(1)</script>";
    let path = format!(
        "/.gatehouse/signin?rd={}",
        form(&[("", rd)]).trim_start_matches('=')
    );
    let reply = client.send(request("GET", S1, &path, &[])).await;
    assert_page(&reply, 200);
    let csp = reply.header("content-security-policy");
    for directive in [
        "default-src 'none'",
        "script-src 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} missing: {csp}");
    }
    assert!(csp.contains("style-src 'sha256-"), "{csp}");
    let page = html(&reply);
    assert!(!page.contains("<script"), "{page}");
    assert!(
        page.contains(r#"name="rd" value="/x?a=&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;""#),
        "{page}"
    );
    assert!(page.contains(r#"action="/.gatehouse/signin""#), "{page}");
    let cookies = set_cookies(&reply, "gatehouse_csrf");
    let token = value_of(cookies[0]);
    assert!(token.len() >= 22, "at least 128 bits: {token}");
    assert_eq!(
        cookies[0],
        format!("gatehouse_csrf={token}; Path=/.gatehouse/; HttpOnly; SameSite=Strict")
    );
    // The browser's token is kept, so two open tabs both work.
    let again = client
        .send(request(
            "GET",
            S1,
            "/.gatehouse/signin",
            &[("cookie", &format!("gatehouse_csrf={token}"))],
        ))
        .await;
    assert!(set_cookies(&again, "gatehouse_csrf").is_empty());
    assert!(html(&again).contains(token));
}

#[tokio::test]
async fn other_gatehouse_paths_are_404_and_wrong_methods_405_never_forwarded() {
    let backend = backends(1).await[0];
    let proxy = Proxy::start(&config(backend)).await;
    let client = proxy.client();
    // Other spellings of the reserved prefix are Gatehouse's too: never forwarded.
    let paths = [
        "/.gatehouse/other",
        "/%2Egatehouse/signin",
        "/x/../.gatehouse/me",
        "//.gatehouse/signin",
        "/.gatehouse",
    ];
    for host in [S1, OPEN] {
        for path in paths {
            let missing = client
                .send(request("GET", host, path, &[("accept", BROWSER)]))
                .await;
            assert_json_error(&missing, 404, "not_found");
            assert!(missing.headers.get("x-backend").is_none(), "{host}{path}");
        }
    }
    for (method, path, allow) in [
        ("GET", "/.gatehouse/signout", "POST"),
        ("PUT", "/.gatehouse/signin", "GET, HEAD, POST"),
        ("POST", "/.gatehouse/me", "GET, HEAD"),
    ] {
        let reply = client.send(request(method, S1, path, &[])).await;
        assert_json_error(&reply, 405, "method_not_allowed");
        assert_eq!(reply.header("allow"), allow, "{method} {path}");
    }
}

// ---------------------------------------------------------------------------------------------
// Signing in

#[tokio::test]
async fn signing_in_sets_the_cookie_and_the_cookie_alone_reaches_both_services() {
    let backend = backends(1).await[0];
    let proxy = proxy_with_alice(&config(backend)).await;
    let client = proxy.client();
    let reply = sign_in(&client, S1, EMAIL, PASSWORD, "/dashboard?x=1").await;
    assert_eq!(reply.status, 303, "{}", reply.text());
    assert_eq!(reply.header("location"), "/dashboard?x=1");
    assert_eq!(reply.header("cache-control"), "no-store");
    let cookies = set_cookies(&reply, "gatehouse_session");
    assert_eq!(cookies.len(), 1);
    let token = value_of(cookies[0]);
    assert_eq!(
        cookies[0],
        format!(
            "gatehouse_session={token}; Max-Age=43200; Path=/; Domain=my-company.com; \
             HttpOnly; SameSite=Lax"
        )
    );
    assert_eq!(token.split('.').count(), 3, "a signed token: {token}");
    assert!(!token.contains(PASSWORD));

    let cookie = format!("theme=dark; gatehouse_session={token}; gatehouse_session_x=keep; z=1");
    for host in [S1, S2] {
        let page = with_cookie(&client, host, "/dashboard?x=1", &cookie, BROWSER).await;
        assert_eq!(page.status, 200, "{host}: {}", page.text());
        assert_eq!(page.json()["path"], "/dashboard?x=1");
        assert_eq!(
            page.echoed_header("x-forwarded-user").as_deref(),
            Some(USERNAME)
        );
        assert_eq!(
            page.echoed_header("x-forwarded-email").as_deref(),
            Some(EMAIL)
        );
        assert_eq!(
            page.echoed_header("cookie").as_deref(),
            Some("theme=dark; gatehouse_session_x=keep; z=1"),
            "{host}: the backend never sees the session cookie"
        );
    }
    // The cookie alone, nothing else: the header is dropped.
    let only = with_cookie(
        &client,
        S1,
        "/",
        &format!("gatehouse_session={token}"),
        "*/*",
    )
    .await;
    assert_eq!(only.status, 200);
    assert_eq!(only.echoed_header("cookie"), None);
    // Open services never see it either.
    let open = with_cookie(&client, OPEN, "/", &cookie, "*/*").await;
    assert_eq!(
        open.echoed_header("cookie").as_deref(),
        Some("theme=dark; gatehouse_session_x=keep; z=1")
    );

    let me = with_cookie(
        &client,
        S2,
        "/.gatehouse/me",
        &format!("gatehouse_session={token}"),
        "*/*",
    )
    .await;
    assert_eq!(me.status, 200, "{}", me.text());
    assert_eq!(me.header("content-type"), "application/json");
    assert_eq!(me.header("x-content-type-options"), "nosniff");
    assert_eq!(me.header("cache-control"), "no-store");
    assert_eq!(
        me.json(),
        serde_json::json!({"username": USERNAME, "email": EMAIL, "role": "user"})
    );
    let anonymous = client.send(request("GET", S1, "/.gatehouse/me", &[])).await;
    assert_missing_token(&anonymous);
}

#[tokio::test]
async fn without_a_cookie_domain_the_cookie_stays_on_its_host_and_absolute_rd_goes_home() {
    let backend = backends(1).await[0];
    let config = ConfigYaml::new()
        .auth("session", "{ cookie_name: sid, ttl: 1h }")
        .service(ServiceYaml::new("service1", S1).backend(backend))
        .service(ServiceYaml::new("service2", S2).backend(backend));
    let proxy = proxy_with_alice(&config).await;
    let client = proxy.client();
    let rd = "http://service2.my-company.com/x";
    let reply = sign_in(&client, S1, EMAIL, PASSWORD, rd).await;
    assert_eq!(reply.status, 303, "{}", reply.text());
    assert_eq!(reply.header("location"), "/");
    let cookies = set_cookies(&reply, "sid");
    let token = value_of(cookies[0]);
    assert_eq!(
        cookies[0],
        format!("sid={token}; Max-Age=3600; Path=/; HttpOnly; SameSite=Lax")
    );
    let claims = common::accounts::claims_of(token);
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert_eq!(lifetime, 3600, "the session's ttl, not auth.jwt.ttl");
    let page = with_cookie(&client, S1, "/", &format!("sid={token}"), BROWSER).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.echoed_header("cookie"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_session_and_csrf_cookies_are_secure() {
    let backend = backends(1).await[0];
    let cert = TestCert::new("gatehouse signin", 1);
    let files = CertFiles::new(&cert);
    let tls = files.yaml();
    let gatehouse = TlsGatehouse::start(|listen, admin| {
        let yaml = config(backend).listen(listen).admin_listen(admin).render();
        format!("{tls}{yaml}")
    })
    .await;
    let stream = connect(gatehouse.addr, client_config(&[&cert], &[b"http/1.1"])).await;
    let mut sender = Sender::http1(stream).await;
    let register = Request::post("/account")
        .header(header::HOST, CONTROL)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(
            serde_json::json!({"username": USERNAME, "email": EMAIL, "password": PASSWORD})
                .to_string(),
        ))
        .unwrap();
    assert_eq!(sender.send(register).await.status, 201);
    let page = sender
        .send(request(
            "GET",
            S1,
            "/.gatehouse/signin",
            &[("accept", BROWSER)],
        ))
        .await;
    let csrf = set_cookies(&page, "gatehouse_csrf")[0].to_string();
    let token = value_of(&csrf).to_string();
    assert_eq!(
        csrf,
        format!("gatehouse_csrf={token}; Path=/.gatehouse/; Secure; HttpOnly; SameSite=Strict")
    );
    let body = form(&[
        ("csrf", &token),
        ("rd", "/"),
        ("email", EMAIL),
        ("password", PASSWORD),
    ]);
    let post = Request::post("/.gatehouse/signin")
        .header(header::HOST, S1)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("origin", format!("https://{S1}"))
        .header("cookie", format!("gatehouse_csrf={token}"))
        .body(full(body))
        .unwrap();
    let reply = sender.send(post).await;
    assert_eq!(reply.status, 303, "{}", reply.text());
    let cookie = set_cookies(&reply, "gatehouse_session")[0];
    assert_eq!(
        cookie,
        format!(
            "gatehouse_session={}; Max-Age=43200; Path=/; Domain=my-company.com; Secure; \
             HttpOnly; SameSite=Lax",
            value_of(cookie)
        )
    );
}

#[tokio::test]
async fn a_trusted_proxy_saying_https_makes_the_cookie_secure() {
    let backend = backends(1).await[0];
    let proxy = proxy_with_alice(&config(backend).trusted_proxies(&["127.0.0.1"])).await;
    let client = proxy.client();
    let token = csrf_token(&client, S1).await;
    let body = form(&[
        ("csrf", &token),
        ("rd", "/"),
        ("email", EMAIL),
        ("password", PASSWORD),
    ]);
    let cookie = format!("gatehouse_csrf={token}");
    let origin = format!("https://{S1}");
    let headers = [
        ("cookie", cookie.as_str()),
        ("origin", origin.as_str()),
        ("x-forwarded-proto", "https"),
    ];
    let reply = post_form(&client, S1, "/.gatehouse/signin", &headers, body).await;
    assert_eq!(reply.status, 303, "{}", reply.text());
    assert!(set_cookies(&reply, "gatehouse_session")[0].contains("; Secure;"));
}

// ---------------------------------------------------------------------------------------------
// Refusals

#[tokio::test]
async fn a_wrong_password_or_unknown_email_gets_the_same_401_page_and_no_cookie() {
    let backend = backends(1).await[0];
    let proxy = proxy_with_alice(&config(backend)).await;
    let client = proxy.client();
    let wrong = sign_in(&client, S1, EMAIL, "not the password", "/x").await;
    let unknown = sign_in(&client, S1, "bob@example.test", "not the password", "/x").await;
    for reply in [&wrong, &unknown] {
        assert_page(reply, 401);
        assert!(set_cookies(reply, "gatehouse_session").is_empty());
        assert!(html(reply).contains("The email or password is not right."));
        assert!(html(reply).contains(r#"name="rd" value="/x""#));
    }
    // Alike but for the email typed and the browser's own CSRF token.
    let strip = |reply: &Reply, email: &str| {
        let page = html(reply).replace(email, "E");
        let lines = page.lines().filter(|line| !line.contains(r#"name="csrf""#));
        lines.collect::<Vec<_>>().join("\n")
    };
    assert_eq!(strip(&wrong, EMAIL), strip(&unknown, "bob@example.test"));
}

#[tokio::test]
async fn sign_in_shares_the_login_rate_bucket_and_answers_429_with_retry_after() {
    let backend = backends(1).await[0];
    let proxy = proxy_with_alice(&config(backend).auth_limit("login_per_minute", "2")).await;
    let client = proxy.client();
    assert_eq!(client.login(EMAIL, "wrong").await.status, 401);
    let second = sign_in(&client, S1, EMAIL, "wrong", "/").await;
    assert_page(&second, 401);
    let third = sign_in(&client, S1, EMAIL, PASSWORD, "/").await;
    assert_page(&third, 429);
    let wait: u64 = third.header("retry-after").parse().expect("seconds");
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(html(&third).contains("Too many sign-in attempts"));
    assert!(set_cookies(&third, "gatehouse_session").is_empty());
}

#[tokio::test]
async fn cross_site_posts_and_missing_or_wrong_csrf_tokens_are_refused_with_403() {
    let backend = backends(1).await[0];
    let proxy = proxy_with_alice(&config(backend)).await;
    let client = proxy.client();
    let token = csrf_token(&client, S1).await;
    let other = csrf_token(&client, S1).await;
    let cookie = format!("gatehouse_csrf={token}");
    let origin = format!("http://{S1}");
    let body = |csrf: &str| {
        form(&[
            ("csrf", csrf),
            ("rd", "/"),
            ("email", EMAIL),
            ("password", PASSWORD),
        ])
    };
    // (what is wrong, extra headers, form body)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, String);
    let cases: Vec<Case> = vec![
        (
            "evil origin",
            vec![("cookie", &cookie), ("origin", "https://evil.test")],
            body(&token),
        ),
        (
            "sibling origin",
            vec![
                ("cookie", &cookie),
                ("origin", "http://service2.my-company.com"),
            ],
            body(&token),
        ),
        (
            "null origin",
            vec![("cookie", &cookie), ("origin", "null")],
            body(&token),
        ),
        (
            "cross-site fetch",
            vec![("cookie", &cookie), ("sec-fetch-site", "cross-site")],
            body(&token),
        ),
        ("no csrf cookie", vec![("origin", &origin)], body(&token)),
        (
            "no csrf field",
            vec![("cookie", &cookie), ("origin", &origin)],
            form(&[("email", EMAIL), ("password", PASSWORD)]),
        ),
        (
            "mismatched",
            vec![("cookie", &cookie), ("origin", &origin)],
            body(&other),
        ),
        (
            "empty",
            vec![("cookie", "gatehouse_csrf="), ("origin", &origin)],
            body(""),
        ),
    ];
    for (what, headers, body) in cases {
        let reply = post_form(&client, S1, "/.gatehouse/signin", &headers, body).await;
        assert_page(&reply, 403);
        assert!(
            set_cookies(&reply, "gatehouse_session").is_empty(),
            "{what}"
        );
    }
    // The same post from the page itself passes.
    let good = post_form(
        &client,
        S1,
        "/.gatehouse/signin",
        &[
            ("cookie", &cookie),
            ("origin", &origin),
            ("sec-fetch-site", "same-origin"),
        ],
        body(&token),
    )
    .await;
    assert_eq!(good.status, 303, "{}", good.text());
}

#[tokio::test]
async fn the_form_must_be_form_encoded() {
    let backend = backends(1).await[0];
    let proxy = proxy_with_alice(&config(backend)).await;
    let client = proxy.client();
    let token = csrf_token(&client, S1).await;
    let post = Request::post("/.gatehouse/signin")
        .header(header::HOST, S1)
        .header(header::CONTENT_TYPE, "application/json")
        .header("cookie", format!("gatehouse_csrf={token}"))
        .body(full(format!(
            r#"{{"email":"{EMAIL}","password":"{PASSWORD}","csrf":"{token}"}}"#
        )))
        .unwrap();
    let reply = client.send(post).await;
    assert_json_error(&reply, 415, "unsupported_media_type");
}

#[tokio::test]
async fn open_redirects_land_on_the_root_and_claimed_hosts_under_the_domain_pass() {
    let backend = backends(1).await[0];
    let proxy = proxy_with_alice(&config(backend)).await;
    let client = proxy.client();
    for rd in [
        "//evil.com",
        "/\\evil.com",
        "/%2F/evil.com",
        "https://evil.com/",
        "javascript:alert(1)",
        "https://my-company.com.evil.com/",
        "https://evilmy-company.com/",
        "https://service2.my-company.com@evil.com/",
        "https://unclaimed.my-company.com/",
    ] {
        let reply = sign_in(&client, S1, EMAIL, PASSWORD, rd).await;
        assert_eq!(reply.status, 303, "{rd}: {}", reply.text());
        assert_eq!(reply.header("location"), "/", "{rd}");
    }
    let rd = "http://service2.my-company.com:8080/x?y=1";
    let reply = sign_in(&client, S1, EMAIL, PASSWORD, rd).await;
    assert_eq!(reply.header("location"), rd);
    // The form's page allows posting on to that origin (Chromium checks redirects too).
    let page = client
        .send(request(
            "GET",
            S1,
            &format!(
                "/.gatehouse/signin?rd={}",
                form(&[("", rd)]).trim_start_matches('=')
            ),
            &[],
        ))
        .await;
    assert!(page
        .header("content-security-policy")
        .contains("form-action 'self' http://service2.my-company.com:8080;"));
}

// ---------------------------------------------------------------------------------------------
// Ending sessions

#[tokio::test]
async fn signing_out_revokes_the_session_and_clears_the_cookie() {
    let backend = backends(1).await[0];
    let proxy = proxy_with_alice(&config(backend)).await;
    let client = proxy.client();
    let session = session(&client, S1).await;
    let token = csrf_token(&client, S1).await;
    let cookies = format!("gatehouse_session={session}; gatehouse_csrf={token}");
    let signed_in = with_cookie(&client, S1, "/.gatehouse/signin", &cookies, BROWSER).await;
    assert!(
        html(&signed_in).contains(r#"action="/.gatehouse/signout""#),
        "{}",
        "signed-in page"
    );

    let origin = format!("http://{S1}");
    let cross = post_form(
        &client,
        S1,
        "/.gatehouse/signout",
        &[("cookie", &cookies), ("origin", "https://evil.test")],
        form(&[("csrf", &token)]),
    )
    .await;
    assert_page(&cross, 403);
    let still = with_cookie(
        &client,
        S1,
        "/",
        &format!("gatehouse_session={session}"),
        "*/*",
    )
    .await;
    assert_eq!(still.status, 200, "a refused sign-out ends nothing");

    let out = post_form(
        &client,
        S1,
        "/.gatehouse/signout",
        &[("cookie", &cookies), ("origin", &origin)],
        form(&[("csrf", &token)]),
    )
    .await;
    assert_eq!(out.status, 303, "{}", out.text());
    assert_eq!(out.header("location"), "/.gatehouse/signin");
    assert_eq!(
        set_cookies(&out, "gatehouse_session"),
        ["gatehouse_session=; Max-Age=0; Path=/; Domain=my-company.com; HttpOnly; SameSite=Lax"]
    );
    let old = format!("gatehouse_session={session}");
    let api = with_cookie(&client, S1, "/", &old, "application/json").await;
    assert_json_error(&api, 401, "invalid_token");
    let page = with_cookie(&client, S2, "/dashboard", &old, BROWSER).await;
    assert_eq!(
        page.status, 302,
        "a browser with a dead session signs in again"
    );
    assert_eq!(
        page.header("location"),
        "/.gatehouse/signin?rd=%2Fdashboard"
    );
    let me = with_cookie(&client, S1, "/.gatehouse/me", &old, "*/*").await;
    assert_eq!(me.status, 401);
}

#[tokio::test]
async fn disabling_the_account_ends_its_sessions() {
    let backend = backends(1).await[0];
    let proxy = proxy_with_alice(&config(backend)).await;
    let client = proxy.client();
    let cookie = format!("gatehouse_session={}", session(&client, S1).await);
    assert_eq!(
        with_cookie(&client, S1, "/", &cookie, "*/*").await.status,
        200
    );
    gatehouse_accounts(&proxy.database_url, &["disable", "--email", EMAIL], "").await;
    let since = Instant::now();
    loop {
        let reply = with_cookie(&client, S1, "/", &cookie, "*/*").await;
        if reply.status == 401 {
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(1),
            "still accepted after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_a_family_that_logout_all_ends() {
    let backend = backends(1).await[0];
    let proxy = proxy_with_alice(&config(backend)).await;
    let client = proxy.client();
    let token = session(&client, S1).await;
    let claims = common::accounts::claims_of(&token);
    let family = claims["fam"].as_str().expect("a fam claim");
    assert_eq!(family.len(), 32, "{claims}");
    let other = session(&client, S1).await;
    assert_ne!(common::accounts::claims_of(&other)["fam"], family);
    let cookie = format!("gatehouse_session={token}");
    assert_eq!(
        with_cookie(&client, S1, "/", &cookie, "*/*").await.status,
        200
    );

    // Signing out everywhere from an API token ends the browser's sessions too.
    let api = client.token(EMAIL, PASSWORD).await;
    let all = client
        .with_token("POST", CONTROL, "/logout/all", &api)
        .await;
    assert_eq!(all.status, 204);
    for session in [&token, &other] {
        let cookie = format!("gatehouse_session={session}");
        assert_eq!(
            with_cookie(&client, S1, "/", &cookie, "*/*").await.status,
            401
        );
    }
}

async fn replica(database_url: &str, backend: SocketAddr) -> Gatehouse {
    Gatehouse::start_with_env(&["serve"], &[("DATABASE_URL", database_url)], |listen| {
        config(backend).listen(listen).render()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_on_one_replica_ends_the_session_on_the_other_within_a_second() {
    let Some(url) = common::postgres::fresh_database().await else {
        return;
    };
    let backend = backends(1).await[0];
    let a = replica(&url, backend).await;
    let b = replica(&url, backend).await;
    let (on_a, on_b) = (Client::http1(a.addr), Client::http1(b.addr));
    assert_eq!(on_a.register(USERNAME, EMAIL, PASSWORD).await.status, 201);
    let session = session(&on_a, S1).await;
    let old = format!("gatehouse_session={session}");
    assert_eq!(with_cookie(&on_b, S2, "/", &old, "*/*").await.status, 200);

    let token = csrf_token(&on_a, S1).await;
    let out = post_form(
        &on_a,
        S1,
        "/.gatehouse/signout",
        &[
            ("cookie", &format!("{old}; gatehouse_csrf={token}")),
            ("origin", &format!("http://{S1}")),
        ],
        form(&[("csrf", &token)]),
    )
    .await;
    assert_eq!(out.status, 303, "{}", out.text());
    let since = Instant::now();
    loop {
        let reply = with_cookie(&on_b, S2, "/", &old, "*/*").await;
        if reply.status == 401 {
            eprintln!("sign-out on A seen by B after {:?}", since.elapsed());
            break;
        }
        assert_eq!(reply.status, 200);
        assert!(
            since.elapsed() < Duration::from_secs(1),
            "B accepted it after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    common::postgres::drop_database(&url).await;
}

// ---------------------------------------------------------------------------------------------
// In Chromium

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_once_for_two_services_and_signs_out_in_chromium() {
    let tools = match super::accounts_page::BrowserTools::find() {
        Ok(tools) => tools,
        Err(reason) if std::env::var("GATEHOUSE_REQUIRE_BROWSER").as_deref() == Ok("1") => {
            panic!("GATEHOUSE_REQUIRE_BROWSER=1 but the browser test cannot run: {reason}")
        }
        Err(reason) => {
            let line = format!("SKIPPED: sign-in browser test: {reason}\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            return;
        }
    };
    let backend = backends(1).await[0];
    let proxy = proxy_with_alice(&config(backend)).await;
    let port = proxy.addr.port();
    let screenshot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/signin_page.png");
    let _ = std::fs::remove_file(&screenshot);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/signin.mjs");
    let mut command = tokio::process::Command::new("node");
    command
        .arg(script)
        .args(["--service1", &format!("http://{S1}:{port}/dashboard?x=1")])
        .args(["--service2", &format!("http://{S2}:{port}/reports")])
        .args(["--email", EMAIL, "--password", PASSWORD])
        .args(["--screenshot", &screenshot.display().to_string()])
        .env("GATEHOUSE_BROWSER_TOOLS", &tools.tools)
        .env("GATEHOUSE_CHROMIUM", &tools.chromium)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("the browser script finished within 2 minutes")
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stdout.lines().last().unwrap_or_default();
    let f: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("no JSON findings ({e})\nstdout: {stdout}\nstderr: {stderr}"));
    assert!(
        output.status.success(),
        "the script failed: {f:#}\nstderr: {stderr}"
    );
    let all = format!("{f:#}");
    let check = |pointer: &str, expected: Value| {
        assert_eq!(f.pointer(pointer), Some(&expected), "{pointer} in {all}");
    };
    let signin_url = format!("http://{S1}:{port}/.gatehouse/signin?rd=%2Fdashboard%3Fx%3D1");
    check("/first/url", Value::from(signin_url));
    check("/first/hasForm", Value::from(true));
    check(
        "/wrong/message",
        Value::from("The email or password is not right."),
    );
    check(
        "/landed/url",
        Value::from(format!("http://{S1}:{port}/dashboard?x=1")),
    );
    check("/landed/echo/path", Value::from("/dashboard?x=1"));
    check(
        "/landed/echo/headers/x-forwarded-user",
        Value::from(USERNAME),
    );
    check("/landed/sessionCookieSeenByBackend", Value::from(false));
    check("/landed/documentCookie", Value::from(""));
    check(
        "/service2/url",
        Value::from(format!("http://{S2}:{port}/reports")),
    );
    check(
        "/service2/echo/headers/x-forwarded-user",
        Value::from(USERNAME),
    );
    check(
        "/signedOut/url",
        Value::from(format!("http://{S1}:{port}/.gatehouse/signin")),
    );
    check(
        "/afterSignOut/url",
        Value::from(format!(
            "http://{S2}:{port}/.gatehouse/signin?rd=%2Freports"
        )),
    );
    check("/events/dialogs", serde_json::json!([]));
    // The wrong password's 401 is the only error the console shows: no CSP refusal.
    let errors = f["events"]["consoleErrors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(errors.len(), 1, "{all}");
    assert!(
        errors[0]
            .as_str()
            .unwrap_or_default()
            .contains("status of 401"),
        "{all}"
    );
    check("/events/pageErrors", serde_json::json!([]));
    let (width, _) = super::accounts_page::png_size(&screenshot);
    assert_eq!(width, 1280);
    eprintln!("sign-in browser findings: {line}");
}

// ---------------------------------------------------------------------------------------------
// Config

#[test]
fn session_keys_are_checked_with_line_and_column() {
    let base = |session: &str| format!("auth:\n  session:\n{session}services: []\n");
    for (session, at, phrase) in [
        (
            "    cookie_domain: .my-company.com\n",
            "t.yaml:3:20:",
            "leading dot",
        ),
        (
            "    cookie_domain: localhost\n",
            "t.yaml:3:20:",
            "two labels",
        ),
        (
            "    cookie_name: gatehouse_csrf\n",
            "t.yaml:3:18:",
            "gatehouse_csrf",
        ),
        (
            "    cookie_name: a;b\n",
            "t.yaml:3:18:",
            "invalid cookie name",
        ),
        ("    ttl: 0s\n", "t.yaml:3:10:", "greater than zero"),
        ("    cookie: x\n", "t.yaml:3:5:", "unknown field `cookie`"),
    ] {
        let error = gatehouse::config::parse_str(&base(session), "t.yaml")
            .expect_err(session)
            .to_string();
        assert!(
            error.starts_with(at) && error.contains(phrase),
            "{session}: {error}"
        );
    }
    let settings = gatehouse::config::parse_str("services: []\n", "t.yaml").unwrap();
    let session = &settings.auth.session;
    assert_eq!(session.cookie_name.0, "gatehouse_session");
    assert_eq!(session.cookie_domain, None);
    assert_eq!(session.ttl, Duration::from_secs(12 * 3600));
    let text = base("    cookie_domain: My-Company.com\n");
    let settings = gatehouse::config::parse_str(&text, "t.yaml").unwrap();
    let domain = settings
        .auth
        .session
        .cookie_domain
        .as_ref()
        .map(|d| d.0.as_str());
    assert_eq!(domain, Some("my-company.com"));
}
