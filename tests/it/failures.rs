//! Backends that refuse or answer too slowly: failover, 502 and 504.

use crate::common;

use std::time::{Duration, Instant};

use common::{assert_json_error, backends, full, refused_addr, ConfigYaml, Proxy, ServiceYaml};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_backend_is_skipped_and_the_live_one_answers_every_request() {
    let live = backends(1).await[0];
    let config = ConfigYaml::new().service(
        ServiceYaml::open("app", "app.test")
            .backend(refused_addr())
            .backend(live),
    );
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();

    for i in 0..10 {
        let reply = client.get("app.test", &format!("/try/{i}")).await;
        assert_eq!(reply.status, 200, "request {i}");
        assert_eq!(reply.backend(), "b0", "request {i}");
        assert_eq!(reply.json()["path"], format!("/try/{i}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_survives_failover_to_the_next_backend() {
    let live = backends(1).await[0];
    let config = ConfigYaml::new().service(
        ServiceYaml::open("app", "app.test")
            .backend(refused_addr())
            .backend(refused_addr())
            .backend(live),
    );
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();

    for _ in 0..3 {
        let request = http::Request::post("/upload")
            .header("host", "app.test")
            .body(full(vec![b'z'; 100_000]))
            .unwrap();
        let reply = client.send(request).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.backend(), "b0");
        assert_eq!(reply.json()["body_len"], 100_000);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_backend_refusing_gives_502_bad_gateway_as_json() {
    let config = ConfigYaml::new().service(
        ServiceYaml::open("app", "app.test")
            .backend(refused_addr())
            .backend(refused_addr()),
    );
    let proxy = Proxy::start(&config).await;

    let reply = proxy.client().get("app.test", "/").await;

    assert_json_error(&reply, 502, "bad_gateway");
    assert!(reply.headers.get("x-backend").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_slower_than_the_service_timeout_gives_504_gateway_timeout() {
    let addrs = backends(1).await;
    let config = ConfigYaml::new().service(
        ServiceYaml::open("app", "app.test")
            .set("timeout", "1s")
            .backends(&addrs),
    );
    let proxy = Proxy::start(&config).await;

    let started = Instant::now();
    let reply = proxy.client().get("app.test", "/slow/3").await;
    let elapsed = started.elapsed();

    assert_json_error(&reply, 504, "gateway_timeout");
    assert!(elapsed >= Duration::from_millis(950), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(2500), "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_faster_than_the_timeout_answers_normally() {
    let addrs = backends(1).await;
    let config = ConfigYaml::new().service(
        ServiceYaml::open("app", "app.test")
            .set("timeout", "2s")
            .backends(&addrs),
    );
    let proxy = Proxy::start(&config).await;

    let reply = proxy.client().get("app.test", "/slow/0.2").await;

    assert_eq!(reply.status, 200);
    assert_eq!(reply.backend(), "b0");
    assert_eq!(reply.json()["path"], "/slow/0.2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_closes_the_connection_without_answering_gives_502() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hangs_up = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    let config = ConfigYaml::new().service(ServiceYaml::open("app", "app.test").backend(hangs_up));
    let proxy = Proxy::start(&config).await;

    let reply = proxy.client().get("app.test", "/").await;

    assert_json_error(&reply, 502, "bad_gateway");
}

/// The service timeout is how long the backend may take to answer; time spent waiting for a
/// slow client to upload its body is not the backend being slow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_upload_is_not_cut_off_as_a_gateway_timeout() {
    let addrs = backends(1).await;
    let config = ConfigYaml::new().service(
        ServiceYaml::open("app", "app.test")
            .set("timeout", "1s")
            .backends(&addrs),
    );
    let proxy = Proxy::start(&config).await;
    let (feed, body) = common::ChannelBody::pair();
    tokio::spawn(async move {
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if feed
                .send(bytes::Bytes::from_static(&[b'u'; 1000]))
                .await
                .is_err()
            {
                return;
            }
        }
    });

    let request = http::Request::post("/paced")
        .header("host", "app.test")
        .body(body)
        .unwrap();
    let reply = proxy.client().send(request).await;

    assert_eq!(
        reply.status,
        200,
        "a 2 s upload to a backend that answers at once: {:?}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.json()["body_len"], 4000);
}
