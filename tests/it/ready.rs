//! `GET /ready` follows the account store: a PostgreSQL server stopped under a running proxy
//! turns it 503 within a second (while tokens already issued keep proxying), and a restarted
//! server turns it back to 200 without restarting Gatehouse.

use crate::common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::accounts::CONTROL;
use common::{backends, ConfigYaml, Proxy, Reply, ServiceYaml};

/// A PostgreSQL cluster of this test's own (the shared one must not be stopped), removed on
/// drop.
struct Cluster {
    dir: PathBuf,
    url: String,
}

impl Cluster {
    fn script(action: &str, dir: &std::path::Path) -> std::process::Output {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postgres-throwaway");
        let output = Command::new(script)
            .arg(action)
            .arg(dir)
            .output()
            .unwrap_or_else(|e| panic!("run {script}: {e}"));
        assert!(
            output.status.success(),
            "postgres-throwaway {action} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("gatehouse-ready-{:x}", rand::random::<u64>()));
        let output = Self::script("start", &dir);
        let url = String::from_utf8(output.stdout).unwrap().trim().to_string();
        Cluster { dir, url }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/postgres-throwaway"
        ))
        .arg("stop")
        .arg(&self.dir)
        .output();
    }
}

/// Whether this run may start PostgreSQL clusters: `scripts/test` sets
/// `GATEHOUSE_TEST_POSTGRES` once it has one running (so the server is installed).
fn postgres_available() -> bool {
    if std::env::var("GATEHOUSE_TEST_POSTGRES").is_ok() {
        return true;
    }
    assert_ne!(
        std::env::var("GATEHOUSE_REQUIRE_POSTGRES").as_deref(),
        Ok("1"),
        "GATEHOUSE_REQUIRE_POSTGRES=1 but GATEHOUSE_TEST_POSTGRES is not set"
    );
    eprintln!(
        "SKIPPED: ready follows PostgreSQL: GATEHOUSE_TEST_POSTGRES not set (run ./scripts/test)"
    );
    false
}

async fn ready(proxy: &Proxy) -> (Reply, Duration) {
    let started = Instant::now();
    let reply = proxy.client().get(CONTROL, "/ready").await;
    (reply, started.elapsed())
}

/// Polls `/ready` until it answers `status` or `within` passes.
async fn ready_becomes(proxy: &Proxy, status: u16, within: Duration) -> Reply {
    let deadline = Instant::now() + within;
    loop {
        let (reply, _) = ready(proxy).await;
        if reply.status == status || Instant::now() > deadline {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_follows_the_postgres_server_down_and_back() {
    if !postgres_available() {
        return;
    }
    let cluster = Cluster::start();
    let backend = backends(1).await[0];
    let config = ConfigYaml::new()
        .database(&cluster.url)
        .service(ServiceYaml::new("app", "app.test").backend(backend));
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();
    let token = client
        .signed_up("steady", "steady@example.com", "steady-password")
        .await;

    let (reply, _) = ready(&proxy).await;
    assert_eq!(
        (reply.status.as_u16(), reply.json()["status"].as_str()),
        (200, Some("ready"))
    );

    Cluster::script("pause", &cluster.dir);
    let (reply, took) = ready(&proxy).await;
    assert_eq!(reply.status, 503, "{:?}", reply.body);
    assert_eq!(reply.json()["error"], "not_ready");
    assert!(
        took < Duration::from_millis(1500),
        "/ready took {took:?} with the store down"
    );
    // No database call on the request path: an issued token keeps proxying.
    let proxied = client.with_token("GET", "app.test", "/", &token).await;
    assert_eq!(proxied.status, 200);
    let login = client.login("steady@example.com", "steady-password").await;
    assert_eq!(
        (login.status.as_u16(), login.json()["error"].as_str()),
        (503, Some("store_unavailable"))
    );

    Cluster::script("resume", &cluster.dir);
    let reply = ready_becomes(&proxy, 200, Duration::from_secs(15)).await;
    assert_eq!(
        reply.status, 200,
        "not ready again after the restart: {:?}",
        reply.body
    );
    assert_eq!(
        client
            .login("steady@example.com", "steady-password")
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_answers_200_with_the_embedded_store() {
    let proxy = Proxy::start(&ConfigYaml::new()).await;
    let (reply, _) = ready(&proxy).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), serde_json::json!({ "status": "ready" }));
    let head = proxy
        .client()
        .send(
            http::Request::head("/ready")
                .header(http::header::HOST, CONTROL)
                .body(common::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(head.status, 200);
}
