//! `GET /ready` follows the account store: a PostgreSQL server stopped under a running proxy
//! turns it 503 within a second (while tokens already issued keep proxying), and a restarted
//! server turns it back to 200 without restarting Gatehouse.

use crate::common;

use std::time::{Duration, Instant};

use common::accounts::CONTROL;
use common::postgres::OwnCluster;
use common::{backends, ConfigYaml, Proxy, Reply, ServiceYaml};

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
    let Some(cluster) = OwnCluster::start("ready follows PostgreSQL") else {
        return;
    };
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

    cluster.run("pause");
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

    cluster.run("resume");
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
