//! Replicas sharing one account store learn of each other's revocations within a second:
//! PostgreSQL through LISTEN/NOTIFY, SQLite (one file, two processes) through polling.

use crate::common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::accounts::CONTROL;
use common::binary::{Gatehouse, TempDir};
use common::{backends, Client, ConfigYaml, ServiceYaml};

const APP: &str = "app.test";

async fn replica(database_url: &str, backend: SocketAddr) -> Gatehouse {
    Gatehouse::start_with_env(&["serve"], &[("DATABASE_URL", database_url)], |listen| {
        ConfigYaml::new()
            .listen(listen)
            .service(ServiceYaml::new("app", APP).backend(backend))
            .render()
    })
    .await
}

/// Polls `client` with `token` until 401, asserting it comes within one second of `since`.
async fn refused_within_a_second(client: &Client, token: &str, since: Instant, what: &str) {
    loop {
        let reply = client.with_token("GET", APP, "/", token).await;
        if reply.status == 401 {
            assert_eq!(
                reply.header("www-authenticate"),
                "Bearer error=\"invalid_token\""
            );
            eprintln!("{what}: refused after {:?}", since.elapsed());
            return;
        }
        assert_eq!(reply.status, 200, "{what}: {:?}", reply.body);
        assert!(
            since.elapsed() < Duration::from_secs(1),
            "{what}: the token was still accepted after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Logout on replica A is honoured by replica B; disabling through the CLI by both.
async fn revocations_reach_the_other_replica(database_url: &str) {
    let backend = backends(1).await[0];
    let a = replica(database_url, backend).await;
    let b = replica(database_url, backend).await;
    let (on_a, on_b) = (Client::http1(a.addr), Client::http1(b.addr));

    // Registered on A, logged in on B: one store.
    let registered = on_a
        .register("rita", "rita@example.com", "correct horse")
        .await;
    assert_eq!(registered.status, 201);
    let first = on_b.token("rita@example.com", "correct horse").await;
    let second = on_a.token("rita@example.com", "correct horse").await;
    for client in [&on_a, &on_b] {
        assert_eq!(client.with_token("GET", APP, "/", &first).await.status, 200);
    }

    let logout = on_a.with_token("POST", CONTROL, "/logout", &first).await;
    assert_eq!(logout.status, 204);
    let since = Instant::now();
    assert_eq!(on_a.with_token("GET", APP, "/", &first).await.status, 401);
    refused_within_a_second(&on_b, &first, since, "logout on A seen by B").await;
    assert_eq!(on_b.with_token("GET", APP, "/", &second).await.status, 200);

    let disabled = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["accounts", "disable", "--email", "rita@example.com"])
        .env("DATABASE_URL", database_url)
        .output()
        .unwrap();
    assert!(disabled.status.success(), "{disabled:?}");
    let since = Instant::now();
    refused_within_a_second(&on_a, &second, since, "disable seen by A").await;
    refused_within_a_second(&on_b, &second, since, "disable seen by B").await;
    assert_eq!(
        on_b.login("rita@example.com", "correct horse").await.status,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_learn_of_logout_and_disable_within_a_second() {
    let Some(url) = common::postgres::fresh_database().await else {
        return;
    };
    revocations_reach_the_other_replica(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_replicas_on_one_file_learn_of_logout_and_disable_within_a_second() {
    let dir = TempDir::new("replicas");
    let url = format!("sqlite://{}", dir.path().join("shared.db").display());
    revocations_reach_the_other_replica(&url).await;
}
