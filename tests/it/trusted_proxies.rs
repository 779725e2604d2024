//! `trusted_proxies`: behind an ingress or load balancer, the client is the address the proxy
//! reports in `X-Forwarded-For` (rightmost untrusted entry), for rate limits and throttling;
//! without it, forwarding headers are never believed.

use crate::common;

use common::binary::{check, TempDir};
use common::{backends, ConfigYaml, Proxy, Reply, ServiceYaml};
use http::{header, Request};

async fn get_from(proxy: &Proxy, forwarded_for: &str, forwarded_proto: Option<&str>) -> Reply {
    let mut request = Request::get("/")
        .header(header::HOST, "app.test")
        .header("x-forwarded-for", forwarded_for);
    if let Some(proto) = forwarded_proto {
        request = request.header("x-forwarded-proto", proto);
    }
    proxy
        .client()
        .send(request.body(common::empty()).unwrap())
        .await
}

async fn limited_proxy(trusted: &[&str]) -> Proxy {
    let backend = backends(1).await[0];
    let service = ServiceYaml::open("app", "app.test")
        .backend(backend)
        .set("rate_limit", "{requests_per_second: 1, burst: 1, key: ip}");
    Proxy::start(&ConfigYaml::new().trusted_proxies(trusted).service(service)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_trusted_proxies_a_client_cannot_choose_its_address() {
    let proxy = limited_proxy(&[]).await;
    assert_eq!(get_from(&proxy, "198.51.100.1", None).await.status, 200);
    // Another claimed address is still the same peer, and the same bucket.
    assert_eq!(get_from(&proxy, "198.51.100.2", None).await.status, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket() {
    let proxy = limited_proxy(&["127.0.0.0/8"]).await;
    assert_eq!(get_from(&proxy, "198.51.100.1", None).await.status, 200);
    assert_eq!(get_from(&proxy, "198.51.100.2", None).await.status, 200);
    assert_eq!(get_from(&proxy, "198.51.100.1", None).await.status, 429);
    // A client that prepends an address to the chain is still known by the proxy's entry.
    let spoofed = get_from(&proxy, "203.0.113.50, 198.51.100.2", None).await;
    assert_eq!(spoofed.status, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_trusted_proxy_sets_the_forwarded_scheme() {
    let backend = backends(1).await[0];
    let service = || ServiceYaml::open("app", "app.test").backend(backend);
    let trusting = Proxy::start(
        &ConfigYaml::new()
            .trusted_proxies(&["127.0.0.1"])
            .service(service()),
    )
    .await;
    let reply = get_from(&trusting, "198.51.100.1", Some("https")).await;
    assert_eq!(
        reply.echoed_header("x-forwarded-proto").as_deref(),
        Some("https")
    );
    assert_eq!(
        reply.echoed_header("x-forwarded-for").as_deref(),
        Some("198.51.100.1, 127.0.0.1")
    );
    assert_eq!(
        reply.echoed_header("x-real-ip").as_deref(),
        Some("198.51.100.1")
    );

    let plain = Proxy::start(&ConfigYaml::new().service(service())).await;
    let reply = get_from(&plain, "198.51.100.1", Some("https")).await;
    assert_eq!(
        reply.echoed_header("x-forwarded-proto").as_deref(),
        Some("http")
    );
}

#[test]
fn a_proxy_range_with_host_bits_is_a_located_config_error() {
    let dir = TempDir::new("trusted");
    let path = dir.write(
        "gatehouse.yaml",
        "trusted_proxies: [10.0.0.1/8]\nservices: []\n",
    );
    let output = check(&path);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with(&format!("{}:1:19: ", path.display())),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean 10.0.0.0/8"), "{stderr}");
}
