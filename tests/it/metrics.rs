//! `/metrics`, `/ready` and the admin listener, against real backends and the real proxy:
//! counters move by exactly the requests sent, `backend_up` follows a backend that dies and
//! returns, reloads are counted, and readiness follows the account store.

use crate::common;

use std::time::Duration;

use common::accounts::CONTROL;
use common::binary::{free_addr, Gatehouse};
use common::killable::KillableBackend;
use common::scrape::{count, sample, scrape};
use common::{backends, raw_exchange, ConfigYaml, Proxy, ServiceYaml};
use tokio::net::TcpStream;

const REQUESTS: &str = "gatehouse_requests_total";
const UPSTREAM: &str = "gatehouse_upstream_requests_total";
const BACKEND_UP: &str = "gatehouse_backend_up";

/// Polls `check` on fresh scrapes of `addr` until it holds (true) or 10 s pass (false).
async fn eventually(addr: std::net::SocketAddr, check: impl Fn(&str) -> bool) -> bool {
    common::holds_within(Duration::from_secs(10), async || check(&scrape(addr).await)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_counters_move_by_exactly_the_requests_sent() {
    let addrs = backends(2).await;
    let config = ConfigYaml::new()
        // No retries: each client request is exactly one upstream attempt here.
        .service(
            ServiceYaml::open("open", "open.test")
                .backends(&addrs)
                .set("retries", "0"),
        )
        .service(ServiceYaml::new("locked", "locked.test").backend(addrs[0]));
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();
    let before = scrape(proxy.addr).await;

    for _ in 0..10 {
        assert_eq!(client.get("open.test", "/x").await.status, 200);
    }
    for _ in 0..3 {
        assert_eq!(client.get("open.test", "/status/503").await.status, 503);
    }
    for _ in 0..4 {
        assert_eq!(client.get("locked.test", "/x").await.status, 401);
    }
    for _ in 0..2 {
        let reply = client
            .with_token("GET", "locked.test", "/x", "not.a.jwt")
            .await;
        assert_eq!(reply.status, 401);
    }
    for _ in 0..5 {
        assert_eq!(client.get(CONTROL, "/nothing-here").await.status, 404);
    }
    let after = scrape(proxy.addr).await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        count(&after, name, labels) - count(&before, name, labels)
    };

    let open = [("service", "open"), ("method", "GET")];
    assert_eq!(delta(REQUESTS, &[open[0], open[1], ("code", "200")]), 10);
    assert_eq!(delta(REQUESTS, &[open[0], open[1], ("code", "503")]), 3);
    for backend in &addrs {
        let b = backend.to_string();
        let labels = |code| [("service", "open"), ("backend", b.as_str()), ("code", code)];
        // Round-robin over two backends: 13 requests split 7/6 (either way round).
        let sent = delta(UPSTREAM, &labels("200")) + delta(UPSTREAM, &labels("503"));
        assert!(sent == 6 || sent == 7, "{b} got {sent} of 13\n{after}");
    }
    let all_503: u64 = addrs
        .iter()
        .map(|b| {
            let b = b.to_string();
            delta(
                UPSTREAM,
                &[("service", "open"), ("backend", &b), ("code", "503")],
            )
        })
        .sum();
    assert_eq!(all_503, 3);
    let locked = [("service", "locked"), ("method", "GET"), ("code", "401")];
    assert_eq!(delta(REQUESTS, &locked), 6);
    // Refused before forwarding: the backend saw none of them.
    let locked_upstream = [("service", "locked"), ("backend", &*addrs[0].to_string())];
    assert_eq!(sample(&after, UPSTREAM, &locked_upstream), None);
    let failures = "gatehouse_auth_failures_total";
    assert_eq!(delta(failures, &[("reason", "missing")]), 4);
    assert_eq!(delta(failures, &[("reason", "invalid")]), 2);
    let control = [("service", "control"), ("method", "GET"), ("code", "404")];
    assert_eq!(delta(REQUESTS, &control), 5);
    let histogram = "gatehouse_request_duration_seconds_count";
    assert_eq!(delta(histogram, &[("service", "open")]), 13);
    assert_eq!(delta(histogram, &[("service", "locked")]), 6);
    // The first scrape was itself a control-plane request, counted once it was answered.
    let scrapes = [("service", "control"), ("method", "GET"), ("code", "200")];
    assert_eq!(delta(REQUESTS, &scrapes), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_are_counted_by_result() {
    let config = ConfigYaml::new().auth_limit("login_per_minute", "2");
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();
    let registered = client
        .register("counted", "counted@example.com", "right-password")
        .await;
    assert_eq!(registered.status, 201);
    assert_eq!(
        client
            .login("counted@example.com", "right-password")
            .await
            .status,
        200
    );
    assert_eq!(
        client
            .login("counted@example.com", "wrong-password")
            .await
            .status,
        401
    );
    assert_eq!(
        client
            .login("counted@example.com", "right-password")
            .await
            .status,
        429
    );

    let text = scrape(proxy.addr).await;
    let logins = "gatehouse_logins_total";
    assert_eq!(count(&text, logins, &[("result", "success")]), 1);
    assert_eq!(count(&text, logins, &[("result", "failure")]), 1);
    assert_eq!(count(&text, logins, &[("result", "rate_limited")]), 1);
    let control_429 = [("service", "control"), ("method", "POST"), ("code", "429")];
    assert_eq!(count(&text, REQUESTS, &control_429), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_active_counts_open_client_connections() {
    let proxy = Proxy::start(&ConfigYaml::new()).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(proxy.addr).await.expect("connect"));
    }
    let gauge = "gatehouse_connections_active";
    // The three held connections plus the scrape's own.
    assert!(
        eventually(proxy.addr, |t| sample(t, gauge, &[]) == Some(4.0)).await,
        "{}",
        scrape(proxy.addr).await
    );
    drop(held);
    assert!(
        eventually(proxy.addr, |t| sample(t, gauge, &[]) == Some(1.0)).await,
        "{}",
        scrape(proxy.addr).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_up_flips_when_a_backend_dies_and_when_it_returns() {
    let mut mortal = KillableBackend::start("mortal");
    let steady = backends(1).await[0];
    let config = ConfigYaml::new().service(
        ServiceYaml::open("pool", "pool.test")
            .backends(&[mortal.addr, steady])
            // A short ejection, so the revived backend is tried again within the test.
            .set("ejection", "{base_time: 300ms}"),
    );
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();
    let (mortal_name, steady_name) = (mortal.addr.to_string(), steady.to_string());
    let up = |text: &str, backend: &str| {
        sample(
            text,
            BACKEND_UP,
            &[("service", "pool"), ("backend", backend)],
        )
    };
    for _ in 0..4 {
        assert_eq!(client.get("pool.test", "/").await.status, 200);
    }
    let text = scrape(proxy.addr).await;
    assert_eq!(
        (up(&text, &mortal_name), up(&text, &steady_name)),
        (Some(1.0), Some(1.0))
    );

    mortal.kill();
    for _ in 0..4 {
        // Each request the dead backend would have had fails over to the live one.
        let reply = client.get("pool.test", "/").await;
        assert_eq!((reply.status.as_u16(), reply.backend()), (200, "b0"));
    }
    let text = scrape(proxy.addr).await;
    assert_eq!(
        (up(&text, &mortal_name), up(&text, &steady_name)),
        (Some(0.0), Some(1.0))
    );
    let refused = [
        ("service", "pool"),
        ("backend", &*mortal_name),
        ("code", "502"),
    ];
    assert!(count(&text, UPSTREAM, &refused) >= 1, "{text}");

    mortal.revive();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut answered_by_mortal = false;
    for _ in 0..4 {
        let reply = client.get("pool.test", "/").await;
        assert_eq!(reply.status, 200);
        answered_by_mortal |= reply.backend() == "mortal";
    }
    assert!(answered_by_mortal, "the revived backend got no request");
    let text = scrape(proxy.addr).await;
    assert_eq!(up(&text, &mortal_name), Some(1.0), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_are_counted_and_departed_backends_leave_the_metrics() {
    let addrs = backends(2).await;
    let render = |listen, backends: &[std::net::SocketAddr]| {
        ConfigYaml::new()
            .listen(listen)
            .service(ServiceYaml::open("svc", "svc.test").backends(backends))
            .render()
    };
    let gatehouse = Gatehouse::start(&["serve"], |listen| render(listen, &addrs)).await;
    let reloads = "gatehouse_config_reloads_total";
    let text = scrape(gatehouse.addr).await;
    assert_eq!(count(&text, reloads, &[("result", "success")]), 0);
    let second = [("service", "svc"), ("backend", &*addrs[1].to_string())];
    assert_eq!(sample(&text, BACKEND_UP, &second), Some(1.0));

    gatehouse.rewrite_config(&render(gatehouse.addr, &addrs[..1]));
    gatehouse.signal(libc::SIGHUP);
    assert!(
        // The file watch and the SIGHUP may each reload it: at least one is counted.
        eventually(gatehouse.addr, |t| count(
            t,
            reloads,
            &[("result", "success")]
        ) >= 1)
        .await,
        "reload not counted:\n{}",
        gatehouse.logs()
    );
    let text = scrape(gatehouse.addr).await;
    assert_eq!(sample(&text, BACKEND_UP, &second), None, "{text}");
    let first = [("service", "svc"), ("backend", &*addrs[0].to_string())];
    assert_eq!(sample(&text, BACKEND_UP, &first), Some(1.0));

    gatehouse.rewrite_config("services: [ {name: broken\n");
    gatehouse.signal(libc::SIGHUP);
    assert!(
        // The file watch and the SIGHUP may each reload it: at least one is counted.
        eventually(gatehouse.addr, |t| count(
            t,
            reloads,
            &[("result", "failure")]
        ) >= 1)
        .await,
        "failed reload not counted:\n{}",
        gatehouse.logs()
    );
    let reply = raw_exchange(
        gatehouse.addr,
        "GET / HTTP/1.1\r\nHost: svc.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status, 200, "the previous config keeps serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listen_takes_metrics_off_the_main_listener() {
    let admin = free_addr();
    let gatehouse = Gatehouse::start(&["serve"], |listen| {
        ConfigYaml::new()
            .listen(listen)
            .admin_listen(admin)
            .render()
    })
    .await;
    let get = |addr, path: &str| {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        async move { raw_exchange(addr, &request).await }
    };
    let main = get(gatehouse.addr, "/metrics").await;
    assert_eq!(main.status, 404);
    assert_eq!(main.json()["error"], "not_found");
    let before = scrape(admin).await;
    assert!(
        before.contains("# TYPE gatehouse_requests_total counter"),
        "{before}"
    );
    assert!(before.contains("process_resident_memory_bytes"), "{before}");
    assert_eq!(get(admin, "/health").await.status, 200);
    let ready = get(admin, "/ready").await;
    assert_eq!(
        (ready.status, ready.json()["status"].as_str()),
        (200, Some("ready"))
    );
    assert_eq!(get(admin, "/accounts").await.status, 404);
    // Scrapes and probes on the admin port are not client requests.
    let after = scrape(admin).await;
    let control = [("service", "control"), ("method", "GET"), ("code", "200")];
    assert_eq!(
        count(&after, REQUESTS, &control),
        count(&before, REQUESTS, &control)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_answer_in_the_prometheus_text_format() {
    let backend = backends(1).await[0];
    let config = ConfigYaml::new().service(ServiceYaml::open("svc", "svc.test").backend(backend));
    let proxy = Proxy::start(&config).await;
    // Families with label sets appear once they have a series.
    assert_eq!(proxy.client().get("svc.test", "/").await.status, 200);
    let reply = raw_exchange(
        proxy.addr,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    for family in [
        "gatehouse_requests_total counter",
        "gatehouse_request_duration_seconds histogram",
        "gatehouse_upstream_requests_total counter",
        "gatehouse_backend_up gauge",
        "gatehouse_auth_failures_total counter",
        "gatehouse_logins_total counter",
        "gatehouse_token_refreshes_total counter",
        "gatehouse_connections_active gauge",
        "gatehouse_config_reloads_total counter",
        "gatehouse_audit_events_dropped_total counter",
        "process_cpu_seconds_total counter",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family}")),
            "no {family}:\n{text}"
        );
    }
    let post = raw_exchange(
        proxy.addr,
        "POST /metrics HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        (post.status, post.header("allow")),
        (405, Some("GET, HEAD"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_refused_for_their_size_are_counted_under_their_service() {
    let backend = backends(1).await[0];
    let config = ConfigYaml::new().service(ServiceYaml::open("svc", "svc.test").backend(backend));
    let proxy = Proxy::start(&config).await;
    let long = format!("/{}", "a".repeat(9 * 1024));
    for host in ["svc.test", CONTROL] {
        let reply = proxy.client().get(host, &long).await;
        assert_eq!(reply.status, 414);
        assert_eq!(reply.json()["error"], "uri_too_long");
        assert!(reply.headers.contains_key("x-request-id"));
    }
    let text = scrape(proxy.addr).await;
    for service in ["svc", "control"] {
        let refused = [("service", service), ("method", "GET"), ("code", "414")];
        assert_eq!(count(&text, REQUESTS, &refused), 1, "{service}\n{text}");
    }
    let upstream = [("service", "svc"), ("backend", &*backend.to_string())];
    assert_eq!(
        sample(&text, UPSTREAM, &upstream),
        None,
        "the backend was contacted"
    );
}
