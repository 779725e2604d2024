//! The account API end to end: registration and each of its refusals, login and its
//! indistinguishable failures, throttling, logout, the account list and who may read it, and
//! accounts surviving a restart. Every refusal is checked for its status, headers and
//! `{"error","message"}` code, and for having changed nothing. Tests where the store matters run
//! on SQLite and on PostgreSQL (`GATEHOUSE_TEST_POSTGRES`, which `scripts/test` provides). A
//! thousand registrations and a login storm, which need the machine to themselves, are
//! `tests/account_load.rs`.

use crate::common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::{json, Value};

use common::accounts::{
    assert_account_view, assert_keys, assert_no_hash, claims_of, concurrently, gatehouse_accounts,
    list, query, rfc3339_nanos, CONTROL,
};
use common::binary::{Gatehouse, TempDir};
use common::postgres::fresh_database;
use common::{
    assert_invalid_token, assert_json_error, assert_missing_token, assert_rate_limited, backends,
    full, ChannelBody, Client, ConfigYaml, Proxy, Reply, ServiceYaml,
};

/// The host of an `auth: required` service.
const LOCKED: &str = "locked.test";
const PASSWORD: &str = "correct horse battery";

// ---------------------------------------------------------------------------------------------
// Helpers

/// Headers that may differ between two equal answers: the date and the request id.
fn stable_headers(reply: &Reply) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = reply
        .headers
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "date" | "x-request-id"))
        .map(|(name, value)| {
            let value = value.to_str().expect("ASCII header").to_string();
            (name.to_string(), value)
        })
        .collect();
    headers.sort();
    headers
}

/// The same status, the same headers (but `Date` and `X-Request-Id`) and the same body bytes.
fn assert_same_answer(a: &Reply, b: &Reply, what: &str) {
    assert_eq!(a.status, b.status, "{what}: {} vs {}", a.text(), b.text());
    assert_eq!(a.body, b.body, "{what}: bodies differ");
    assert_eq!(
        stable_headers(a),
        stable_headers(b),
        "{what}: headers differ"
    );
}

fn unix_nanos_now() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as i128
}

fn usernames(listed: &Value) -> Vec<String> {
    listed["accounts"]
        .as_array()
        .expect("accounts array")
        .iter()
        .map(|a| a["username"].as_str().expect("username").to_string())
        .collect()
}

async fn total(client: &Client, token: &str) -> i64 {
    list(client, "per_page=1", Some(token)).await["total"]
        .as_i64()
        .expect("total")
}

/// A proxy with one account, `original`, registered and logged in: the yardstick for "nothing
/// was lost or changed" after each refusal.
struct Seeded {
    _proxy: Proxy,
    client: Client,
    /// The 201 body of its registration.
    account: Value,
    token: String,
}

impl Seeded {
    async fn start() -> Self {
        Self::with(ConfigYaml::new()).await
    }

    async fn with(config: ConfigYaml) -> Self {
        let proxy = Proxy::start(&config).await;
        let client = proxy.client();
        let registered = client
            .register("original", "original@example.com", PASSWORD)
            .await;
        assert_eq!(registered.status, 201, "{}", registered.text());
        let token = client.token("original@example.com", PASSWORD).await;
        Seeded {
            _proxy: proxy,
            client,
            account: registered.json(),
            token,
        }
    }

    /// Exactly `expected` accounts, the original among them exactly as registered, and it can
    /// still log in with its password.
    async fn assert_intact(&self, expected: i64) {
        let listed = list(&self.client, "per_page=100", Some(&self.token)).await;
        assert_eq!(listed["total"], expected, "{listed}");
        let accounts = listed["accounts"].as_array().expect("accounts");
        assert!(
            accounts.contains(&self.account),
            "the original account changed or vanished: {listed}"
        );
        let login = self.client.login("original@example.com", PASSWORD).await;
        assert_eq!(
            login.status,
            200,
            "the original can no longer log in: {}",
            login.text()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// POST /account: refusals

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_invalid_field_is_refused_with_its_own_code_and_nothing_is_stored() {
    let seeded = Seeded::start().await;
    let client = &seeded.client;
    let long_email = format!("{}@example.com", "a".repeat(243)); // 255 bytes
    let cases: Vec<(String, String, String, &str)> = vec![
        (
            "ab".into(),
            "u1@example.com".into(),
            PASSWORD.into(),
            "invalid_username",
        ),
        (
            "x".repeat(33),
            "u2@example.com".into(),
            PASSWORD.into(),
            "invalid_username",
        ),
        (
            "al ice".into(),
            "u3@example.com".into(),
            PASSWORD.into(),
            "invalid_username",
        ),
        (
            "a/b".into(),
            "u4@example.com".into(),
            PASSWORD.into(),
            "invalid_username",
        ),
        (
            "a@b".into(),
            "u5@example.com".into(),
            PASSWORD.into(),
            "invalid_username",
        ),
        (
            "ålice".into(),
            "u6@example.com".into(),
            PASSWORD.into(),
            "invalid_username",
        ),
        (
            "".into(),
            "u7@example.com".into(),
            PASSWORD.into(),
            "invalid_username",
        ),
        (
            "e1".repeat(2),
            "plain".into(),
            PASSWORD.into(),
            "invalid_email",
        ),
        (
            "e2e2".into(),
            "@example.com".into(),
            PASSWORD.into(),
            "invalid_email",
        ),
        (
            "e3e3".into(),
            "a@localhost".into(),
            PASSWORD.into(),
            "invalid_email",
        ),
        (
            "e4e4".into(),
            "a@@example.com".into(),
            PASSWORD.into(),
            "invalid_email",
        ),
        (
            "e5e5".into(),
            "a@b@example.com".into(),
            PASSWORD.into(),
            "invalid_email",
        ),
        (
            "e6e6".into(),
            "a@example..com".into(),
            PASSWORD.into(),
            "invalid_email",
        ),
        (
            "e7e7".into(),
            "a@example.".into(),
            PASSWORD.into(),
            "invalid_email",
        ),
        (
            "e8e8".into(),
            "a b@example.com".into(),
            PASSWORD.into(),
            "invalid_email",
        ),
        (
            "e9e9".into(),
            "a@example.com\n".into(),
            PASSWORD.into(),
            "invalid_email",
        ),
        ("e10e".into(), "".into(), PASSWORD.into(), "invalid_email"),
        ("e11e".into(), long_email, PASSWORD.into(), "invalid_email"),
        (
            "p1p1".into(),
            "p1@example.com".into(),
            "1234567".into(),
            "invalid_password",
        ),
        (
            "p2p2".into(),
            "p2@example.com".into(),
            "p".repeat(1025),
            "invalid_password",
        ),
        (
            "p3p3".into(),
            "p3@example.com".into(),
            "ééé1".into(),
            "invalid_password",
        ),
        (
            "p4p4".into(),
            "p4@example.com".into(),
            "".into(),
            "invalid_password",
        ),
    ];
    for (username, email, password, code) in &cases {
        let reply = client.register(username, email, password).await;
        assert_json_error(&reply, 400, code);
        assert_no_hash(&reply);
        assert!(
            reply.headers.get("www-authenticate").is_none(),
            "{username:?}/{email:?}"
        );
    }
    seeded.assert_intact(1).await;
    for (_, email, password, _) in &cases {
        if email.contains('@') && !email.ends_with('\n') {
            assert_eq!(client.login(email, password).await.status, 401, "{email:?}");
        }
    }

    // The bounds themselves are accepted: 8 bytes in 4 characters, 1024 bytes, a 254-byte
    // email, 3- and 32-character usernames.
    let accepted = [
        (
            "abc",
            "multibyte@example.com".to_string(),
            "éééé".to_string(),
        ),
        (
            &"y".repeat(32)[..],
            "long@example.com".to_string(),
            "p".repeat(1024),
        ),
        (
            "longest.email",
            format!("{}@example.com", "a".repeat(242)),
            PASSWORD.to_string(),
        ),
    ];
    for (username, email, password) in &accepted {
        let reply = client.register(username, email, password).await;
        assert_eq!(reply.status, 201, "{username}: {}", reply.text());
        assert_eq!(reply.json()["email"], email.as_str());
        let login = client.login(email, password).await;
        assert_eq!(login.status, 200, "{username}: {}", login.text());
    }
    seeded.assert_intact(4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_and_unknown_or_missing_fields_are_refused_and_nothing_is_stored() {
    let seeded = Seeded::start().await;
    let client = &seeded.client;
    let post =
        |body: &'static str| client.post_raw("/account", Some("application/json"), full(body));

    for body in [
        r#"{"username":"x1","email":"#,
        "",
        "not json",
        r#"{"username":"x1",}"#,
    ] {
        assert_json_error(&post(body).await, 400, "invalid_json");
    }

    let role = post(
        r#"{"username":"mallory","email":"mallory@example.com","password":"correct horse","role":"admin"}"#,
    )
    .await;
    assert_json_error(&role, 400, "invalid_request");
    assert!(
        role.json()["message"].as_str().unwrap().contains("role"),
        "the message should name the unknown field: {}",
        role.text()
    );
    for body in [
        r#"{"username":"mallory","email":"mallory@example.com"}"#,
        r#"{"email":"mallory@example.com","password":"correct horse"}"#,
        r#"{"username":5,"email":"mallory@example.com","password":"correct horse"}"#,
        r#"{"username":"mallory","username":"other","email":"mallory@example.com","password":"correct horse"}"#,
        "null",
        "{}",
        "\"mallory\"",
    ] {
        assert_json_error(&post(body).await, 400, "invalid_request");
    }
    // The contract's body is an object; serde's derive would also take the fields as an array
    // in declaration order, which no client should rely on.
    let array_registration = post(r#"["mallory","mallory@example.com","correct horse"]"#).await;
    let array_login = client
        .post_raw(
            "/login",
            Some("application/json"),
            full(format!(r#"["original@example.com","{PASSWORD}"]"#)),
        )
        .await;
    assert_eq!(
        (array_registration.status.as_u16(), array_login.status.as_u16()),
        (400, 400),
        "JSON arrays are not the {{\"username\",\"email\",\"password\"}} / {{\"email\",\"password\"}} \
         objects the API takes: POST /account -> {}, POST /login -> {}",
        array_registration.text(),
        array_login.text(),
    );
    assert_json_error(&array_registration, 400, "invalid_request");
    assert_json_error(&array_login, 400, "invalid_request");

    seeded.assert_intact(1).await;
    let login = client.login("mallory@example.com", "correct horse").await;
    assert_json_error(&login, 401, "invalid_credentials");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_json_bodies_of_at_most_16_kib_are_read() {
    let seeded = Seeded::start().await;
    let client = &seeded.client;
    let valid = |n: u32| {
        json!({"username": format!("body{n}"), "email": format!("body{n}@example.com"), "password": PASSWORD})
            .to_string()
    };

    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/jsonx"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let reply = client
            .post_raw("/account", content_type, full(valid(1)))
            .await;
        assert_json_error(&reply, 415, "unsupported_media_type");
    }

    // Over the limit with a Content-Length: refused from the headers.
    let mut oversized = valid(2).into_bytes();
    oversized.resize(16 * 1024 + 1, b' ');
    let fresh = Client::http1(seeded._proxy.addr);
    let reply = fresh
        .post_raw("/account", Some("application/json"), full(oversized))
        .await;
    assert_json_error(&reply, 413, "payload_too_large");

    // Over the limit, chunked, with no Content-Length: refused once 16 KiB have been read.
    let (feed, body) = ChannelBody::pair();
    tokio::spawn(async move {
        let mut chunk = vec![b' '; 4096];
        chunk[0] = b'[';
        for _ in 0..5 {
            if feed.send(Bytes::from(chunk.clone())).await.is_err() {
                return;
            }
            chunk[0] = b' ';
        }
    });
    let fresh = Client::http1(seeded._proxy.addr);
    let reply = fresh
        .post_raw("/account", Some("application/json"), body)
        .await;
    assert_json_error(&reply, 413, "payload_too_large");
    seeded.assert_intact(1).await;

    // Exactly 16 KiB is still a body; parameters and letter case of the type do not matter.
    let mut at_limit = valid(3).into_bytes();
    at_limit.resize(16 * 1024, b' ');
    let reply = client
        .post_raw("/account", Some("application/json"), full(at_limit))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let reply = client
        .post_raw(
            "/account",
            Some("Application/JSON; charset=utf-8"),
            full(valid(4)),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    seeded.assert_intact(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_methods_on_account_are_405_with_allow_post() {
    let seeded = Seeded::start().await;
    let client = &seeded.client;
    for method in ["GET", "PUT", "DELETE", "PATCH"] {
        let request = http::Request::builder()
            .method(method)
            .uri("/account")
            .header("host", CONTROL)
            .body(common::empty())
            .unwrap();
        let reply = client.send(request).await;
        assert_json_error(&reply, 405, "method_not_allowed");
        assert_eq!(reply.header("allow"), "POST", "{method}");
    }
    let reply = client.get(CONTROL, "/login").await;
    assert_json_error(&reply, 405, "method_not_allowed");
    assert_eq!(reply.header("allow"), "POST");
    seeded.assert_intact(1).await;
}

// ---------------------------------------------------------------------------------------------
// POST /account: success and conflicts

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_shows_only_public_fields_and_duplicates_in_any_case_are_409() {
    let proxy = Proxy::start(&ConfigYaml::new()).await;
    let client = proxy.client();
    let before = unix_nanos_now();
    let reply = client
        .register("alice", "Alice@Example.com", PASSWORD)
        .await;
    let after = unix_nanos_now();

    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(reply.header("content-type"), "application/json");
    assert_no_hash(&reply);
    let account = reply.json();
    assert_account_view(&account);
    assert_eq!(account["username"], "alice");
    assert_eq!(account["email"], "Alice@Example.com", "kept as typed");
    let created = rfc3339_nanos(account["created_at"].as_str().unwrap()).unwrap();
    let slack = 2_000_000_000; // clocks agree; 2 s for rounding and scheduling
    assert!(
        before - slack <= created && created <= after + slack,
        "created_at {} is not now",
        account["created_at"]
    );

    for (username, email) in [
        ("alice2", "alice@example.com"),
        ("alice3", "ALICE@EXAMPLE.COM"),
        ("alice4", "aLiCe@eXaMpLe.CoM"),
    ] {
        let reply = client.register(username, email, "other password").await;
        assert_json_error(&reply, 409, "email_taken");
    }
    for username in ["alice", "ALICE", "Alice"] {
        let reply = client
            .register(username, "someone.else@example.com", "other password")
            .await;
        assert_json_error(&reply, 409, "username_taken");
    }

    let token = client.token("ALICE@example.COM", PASSWORD).await;
    let listed = list(&client, "", Some(&token)).await;
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["accounts"][0], account, "the first account changed");
    for email in ["alice@example.com", "Alice@Example.com"] {
        let reply = client.login(email, "other password").await;
        assert_json_error(&reply, 401, "invalid_credentials");
    }
    let reply = client
        .login("someone.else@example.com", "other password")
        .await;
    assert_json_error(&reply, 401, "invalid_credentials");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_concurrent_registrations_of_one_email_create_exactly_one_account() {
    let proxy = Proxy::start(&ConfigYaml::new()).await;
    let client = proxy.client();
    let spellings = ["race@example.com", "RACE@example.com", "Race@Example.Com"];
    let replies = concurrently(40, 40, |i| {
        let client = client.clone();
        let email = spellings[i % spellings.len()];
        async move {
            let username = format!("racer{i:02}");
            let password = format!("password-{i:02}");
            (client.register(&username, email, &password).await, password)
        }
    })
    .await;

    let winners: Vec<&(Reply, String)> = replies.iter().filter(|(r, _)| r.status == 201).collect();
    assert_eq!(
        winners.len(),
        1,
        "{:?}",
        replies.iter().map(|(r, _)| r.status).collect::<Vec<_>>()
    );
    for (reply, _) in replies.iter().filter(|(r, _)| r.status != 201) {
        assert_json_error(reply, 409, "email_taken");
    }
    let (winner, password) = winners[0];
    let token = client.token("race@example.com", password).await;
    let listed = list(&client, "", Some(&token)).await;
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["accounts"][0], winner.json());
}

// ---------------------------------------------------------------------------------------------
// POST /login

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_answers_a_bearer_token_that_is_never_cached() {
    let proxy = Proxy::start(&ConfigYaml::new().jwt("ttl", "10m")).await;
    let client = proxy.client();
    let registered = client.register("lena", "Lena@Example.com", PASSWORD).await;
    assert_eq!(registered.status, 201);

    let reply = client.login("lena@EXAMPLE.com", PASSWORD).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), "application/json");
    assert_eq!(reply.header("cache-control"), "no-store");
    assert_no_hash(&reply);
    let body = reply.json();
    assert_keys(
        &body,
        &[
            "access_token",
            "expires_in",
            "refresh_expires_in",
            "refresh_token",
            "token_type",
        ],
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 600);
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let claims = claims_of(token);
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        600
    );
    assert_eq!(claims["sub"], registered.json()["id"]);
    assert_eq!(list(&client, "", Some(token)).await["total"], 1);

    let reply = client
        .post_raw("/login", Some("application/json"), full("{"))
        .await;
    assert_json_error(&reply, 400, "invalid_json");
    let reply = client
        .post_json(
            "/login",
            &json!({"email": "lena@example.com", "password": PASSWORD, "admin": true}),
        )
        .await;
    assert_json_error(&reply, 400, "invalid_request");
    let reply = client
        .post_raw("/login", Some("text/plain"), full("{}"))
        .await;
    assert_json_error(&reply, 415, "unsupported_media_type");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_unknown_email_and_disabled_account_get_the_same_401() {
    let config = ConfigYaml::new();
    let database_url = config.database_url();
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();
    assert_eq!(
        client
            .register("vera", "vera@example.com", PASSWORD)
            .await
            .status,
        201
    );
    assert_eq!(
        client
            .register("walt", "walt@example.com", PASSWORD)
            .await
            .status,
        201
    );

    let wrong_password = client.login("vera@example.com", "not the password").await;
    let unknown_email = client.login("nobody@example.com", "not the password").await;
    assert_json_error(&wrong_password, 401, "invalid_credentials");
    assert_same_answer(
        &wrong_password,
        &unknown_email,
        "wrong password vs unknown email",
    );
    assert!(wrong_password.headers.get("www-authenticate").is_none());
    let unknown_with_password = client.login("nobody@example.com", PASSWORD).await;
    assert_same_answer(&wrong_password, &unknown_with_password, "unknown email");

    let walt = client.token("walt@example.com", PASSWORD).await;
    gatehouse_accounts(
        &database_url,
        &["disable", "--email", "walt@example.com"],
        "",
    )
    .await;
    let disabled = client.login("walt@example.com", PASSWORD).await;
    assert_same_answer(
        &wrong_password,
        &disabled,
        "disabled account vs wrong password",
    );
    let disabled_wrong = client.login("walt@example.com", "not the password").await;
    assert_same_answer(
        &wrong_password,
        &disabled_wrong,
        "disabled account, wrong password",
    );

    // Vera is untouched by all of it; Walt's old token dies with the account, which leaves
    // the list.
    let vera = client.token("vera@example.com", PASSWORD).await;
    assert_eq!(usernames(&list(&client, "", Some(&vera)).await), ["vera"]);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let reply = client.accounts("", Some(&walt)).await;
        if reply.status == 401 {
            assert_invalid_token(&reply);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a disabled account's token still lists accounts"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Throttling

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_past_its_login_limit_gets_the_same_429_for_existing_and_unknown_emails() {
    let config = ConfigYaml::new().auth_limit("login_per_minute", "3");
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();
    assert_eq!(
        client
            .register("tina", "tina@example.com", PASSWORD)
            .await
            .status,
        201
    );

    for n in 1..=3 {
        let reply = client
            .login(&format!("stranger{n}@example.com"), "guess")
            .await;
        assert_json_error(&reply, 401, "invalid_credentials");
    }
    // The client's bucket is empty: the right password of a real account does not help, and
    // an unknown email is answered exactly alike.
    let mut pair = None;
    for _ in 0..3 {
        let existing = client.login("tina@example.com", PASSWORD).await;
        let unknown = client.login("nobody@example.com", PASSWORD).await;
        assert_rate_limited(&existing);
        assert_rate_limited(&unknown);
        // The wait counts down; on the rare pair straddling a whole second, ask again.
        if existing.header("retry-after") == unknown.header("retry-after") {
            pair = Some((existing, unknown));
            break;
        }
    }
    let (existing, unknown) = pair.expect("two back-to-back 429s with the same Retry-After");
    assert_same_answer(
        &existing,
        &unknown,
        "429 for an existing vs an unknown email",
    );
    assert!(!String::from_utf8_lossy(&existing.body).contains("access_token"));

    // Only this client is held back: the account itself logs in from elsewhere.
    let elsewhere = Client::http1_from(proxy.addr, loopback(2));
    let reply = elsewhere.login("tina@example.com", PASSWORD).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_past_its_registration_limit_gets_429_and_nothing_is_stored() {
    let config = ConfigYaml::new().auth_limit("register_per_minute", "3");
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();
    for n in 1..=3 {
        let reply = client
            .register(&format!("reg{n}"), &format!("reg{n}@example.com"), PASSWORD)
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text());
    }
    let refused = client.register("reg4", "reg4@example.com", PASSWORD).await;
    assert_rate_limited(&refused);
    assert_no_hash(&refused);
    assert_json_error(
        &client.login("reg4@example.com", PASSWORD).await,
        401,
        "invalid_credentials",
    );

    let token = client.token("reg1@example.com", PASSWORD).await;
    assert_eq!(total(&client, &token).await, 3);
    let elsewhere = Client::http1_from(proxy.addr, loopback(2));
    let reply = elsewhere
        .register("reg5", "reg5@example.com", PASSWORD)
        .await;
    assert_eq!(
        reply.status,
        201,
        "another client is not held back: {}",
        reply.text()
    );
    assert_eq!(total(&client, &token).await, 4);
}

// ---------------------------------------------------------------------------------------------
// POST /logout

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_out_token_is_refused_everywhere_and_other_tokens_live_on() {
    let backend = backends(1).await[0];
    let config = ConfigYaml::new().service(ServiceYaml::new("locked", LOCKED).backend(backend));
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();
    let first = client.signed_up("lou", "lou@example.com", PASSWORD).await;
    let second = client.token("lou@example.com", PASSWORD).await;
    assert_ne!(first, second);
    assert_eq!(
        client.with_token("GET", LOCKED, "/", &first).await.status,
        200
    );

    let reply = client.with_token("POST", CONTROL, "/logout", &first).await;
    assert_eq!(reply.status, 204, "{}", reply.text());
    assert!(reply.body.is_empty());

    assert_invalid_token(&client.accounts("", Some(&first)).await);
    let proxied = client.with_token("GET", LOCKED, "/", &first).await;
    assert_invalid_token(&proxied);
    assert!(
        proxied.headers.get("x-backend").is_none(),
        "reached the backend"
    );
    assert_invalid_token(&client.with_token("POST", CONTROL, "/logout", &first).await);

    assert_eq!(list(&client, "", Some(&second)).await["total"], 1);
    assert_eq!(
        client.with_token("GET", LOCKED, "/", &second).await.status,
        200
    );
    let third = client.token("lou@example.com", PASSWORD).await;
    assert_eq!(
        client.with_token("GET", LOCKED, "/", &third).await.status,
        200
    );

    let request = http::Request::post("/logout")
        .header("host", CONTROL)
        .body(common::empty())
        .unwrap();
    assert_missing_token(&client.send(request).await);
    let reply = client
        .with_token("POST", CONTROL, "/logout", "not.a.token")
        .await;
    assert_invalid_token(&reply);
    assert_eq!(
        client.with_token("GET", LOCKED, "/", &second).await.status,
        200
    );
}

// ---------------------------------------------------------------------------------------------
// GET /accounts

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_list_pages_oldest_first_with_per_page_clamped() {
    let proxy = Proxy::start(&ConfigYaml::new()).await;
    let client = proxy.client();
    let names: Vec<String> = (1..=25).map(|n| format!("user{n:02}")).collect();
    for name in &names {
        let reply = client
            .register(name, &format!("{name}@example.com"), PASSWORD)
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text());
    }
    let token = client.token("user01@example.com", PASSWORD).await;
    let token = Some(token.as_str());

    let default = list(&client, "", token).await;
    assert_eq!(default["total"], 25);
    assert_eq!(usernames(&default), names[..20]);
    let page2 = list(&client, "page=2", token).await;
    assert_eq!(usernames(&page2), names[20..]);
    assert_eq!(page2["total"], 25);
    let middle = list(&client, "page=2&per_page=10", token).await;
    assert_eq!(usernames(&middle), names[10..20]);
    assert_ne!(
        usernames(&middle),
        usernames(&list(&client, "per_page=10", token).await)
    );

    let zero = list(&client, "per_page=0", token).await;
    assert_eq!(usernames(&zero), names[..1], "per_page=0 is clamped to 1");
    let negative = list(&client, "per_page=-3", token).await;
    assert_eq!(usernames(&negative), names[..1]);
    let huge = list(&client, "per_page=1000", token).await;
    assert_eq!(usernames(&huge), names, "per_page=1000 is clamped to 100");
    assert_eq!(huge["per_page"], 100);
    let beyond = list(&client, "page=3", token).await;
    assert_eq!(beyond["accounts"], json!([]));
    assert_eq!(beyond["total"], 25);
    let page0 = list(&client, "page=0&per_page=5", token).await;
    assert_eq!(usernames(&page0), names[..5], "page 0 is the first page");

    let reply = client.accounts("page=two", token).await;
    assert_json_error(&reply, 400, "invalid_query");
    assert_eq!(reply.header("content-type"), "application/json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_matches_username_or_email_in_any_case_with_wildcards_taken_literally() {
    let proxy = Proxy::start(&ConfigYaml::new()).await;
    let client = proxy.client();
    for (username, email) in [
        ("Alice.Smith", "asmith@Example.org"),
        ("bob", "Bob.ALICE@mail.test"),
        ("carol_x", "carol@example.com"),
        ("dave", "100%dave@example.com"),
        ("erin", "erin@example.com"),
    ] {
        assert_eq!(client.register(username, email, PASSWORD).await.status, 201);
    }
    let token = client.token("erin@example.com", PASSWORD).await;
    let search = |term: &'static str| {
        let client = client.clone();
        let token = token.clone();
        async move {
            let listed = list(&client, &query(&[("q", term)]), Some(&token)).await;
            let mut found = usernames(&listed);
            found.sort();
            assert_eq!(listed["total"], found.len() as i64, "q={term:?}");
            found
        }
    };

    assert_eq!(search("alice").await, ["Alice.Smith", "bob"]);
    assert_eq!(search("ALICE").await, ["Alice.Smith", "bob"]);
    assert_eq!(search("example.ORG").await, ["Alice.Smith"]);
    assert_eq!(search("Carol_X").await, ["carol_x"]);
    assert_eq!(
        search("%").await,
        ["dave"],
        "% is a character, not a wildcard"
    );
    assert_eq!(
        search("_").await,
        ["carol_x"],
        "_ is a character, not a wildcard"
    );
    assert_eq!(search("0%d").await, ["dave"]);
    assert_eq!(search("a%e").await, Vec::<String>::new());
    assert_eq!(search("b_b").await, Vec::<String>::new());
    assert_eq!(search("\\").await, Vec::<String>::new());
    assert_eq!(search("zzz").await, Vec::<String>::new());
    assert_eq!(search("  erin ").await, ["erin"]);
    assert_eq!(search("").await.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_in_fields_and_searches_is_stored_and_returned_as_plain_data() {
    let proxy = Proxy::start(&ConfigYaml::new()).await;
    let client = proxy.client();
    let drop_table = "'; DROP TABLE accounts; --";
    let email = "o'neil';DROP/**/TABLE/**/accounts;--@example.com";
    let registered = client.register("o.neil--", email, drop_table).await;
    assert_eq!(registered.status, 201, "{}", registered.text());
    assert_eq!(registered.json()["email"], email);
    assert_eq!(registered.json()["username"], "o.neil--");
    let other = client
        .register("plain", "plain@example.com", "x' OR '1'='1")
        .await;
    assert_eq!(other.status, 201);

    let token = client.token(email, drop_table).await;
    assert_json_error(
        &client.login(email, "' OR '1'='1").await,
        401,
        "invalid_credentials",
    );
    assert_json_error(
        &client.login("' OR '1'='1", "' OR '1'='1").await,
        401,
        "invalid_credentials",
    );
    assert_json_error(
        &client.login("plain@example.com", "' OR ''='").await,
        401,
        "invalid_credentials",
    );

    for term in [
        drop_table,
        "' OR '1'='1",
        "x' UNION SELECT password_hash, password_hash, password_hash, password_hash, 0 FROM accounts --",
        "%' OR 1=1 --",
        "\"; DELETE FROM accounts; --",
    ] {
        let listed = list(&client, &query(&[("q", term)]), Some(&token)).await;
        assert_eq!(listed["total"], 0, "q={term:?}: {listed}");
        assert_eq!(listed["accounts"], json!([]));
    }
    let listed = list(&client, &query(&[("q", "';DROP/**/TABLE")]), Some(&token)).await;
    assert_eq!(listed["accounts"], json!([registered.json()]));

    // The table is still there, with both accounts intact, and takes new ones.
    let listed = list(&client, "", Some(&token)).await;
    assert_eq!(listed["total"], 2);
    assert_eq!(listed["accounts"][0], registered.json());
    assert_eq!(
        client
            .register("after", "after@example.com", PASSWORD)
            .await
            .status,
        201
    );
    assert_eq!(total(&client, &token).await, 3);
    assert_eq!(
        client
            .login("plain@example.com", "x' OR '1'='1")
            .await
            .status,
        200
    );
}

/// Creates an admin account with the CLI and logs it in.
async fn admin_token(client: &Client, database_url: &str, username: &str) -> String {
    let email = format!("{username}@example.com");
    let created = gatehouse_accounts(
        database_url,
        &[
            "create",
            "--email",
            &email,
            "--username",
            username,
            "--admin",
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    )
    .await;
    assert!(
        String::from_utf8_lossy(&created.stdout).contains("admin"),
        "{created:?}"
    );
    let token = client.token(&email, PASSWORD).await;
    assert_eq!(claims_of(&token)["role"], "admin");
    token
}

/// With the default `accounts_page` (admin), a self-registered account cannot list every
/// account's email.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_only_admins_list_accounts() {
    let config = ConfigYaml::new().auth_default("accounts_page");
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();
    let user = client
        .signed_up("sally", "sally@example.com", PASSWORD)
        .await;
    assert_json_error(&client.accounts("", Some(&user)).await, 403, "forbidden");
    assert_missing_token(&client.accounts("", None).await);
    let admin = admin_token(&client, &config.database_url(), "boss").await;
    assert_eq!(
        usernames(&list(&client, "", Some(&admin)).await),
        ["sally", "boss"]
    );
}

/// Disabled accounts leave the list; an admin sees them with `disabled=include`, marked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_accounts_are_listed_only_when_an_admin_asks() {
    let config = ConfigYaml::new().auth("accounts_page", "authenticated");
    let database_url = config.database_url();
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();
    let user = client.signed_up("vera", "vera@example.com", PASSWORD).await;
    client.signed_up("gone", "gone@example.com", PASSWORD).await;
    let admin = admin_token(&client, &database_url, "chief").await;
    gatehouse_accounts(
        &database_url,
        &["disable", "--email", "gone@example.com"],
        "",
    )
    .await;

    for token in [&user, &admin] {
        let listed = list(&client, "", Some(token)).await;
        assert_eq!(usernames(&listed), ["vera", "chief"]);
        assert_eq!(listed["total"], 2);
    }
    let everyone = list(&client, "disabled=include", Some(&admin)).await;
    assert_eq!(usernames(&everyone), ["vera", "gone", "chief"]);
    assert_eq!(everyone["total"], 3);
    assert_eq!(everyone["accounts"][1]["disabled"], true);
    assert!(everyone["accounts"][0].get("disabled").is_none());
    let searched = list(&client, "disabled=include&q=gone", Some(&admin)).await;
    assert_eq!(usernames(&searched), ["gone"]);

    assert_json_error(
        &client.accounts("disabled=include", Some(&user)).await,
        403,
        "forbidden",
    );
    assert_json_error(
        &client.accounts("disabled=yes", Some(&admin)).await,
        400,
        "invalid_query",
    );
}

/// `auth.registration: closed` refuses every `POST /account`; `admin` lets only an admin
/// token create accounts. Nothing is stored by a refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_can_be_closed_or_left_to_admins() {
    let body = json!({"username": "newbie", "email": "newbie@example.com", "password": PASSWORD});

    let closed = ConfigYaml::new().auth("registration", "closed");
    let proxy = Proxy::start(&closed).await;
    let client = proxy.client();
    assert_json_error(
        &client.post_json("/account", &body).await,
        403,
        "registration_closed",
    );
    let admin = admin_token(&client, &closed.database_url(), "keeper").await;
    let with_admin = client
        .send(
            http::Request::post("/account")
                .header("host", CONTROL)
                .header("content-type", "application/json")
                .header("authorization", format!("Bearer {admin}"))
                .body(full(body.to_string()))
                .unwrap(),
        )
        .await;
    assert_json_error(&with_admin, 403, "registration_closed");
    assert_eq!(
        client.login("newbie@example.com", PASSWORD).await.status,
        401
    );

    let by_admin = ConfigYaml::new().auth("registration", "admin");
    let proxy = Proxy::start(&by_admin).await;
    let client = proxy.client();
    assert_missing_token(&client.post_json("/account", &body).await);
    let admin = admin_token(&client, &by_admin.database_url(), "keeper").await;
    let user_body =
        json!({"username": "plain", "email": "plain@example.com", "password": PASSWORD});
    let post = |token: &str, body: &Value| {
        http::Request::post("/account")
            .header("host", CONTROL)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .body(full(body.to_string()))
            .unwrap()
    };
    let created = client.send(post(&admin, &user_body)).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let user = client.token("plain@example.com", PASSWORD).await;
    assert_json_error(&client.send(post(&user, &body)).await, 403, "forbidden");
    assert_eq!(
        client.login("newbie@example.com", PASSWORD).await.status,
        401
    );
    let created = client.send(post(&admin, &body)).await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_account_view(&created.json());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authenticated_account_list_needs_a_valid_token() {
    let proxy = Proxy::start(&ConfigYaml::new().auth("accounts_page", "authenticated")).await;
    let client = proxy.client();
    let token = client
        .signed_up("ursula", "ursula@example.com", PASSWORD)
        .await;
    assert_missing_token(&client.accounts("", None).await);
    assert_invalid_token(&client.accounts("", Some("garbage")).await);
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert_invalid_token(&client.accounts("", Some(&tampered)).await);
    assert_eq!(list(&client, "", Some(&token)).await["total"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_account_list_needs_no_token() {
    let proxy = Proxy::start(&ConfigYaml::new().auth("accounts_page", "public")).await;
    let client = proxy.client();
    assert_eq!(
        client
            .register("pia", "pia@example.com", PASSWORD)
            .await
            .status,
        201
    );
    let listed = list(&client, "", None).await;
    assert_eq!(usernames(&listed), ["pia"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_account_list_refuses_users_with_403_and_answers_admins() {
    let config = ConfigYaml::new().auth("accounts_page", "admin");
    let database_url = config.database_url();
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();
    let user = client.signed_up("ulla", "ulla@example.com", PASSWORD).await;
    let admin = admin_token(&client, &database_url, "root").await;

    assert_json_error(&client.accounts("", Some(&user)).await, 403, "forbidden");
    assert_missing_token(&client.accounts("", None).await);
    let listed = list(&client, "", Some(&admin)).await;
    assert_eq!(usernames(&listed), ["ulla", "root"]);
}

// ---------------------------------------------------------------------------------------------
// Restarts

/// Registers through one `gatehouse serve` process, stops it with SIGTERM, and logs in through
/// a new one on the same store: accounts, tokens and logouts all survive.
async fn accounts_survive_a_restart(database_url: &str) {
    let env = [("DATABASE_URL", database_url)];
    let start = || {
        Gatehouse::start_with_env(&["serve"], &env, |listen| {
            ConfigYaml::new().listen(listen).render()
        })
    };
    let mut first = start().await;
    let client = Client::http1(first.addr);
    let kept = client.signed_up("rita", "rita@example.com", PASSWORD).await;
    let dropped = client.token("rita@example.com", PASSWORD).await;
    let reply = client
        .with_token("POST", CONTROL, "/logout", &dropped)
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text());
    first.signal(libc::SIGTERM);
    let status = first.wait_exit(Duration::from_secs(15)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "no clean exit on SIGTERM: {status:?}\n{}",
        first.logs()
    );

    let second = start().await;
    let client = Client::http1(second.addr);
    let reply = client.login("RITA@example.com", PASSWORD).await;
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), second.logs());
    let listed = list(&client, "", Some(&kept)).await;
    assert_eq!(
        usernames(&listed),
        ["rita"],
        "a token from before the restart still works"
    );
    assert_invalid_token(&client.accounts("", Some(&dropped)).await);
    assert_json_error(
        &client.register("rita", "rita2@example.com", PASSWORD).await,
        409,
        "username_taken",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_survive_a_restart_on_sqlite() {
    let dir = TempDir::new("restart");
    let url = format!("sqlite://{}", dir.path().join("gatehouse.db").display());
    accounts_survive_a_restart(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_survive_a_restart_on_postgres() {
    let Some(url) = fresh_database().await else {
        return;
    };
    accounts_survive_a_restart(&url).await;
}
