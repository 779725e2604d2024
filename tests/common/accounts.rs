//! Account and token helpers: register, log in, call with a bearer token, forge tokens.

use base64::engine::{general_purpose::URL_SAFE_NO_PAD, Engine};
use std::net::{IpAddr, SocketAddr};
use std::process::{Output, Stdio};

use http::{header, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as LegacyClient;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

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
