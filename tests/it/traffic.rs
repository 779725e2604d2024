//! Traffic management against real backends and the real proxy: ejection and re-admission,
//! retries within their budget, load-aware and weighted strategies, reload under load and on a
//! file change, and WebSocket-style upgrades.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::binary::Gatehouse;
use common::killable::KillableBackend;
use common::scrape::{count, sample, scrape};
use common::stub::{upgrade_echo, Stub};
use common::{backends, raw_exchange, ConfigYaml, Proxy, ServiceYaml};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const UPSTREAM: &str = "gatehouse_upstream_requests_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_backend_is_ejected_at_once_and_readmitted_by_its_health_check() {
    let mut mortal = KillableBackend::start("mortal");
    let steady = backends(1).await[0];
    let service = ServiceYaml::open("pool", "pool.test")
        .backends(&[mortal.addr, steady])
        .set("health_check", "{path: /, interval: 100ms, timeout: 100ms, healthy_threshold: 2, unhealthy_threshold: 1}")
        .set("ejection", "{consecutive_failures: 3, base_time: 1m}");
    let proxy = Proxy::start(&ConfigYaml::new().service(service)).await;
    let client = proxy.client();
    let mortal_name = mortal.addr.to_string();
    let up = |text: &str| sample(text, "gatehouse_backend_up", &[("backend", &mortal_name)]);

    mortal.kill();
    for _ in 0..20 {
        let reply = client.get("pool.test", "/").await;
        assert_eq!((reply.status.as_u16(), reply.backend()), (200, "b0"));
    }
    let text = scrape(proxy.addr).await;
    assert_eq!(up(&text), Some(0.0));
    // Out of rotation after its first refusal (or its first failed probe): at most one client
    // request ever reached for it.
    let refused = count(
        &text,
        UPSTREAM,
        &[("backend", &mortal_name), ("code", "502")],
    );
    assert!(refused <= 1, "{refused} attempts on a dead backend\n{text}");

    let failed_probe = async || {
        let text = scrape(proxy.addr).await;
        let failed = [("backend", &*mortal_name), ("result", "failure")];
        count(&text, "gatehouse_health_checks_total", &failed) >= 1
    };
    assert!(
        common::holds_within(Duration::from_secs(5), failed_probe).await,
        "no failed probe counted"
    );

    mortal.revive();
    let back = common::holds_within(Duration::from_secs(5), async || {
        up(&scrape(proxy.addr).await) == Some(1.0)
    })
    .await;
    assert!(back, "not re-admitted: {}", scrape(proxy.addr).await);
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(client.get("pool.test", "/").await.backend().to_string());
    }
    assert!(seen.iter().any(|b| b == "mortal"), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundreds_eject_after_the_threshold_and_every_backend_out_is_a_fast_503() {
    let failing = Stub::start("failing", 500, Duration::ZERO).await;
    let service = ServiceYaml::open("sick", "sick.test")
        .backend(failing.addr)
        .set("ejection", "{consecutive_failures: 3, base_time: 1m}")
        .set("retries", "{attempts: 0}");
    let proxy = Proxy::start(&ConfigYaml::new().service(service)).await;
    let client = proxy.client();
    for _ in 0..3 {
        assert_eq!(client.get("sick.test", "/").await.status, 500);
    }
    let started = Instant::now();
    let reply = client.get("sick.test", "/").await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json()["error"], "no_healthy_backend");
    assert!(started.elapsed() < Duration::from_millis(200));
    assert_eq!(
        failing.requests(),
        3,
        "the ejected backend got more traffic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_requests_are_retried_on_another_backend_and_posts_are_not() {
    let broken = Stub::start("broken", 503, Duration::ZERO).await;
    let good = Stub::start("good", 200, Duration::ZERO).await;
    let service = ServiceYaml::open("app", "app.test")
        .backends(&[broken.addr, good.addr])
        .set("ejection", "{consecutive_failures: 0}");
    let proxy = Proxy::start(&ConfigYaml::new().service(service)).await;
    let client = proxy.client();
    for _ in 0..4 {
        let reply = client.get("app.test", "/").await;
        assert_eq!((reply.status.as_u16(), reply.backend()), (200, "good"));
    }
    assert_eq!(
        broken.requests(),
        2,
        "round-robin sent half of the first tries to the broken one"
    );
    let statuses: Vec<u16> = {
        let mut statuses = Vec::new();
        for _ in 0..4 {
            let request = http::Request::post("/")
                .header(http::header::HOST, "app.test")
                .body(common::empty())
                .unwrap();
            statuses.push(client.send(request).await.status.as_u16());
        }
        statuses
    };
    assert_eq!(
        statuses.iter().filter(|&&s| s == 503).count(),
        2,
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_stops_retry_storms() {
    let a = Stub::start("a", 503, Duration::ZERO).await;
    let b = Stub::start("b", 503, Duration::ZERO).await;
    let service = ServiceYaml::open("down", "down.test")
        .backends(&[a.addr, b.addr])
        .set("retries", "{attempts: 3, budget_percent: 20}")
        .set("ejection", "{consecutive_failures: 0}");
    let proxy = Proxy::start(&ConfigYaml::new().service(service)).await;
    let client = proxy.client();
    const REQUESTS: usize = 1000;
    for _ in 0..REQUESTS {
        assert_eq!(client.get("down.test", "/").await.status, 503);
    }
    let tries = a.requests() + b.requests();
    let per_request = tries as f64 / REQUESTS as f64;
    // 20 % of requests may be retried, plus a reserve of 5 so a quiet service can retry at all.
    assert!(
        tries <= REQUESTS + REQUESTS / 5 + 5,
        "{tries} tries ({per_request:.3} per request)"
    );
    assert!(
        tries >= REQUESTS + REQUESTS / 5 - 5,
        "the budget went unused: {tries} tries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_requests_prefers_the_idle_backend() {
    let slow = Stub::start("slow", 200, Duration::from_millis(400)).await;
    let fast = Stub::start("fast", 200, Duration::ZERO).await;
    let service = ServiceYaml::open("lr", "lr.test")
        .backends(&[slow.addr, fast.addr])
        .set("strategy", "least_requests");
    let proxy = Proxy::start(&ConfigYaml::new().service(service)).await;
    let client = proxy.client();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let client = client.clone();
        tasks.push(tokio::spawn(
            async move { client.get("lr.test", "/").await },
        ));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().status, 200);
    }
    assert!(
        slow.requests() <= 3,
        "slow got {} of 20 (round-robin would give 10)",
        slow.requests()
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// A backend named `name` whose `/stream` answers with its headers and a first chunk at once,
/// then holds the body open until the returned senders are dropped; anything else is answered
/// at once. Every answer carries `x-backend: name`.
async fn streaming_backend(
    name: &'static str,
) -> (
    std::net::SocketAddr,
    Arc<std::sync::Mutex<Vec<tokio::sync::mpsc::Sender<bytes::Bytes>>>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = Arc::clone(&held);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let keep = Arc::clone(&keep);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: http::Request<hyper::body::Incoming>| {
                        let keep = Arc::clone(&keep);
                        async move {
                            let body = if request.uri().path() == "/stream" {
                                let (tx, body) = common::ChannelBody::pair();
                                tx.send(bytes::Bytes::from_static(b"start")).await.unwrap();
                                keep.lock().unwrap().push(tx);
                                body
                            } else {
                                common::full("done")
                            };
                            let response = http::Response::builder()
                                .header("x-backend", name)
                                .body(body)
                                .unwrap();
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    },
                );
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    (addr, held)
}

/// A response whose body is still streaming is load: `least_requests` keeps it counted on its
/// backend until the last byte, so quick requests meanwhile all go to the other backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_requests_counts_a_response_until_its_body_ends() {
    let (a, a_streams) = streaming_backend("a").await;
    let (b, b_streams) = streaming_backend("b").await;
    let service = ServiceYaml::open("lr", "lr.test")
        .backends(&[a, b])
        .set("strategy", "least_requests");
    let proxy = Proxy::start(&ConfigYaml::new().service(service)).await;

    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET /stream HTTP/1.1\r\nHost: lr.test\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "closed early");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    let streaming = if head.contains("x-backend: a") {
        "a"
    } else {
        "b"
    };

    let client = proxy.client();
    for i in 0..6 {
        let reply = client.get("lr.test", "/").await;
        assert_eq!(reply.status, 200);
        assert_ne!(
            reply.backend(),
            streaming,
            "request {i} went to the backend still sending a body"
        );
    }
    drop((a_streams, b_streams, stream));
}

async fn split(strategy: &str, requests: usize) -> (usize, usize) {
    let addrs = backends(2).await;
    let service = ServiceYaml::open("w", "w.test")
        .weighted(addrs[0], 3)
        .weighted(addrs[1], 1)
        .set("strategy", strategy);
    let proxy = Proxy::start(&ConfigYaml::new().service(service)).await;
    let client = proxy.client();
    let mut heavy = 0;
    for _ in 0..requests {
        if client.get("w.test", "/").await.backend() == "b0" {
            heavy += 1;
        }
    }
    (heavy, requests - heavy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_three_to_one_give_three_quarters_of_the_traffic() {
    assert_eq!(split("round_robin", 4000).await, (3000, 1000));
    for strategy in ["random", "p2c"] {
        let (heavy, _) = split(strategy, 4000).await;
        let share = heavy as f64 / 4000.0;
        assert!((0.72..=0.78).contains(&share), "{strategy}: {share:.3}");
    }
}

fn two_pools(listen: std::net::SocketAddr, pool: &[std::net::SocketAddr]) -> String {
    ConfigYaml::new()
        .listen(listen)
        .service(ServiceYaml::open("live", "live.test").backends(pool))
        .render()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_under_200_rps_fail_no_request() {
    let addrs = backends(4).await;
    let (first, second) = (addrs[..2].to_vec(), addrs[2..].to_vec());
    let gatehouse =
        Arc::new(Gatehouse::start(&["serve"], |listen| two_pools(listen, &first)).await);
    let client = common::Client::http1(gatehouse.addr);
    let load = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(5));
            let mut requests = Vec::new();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(6) {
                every.tick().await;
                let client = client.clone();
                requests.push(tokio::spawn(
                    async move { client.get("live.test", "/").await },
                ));
            }
            let mut statuses = Vec::new();
            for request in requests {
                statuses.push(request.await.expect("request task").status.as_u16());
            }
            statuses
        })
    };
    for round in 0..20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let pool = if round % 2 == 0 { &second } else { &first };
        gatehouse.rewrite_config(&two_pools(gatehouse.addr, pool));
        gatehouse.signal(libc::SIGHUP);
    }
    let statuses = load.await.unwrap();
    let failed = statuses.iter().filter(|&&s| s != 200).count();
    assert!(
        statuses.len() >= 1000,
        "only {} requests sent",
        statuses.len()
    );
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed during reloads",
        statuses.len()
    );
    let reloads = common::holds_within(Duration::from_secs(5), async || {
        count(
            &scrape(gatehouse.addr).await,
            "gatehouse_config_reloads_total",
            &[("result", "success")],
        ) >= 20
    })
    .await;
    assert!(reloads, "{}", gatehouse.logs());
    eprintln!(
        "reload under load: {} requests at 200 rps, 20 reloads, 0 failed",
        statuses.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_config_file_is_reloaded_without_a_signal() {
    let addrs = backends(2).await;
    let gatehouse = Gatehouse::start(&["serve"], |listen| two_pools(listen, &addrs[..1])).await;
    let client = common::Client::http1(gatehouse.addr);
    assert_eq!(client.get("live.test", "/").await.backend(), "b0");
    gatehouse.rewrite_config(&two_pools(gatehouse.addr, &addrs[1..]));
    let switched = common::holds_within(Duration::from_secs(5), async || {
        client.get("live.test", "/").await.backend() == "b1"
    })
    .await;
    assert!(
        switched,
        "the new file was not picked up:\n{}",
        gatehouse.logs()
    );
    let text = scrape(gatehouse.addr).await;
    assert_eq!(
        count(
            &text,
            "gatehouse_config_reloads_total",
            &[("result", "success")]
        ),
        1,
        "{text}"
    );
}

async fn upgrade_through(proxy: &Proxy) -> (String, TcpStream) {
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET /chat HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).await.unwrap(),
            1,
            "closed: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    (String::from_utf8(head).unwrap(), stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_become_a_tunnel_once_the_backend_switches() {
    let echo = upgrade_echo(true).await;
    let proxy =
        Proxy::start(&ConfigYaml::new().service(ServiceYaml::open("ws", "ws.test").backend(echo)))
            .await;
    let (head, mut stream) = upgrade_through(&proxy).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("upgrade: websocket") && lower.contains("connection: upgrade"),
        "{head}"
    );
    for message in [&b"hello"[..], b"second frame", &[0u8, 159, 146, 150]] {
        stream.write_all(message).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echoed))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(echoed, message);
    }
}

/// A tunnel that carries nothing either way for `timeouts.tunnel_idle` is closed (it holds a
/// client slot and a backend connection); one that keeps talking stays open past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_tunnel_is_closed_after_its_idle_timeout() {
    let echo = upgrade_echo(true).await;
    let service = ServiceYaml::open("ws", "ws.test")
        .backend(echo)
        .set("timeouts", "{tunnel_idle: 600ms}");
    let proxy = Proxy::start(&ConfigYaml::new().service(service)).await;

    let (head, mut busy) = upgrade_through(&proxy).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // A message every 200 ms for 1.8 s: three idle timeouts' worth, never idle for one.
    for _ in 0..9 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        busy.write_all(b"ping").await.unwrap();
        let mut echoed = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), busy.read_exact(&mut echoed))
            .await
            .expect("the busy tunnel answers")
            .expect("the busy tunnel is open");
    }

    let (_, mut silent) = upgrade_through(&proxy).await;
    let started = Instant::now();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut byte))
        .await
        .expect("the silent tunnel was never closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(500),
        "closed after {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_the_backend_declines_stays_plain_http() {
    let plain = upgrade_echo(false).await;
    let proxy =
        Proxy::start(&ConfigYaml::new().service(ServiceYaml::open("ws", "ws.test").backend(plain)))
            .await;
    let (head, mut stream) = upgrade_through(&proxy).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut body = [0u8; 9];
    stream.read_exact(&mut body).await.unwrap();
    assert_eq!(&body, b"no switch");
    assert!(!head.to_ascii_lowercase().contains("upgrade:"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_body_is_cut_off() {
    let backend = backends(1).await[0];
    let config = ConfigYaml::new()
        .limit("body_read_timeout", "300ms")
        .service(ServiceYaml::open("up", "up.test").backend(backend));
    let proxy = Proxy::start(&config).await;
    let started = Instant::now();
    let reply = raw_exchange(
        proxy.addr,
        "POST /upload HTTP/1.1\r\nHost: up.test\r\nContent-Length: 100\r\n\r\nonly part of it",
    )
    .await;
    assert_eq!(reply.status, 408, "{reply:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_body_over_the_limit_is_refused() {
    let backend = backends(1).await[0];
    let service = ServiceYaml::open("up", "up.test")
        .backend(backend)
        .set("max_request_body", "1KiB");
    let proxy = Proxy::start(&ConfigYaml::new().service(service)).await;
    let chunk = "x".repeat(600);
    let request = format!(
        "POST /upload HTTP/1.1\r\nHost: up.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let reply = raw_exchange(proxy.addr, &request).await;
    assert_eq!(reply.status, 413, "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_listen_address_is_served_without_dropping_open_connections() {
    let backend = backends(1).await[0];
    let render = |listen| {
        ConfigYaml::new()
            .listen(listen)
            .service(ServiceYaml::open("svc", "svc.test").backend(backend))
            .render()
    };
    let gatehouse = Gatehouse::start(&["serve"], render).await;
    let old = gatehouse.addr;
    let stream = TcpStream::connect(old).await.unwrap();
    let (mut open, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let get = || {
        http::Request::get("/")
            .header(http::header::HOST, "svc.test")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    assert_eq!(open.send_request(get()).await.unwrap().status(), 200);

    let new = common::binary::free_addr();
    gatehouse.rewrite_config(&render(new));
    gatehouse.signal(libc::SIGHUP);
    let moved = common::holds_within(Duration::from_secs(5), async || {
        TcpStream::connect(new).await.is_ok()
    })
    .await;
    assert!(moved, "nothing listens on {new}:\n{}", gatehouse.logs());
    let reply = raw_exchange(
        new,
        "GET / HTTP/1.1\r\nHost: svc.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status, 200);
    // The connection accepted on the old address keeps working; the old address takes no more.
    assert_eq!(open.send_request(get()).await.unwrap().status(), 200);
    let closed = common::holds_within(Duration::from_secs(5), async || {
        TcpStream::connect(old).await.is_err()
    })
    .await;
    assert!(closed, "the old address still accepts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_websocket_is_tunnelled_and_h2c_upgrades_are_stripped() {
    let backend = backends(1).await[0];
    let proxy = Proxy::start(
        &ConfigYaml::new().service(ServiceYaml::open("ws", "ws.test").backend(backend)),
    )
    .await;
    let reply = raw_exchange(
        proxy.addr,
        "GET /h2c HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let echoed = reply.json()["headers"].clone();
    for name in ["upgrade", "http2-settings", "connection"] {
        assert!(
            echoed.get(name).is_none(),
            "{name} reached the backend: {echoed}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_stops_reading_an_upload_times_out_with_504() {
    // Accepts connections and never reads from them.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let deaf = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let service = ServiceYaml::open("up", "up.test")
        .backend(deaf)
        .set("timeout", "1s");
    let proxy = Proxy::start(&ConfigYaml::new().service(service)).await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let length = 64 * 1024 * 1024;
    tokio::spawn(async move {
        let head =
            format!("POST /upload HTTP/1.1\r\nHost: up.test\r\nContent-Length: {length}\r\n\r\n");
        let _ = write.write_all(head.as_bytes()).await;
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..length / chunk.len() {
            if write.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let started = Instant::now();
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&response).contains("\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), read.read(&mut buffer))
            .await
            .expect("no answer within 10 s")
            .unwrap();
        assert!(n > 0, "closed without an answer");
        response.extend_from_slice(&buffer[..n]);
    }
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 504"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
