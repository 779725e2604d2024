//! Services that require a token fail closed without one: 401, and no backend contact.

use crate::common;

use common::{assert_missing_token, backends, full, ConfigYaml, CountingRelay, Proxy, ServiceYaml};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_auth_answers_401_with_a_bearer_challenge_and_never_reaches_the_backend() {
    let backend = backends(1).await[0];
    let relay = CountingRelay::start(backend).await;
    let config = ConfigYaml::new().service(
        ServiceYaml::new("locked", "locked.test")
            .set("auth", "required")
            .backend(relay.addr),
    );
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();

    assert_missing_token(&client.get("locked.test", "/").await);
    let post = http::Request::post("/upload")
        .header("host", "LOCKED.test:443")
        .body(full(vec![b'x'; 4096]))
        .unwrap();
    assert_missing_token(&client.send(post).await);

    assert_eq!(relay.connections(), 0, "the backend was contacted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_an_auth_key_requires_a_token() {
    let backend = backends(1).await[0];
    let relay = CountingRelay::start(backend).await;
    let config =
        ConfigYaml::new().service(ServiceYaml::new("plain", "plain.test").backend(relay.addr));
    let proxy = Proxy::start(&config).await;

    let reply = proxy.client().get("plain.test", "/private").await;

    assert_missing_token(&reply);
    assert_eq!(relay.connections(), 0, "the backend was contacted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_service_beside_a_locked_one_is_proxied() {
    let addrs = backends(2).await;
    let relay = CountingRelay::start(addrs[1]).await;
    let config = ConfigYaml::new()
        .service(ServiceYaml::new("locked", "locked.test").backend(addrs[0]))
        .service(ServiceYaml::open("open", "open.test").backend(relay.addr));
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();

    assert_eq!(client.get("locked.test", "/").await.status, 401);
    let reply = client.get("open.test", "/").await;

    assert_eq!(reply.status, 200);
    assert_eq!(reply.backend(), "b1");
    assert!(reply.headers.get("www-authenticate").is_none());
    assert_eq!(relay.connections(), 1);
}
