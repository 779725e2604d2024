//! The binary's life: start, serve, drain on SIGTERM, exit 0.

use crate::common;

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use common::binary::{free_addr, run_to_exit, Gatehouse, TempDir};
use common::{backends, raw_exchange, read_until_closed, ConfigYaml, ServiceYaml};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn open_service_config(listen: std::net::SocketAddr, backend: std::net::SocketAddr) -> String {
    ConfigYaml::new()
        .listen(listen)
        .limit("shutdown_timeout", "10s")
        .service(ServiceYaml::open("app", "app.test").backend(backend))
        .render()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_in_flight_request_refuses_new_connections_and_exits_0() {
    let backend = backends(1).await[0];
    let mut gatehouse =
        Gatehouse::start(&["serve"], |listen| open_service_config(listen, backend)).await;
    let addr = gatehouse.addr;

    let started = Instant::now();
    let in_flight = tokio::spawn(raw_exchange(
        addr,
        "GET /slow/2 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    gatehouse.signal(libc::SIGTERM);

    // New connections are refused soon after the signal, while the slow request still runs.
    let refused_by = Instant::now() + Duration::from_secs(1);
    loop {
        match TcpStream::connect(addr).await {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => break,
            // A connect racing the listener's close can be reset instead; try again.
            Err(e) if e.kind() != ErrorKind::ConnectionReset => {
                panic!("unexpected connect error: {e}")
            }
            _ => {
                assert!(
                    Instant::now() < refused_by,
                    "still accepting connections 1 s after SIGTERM:\n{}",
                    gatehouse.logs()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert!(
        !in_flight.is_finished(),
        "the slow request ended before the listener closed"
    );

    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200, "{reply:?}\n{}", gatehouse.logs());
    assert_eq!(reply.header("x-backend"), Some("b0"));
    assert_eq!(reply.json()["path"], "/slow/2");
    assert!(started.elapsed() >= Duration::from_secs(2));

    let status = gatehouse
        .wait_exit(Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("still running 5 s after the drain:\n{}", gatehouse.logs()));
    assert_eq!(status.code(), Some(0), "{}", gatehouse.logs());
    assert!(started.elapsed() < Duration::from_secs(6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_nothing_in_flight_exits_0_promptly() {
    let backend = backends(1).await[0];
    let mut gatehouse =
        Gatehouse::start(&["serve"], |listen| open_service_config(listen, backend)).await;

    gatehouse.signal(libc::SIGTERM);
    let status = gatehouse
        .wait_exit(Duration::from_secs(3))
        .await
        .unwrap_or_else(|| panic!("still running 3 s after SIGTERM:\n{}", gatehouse.logs()));

    assert_eq!(status.code(), Some(0));
    let logs = gatehouse.logs();
    assert!(logs.contains("gatehouse started"), "{logs}");
    assert!(logs.contains("SIGTERM"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_also_drains_and_exits_0() {
    let backend = backends(1).await[0];
    let mut gatehouse =
        Gatehouse::start(&["serve"], |listen| open_service_config(listen, backend)).await;

    let in_flight = tokio::spawn(raw_exchange(
        gatehouse.addr,
        "GET /slow/1 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    gatehouse.signal(libc::SIGINT);

    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["path"], "/slow/1");
    let status = gatehouse.wait_exit(Duration::from_secs(5)).await;
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "{}",
        gatehouse.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gatehouse_with_only_config_and_no_subcommand_serves() {
    let backend = backends(1).await[0];
    let gatehouse = Gatehouse::start(&[], |listen| open_service_config(listen, backend)).await;

    let reply = raw_exchange(
        gatehouse.addr,
        "GET /plain HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await;

    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-backend"), Some("b0"));
    assert_eq!(reply.json()["path"], "/plain");
    let health = raw_exchange(
        gatehouse.addr,
        "GET /health HTTP/1.1\r\nHost: ops.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn serve_with_an_invalid_config_exits_1_naming_the_location() {
    let dir = TempDir::new("serve-invalid");
    let path = dir.write(
        "bad.yaml",
        &format!(
            "listen: {}\nservices:\n  - name: app\n    hosts: [app.test]\n    backends: []\n",
            free_addr()
        ),
    );

    let output = run_to_exit("serve", &path);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:5:15: ", path.display())),
        "{stderr}"
    );
    assert!(stderr.contains("must not be empty"), "{stderr}");
}

#[test]
fn serve_exits_1_when_the_listen_address_is_taken() {
    let dir = TempDir::new("serve-taken");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let config = ConfigYaml::new().listen(addr);
    let path = dir.write("taken.yaml", &config.render());

    let output = run_to_exit("serve", &path);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_is_bounded_by_shutdown_timeout() {
    let backend = backends(1).await[0];
    let mut gatehouse = Gatehouse::start(&["serve"], |listen| {
        ConfigYaml::new()
            .listen(listen)
            .limit("shutdown_timeout", "1s")
            .service(ServiceYaml::open("app", "app.test").backend(backend))
            .render()
    })
    .await;
    let mut stuck = TcpStream::connect(gatehouse.addr).await.unwrap();
    stuck
        .write_all(b"GET /slow/30 HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let signalled = Instant::now();
    gatehouse.signal(libc::SIGTERM);
    let status = gatehouse
        .wait_exit(Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("still running 5 s after SIGTERM:\n{}", gatehouse.logs()));
    let took = signalled.elapsed();

    assert_eq!(status.code(), Some(0), "{}", gatehouse.logs());
    assert!(took >= Duration::from_millis(900), "exited after {took:?}");
    assert!(took < Duration::from_millis(2500), "exited after {took:?}");
    let received = read_until_closed(&mut stuck, Duration::from_secs(1))
        .await
        .expect("the cut-off connection is closed");
    assert!(
        !String::from_utf8_lossy(&received).contains(" 200 "),
        "{received:?}"
    );
}

/// `app.test` on one backend, listening on `listen`.
fn routed_to(listen: std::net::SocketAddr, backend: std::net::SocketAddr) -> String {
    ConfigYaml::new()
        .listen(listen)
        .service(ServiceYaml::open("app", "app.test").backend(backend))
        .render()
}

async fn served_by(addr: std::net::SocketAddr) -> String {
    let reply = raw_exchange(
        addr,
        "GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.header("x-backend").unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config_file() {
    let addrs = backends(2).await;
    let gatehouse = Gatehouse::start(&["serve"], |listen| routed_to(listen, addrs[0])).await;
    assert_eq!(served_by(gatehouse.addr).await, "b0");

    gatehouse.rewrite_config(&routed_to(gatehouse.addr, addrs[1]));
    gatehouse.signal(libc::SIGHUP);

    let deadline = Instant::now() + Duration::from_secs(3);
    while served_by(gatehouse.addr).await != "b1" {
        assert!(
            Instant::now() < deadline,
            "still on the old config 3 s after SIGHUP:\n{}",
            gatehouse.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..5 {
        assert_eq!(served_by(gatehouse.addr).await, "b1");
    }
    assert!(gatehouse.logs().contains("config reloaded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_config_on_sighup_keeps_the_old_one_serving() {
    let addrs = backends(1).await;
    let gatehouse = Gatehouse::start(&["serve"], |listen| routed_to(listen, addrs[0])).await;

    gatehouse.rewrite_config(&format!(
        "listen: {}\nservices:\n  - name: app\n    hosts: [app.test]\n    backends: []\n",
        gatehouse.addr
    ));
    gatehouse.signal(libc::SIGHUP);

    let deadline = Instant::now() + Duration::from_secs(3);
    while !gatehouse.logs().contains("config reload failed") {
        assert!(
            Instant::now() < deadline,
            "no reload failure logged:\n{}",
            gatehouse.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gatehouse.logs().contains(":5:15: "), "{}", gatehouse.logs());
    for _ in 0..3 {
        assert_eq!(served_by(gatehouse.addr).await, "b0");
    }
}
