//! Accounts under load, in a binary of its own: a thousand concurrent registrations on each
//! store, every one of them logged in and listed, and a storm of a hundred concurrent logins
//! while proxied requests are timed. Each keeps both cores busy with argon2 for a long while,
//! and the storm bounds proxy latency during its own load, so neither shares a process with
//! the functional suites (`tests/it`), whose timing bounds assume no such neighbour. The
//! contract of each account endpoint is `tests/it/accounts.rs`.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::json;

use common::accounts::{claims_of, concurrently, list, rfc3339_nanos};
use common::postgres::fresh_database;
use common::{backends, Client, ConfigYaml, Proxy, ServiceYaml};

/// The host of an `auth: none` service.
const OPEN: &str = "open.test";
const PASSWORD: &str = "correct horse battery";

// ---------------------------------------------------------------------------------------------
// A thousand registrations

/// Registers 1000 accounts (64 in flight), checks every row is there exactly once and in
/// order, then logs every one of them in, concurrently too.
async fn a_thousand_concurrent_registrations_all_land_and_all_log_in(
    config: ConfigYaml,
    store: &str,
) {
    const COUNT: usize = 1000;
    const IN_FLIGHT: usize = 64;
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();
    let started = Instant::now();

    let statuses = concurrently(COUNT, IN_FLIGHT, |i| {
        let client = client.clone();
        async move {
            let reply = client
                .register(
                    &format!("bulk-{i:04}"),
                    &format!("bulk-{i:04}@example.com"),
                    &format!("password-{i:04}"),
                )
                .await;
            (
                reply.status.as_u16(),
                String::from_utf8_lossy(&reply.body).into_owned(),
            )
        }
    })
    .await;
    let registered = started.elapsed();
    let failed: Vec<_> = statuses.iter().filter(|(s, _)| *s != 201).collect();
    assert!(
        failed.is_empty(),
        "{} of {COUNT} failed, e.g. {:?}",
        failed.len(),
        failed.first()
    );

    let tokens = concurrently(COUNT, IN_FLIGHT, |i| {
        let client = client.clone();
        async move {
            let reply = client
                .login(
                    &format!("bulk-{i:04}@example.com"),
                    &format!("password-{i:04}"),
                )
                .await;
            assert_eq!(reply.status, 200, "login {i}: {}", reply.text());
            reply.json()["access_token"]
                .as_str()
                .expect("token")
                .to_string()
        }
    })
    .await;
    let logged_in = started.elapsed() - registered;
    for (i, token) in tokens.iter().enumerate() {
        assert_eq!(claims_of(token)["username"], format!("bulk-{i:04}"));
    }

    // per_page=1000 is clamped to 100; ten pages of 100 hold every account once, oldest first.
    let token = &tokens[0];
    let first = list(&client, "per_page=1000", Some(token)).await;
    assert_eq!(first["total"], COUNT as i64);
    assert_eq!(first["accounts"].as_array().unwrap().len(), 100);
    let mut seen_ids = HashSet::new();
    let mut seen_names = HashSet::new();
    let mut previous = i128::MIN;
    for page in 1..=10 {
        let listed = list(&client, &format!("per_page=100&page={page}"), Some(token)).await;
        assert_eq!(listed["total"], COUNT as i64);
        for account in listed["accounts"].as_array().unwrap() {
            assert!(seen_ids.insert(account["id"].as_str().unwrap().to_string()));
            assert!(seen_names.insert(account["username"].as_str().unwrap().to_string()));
            let created = rfc3339_nanos(account["created_at"].as_str().unwrap()).unwrap();
            assert!(
                created >= previous,
                "not oldest first at page {page}: {account}"
            );
            previous = created;
        }
    }
    let expected: HashSet<String> = (0..COUNT).map(|i| format!("bulk-{i:04}")).collect();
    assert_eq!(seen_names, expected);
    let beyond = list(&client, "per_page=100&page=11", Some(token)).await;
    assert_eq!(beyond["accounts"], json!([]));
    eprintln!(
        "{store}: {COUNT} registrations in {registered:.1?}, {COUNT} logins in {logged_in:.1?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_registrations_all_land_and_all_log_in_on_sqlite() {
    let run =
        a_thousand_concurrent_registrations_all_land_and_all_log_in(ConfigYaml::new(), "sqlite");
    tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("finished within 300 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_registrations_all_land_and_all_log_in_on_postgres() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let config = ConfigYaml::new().database(&url);
    let run = a_thousand_concurrent_registrations_all_land_and_all_log_in(config, "postgres");
    tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("finished within 300 s");
}

// ---------------------------------------------------------------------------------------------
// Login storm

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_storm_does_not_stall_proxied_requests() {
    let backend = backends(1).await[0];
    let config = ConfigYaml::new().service(ServiceYaml::open("open", OPEN).backend(backend));
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();
    assert_eq!(
        client
            .register("sam", "sam@example.com", PASSWORD)
            .await
            .status,
        201
    );
    let probe = Client::http1(proxy.addr);
    assert_eq!(probe.get(OPEN, "/warm-up").await.status, 200);

    let storm_started = Instant::now();
    let storm = tokio::spawn({
        let client = client.clone();
        async move {
            concurrently(100, 100, |_| {
                let client = client.clone();
                async move {
                    client
                        .login("sam@example.com", PASSWORD)
                        .await
                        .status
                        .as_u16()
                }
            })
            .await
        }
    });
    let mut latencies = Vec::new();
    while !storm.is_finished() {
        let started = Instant::now();
        let reply = probe.get(OPEN, "/during-the-storm").await;
        latencies.push(started.elapsed());
        assert_eq!(reply.status, 200, "{}", reply.text());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let storm_took = storm_started.elapsed();
    let statuses = storm.await.expect("the storm ran");
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");

    latencies.sort();
    let at = |q: usize| latencies[(latencies.len() * q / 100).min(latencies.len() - 1)];
    let (p50, p99, max) = (at(50), at(99), *latencies.last().unwrap());
    eprintln!(
        "login storm of 100 took {storm_took:.1?}; {} proxied requests during it: \
         p50 {p50:.1?}, p99 {p99:.1?}, max {max:.1?}",
        latencies.len()
    );
    assert!(
        latencies.len() >= 10,
        "only {} proxied requests fit in the storm",
        latencies.len()
    );
    assert!(
        max < Duration::from_secs(2),
        "a proxied request took {max:?} during the storm"
    );
}
