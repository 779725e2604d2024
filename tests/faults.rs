//! Fault injection against the real binary: a backend dying under load, hanging, or every
//! backend gone; the account store stopping and coming back; Gatehouse itself SIGKILLed in the
//! middle of a thousand registrations.
//!
//! Covered elsewhere, so not repeated here:
//! - refused backends skipped, 502 when all refuse, 504 for a slow answer, 502 for a hang-up:
//!   `it/failures.rs` (`a_refused_backend_is_skipped_and_the_live_one_answers_every_request`,
//!   `every_backend_refusing_gives_502_bad_gateway_as_json`,
//!   `a_backend_slower_than_the_service_timeout_gives_504_gateway_timeout`,
//!   `a_backend_that_closes_the_connection_without_answering_gives_502`);
//! - a killed backend ejected at once and re-admitted by its health check, one request at a
//!   time: `it/traffic.rs`
//!   (`a_dead_backend_is_ejected_at_once_and_readmitted_by_its_health_check`);
//!   ejection by 5xx then a fast 503: `it/traffic.rs`
//!   (`five_hundreds_eject_after_the_threshold_and_every_backend_out_is_a_fast_503`); a backend
//!   that stops reading an upload: `it/traffic.rs`
//!   (`a_backend_that_stops_reading_an_upload_times_out_with_504`);
//! - `/ready` following PostgreSQL down and up, one issued token proxying and one login 503
//!   meanwhile: `it/ready.rs` (`ready_follows_the_postgres_server_down_and_back`);
//! - accounts surviving a clean (SIGTERM) restart: `it/accounts.rs`
//!   (`accounts_survive_a_restart_on_sqlite`, `accounts_survive_a_restart_on_postgres`).
//!
//! Not tested here: a panic inside one request's handler. Connections are spawned tasks
//! (`server/accept.rs`), so a panic ends that one connection without an answer, not the
//! process; but nothing a client can send makes the handler panic (the request path has no
//! reachable `unwrap`/`expect`/indexing on client input), so it cannot be triggered from outside
//! without a test-only backdoor in the product. Whether such a panic is answered 500 belongs in
//! a unit test of the handler.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::accounts::CONTROL;
use common::binary::{Gatehouse, TempDir};
use common::killable::KillableBackend;
use common::postgres::OwnCluster;
use common::scrape::{sample, scrape};
use common::{assert_json_error, backends, parse_raw, read_head, Client, ConfigYaml, ServiceYaml};
use serde_json::json;
use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

const APP: &str = "app.test";
const PASSWORD: &str = "fault-password";

/// `gatehouse serve` with `services`, on its own SQLite store unless `env` names another.
async fn gatehouse(env: &[(&str, &str)], services: Vec<ServiceYaml>) -> Gatehouse {
    Gatehouse::start_with_env(&["serve"], env, |listen| {
        let mut config = ConfigYaml::new().listen(listen);
        for service in &services {
            config = config.service(service.clone());
        }
        config.render()
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// A backend dies under load

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_killed_under_200_rps_fails_at_most_its_in_flight_requests() {
    let mut mortal = KillableBackend::start("mortal");
    let steady = backends(1).await[0];
    let service = ServiceYaml::open("pool", APP).backends(&[mortal.addr, steady]);
    let gatehouse = gatehouse(&[], vec![service]).await;
    let client = Client::http1(gatehouse.addr);

    // One request every 5 ms for 4 s, each in its own task; the backend dies at 1.5 s.
    let started = Instant::now();
    let mut requests = Vec::new();
    let mut every = tokio::time::interval(Duration::from_millis(5));
    let mut killed_at = None;
    while started.elapsed() < Duration::from_secs(4) {
        every.tick().await;
        if killed_at.is_none() && started.elapsed() >= Duration::from_millis(1500) {
            mortal.kill();
            killed_at = Some(started.elapsed());
        }
        let client = client.clone();
        let sent_at = started.elapsed();
        requests.push(tokio::spawn(async move {
            let reply = client.get(APP, "/").await;
            let backend = reply
                .headers
                .get("x-backend")
                .map(|b| b.to_str().unwrap().to_string());
            (sent_at, started.elapsed(), reply.status.as_u16(), backend)
        }));
    }
    let killed_at = killed_at.expect("the backend was killed");
    let mut outcomes = Vec::new();
    for request in requests {
        outcomes.push(request.await.expect("request task"));
    }

    let before: Vec<_> = outcomes.iter().filter(|o| o.1 < killed_at).collect();
    let failed: Vec<_> = outcomes.iter().filter(|o| o.2 != 200).collect();
    // Requests sent once the kill was 100 ms old: no longer "in flight at the kill".
    let later: Vec<_> = outcomes
        .iter()
        .filter(|o| o.0 > killed_at + Duration::from_millis(100))
        .collect();
    eprintln!(
        "{} requests at 200 rps; killed at {killed_at:?}; {} failed: {:?}",
        outcomes.len(),
        failed.len(),
        failed.iter().map(|o| (o.0, o.2)).collect::<Vec<_>>()
    );
    assert!(
        outcomes.len() >= 600,
        "only {} requests sent",
        outcomes.len()
    );
    let mortal_served = before
        .iter()
        .filter(|o| o.3.as_deref() == Some("mortal"))
        .count();
    assert!(
        mortal_served > 50,
        "the doomed backend served only {mortal_served} requests"
    );
    // At 200 rps and ~1 ms per request, one or two are in flight at any instant; 5 allows for
    // a slow moment on a loaded machine, not for errors after the kill.
    assert!(failed.len() <= 5, "{} requests failed", failed.len());
    for (sent, _, status, backend) in &later {
        assert_eq!(*status, 200, "a request sent at {sent:?} failed");
        assert_eq!(backend.as_deref(), Some("b0"), "sent at {sent:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// A backend hangs

/// A backend that accepts, reads each request head and then never answers: the socket stays
/// open, so only the proxy's own timeout ends the wait. Counts the request heads it read.
async fn silent_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    hanging_backend(None).await
}

/// Like [`silent_backend`], but it sends `partial` (a response head and the start of its
/// body) before going quiet.
async fn hanging_backend(partial: Option<&'static [u8]>) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&heads);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                if read_head(&mut stream).await.is_none() {
                    return;
                }
                let mut buf = [0u8; 1024];
                counter.fetch_add(1, Ordering::SeqCst);
                if let Some(partial) = partial {
                    let _ = stream.write_all(partial).await;
                }
                // Hold the connection open, reading nothing more, until the proxy gives up.
                let _ = stream.read(&mut buf).await;
                std::future::pending::<()>().await;
            });
        }
    });
    (addr, heads)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_never_answers_gives_504_within_the_request_timeout() {
    let (hung, heads) = silent_backend().await;
    let steady = backends(1).await[0];
    let services = vec![
        ServiceYaml::open("hung", APP)
            .backend(hung)
            .set("timeouts", "{request: 1s}"),
        ServiceYaml::open("other", "other.test").backend(steady),
    ];
    let gatehouse = gatehouse(&[], services).await;
    let addr = gatehouse.addr;

    let waits: Vec<_> = (0..5)
        .map(|i| {
            tokio::spawn(async move {
                let started = Instant::now();
                let reply = Client::http1(addr).get(APP, &format!("/hang/{i}")).await;
                (reply, started.elapsed())
            })
        })
        .collect();
    // While five requests hang, another service is served at once.
    let other = Client::http1(addr).get("other.test", "/meanwhile").await;
    assert_eq!(other.status, 200);
    for wait in waits {
        let (reply, took) = wait.await.unwrap();
        assert_json_error(&reply, 504, "gateway_timeout");
        // 1 s configured; 2.5 s allows for a loaded machine.
        assert!(took >= Duration::from_millis(950), "504 after {took:?}");
        assert!(took < Duration::from_millis(2500), "504 after {took:?}");
    }
    // A timed-out GET is not retried on the same hung backend.
    assert_eq!(heads.load(Ordering::SeqCst), 5);
}

/// The response head and 100 of 1000 promised bytes arrive, then the backend hangs. The client
/// has its 200 already, so no 504 can follow; but the proxy must not pass the hang on for
/// ever: the response is cut off (the connection closed) within the request timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_hangs_mid_body_gets_the_response_cut_off() {
    const PARTIAL: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n\
        0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789";
    let (hung, _) = hanging_backend(Some(PARTIAL)).await;
    let service = ServiceYaml::open("hung", APP)
        .backend(hung)
        .set("timeouts", "{request: 1s}");
    let gatehouse = gatehouse(&[], vec![service]).await;

    let mut stream = TcpStream::connect(gatehouse.addr).await.unwrap();
    stream
        .write_all(format!("GET /stalls HTTP/1.1\r\nHost: {APP}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let started = Instant::now();
    let mut received = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(8), async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(
        text.ends_with("0123456789"),
        "the first 100 bytes were passed on: {text}"
    );
    // 1 s without a byte from the backend; 8 s is far past it on any machine.
    assert!(
        ended.is_ok(),
        "the client still waits on a hung response after {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Every backend down

/// An address that accepts no more connections and answers no SYN: a listener whose accept
/// queue is full (nothing accepts). Connects to it hang, as to a host that is gone. Returns the
/// address and what must stay alive for it to stay that way.
async fn blackhole() -> (SocketAddr, (std::net::TcpListener, Vec<TcpStream>)) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => queued.push(stream),
            Ok(Err(e)) => panic!("connect to the blackhole listener: {e}"),
            Err(_) => return (addr, (listener, queued)),
        }
        assert!(queued.len() < 10_000, "the accept queue never filled");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_backend_down_requests_get_a_fast_503_and_login_still_works() {
    let (first, _keep_first) = blackhole().await;
    let (second, _keep_second) = blackhole().await;
    let service = ServiceYaml::open("gone", APP)
        .backends(&[first, second])
        .set("timeouts", "{connect: 2s}")
        .set(
            "health_check",
            "{path: /, interval: 200ms, timeout: 100ms, unhealthy_threshold: 1}",
        );
    let gatehouse = gatehouse(&[], vec![service]).await;
    let addr = gatehouse.addr;
    let client = Client::http1(addr);
    let registered = client
        .register("still", "still@example.com", PASSWORD)
        .await;
    assert_eq!(registered.status, 201);

    let down = common::holds_within(Duration::from_secs(5), async || {
        let text = scrape(addr).await;
        [first, second].iter().all(|b| {
            sample(
                &text,
                "gatehouse_backend_up",
                &[("backend", &b.to_string())],
            ) == Some(0.0)
        })
    })
    .await;
    assert!(
        down,
        "the probes never marked the backends down:\n{}",
        scrape(addr).await
    );

    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let started = Instant::now();
        let reply = client.get(APP, &format!("/down/{i}")).await;
        slowest = slowest.max(started.elapsed());
        assert_json_error(&reply, 503, "no_healthy_backend");
    }
    let started = Instant::now();
    let login = client.login("still@example.com", PASSWORD).await;
    let login_took = started.elapsed();
    eprintln!("every backend down: slowest 503 {slowest:?}; login {login_took:?}");
    // A connect attempt would take the 2 s connect timeout; 250 ms is a generous "at once".
    assert!(
        slowest < Duration::from_millis(250),
        "a 503 took {slowest:?}"
    );
    assert_eq!(login.status, 200, "{:?}", login.body);
    assert!(login.json()["access_token"].as_str().is_some());
}

// ---------------------------------------------------------------------------------------------
// The account store stops

/// Bounded wait for one answer; the pool's acquire timeout is 3 s.
const STORE_DOWN_ANSWER: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_stopped_logins_and_registrations_fail_fast_and_recover_without_a_restart() {
    let test =
        "with_postgres_stopped_logins_and_registrations_fail_fast_and_recover_without_a_restart";
    let Some(cluster) = OwnCluster::start(test) else {
        return;
    };
    let backend = backends(1).await[0];
    let service = ServiceYaml::new("app", APP).backend(backend);
    let gatehouse = gatehouse(&[("DATABASE_URL", &cluster.url)], vec![service]).await;
    let addr = gatehouse.addr;
    let client = Client::http1(addr);
    let token = client
        .signed_up("steady", "steady@example.com", PASSWORD)
        .await;
    let leaving = client.token("steady@example.com", PASSWORD).await;

    cluster.run("pause");
    // Twenty logins and twenty registrations pile up on the dead store at once.
    let mut attempts = JoinSet::new();
    for i in 0..20 {
        attempts.spawn(async move {
            let client = Client::http1(addr);
            let started = Instant::now();
            let reply = if i % 2 == 0 {
                client.login("steady@example.com", PASSWORD).await
            } else {
                let name = format!("outage{i}");
                client
                    .register(&name, &format!("{name}@example.com"), PASSWORD)
                    .await
            };
            (reply, started.elapsed())
        });
    }
    // Meanwhile tokens keep proxying, quickly: no database call on that path.
    let mut slowest_proxied = Duration::ZERO;
    for i in 0..50 {
        let started = Instant::now();
        let reply = client
            .with_token("GET", APP, &format!("/during/{i}"), &token)
            .await;
        slowest_proxied = slowest_proxied.max(started.elapsed());
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.echoed_header("x-forwarded-user").as_deref(),
            Some("steady")
        );
    }
    while let Some(attempt) = attempts.join_next().await {
        let (reply, took) = attempt.unwrap();
        assert_json_error(&reply, 503, "store_unavailable");
        assert!(took < STORE_DOWN_ANSWER, "a 503 took {took:?}");
    }
    assert!(
        slowest_proxied < Duration::from_secs(1),
        "a proxied request took {slowest_proxied:?} during the outage"
    );
    // A logout cannot be stored, and says so; this replica refuses the token all the same.
    let logout = client
        .with_token("POST", CONTROL, "/logout", &leaving)
        .await;
    assert_json_error(&logout, 503, "store_unavailable");
    assert_eq!(
        client.with_token("GET", APP, "/", &leaving).await.status,
        401
    );

    cluster.run("resume");
    let mut registered = None;
    let recovered = common::holds_within(Duration::from_secs(15), async || {
        let reply = client
            .register("outage1", "outage1@example.com", PASSWORD)
            .await;
        let done = reply.status == 201;
        registered = Some(reply);
        done
    })
    .await;
    // A registration answered 503 during the outage left nothing behind: the same name is free.
    assert!(
        recovered,
        "no registration after the restart: {registered:?}"
    );
    let fresh = client.token("outage1@example.com", PASSWORD).await;
    assert_eq!(
        client.with_token("GET", APP, "/after", &fresh).await.status,
        200
    );
    assert_eq!(
        client.with_token("GET", APP, "/after", &token).await.status,
        200
    );
}

// ---------------------------------------------------------------------------------------------
// Gatehouse SIGKILLed mid-registration

/// One `POST /account` on a connection of its own; `None` when no whole answer came back (the
/// process died first).
async fn try_register(addr: SocketAddr, i: usize) -> Option<u16> {
    let body = json!({
        "username": format!("crash{i:04}"),
        "email": format!("crash{i:04}@example.com"),
        "password": PASSWORD,
    })
    .to_string();
    let request = format!(
        "POST /account HTTP/1.1\r\nHost: {CONTROL}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(addr).await.ok()?;
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut received)).await;
    let head_end = received.windows(4).position(|w| w == b"\r\n\r\n")?;
    let reply = parse_raw(&received);
    // A whole answer has the body its Content-Length announced.
    let length: usize = reply.header("content-length")?.parse().ok()?;
    (received.len() >= head_end + 4 + length).then_some(reply.status)
}

/// The usernames stored in `database_url`, read directly (not through Gatehouse).
async fn stored_usernames(database_url: &str) -> Vec<String> {
    const QUERY: &str = "SELECT username FROM accounts";
    if database_url.starts_with("sqlite:") {
        let mut db = sqlx::SqliteConnection::connect(database_url).await.unwrap();
        sqlx::query_scalar(QUERY).fetch_all(&mut db).await.unwrap()
    } else {
        let mut db = sqlx::PgConnection::connect(database_url).await.unwrap();
        sqlx::query_scalar(QUERY).fetch_all(&mut db).await.unwrap()
    }
}

/// A thousand registrations at once; SIGKILL once a tenth of them are answered. Then:
/// every 201 is a row, every row one of ours and there once; a row without a 201 is taken
/// (409) when retried, a name without a row is free (201); and after a restart on the same
/// store every account logs in.
async fn sigkill_mid_registration_loses_and_duplicates_nothing(database_url: &str) {
    const COUNT: usize = 1000;
    const KILL_AFTER: usize = 100;
    let env = [("DATABASE_URL", database_url)];
    let mut first = gatehouse(&env, Vec::new()).await;
    let addr = first.addr;

    let answered = Arc::new(AtomicUsize::new(0));
    let mut registrations = JoinSet::new();
    for i in 0..COUNT {
        let answered = Arc::clone(&answered);
        registrations.spawn(async move {
            let status = try_register(addr, i).await;
            if status.is_some() {
                answered.fetch_add(1, Ordering::SeqCst);
            }
            (i, status)
        });
    }
    let reached = common::holds_within(Duration::from_secs(60), async || {
        answered.load(Ordering::SeqCst) >= KILL_AFTER
    })
    .await;
    assert!(
        reached,
        "only {} registrations answered",
        answered.load(Ordering::SeqCst)
    );
    first.signal(libc::SIGKILL);
    assert!(
        first.wait_exit(Duration::from_secs(10)).await.is_some(),
        "not dead"
    );
    let mut statuses = BTreeMap::new();
    while let Some(joined) = registrations.join_next().await {
        let (i, status) = joined.expect("registration task");
        statuses.insert(format!("crash{i:04}"), status);
    }

    let created: BTreeSet<&String> = statuses
        .iter()
        .filter(|(_, s)| **s == Some(201))
        .map(|(name, _)| name)
        .collect();
    for (name, status) in &statuses {
        assert!(
            matches!(status, None | Some(201)),
            "{name}: answered {status:?}"
        );
    }
    let rows = stored_usernames(database_url).await;
    let stored: BTreeSet<&String> = rows.iter().collect();
    assert_eq!(stored.len(), rows.len(), "duplicate rows");
    for name in &stored {
        assert!(
            statuses.contains_key(*name),
            "a row nobody registered: {name}"
        );
    }
    let lost: Vec<_> = created.difference(&stored).collect();
    assert!(lost.is_empty(), "answered 201 but not stored: {lost:?}");
    let orphans: Vec<&String> = stored.difference(&created).copied().collect();
    let unstored: Vec<&String> = statuses
        .keys()
        .filter(|name| !stored.contains(name))
        .take(20)
        .collect();
    eprintln!(
        "{database_url}: killed after {} answers; {} rows, {} of them without a 201",
        created.len(),
        rows.len(),
        orphans.len()
    );

    let second = gatehouse(&env, Vec::new()).await;
    let client = Client::http1(second.addr);
    for name in &orphans {
        let reply = client
            .register(name, &format!("{name}@example.com"), PASSWORD)
            .await;
        assert_eq!(reply.status, 409, "{name}: {:?}", reply.body);
        let code = reply.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            code == "email_taken" || code == "username_taken",
            "{name}: {code}"
        );
    }
    for name in &unstored {
        let reply = client
            .register(name, &format!("{name}@example.com"), PASSWORD)
            .await;
        assert_eq!(reply.status, 201, "{name}: {:?}", reply.body);
    }
    let everyone: Vec<String> = stored
        .iter()
        .map(|name| name.to_string())
        .chain(unstored.iter().map(|name| name.to_string()))
        .collect();
    let mut logins = JoinSet::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(32));
    for name in everyone {
        let (client, permits) = (client.clone(), Arc::clone(&permits));
        logins.spawn(async move {
            let _permit = permits.acquire_owned().await.unwrap();
            let reply = client.login(&format!("{name}@example.com"), PASSWORD).await;
            (name, reply.status.as_u16())
        });
    }
    while let Some(login) = logins.join_next().await {
        let (name, status) = login.unwrap();
        assert_eq!(status, 200, "{name} cannot log in after the restart");
    }
    let after = stored_usernames(database_url).await;
    assert_eq!(
        after.len(),
        rows.len() + unstored.len(),
        "rows changed on restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_registration_loses_and_duplicates_nothing_on_sqlite() {
    let dir = TempDir::new("sigkill");
    let url = format!("sqlite://{}", dir.path().join("gatehouse.db").display());
    sigkill_mid_registration_loses_and_duplicates_nothing(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_registration_loses_and_duplicates_nothing_on_postgres() {
    let Some(url) = common::postgres::fresh_database().await else {
        return;
    };
    sigkill_mid_registration_loses_and_duplicates_nothing(&url).await;
    common::postgres::drop_database(&url).await;
}
