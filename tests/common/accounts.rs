//! Account and token helpers: register, log in, call with a bearer token, forge tokens.

use base64::engine::{general_purpose::URL_SAFE_NO_PAD, Engine};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{header, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as LegacyClient;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{empty, full, Client, Reply, TestBody, TEST_JWT_SECRET};

/// The host tests use for the control plane (no service claims it).
pub const CONTROL: &str = "control.test";

impl Client {
    /// `POST path` on the control plane with a JSON body (`Content-Type: application/json`).
    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        let request = Request::post(path)
            .header(header::HOST, CONTROL)
            .header(header::CONTENT_TYPE, "application/json")
            .body(full(serde_json::to_vec(body).expect("serialisable")))
            .expect("valid request");
        self.send(request).await
    }

    /// `METHOD path` with `Host: host` and `Authorization: Bearer token`.
    pub async fn with_token(&self, method: &str, host: &str, path: &str, token: &str) -> Reply {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, host)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(empty())
            .expect("valid request");
        self.send(request).await
    }

    /// `POST /account`.
    pub async fn register(&self, username: &str, email: &str, password: &str) -> Reply {
        let body = json!({ "username": username, "email": email, "password": password });
        self.post_json("/account", &body).await
    }

    /// `POST /login`.
    pub async fn login(&self, email: &str, password: &str) -> Reply {
        self.post_json("/login", &json!({ "email": email, "password": password }))
            .await
    }

    /// Registers (201 expected) and logs in (200 expected); returns the access token.
    pub async fn signed_up(&self, username: &str, email: &str, password: &str) -> String {
        let registered = self.register(username, email, password).await;
        assert_eq!(registered.status, 201, "register: {:?}", registered.body);
        self.token(email, password).await
    }

    /// Logs in (200 expected) and returns the access token.
    pub async fn token(&self, email: &str, password: &str) -> String {
        let reply = self.login(email, password).await;
        assert_eq!(reply.status, 200, "login: {:?}", reply.body);
        reply.json()["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }
}

impl Client {
    /// A pooled HTTP/1.1 client whose connections leave from `local` (any `127.x.y.z` works on
    /// Linux loopback), so the proxy sees a different client IP.
    pub fn http1_from(addr: SocketAddr, local: IpAddr) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_local_address(Some(local));
        let inner = LegacyClient::builder(TokioExecutor::new()).build(connector);
        Client { inner, addr }
    }

    /// `POST path` on the control plane with `body` as is and this `Content-Type` (none when
    /// `None`).
    pub async fn post_raw(&self, path: &str, content_type: Option<&str>, body: TestBody) -> Reply {
        let mut request = Request::post(path).header(header::HOST, CONTROL);
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        self.send(request.body(body).expect("valid request")).await
    }

    /// `GET /accounts?query` on the control plane, with `Authorization: Bearer token` if given.
    pub async fn accounts(&self, query: &str, token: Option<&str>) -> Reply {
        let path = format!("/accounts?{query}");
        match token {
            Some(token) => self.with_token("GET", CONTROL, &path, token).await,
            None => self.get(CONTROL, &path).await,
        }
    }
}

/// Runs `gatehouse accounts ARGS` against `database_url` with `stdin` piped in (e.g. the
/// password of `create --password-stdin`); panics unless it exits 0.
pub async fn gatehouse_accounts(database_url: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = tokio::process::Command::new(super::binary::GATEHOUSE)
        .arg("accounts")
        .args(args)
        .env("DATABASE_URL", database_url)
        .env_remove("GATEHOUSE_JWT_SECRET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gatehouse accounts");
    let mut input = child.stdin.take().expect("piped stdin");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("write stdin");
    drop(input);
    let output = child
        .wait_with_output()
        .await
        .expect("wait for gatehouse accounts");
    assert!(
        output.status.success(),
        "gatehouse accounts {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The claims of `token`, unverified (for tests that inspect or re-sign them).
pub fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("three parts");
    serde_json::from_slice(&base64url_decode(payload)).expect("JSON claims")
}

/// A token with `header` and `claims`, HS256-signed with `secret`.
pub fn sign_hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(secret);
    let header: jsonwebtoken::Header = serde_json::from_value(header.clone()).expect("header");
    jsonwebtoken::encode(&header, claims, &key).expect("sign")
}

/// `claims` signed with the test secret, as Gatehouse would sign them.
pub fn sign_test(claims: &Value) -> String {
    sign_hs256(
        &json!({"alg": "HS256", "typ": "JWT"}),
        claims,
        TEST_JWT_SECRET.as_bytes(),
    )
}

/// `header.payload.` with no signature and the given (unsigned) header, e.g. `alg: none`.
pub fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        base64url_encode(&serde_json::to_vec(header).unwrap()),
        base64url_encode(&serde_json::to_vec(claims).unwrap())
    )
}

/// Base64url without padding (RFC 7515 §2).
pub fn base64url_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding.
pub fn base64url_decode(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).expect("base64url")
}

/// Unix time in whole seconds, as `iat`, `nbf` and `exp` count it.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

// ---------------------------------------------------------------------------------------------
// The account list and the accounts it shows

/// No password hash, nor anything that names one, anywhere in the body.
pub fn assert_no_hash(reply: &Reply) {
    let body = String::from_utf8_lossy(&reply.body).to_lowercase();
    for leak in ["password_hash", "$argon2", "argon2id", "\"password\""] {
        assert!(!body.contains(leak), "the body leaks `{leak}`: {body}");
    }
}

/// An object with exactly these keys.
pub fn assert_keys(value: &Value, expected: &[&str]) {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut expected = expected.to_vec();
    expected.sort_unstable();
    assert_eq!(keys, expected, "{value}");
}

/// One account as the API shows it: exactly id, username, email and an RFC 3339 created_at
/// (and `"disabled": true` for a disabled account in an admin's view).
pub fn assert_account_view(account: &Value) {
    if account.get("disabled").is_some() {
        assert_eq!(account["disabled"], true, "{account}");
        assert_keys(
            account,
            &["created_at", "disabled", "email", "id", "username"],
        );
    } else {
        assert_keys(account, &["created_at", "email", "id", "username"]);
    }
    assert!(!account["id"].as_str().expect("id").is_empty());
    let created_at = account["created_at"].as_str().expect("created_at");
    assert!(
        rfc3339_nanos(created_at).is_some(),
        "created_at is not RFC 3339: {created_at:?}"
    );
}

/// Unix nanoseconds of an RFC 3339 date-time (`2026-11-22T15:04:05.123Z`, `…+02:00`); `None`
/// for anything else.
pub fn rfc3339_nanos(text: &str) -> Option<i128> {
    let b = text.as_bytes();
    let number = |from: usize, to: usize| -> Option<i64> {
        let digits = text.get(from..to)?;
        digits
            .bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if b.len() < 20 || separators.iter().any(|&(i, c)| b[i] != c) || !matches!(b[10], b'T' | b't') {
        return None;
    }
    let (year, month, day) = (number(0, 4)?, number(5, 7)?, number(8, 10)?);
    let (hour, minute, second) = (number(11, 13)?, number(14, 16)?, number(17, 19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut nanos = 0i128;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if !(1..=9).contains(&digits) {
            return None;
        }
        nanos = fraction[..digits].parse::<i128>().ok()? * 10i128.pow(9 - digits as u32);
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            let (h, m) = (
                rest[1..3].parse::<i64>().ok()?,
                rest[4..6].parse::<i64>().ok()?,
            );
            sign * (h * 3600 + m * 60)
        }
    };
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Some(i128::from(secs) * 1_000_000_000 + nanos)
}

/// Runs `task(0..count)`, at most `in_flight` at once, and returns the outputs in index order.
pub async fn concurrently<T, F, Fut>(count: usize, in_flight: usize, task: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let permits = Arc::new(Semaphore::new(in_flight));
    let mut tasks = JoinSet::new();
    for i in 0..count {
        let permits = Arc::clone(&permits);
        let work = task(i);
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore open");
            (i, work.await)
        });
    }
    let mut outputs: Vec<Option<T>> = (0..count).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        let (i, output) = joined.expect("a concurrent task panicked");
        outputs[i] = Some(output);
    }
    outputs
        .into_iter()
        .map(|o| o.expect("every task ran"))
        .collect()
}

/// `key=value` with the value form-encoded, for query strings.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs {
        serializer.append_pair(key, value);
    }
    serializer.finish()
}

/// The list answer for `query`, checked for shape and for never showing a hash.
pub async fn list(client: &Client, query: &str, token: Option<&str>) -> Value {
    let reply = client.accounts(query, token).await;
    assert_eq!(reply.status, 200, "GET /accounts?{query}: {}", reply.text());
    assert_eq!(reply.header("content-type"), "application/json");
    assert_no_hash(&reply);
    let body = reply.json();
    assert!(body["total"].is_i64(), "{body}");
    for account in body["accounts"].as_array().expect("accounts array") {
        assert_account_view(account);
    }
    body
}
