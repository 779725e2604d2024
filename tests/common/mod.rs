//! Helpers shared by the integration tests: test backends, config text, the proxy in-process
//! on `127.0.0.1:0`, and clients (hyper-util for ordinary requests, raw TCP for exact bytes).

#![allow(dead_code)] // Each test crate uses a different subset.

pub mod accounts;
pub mod binary;
pub mod deployment;
pub mod files;
pub mod fixed_backend;
pub mod h2;
pub mod killable;
pub mod postgres;
pub mod scrape;
pub mod setup;
pub mod stub;
pub mod tls;

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as LegacyClient;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Errors a test request body may fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type every test request uses.
pub type TestBody = BoxBody<Bytes, BoxError>;

/// An empty request body.
pub fn empty() -> TestBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// A request body held in memory.
pub fn full(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

// ---------------------------------------------------------------------------------------------
// Backends

/// Starts `count` echo backends named `b0`, `b1`, … and returns their addresses in that order.
pub async fn backends(count: usize) -> Vec<SocketAddr> {
    let mut addrs = Vec::with_capacity(count);
    for i in 0..count {
        addrs.push(gatehouse_backend::spawn(&format!("b{i}")).await);
    }
    addrs
}

/// An address nothing listens on: bound to `127.0.0.1:0`, then released, so a connect is refused.
pub fn refused_addr() -> SocketAddr {
    let listener = StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address")
}

/// A TCP relay in front of a backend that counts the connections it receives, so a test can
/// prove the proxy never contacted the backend.
pub struct CountingRelay {
    /// Where the proxy should send requests.
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl CountingRelay {
    /// Relays to `target`, counting every accepted connection.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        CountingRelay { addr, connections }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

// ---------------------------------------------------------------------------------------------
// Config text

/// One `services:` entry.
#[derive(Debug, Clone)]
pub struct ServiceYaml {
    name: String,
    hosts: Vec<String>,
    settings: Vec<(String, String)>,
    backends: Vec<(SocketAddr, Option<u32>)>,
}

impl ServiceYaml {
    /// A service claiming `host`, with `auth` left at its default (required).
    pub fn new(name: &str, host: &str) -> Self {
        ServiceYaml {
            name: name.to_string(),
            hosts: vec![host.to_string()],
            settings: Vec::new(),
            backends: Vec::new(),
        }
    }

    /// A service claiming `host` that needs no token (`auth: none`).
    pub fn open(name: &str, host: &str) -> Self {
        Self::new(name, host).set("auth", "none")
    }

    /// Claims one more host.
    pub fn host(mut self, host: &str) -> Self {
        self.hosts.push(host.to_string());
        self
    }

    /// Adds a `key: value` line (strategy, auth, timeout).
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.settings.push((key.to_string(), value.to_string()));
        self
    }

    /// Adds a backend with the default weight.
    pub fn backend(mut self, addr: SocketAddr) -> Self {
        self.backends.push((addr, None));
        self
    }

    /// Adds several backends with the default weight, in order.
    pub fn backends(mut self, addrs: &[SocketAddr]) -> Self {
        self.backends.extend(addrs.iter().map(|&a| (a, None)));
        self
    }

    /// Adds a backend with an explicit weight.
    pub fn weighted(mut self, addr: SocketAddr, weight: u32) -> Self {
        self.backends.push((addr, Some(weight)));
        self
    }

    fn render(&self, out: &mut String) {
        out.push_str(&format!("  - name: {}\n", self.name));
        out.push_str(&format!("    hosts: [{}]\n", self.hosts.join(", ")));
        for (key, value) in &self.settings {
            out.push_str(&format!("    {key}: {value}\n"));
        }
        out.push_str("    backends:\n");
        for (addr, weight) in &self.backends {
            out.push_str(&format!("      - url: http://{addr}\n"));
            if let Some(weight) = weight {
                out.push_str(&format!("        weight: {weight}\n"));
            }
        }
    }
}

/// The HS256 secret every test config signs with (tests forge tokens with it).
pub const TEST_JWT_SECRET: &str = "test-secret-0123456789abcdef-0123456789";

/// A whole config file. Each one gets its own directory holding its SQLite account store and
/// JWT secret file, so tests never share accounts.
#[derive(Debug, Clone)]
pub struct ConfigYaml {
    top: Vec<(String, String)>,
    listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
    trusted_proxies: Vec<String>,
    workers: Option<usize>,
    limits: Vec<(String, String)>,
    services: Vec<ServiceYaml>,
    database: Option<String>,
    jwt: Vec<(String, String)>,
    auth: Vec<(String, String)>,
    auth_limits: Vec<(String, String)>,
    dir: Arc<binary::TempDir>,
}

impl Default for ConfigYaml {
    fn default() -> Self {
        let dir = binary::TempDir::new("config");
        let secret = dir.write("jwt-secret", TEST_JWT_SECRET);
        ConfigYaml {
            top: Vec::new(),
            listen: None,
            admin_listen: None,
            trusted_proxies: Vec::new(),
            workers: None,
            limits: Vec::new(),
            services: Vec::new(),
            database: None,
            jwt: vec![("secret_file".into(), secret.display().to_string())],
            // Most tests list accounts with the token of an account they just registered; who
            // may list (the default is admins only) has its own tests.
            auth: vec![("accounts_page".into(), "authenticated".into())],
            // Tests register and log in far faster than people; throttling has its own tests.
            auth_limits: vec![
                ("login_per_minute".into(), "0".into()),
                ("register_per_minute".into(), "0".into()),
                ("network_failures".into(), "0".into()),
                ("account_failures".into(), "0".into()),
                // Many tests send more new (and forged) tokens a second than a client would;
                // the verification bucket has its own tests (`forged_tokens`).
                ("token_verifications_per_second".into(), "0".into()),
            ],
            dir: Arc::new(dir),
        }
    }
}

impl ConfigYaml {
    /// No services, no limits, default listen address, a fresh SQLite store, the test secret.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses this account store instead of the config's own SQLite file.
    pub fn database(mut self, url: &str) -> Self {
        self.database = Some(url.to_string());
        self
    }

    /// The account store URL the config uses.
    pub fn database_url(&self) -> String {
        self.database.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}",
                self.dir.path().join("gatehouse.db").display()
            )
        })
    }

    /// The config's own directory (store, secret; free for other files).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Sets an `auth.jwt` key (replacing an earlier value), e.g. `("ttl", "2s")`.
    pub fn jwt(mut self, key: &str, value: &str) -> Self {
        self.jwt.retain(|(k, _)| k != key);
        self.jwt.push((key.to_string(), value.to_string()));
        self
    }

    /// Sets an `auth` key (replacing an earlier value), e.g. `("accounts_page", "admin")`.
    pub fn auth(mut self, key: &str, value: &str) -> Self {
        self.auth.retain(|(k, _)| k != key);
        self.auth.push((key.to_string(), value.to_string()));
        self
    }

    /// Leaves an `auth` key to the binary's default (the harness sets `accounts_page`).
    pub fn auth_default(mut self, key: &str) -> Self {
        self.auth.retain(|(k, _)| k != key);
        self
    }

    /// Sets an `auth.limits` key (replacing the test default of 0 = off).
    pub fn auth_limit(mut self, key: &str, value: &str) -> Self {
        self.auth_limits.retain(|(k, _)| k != key);
        self.auth_limits.push((key.to_string(), value.to_string()));
        self
    }

    /// Leaves an `auth.limits` key to the binary's default.
    pub fn auth_limit_default(mut self, key: &str) -> Self {
        self.auth_limits.retain(|(k, _)| k != key);
        self
    }

    /// Sets `listen` (only the binary uses it; `gatehouse::run` takes a bound listener).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// Adds a top-level `key: value` line (YAML flow style for lists and maps).
    pub fn top(mut self, key: &str, value: &str) -> Self {
        self.top.push((key.to_string(), value.to_string()));
        self
    }

    /// Sets `trusted_proxies` (address ranges whose forwarding headers are believed).
    pub fn trusted_proxies(mut self, ranges: &[&str]) -> Self {
        self.trusted_proxies = ranges.iter().map(|r| r.to_string()).collect();
        self
    }

    /// Sets `admin_listen` (only the binary uses it).
    pub fn admin_listen(mut self, addr: SocketAddr) -> Self {
        self.admin_listen = Some(addr);
        self
    }

    /// Sets `workers` (threads, each with its own runtime and upstream pool).
    pub fn workers(mut self, count: usize) -> Self {
        self.workers = Some(count);
        self
    }

    /// Adds a `limits:` entry, e.g. `("header_read_timeout", "1s")`.
    pub fn limit(mut self, key: &str, value: &str) -> Self {
        self.limits.push((key.to_string(), value.to_string()));
        self
    }

    /// Adds a service.
    pub fn service(mut self, service: ServiceYaml) -> Self {
        self.services.push(service);
        self
    }

    /// The YAML text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (key, value) in &self.top {
            out.push_str(&format!("{key}: {value}\n"));
        }
        if let Some(listen) = self.listen {
            out.push_str(&format!("listen: {listen}\n"));
        }
        if let Some(admin) = self.admin_listen {
            out.push_str(&format!("admin_listen: {admin}\n"));
        }
        if !self.trusted_proxies.is_empty() {
            out.push_str(&format!(
                "trusted_proxies: [{}]\n",
                self.trusted_proxies.join(", ")
            ));
        }
        if let Some(workers) = self.workers {
            out.push_str(&format!("workers: {workers}\n"));
        }
        if !self.limits.is_empty() {
            out.push_str("limits:\n");
            for (key, value) in &self.limits {
                out.push_str(&format!("  {key}: {value}\n"));
            }
        }
        out.push_str(&format!("database:\n  url: {}\n", self.database_url()));
        out.push_str("auth:\n  jwt:\n");
        for (key, value) in &self.jwt {
            out.push_str(&format!("    {key}: {value}\n"));
        }
        for (key, value) in &self.auth {
            out.push_str(&format!("  {key}: {value}\n"));
        }
        out.push_str("  limits:\n");
        for (key, value) in &self.auth_limits {
            out.push_str(&format!("    {key}: {value}\n"));
        }
        if self.services.is_empty() {
            out.push_str("services: []\n");
        } else {
            out.push_str("services:\n");
            for service in &self.services {
                service.render(&mut out);
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// The proxy, in-process

/// A proxy served by `gatehouse::run` on `127.0.0.1:0` in the test's runtime.
pub struct Proxy {
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
    /// The account store it uses.
    pub database_url: String,
    /// The config's directory (its SQLite store) lives as long as the proxy.
    _dir: Arc<binary::TempDir>,
}

impl Proxy {
    /// Validates `config` with the library's parser and serves it.
    pub async fn start(config: &ConfigYaml) -> Self {
        let text = config.render();
        let settings = gatehouse::config::parse_str(&text, "test.yaml")
            .unwrap_or_else(|e| panic!("test config is invalid: {e}\n{text}"));
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let state = gatehouse::start(&settings)
            .await
            .unwrap_or_else(|e| panic!("gatehouse did not start: {e}\n{text}"));
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            gatehouse::serve(listener, state, &settings, async move {
                let _ = rx.await;
            })
            .await
        });
        Proxy {
            addr,
            shutdown: Some(tx),
            task: Some(task),
            database_url: config.database_url(),
            _dir: Arc::clone(&config.dir),
        }
    }

    /// Signals shutdown and waits for the drain to finish.
    pub async fn stop(mut self) -> io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let task = self.task.take().expect("stopped once");
        task.await.expect("proxy task did not panic")
    }

    /// A pooled HTTP/1.1 client aimed at this proxy.
    pub fn client(&self) -> Client {
        Client::http1(self.addr)
    }
}

/// A proxy with one open service, `app` on `app.test`, over one echo backend (`b0`).
pub async fn app_proxy() -> Proxy {
    let addrs = backends(1).await;
    let config = ConfigYaml::new().service(ServiceYaml::open("app", "app.test").backends(&addrs));
    Proxy::start(&config).await
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Clients

/// A fully read response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body parsed as JSON (panics with the body text when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// A header as text; panics when it is missing.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("response has no `{name}` header: {:?}", self.headers))
            .to_str()
            .expect("ASCII header value")
    }

    /// The backend that answered (`x-backend`).
    pub fn backend(&self) -> &str {
        self.header("x-backend")
    }

    /// A header the backend received, from its JSON echo.
    pub fn echoed_header(&self, name: &str) -> Option<String> {
        self.json()["headers"]
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    }

    /// Status and body as text, for assertion messages.
    pub fn text(&self) -> String {
        format!("{} {:?}", self.status, String::from_utf8_lossy(&self.body))
    }
}

// ---------------------------------------------------------------------------------------------
// Error answers

/// An error answer: `status`, `Content-Type: application/json`, a request id, and a body of
/// exactly `{"error": code, "message": <a sentence>}`.
#[track_caller]
pub fn assert_json_error(reply: &Reply, status: u16, code: &str) {
    assert_json_error_about(reply, status, code, "");
}

/// [`assert_json_error`], naming `what` (the case being tried) in its messages.
#[track_caller]
pub fn assert_json_error_about(reply: &Reply, status: u16, code: &str, what: &str) {
    assert_eq!(
        reply.status,
        status,
        "{what}: expected {status} {code}: {}",
        reply.text()
    );
    assert_eq!(
        reply.header("content-type"),
        "application/json",
        "{what}: {}",
        reply.text()
    );
    assert!(
        !reply.header("x-request-id").is_empty(),
        "{what}: empty request id"
    );
    let body = reply.json();
    let fields: Vec<&str> = body
        .as_object()
        .unwrap_or_else(|| panic!("{what}: error body is not an object: {}", reply.text()))
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(fields, ["error", "message"], "{what}: {}", reply.text());
    assert_eq!(body["error"], code, "{what}: {}", reply.text());
    let message = body["message"].as_str().expect("message is a string");
    assert!(
        !message.trim().is_empty(),
        "{what}: empty message: {}",
        reply.text()
    );
}

/// 401 for an unusable token: `invalid_token` with the RFC 6750 challenge, and no backend
/// reached.
#[track_caller]
pub fn assert_invalid_token(reply: &Reply) {
    assert_invalid_token_about(reply, "");
}

/// [`assert_invalid_token`], naming `what` (the token being tried) in its messages.
#[track_caller]
pub fn assert_invalid_token_about(reply: &Reply, what: &str) {
    assert_json_error_about(reply, 401, "invalid_token", what);
    assert_eq!(
        reply.header("www-authenticate"),
        "Bearer error=\"invalid_token\"",
        "{what}"
    );
    assert!(
        reply.headers.get("x-backend").is_none(),
        "{what}: reached the backend"
    );
}

/// 401 for no token at all: `missing_token` with a bare `Bearer` challenge, and no backend
/// reached.
#[track_caller]
pub fn assert_missing_token(reply: &Reply) {
    assert_json_error(reply, 401, "missing_token");
    assert_eq!(reply.header("www-authenticate"), "Bearer");
    assert!(
        reply.headers.get("x-backend").is_none(),
        "reached the backend"
    );
}

/// 429 `rate_limited` with `Retry-After` in whole seconds (1 to 60), no backend reached and no
/// token handed out; returns the wait.
#[track_caller]
pub fn assert_rate_limited(reply: &Reply) -> u64 {
    assert_rate_limited_about(reply, "")
}

/// [`assert_rate_limited`], naming `what` (the attempt) in its messages.
#[track_caller]
pub fn assert_rate_limited_about(reply: &Reply, what: &str) -> u64 {
    assert_json_error_about(reply, 429, "rate_limited", what);
    let value = reply.header("retry-after");
    let wait: u64 = value
        .parse()
        .unwrap_or_else(|_| panic!("{what}: Retry-After is not whole seconds: {value:?}"));
    assert!((1..=60).contains(&wait), "{what}: Retry-After {wait}");
    assert!(
        reply.headers.get("x-backend").is_none(),
        "{what}: reached the backend"
    );
    assert!(
        !String::from_utf8_lossy(&reply.body).contains("access_token"),
        "{what}: {}",
        reply.text()
    );
    wait
}

/// Reads a whole response.
pub async fn read_reply(response: Response<Incoming>) -> Reply {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("response body").to_bytes();
    Reply {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body,
    }
}

/// A pooled hyper-util client that sends every request to one proxy address, whatever the
/// request's `Host` header says.
#[derive(Clone)]
pub struct Client {
    inner: LegacyClient<HttpConnector, TestBody>,
    addr: SocketAddr,
}

impl Client {
    /// HTTP/1.1 with keep-alive.
    pub fn http1(addr: SocketAddr) -> Self {
        let inner = LegacyClient::builder(TokioExecutor::new()).build(HttpConnector::new());
        Client { inner, addr }
    }

    /// HTTP/2 with prior knowledge (h2c).
    pub fn http2(addr: SocketAddr) -> Self {
        let inner = LegacyClient::builder(TokioExecutor::new())
            .http2_only(true)
            .build(HttpConnector::new());
        Client { inner, addr }
    }

    /// `GET path` with `Host: host`.
    pub async fn get(&self, host: &str, path: &str) -> Reply {
        let request = Request::get(path)
            .header(header::HOST, host)
            .body(empty())
            .expect("valid request");
        self.send(request).await
    }

    /// Sends `request` (its URI a path) to the proxy and reads the whole response.
    pub async fn send(&self, request: Request<TestBody>) -> Reply {
        read_reply(self.send_streaming(request).await).await
    }

    /// Sends `request` (its URI a path) and returns the response with its body unread.
    pub async fn send_streaming(&self, mut request: Request<TestBody>) -> Response<Incoming> {
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_string();
        *request.uri_mut() = format!("http://{}{path}", self.addr)
            .parse()
            .expect("valid URI");
        self.inner
            .request(request)
            .await
            .unwrap_or_else(|e| panic!("request to the proxy failed: {e:?}"))
    }
}

/// A request body fed by the test through a channel, for uploads paced by the test.
pub struct ChannelBody(mpsc::Receiver<Bytes>);

impl ChannelBody {
    /// The body and the sender that feeds it; dropping the sender ends the body.
    pub fn pair() -> (mpsc::Sender<Bytes>, TestBody) {
        let (tx, rx) = mpsc::channel(4);
        (tx, ChannelBody(rx).boxed())
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// A response read from a raw socket, for cases that need exact bytes on the wire.
pub struct RawReply {
    pub status: u16,
    /// Header lines as sent, names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for RawReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawReply")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &String::from_utf8_lossy(&self.body))
            .finish()
    }
}

impl RawReply {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Writes `request` and reads until the server closes the connection, for requests a limit
/// refuses: the server may close before reading all of it, so write errors and a reset after
/// the response are expected.
pub async fn send_raw(addr: SocketAddr, request: &[u8]) -> RawReply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let _ = stream.write_all(request).await;
    let received = read_until_closed(&mut stream, Duration::from_secs(10))
        .await
        .expect("the server answers and closes the connection");
    parse_raw(&received)
}

/// Writes `request` as is on a new connection and reads until the server closes it (so the
/// request should say `Connection: close`).
pub async fn raw_exchange(addr: SocketAddr, request: &str) -> RawReply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut bytes))
        .await
        .expect("the server closes the connection after answering")
        .expect("read response");
    parse_raw(&bytes)
}

/// Parses one HTTP/1.1 response: status line, headers, body (de-chunked when chunked).
pub fn parse_raw(bytes: &[u8]) -> RawReply {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {:?}", String::from_utf8_lossy(bytes)));
    let head = std::str::from_utf8(&bytes[..end]).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &bytes[end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    RawReply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = std::str::from_utf8(&rest[..line_end]).expect("ASCII chunk size");
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).expect("hex chunk size");
        rest = &rest[line_end + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Reads a request (or response) head from `stream`: what arrived up to and past its blank
/// line; `None` when the peer closed or failed first. For hand-written backends.
pub async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    Some(head)
}

/// Reads from `stream` until the peer closes it (EOF or reset) and returns what arrived; `None`
/// when it is still open after `within`.
pub async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.ok()?;
    Some(received)
}

/// Whether `text` is 32 lowercase hex digits (the shape of a generated request id).
pub fn is_generated_request_id(text: &str) -> bool {
    text.len() == 32
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Polls `check` every 50 ms until it holds or `within` passes (checked at least once);
/// returns whether it held.
pub async fn holds_within(
    within: std::time::Duration,
    mut check: impl AsyncFnMut() -> bool,
) -> bool {
    let deadline = std::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
