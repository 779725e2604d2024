//! Load balancing across a service's backends, observed through `x-backend`.

use crate::common;

use std::net::SocketAddr;

use common::{backends, Client, ConfigYaml, Proxy, ServiceYaml};

/// Sends `count` sequential GETs to `app.test` and returns who answered each, in order.
async fn answered_by(client: &Client, count: usize) -> Vec<String> {
    let mut names = Vec::with_capacity(count);
    for i in 0..count {
        let reply = client.get("app.test", &format!("/req/{i}")).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["path"], format!("/req/{i}"));
        names.push(reply.backend().to_string());
    }
    names
}

async fn proxy_over(service: ServiceYaml) -> Proxy {
    Proxy::start(&ConfigYaml::new().service(service)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_rotates_strictly_over_three_backends() {
    let addrs = backends(3).await;
    let proxy = proxy_over(
        ServiceYaml::open("app", "app.test")
            .set("strategy", "round_robin")
            .backends(&addrs),
    )
    .await;

    let order = answered_by(&proxy.client(), 30).await;

    let expected: Vec<String> = (0..30).map(|i| format!("b{}", i % 3)).collect();
    assert_eq!(order, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_is_the_default_strategy() {
    let addrs = backends(2).await;
    let proxy = proxy_over(ServiceYaml::open("app", "app.test").backends(&addrs)).await;

    let order = answered_by(&proxy.client(), 6).await;

    assert_eq!(order, ["b0", "b1", "b0", "b1", "b0", "b1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_splits_1000_requests_over_two_backends_within_binomial_bounds() {
    let addrs = backends(2).await;
    let proxy = proxy_over(
        ServiceYaml::open("app", "app.test")
            .set("strategy", "random")
            .backends(&addrs),
    )
    .await;
    let client = proxy.client();

    // Eight concurrent keep-alive streams of 125 requests each.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let client = client.clone();
        tasks.spawn(async move { answered_by(&client, 125).await });
    }
    let mut b0 = 0;
    let mut b1 = 0;
    while let Some(names) = tasks.join_next().await {
        for name in names.expect("request task") {
            match name.as_str() {
                "b0" => b0 += 1,
                "b1" => b1 += 1,
                other => panic!("unexpected backend {other}"),
            }
        }
    }

    // σ = √(1000·½·½) ≈ 15.8, so ±70 is 4.4σ: a fair coin lands outside with p ≈ 1e-5.
    assert_eq!(b0 + b1, 1000);
    assert!((430..=570).contains(&b0), "b0 {b0} / b1 {b1}");
    assert!((430..=570).contains(&b1), "b0 {b0} / b1 {b1}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_round_robin_serves_weights_3_and_1_exactly_3_to_1() {
    let addrs: Vec<SocketAddr> = backends(2).await;
    let proxy = proxy_over(
        ServiceYaml::open("app", "app.test")
            .weighted(addrs[0], 3)
            .weighted(addrs[1], 1),
    )
    .await;

    let order = answered_by(&proxy.client(), 40).await;

    let heavy = order.iter().filter(|n| *n == "b0").count();
    let light = order.iter().filter(|n| *n == "b1").count();
    assert_eq!((heavy, light), (30, 10), "{order:?}");
    // Every cycle of four picks holds the 3:1 share, not just the total.
    for (cycle, window) in order.chunks(4).enumerate() {
        let light_in_cycle = window.iter().filter(|n| *n == "b1").count();
        assert_eq!(light_in_cycle, 1, "cycle {cycle}: {window:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_random_follows_the_weights() {
    let addrs = backends(2).await;
    let proxy = proxy_over(
        ServiceYaml::open("app", "app.test")
            .set("strategy", "random")
            .weighted(addrs[0], 3)
            .weighted(addrs[1], 1),
    )
    .await;

    let order = answered_by(&proxy.client(), 400).await;

    // p = ¾ over 400: mean 300, σ ≈ 8.7; ±40 is 4.6σ.
    let heavy = order.iter().filter(|n| *n == "b0").count();
    assert!((260..=340).contains(&heavy), "b0 answered {heavy} of 400");
}
