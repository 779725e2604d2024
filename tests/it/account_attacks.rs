//! Attacks on the account endpoints, against the real binary on SQLite and on PostgreSQL:
//! SQL injection in every field and query parameter, stored XSS, the password hashes as stored,
//! and password guessing past the throttle. `accounts.rs` covers the contract of each endpoint
//! (in-process, SQLite), `store.rs` the store below it; this file reads the database directly
//! (`common::deployment`) to check what an attack left there. Login timing for unknown vs
//! known emails has a binary of its own, `tests/login_timing.rs`.
//!
//! `both_stores!` makes a `sqlite::` and a `postgres::` test of each scenario. PostgreSQL
//! needs `GATEHOUSE_TEST_POSTGRES` (`scripts/test` provides it).

use crate::common;

use std::collections::HashSet;

use base64::engine::{general_purpose::STANDARD_NO_PAD, Engine};
use serde_json::{json, Value};

use common::accounts::{claims_of, gatehouse_accounts, query, CONTROL};
use common::deployment::{Deployment, Store};
use common::scrape::{count, scrape};
use common::{assert_json_error_about, assert_rate_limited_about, full, Client, Reply};

const PASSWORD: &str = "correct horse battery";

macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Store::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Store::Postgres).await;
                }
            )*
        }
    };
}

both_stores!(
    sql_injection_is_data_or_a_clear_400_and_the_table_survives,
    xss_payloads_are_stored_as_data_and_never_become_markup,
    hashes_are_argon2id_with_owasp_parameters_and_a_salt_per_account,
    guessing_is_throttled_alike_for_existing_and_unknown_emails_whatever_the_client_claims,
);

/// Registers `username`/`email`, expecting a 400 with `code`.
async fn assert_refused_registration(client: &Client, username: &str, email: &str, code: &str) {
    let reply = client.register(username, email, PASSWORD).await;
    assert_json_error_about(&reply, 400, code, &format!("{username:?} / {email:?}"));
}

async fn listed(client: &Client, query: &str, token: &str) -> Value {
    let reply = client.accounts(query, Some(token)).await;
    assert_eq!(reply.status, 200, "GET /accounts?{query}: {}", reply.text());
    reply.json()
}

fn emails(listed: &Value) -> Vec<String> {
    listed["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .map(|a| a["email"].as_str().expect("email").to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// SQL injection

/// Classic payloads in each field: where validation refuses them, a 400 naming the field;
/// where it allows them, stored and returned byte for byte. Logins and searches with them
/// find nothing they do not literally match, malformed paging is a 400, and afterwards the
/// table holds exactly the accounts registered, the first of which still logs in.
async fn sql_injection_is_data_or_a_clear_400_and_the_table_survives(store: Store) {
    let Some(d) = Deployment::start(store, |config| config).await else {
        return;
    };
    let client = &d.client;
    let original = d
        .registered("original", "original@example.com", PASSWORD)
        .await;
    let token = client.token("original@example.com", PASSWORD).await;

    let payloads = [
        "' OR '1'='1",
        "'; DROP TABLE accounts; --",
        "admin'--",
        "\" OR \"\"=\"",
        "1; DELETE FROM accounts",
        "') UNION SELECT password_hash FROM accounts --",
        "\\'; SELECT pg_sleep(5); --",
        "x'||(SELECT email FROM accounts LIMIT 1)||'",
    ];
    for payload in payloads {
        assert_refused_registration(client, payload, "user@example.com", "invalid_username").await;
    }
    // Emails allow anything but whitespace and control characters around one `@`.
    for email in [
        "' OR '1'='1@example.com",
        "x@example.com'; DROP TABLE accounts; --",
        "x@example.com\u{0}' OR 1=1",
    ] {
        assert_refused_registration(client, "refused", email, "invalid_email").await;
    }
    let stored_emails = [
        "'OR'1'='1'--@example.com",
        "x'/**/OR/**/1=1;DROP/**/TABLE/**/accounts;--@example.com",
        "\"admin\"--@example.com",
        "a'||(SELECT/**/password_hash/**/FROM/**/accounts)||'@example.com",
    ];
    let mut stored = vec![original.clone()];
    for (i, email) in stored_emails.iter().enumerate() {
        let password = payloads[i]; // each at least 8 bytes
        let account = d.registered(&format!("sqli{i}"), email, password).await;
        assert_eq!(account["email"], *email, "stored byte for byte");
        stored.push(account);
        let login = client.token(email, password).await;
        assert_eq!(claims_of(&login)["email"], *email);
        let reply = client.login(email, "' OR ''='").await;
        assert_json_error_about(&reply, 401, "invalid_credentials", email);
    }

    let unknown = client.login("nobody@example.com", PASSWORD).await;
    assert_json_error_about(&unknown, 401, "invalid_credentials", "unknown email");
    let login_emails = [
        "' OR '1'='1",
        "' OR 1=1 --",
        "original@example.com' --",
        "original@example.com'/*",
        "' OR email_key LIKE '%",
        "%",
        "_riginal@example.com",
        "original@example.com\u{0}",
        "\u{0}' OR 1=1 --",
    ];
    for email in login_emails {
        let reply = client.login(email, PASSWORD).await;
        assert_json_error_about(
            &reply,
            401,
            "invalid_credentials",
            &format!("login as {email:?}"),
        );
        assert_eq!(reply.body, unknown.body, "{email:?}");
    }

    for term in payloads.iter().copied().chain(["%", "_", "'--"]) {
        let found = listed(client, &query(&[("q", term)]), &token).await;
        let matches = |field: &Value| {
            let field = field.as_str().unwrap().to_lowercase();
            field.contains(&term.to_lowercase())
        };
        let expected: Vec<String> = stored
            .iter()
            .filter(|a| matches(&a["email"]) || matches(&a["username"]))
            .map(|a| a["email"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(emails(&found), expected, "q={term:?}");
        assert_eq!(found["total"], expected.len(), "q={term:?}");
    }
    // A NUL cannot be in any account (validation refuses control characters), and databases
    // disagree about it: SQLite's LIKE stops at it (so `%\0%` matches everything) and
    // PostgreSQL refuses it in text (an error). It is a malformed query, like a bad page.
    for term in ["\u{0}", "'\u{0}--", "a\u{0}' OR 1=1 --"] {
        let reply = client.accounts(&query(&[("q", term)]), Some(&token)).await;
        assert_json_error_about(&reply, 400, "invalid_query", &format!("q={term:?}"));
    }
    for bad in [
        ("page", "1;DROP TABLE accounts"),
        ("page", "1 OR 1=1"),
        ("per_page", "1)--"),
        ("per_page", "20 UNION SELECT 1"),
        ("page", "1e3"),
        ("page", "0x10"),
        ("page", "9223372036854775808"),
        ("per_page", "-9223372036854775809"),
    ] {
        let bad = query(&[bad]);
        let reply = client.accounts(&bad, Some(&token)).await;
        assert_json_error_about(&reply, 400, "invalid_query", &bad);
    }
    let far = listed(client, "page=9223372036854775807&per_page=100", &token).await;
    assert_eq!(far["accounts"], json!([]), "a page past the end is empty");
    assert_eq!(far["total"], stored.len());
    let least = listed(
        client,
        "page=-9223372036854775808&per_page=-9223372036854775808",
        &token,
    )
    .await;
    assert_eq!(
        least["accounts"],
        json!([original]),
        "clamped to page 1 of 1"
    );

    let all = listed(client, "per_page=100", &token).await;
    assert_eq!(
        all["accounts"],
        json!(stored),
        "every account intact, in order"
    );
    assert_eq!(d.db.rows().await, stored.len() as i64);
    assert_eq!(
        client.login("original@example.com", PASSWORD).await.status,
        200
    );
    d.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Stored XSS

/// Markup in a username is refused; in an email (which allows it) it is stored verbatim and
/// only ever sent back inside JSON with quotes escaped. The accounts page is the same static
/// document whoever asks and whatever is stored: data reaches it only through `/accounts`
/// (that its script puts data in as text is checked by `control/page.rs` and, in Chromium, by
/// `accounts_page.rs`). Errors echo nothing as HTML.
async fn xss_payloads_are_stored_as_data_and_never_become_markup(store: Store) {
    let Some(d) = Deployment::start(store, |config| config).await else {
        return;
    };
    let client = &d.client;
    let empty_page = client.get(CONTROL, "/accounts_page").await;
    assert_eq!(empty_page.status, 200);
    for username in [
        "<script>alert(1)</script>",
        "\"><svg/onload=alert(1)>",
        "a<b",
    ] {
        assert_refused_registration(client, username, "xss@example.com", "invalid_username").await;
    }
    let payloads = [
        "<script>alert(1)</script>@evil.test",
        "\"><img/src=x/onerror=alert(1)>@evil.test",
        "'-alert(1)-'@evil.test",
        "javascript:alert(1)//@evil.test",
        "{{7*7}}${7*7}@evil.test",
        "</script><script>alert(1)</script>@evil.test",
    ];
    let mut accounts = Vec::new();
    for (i, email) in payloads.iter().enumerate() {
        let account = d.registered(&format!("xss{i}"), email, PASSWORD).await;
        assert_eq!(account["email"], *email);
        accounts.push(account);
    }

    let token = client.token(payloads[1], PASSWORD).await;
    let reply = client.accounts("q=evil.test", Some(&token)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), "application/json");
    assert_eq!(reply.json()["accounts"], json!(accounts));
    let raw = String::from_utf8_lossy(&reply.body);
    assert!(
        raw.contains(r#"\"><img"#) && !raw.replace(r#"\"><img"#, "").contains(r#""><img"#),
        "quotes inside values are escaped: {raw}"
    );
    let found = listed(client, &query(&[("q", "<script>")]), &token).await;
    assert_eq!(emails(&found), [payloads[0], payloads[5]]);

    for (who, request) in [
        ("anonymous", None),
        ("logged in", Some(format!("Bearer {token}"))),
    ] {
        let mut builder = http::Request::get("/accounts_page").header("host", CONTROL);
        if let Some(authorization) = &request {
            builder = builder.header("authorization", authorization);
        }
        let reply = client.send(builder.body(common::empty()).unwrap()).await;
        assert_eq!(
            reply.body, empty_page.body,
            "the page ({who}) changed with the accounts stored: data was put into it"
        );
    }

    let reflected = [
        "/%3Cscript%3Ealert(1)%3C/script%3E",
        "/accounts_page/%3Cimg%20src=x%20onerror=alert(1)%3E",
        "/accounts?page=%3Cscript%3E",
    ];
    for path in reflected {
        let reply = client.with_token("GET", CONTROL, path, &token).await;
        assert!(reply.status.is_client_error(), "{path}: {}", reply.text());
        assert_eq!(reply.header("content-type"), "application/json", "{path}");
        let body = String::from_utf8_lossy(&reply.body);
        assert!(
            !body.contains("<script>") && !body.contains("<img"),
            "{path}: {body}"
        );
    }
    d.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Password hashes

/// One parsed PHC string: `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`.
struct Phc {
    algorithm: String,
    version: u32,
    memory_kib: u32,
    passes: u32,
    lanes: u32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

fn parse_phc(text: &str) -> Phc {
    let fields: Vec<&str> = text.split('$').collect();
    assert_eq!(fields.len(), 6, "not a PHC string with a version: {text}");
    let param = |name: &str| -> u32 {
        fields[3]
            .split(',')
            .find_map(|p| p.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name}= in {text}"))
    };
    let b64 = |s: &str| STANDARD_NO_PAD.decode(s).expect("PHC base64");
    Phc {
        algorithm: fields[1].to_string(),
        version: fields[2]
            .strip_prefix("v=")
            .and_then(|v| v.parse().ok())
            .expect("v="),
        memory_kib: param("m"),
        passes: param("t"),
        lanes: param("p"),
        salt: b64(fields[4]),
        hash: b64(fields[5]),
    }
}

/// Every stored hash, whether from `POST /account` or `gatehouse accounts create`, is
/// argon2id v1.3 with at least OWASP's parameters (19 MiB, 2 passes, 1 lane), a 16-byte salt
/// of its own and a 32-byte output; the same password never gives the same salt or hash, and
/// the password itself is nowhere in the row.
async fn hashes_are_argon2id_with_owasp_parameters_and_a_salt_per_account(store: Store) {
    let Some(d) = Deployment::start(store, |config| config).await else {
        return;
    };
    d.registered("first", "first@example.com", PASSWORD).await;
    d.registered("second", "second@example.com", PASSWORD).await;
    gatehouse_accounts(
        &d.url,
        &[
            "create",
            "--email",
            "third@example.com",
            "--username",
            "third",
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    )
    .await;

    let rows = d.db.hashes().await;
    let stored: Vec<&str> = rows.iter().map(|(email, _)| email.as_str()).collect();
    assert_eq!(
        stored,
        [
            "first@example.com",
            "second@example.com",
            "third@example.com"
        ]
    );
    let mut salts = HashSet::new();
    let mut outputs = HashSet::new();
    for (email, hash) in &rows {
        let phc = parse_phc(hash);
        assert_eq!(phc.algorithm, "argon2id", "{email}: {hash}");
        assert_eq!(phc.version, 19, "{email}: {hash}");
        assert!(phc.memory_kib >= 19_456, "{email}: {hash}");
        assert!(phc.passes >= 2, "{email}: {hash}");
        assert_eq!(phc.lanes, 1, "{email}: {hash}");
        assert!(
            phc.salt.len() >= 16,
            "{email}: a {}-byte salt",
            phc.salt.len()
        );
        assert!(
            phc.hash.len() >= 32,
            "{email}: a {}-byte hash",
            phc.hash.len()
        );
        assert!(
            !hash.contains(PASSWORD) && !hash.contains("horse"),
            "{email}"
        );
        assert!(salts.insert(phc.salt), "{email} shares a salt");
        assert!(outputs.insert(phc.hash), "{email} shares a hash");
    }
    for email in stored {
        let token = d.client.token(email, PASSWORD).await;
        assert_eq!(claims_of(&token)["email"], email);
    }
    d.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Password guessing

/// `POST /login` from `client`, with `X-Forwarded-For: forwarded_for` when given.
async fn login_via(
    client: &Client,
    forwarded_for: Option<&str>,
    email: &str,
    password: &str,
) -> Reply {
    let body = json!({"email": email, "password": password}).to_string();
    let mut request = http::Request::post("/login")
        .header("host", CONTROL)
        .header("content-type", "application/json");
    if let Some(ip) = forwarded_for {
        request = request.header("x-forwarded-for", ip);
    }
    client.send(request.body(full(body)).unwrap()).await
}

/// Everything but the date, the request id and the wait (which counts down per bucket).
fn without_the_wait(reply: &Reply) -> (u16, Vec<(String, String)>, String) {
    let wait = reply.header("retry-after").to_string();
    let mut headers: Vec<(String, String)> = reply
        .headers
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "date" | "x-request-id" | "retry-after"))
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_string()))
        .collect();
    headers.sort();
    let body = String::from_utf8_lossy(&reply.body).replace(&wait, "N");
    (reply.status.as_u16(), headers, body)
}

/// With `login_per_minute: 5` and `account_failures: 5`, guesses are held back per client and
/// per account:
/// - a client sending `X-Forwarded-For` it is not trusted for gets no fresh bucket from it;
/// - a botnet behind the trusted ingress (a new client address per guess) meets the account's
///   back-off after 5 failures: every address that has failed on the account waits, and the
///   right password from one of them gets the same 429 as any guess (an address with no
///   failure still gets its one try: `tests/it/lockout.rs`);
/// - an existing and an unknown email are throttled identically: same status, headers and
///   body but for the seconds to wait, so a 429 says nothing about which emails exist.
async fn guessing_is_throttled_alike_for_existing_and_unknown_emails_whatever_the_client_claims(
    store: Store,
) {
    const LIMIT: usize = 5;
    let Some(d) = Deployment::start(store, |config| {
        config
            .auth_limit("login_per_minute", &LIMIT.to_string())
            .auth_limit("account_failures", &LIMIT.to_string())
            .auth_limit("network_failures", "100")
            .auth_limit("max_backoff", "1h")
            .trusted_proxies(&["127.0.0.2/32"])
    })
    .await
    else {
        return;
    };
    d.registered("victim", "victim@example.com", PASSWORD).await;
    let addr = d.gatehouse.addr;
    let before = scrape(addr).await;

    // An untrusted client rotating X-Forwarded-For over fresh emails: its own bucket runs dry.
    let direct = Client::http1(addr);
    for n in 0..LIMIT {
        let reply = login_via(
            &direct,
            Some(&format!("203.0.113.{n}")),
            &format!("spray{n}@example.com"),
            "guess",
        )
        .await;
        assert_json_error_about(
            &reply,
            401,
            "invalid_credentials",
            "a guess within the limit",
        );
    }
    let spoofed = login_via(
        &direct,
        Some("198.51.100.77"),
        "victim@example.com",
        PASSWORD,
    )
    .await;
    assert_rate_limited_about(&spoofed, "spoofed X-Forwarded-For");

    // A botnet through the ingress: every guess from a new address, one email at a time.
    let ingress = Client::http1_from(addr, "127.0.0.2".parse().unwrap());
    let mut throttled = Vec::new();
    for (subnet, email) in [(1, "victim@example.com"), (2, "ghost@example.com")] {
        for n in 0..LIMIT {
            let ip = format!("10.{subnet}.0.{n}");
            let reply = login_via(&ingress, Some(&ip), email, "guess").await;
            assert_json_error_about(
                &reply,
                401,
                "invalid_credentials",
                &format!("{email} from {ip}"),
            );
        }
        // Addresses that already failed on this account wait: guesses from them until the
        // wait is at least 2 s (the first is 1 s, which a slow machine can outlast; each
        // failure let through doubles it), then the right password from one of them.
        let mut held = false;
        for n in 0..8 {
            let ip = format!("10.{subnet}.0.{}", n % LIMIT);
            let reply = login_via(&ingress, Some(&ip), email, "guess").await;
            if reply.status != 429 {
                assert_json_error_about(&reply, 401, "invalid_credentials", "let through");
                continue;
            }
            let wait = assert_rate_limited_about(&reply, "held back");
            if wait >= 2 {
                held = true;
                break;
            }
            // Refusals do not count: let the short wait pass so the next failure doubles it.
            tokio::time::sleep(std::time::Duration::from_millis(wait * 1000 + 100)).await;
        }
        assert!(held, "{email}: never held back");
        let ip = format!("10.{subnet}.0.0");
        let reply = login_via(&ingress, Some(&ip), email, PASSWORD).await;
        assert_rate_limited_about(&reply, &format!("{email}, guess {} from {ip}", LIMIT + 1));
        throttled.push(reply);
    }
    let (existing, unknown) = (&throttled[0], &throttled[1]);
    assert_eq!(
        without_the_wait(existing),
        without_the_wait(unknown),
        "a 429 tells an existing email from an unknown one"
    );
    let (a, b) = (
        assert_rate_limited_about(existing, "victim"),
        assert_rate_limited_about(unknown, "ghost"),
    );
    assert!(a.abs_diff(b) <= 1, "waits of {a} s and {b} s");

    // The ingress itself and other emails are not held back by any of this.
    let other = login_via(&ingress, Some("10.3.0.1"), "someone@example.com", "guess").await;
    assert_json_error_about(
        &other,
        401,
        "invalid_credentials",
        "another email from a new client",
    );

    let after = scrape(addr).await;
    let delta = |result| {
        count(&after, "gatehouse_logins_total", &[("result", result)])
            - count(&before, "gatehouse_logins_total", &[("result", result)])
    };
    assert!(delta("rate_limited") >= 5, "every 429 is counted");
    assert_eq!(delta("success"), 0, "no guess got in");
    d.finish().await;
}
