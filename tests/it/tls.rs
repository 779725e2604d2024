//! TLS on `listen`, against the real binary: HTTP/1.1 and HTTP/2 (ALPN) over rustls, the
//! certificate swapped on SIGHUP and on a file change without dropping open connections, a bad
//! replacement ignored, a bounded handshake, and a refused start when a file is missing.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::binary::{Gatehouse, TempDir, GATEHOUSE};
use common::tls::{
    alpn, client_config, connect, get, presented, tls_yaml, try_connect, CertFiles, Sender,
    TestCert, TlsGatehouse,
};
use common::{backends, read_until_closed, ConfigYaml, ServiceYaml};
use http::Version;
use rustls::pki_types::CertificateDer;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const HOST: &str = "app.test";

/// A config serving TLS from `tls` (the `tls:` block) with one open service over `backend`.
fn config(listen: SocketAddr, admin: SocketAddr, tls: &str, backend: SocketAddr) -> String {
    let yaml = ConfigYaml::new()
        .listen(listen)
        .admin_listen(admin)
        .limit("header_read_timeout", "1s")
        .service(ServiceYaml::open("app", HOST).backend(backend))
        .render();
    format!("{tls}{yaml}")
}

async fn start(files: &CertFiles) -> TlsGatehouse {
    let backend = backends(1).await[0];
    let tls = files.yaml();
    TlsGatehouse::start(|listen, admin| config(listen, admin, &tls, backend)).await
}

/// Polls new handshakes until the server presents `expected`; panics after 5 s.
async fn wait_for_certificate(
    gatehouse: &TlsGatehouse,
    trusted: &[&TestCert],
    expected: &TestCert,
) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stream = connect(gatehouse.addr, client_config(trusted, &[b"http/1.1"])).await;
        if presented(&stream) == expected.der {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "new handshakes still present the old certificate after 5 s:\n{}",
            gatehouse.process.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the process has logged `needle`; panics after 5 s.
async fn wait_for_log(gatehouse: &Gatehouse, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gatehouse.logs().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log after 5 s:\n{}",
            gatehouse.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A new TLS connection, with one request proved to work on it.
async fn open_connection(
    gatehouse: &TlsGatehouse,
    trusted: &[&TestCert],
) -> (Sender, CertificateDer<'static>) {
    let stream = connect(gatehouse.addr, client_config(trusted, &[b"http/1.1"])).await;
    let cert = presented(&stream);
    let mut sender = Sender::http1(stream).await;
    let reply = sender.send(get(HOST, "/before", false)).await;
    assert_eq!(reply.status, 200);
    (sender, cert)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_request_over_tls_reaches_the_backend_with_x_forwarded_proto_https() {
    let cert = TestCert::new("gatehouse test one", 1);
    let files = CertFiles::new(&cert);
    let gatehouse = start(&files).await;

    let stream = connect(gatehouse.addr, client_config(&[&cert], &[b"http/1.1"])).await;
    assert_eq!(alpn(&stream).as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(presented(&stream), cert.der);
    let mut sender = Sender::http1(stream).await;
    let reply = sender.send(get(HOST, "/over/tls?x=1", false)).await;

    assert_eq!(reply.status, 200);
    assert_eq!(reply.version, Version::HTTP_11);
    assert_eq!(reply.backend(), "b0");
    assert_eq!(reply.json()["path"], "/over/tls?x=1");
    assert_eq!(
        reply.echoed_header("x-forwarded-proto").as_deref(),
        Some("https")
    );
    assert_eq!(
        reply.echoed_header("x-forwarded-host").as_deref(),
        Some(HOST)
    );
    assert!(!reply.header("x-request-id").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_negotiates_h2_and_http2_requests_work_over_tls() {
    let cert = TestCert::new("gatehouse test one", 1);
    let files = CertFiles::new(&cert);
    let gatehouse = start(&files).await;

    let stream = connect(
        gatehouse.addr,
        client_config(&[&cert], &[b"h2", b"http/1.1"]),
    )
    .await;
    assert_eq!(alpn(&stream).as_deref(), Some(&b"h2"[..]));
    let mut sender = Sender::http2(stream).await;
    let first = sender.send(get(HOST, "/h2/one", true)).await;
    let second = sender.send(get(HOST, "/h2/two", true)).await;

    assert_eq!(first.status, 200);
    assert_eq!(first.version, Version::HTTP_2);
    assert_eq!(first.json()["path"], "/h2/one");
    assert_eq!(
        first.echoed_header("x-forwarded-proto").as_deref(),
        Some("https")
    );
    assert_eq!(second.status, 200);
    assert_eq!(second.version, Version::HTTP_2);
    assert_eq!(second.json()["path"], "/h2/two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_the_certificate_for_new_handshakes_while_open_connections_keep_working() {
    let (one, two) = (
        TestCert::new("gatehouse test one", 1),
        TestCert::new("gatehouse test two", 2),
    );
    let trusted = [&one, &two];
    // The config names symlinks, and the files they point to are rewritten in another
    // directory: the file watch sees nothing, so only the signal can reload.
    let real = CertFiles::new(&one);
    let links = TempDir::new("cert-links");
    let (cert_link, key_link) = (links.path().join("tls.crt"), links.path().join("tls.key"));
    std::os::unix::fs::symlink(&real.cert, &cert_link).unwrap();
    std::os::unix::fs::symlink(&real.key, &key_link).unwrap();
    let backend = backends(1).await[0];
    let tls = tls_yaml(&cert_link, &key_link);
    let gatehouse = TlsGatehouse::start(|listen, admin| config(listen, admin, &tls, backend)).await;
    let (mut open, before) = open_connection(&gatehouse, &trusted).await;
    assert_eq!(before, one.der);

    two.write(&real.cert, &real.key);
    gatehouse.process.signal(libc::SIGHUP);
    wait_for_certificate(&gatehouse, &trusted, &two).await;

    let reply = open.send(get(HOST, "/after", false)).await;
    assert_eq!(reply.status, 200, "the connection opened before the swap");
    assert_eq!(reply.json()["path"], "/after");
    let (_, after) = open_connection(&gatehouse, &trusted).await;
    assert_eq!(after, two.der);
    let logs = gatehouse.process.logs();
    assert!(
        logs.lines()
            .any(|line| line.contains("TLS certificate reloaded") && line.contains("SIGHUP")),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewriting_the_files_swaps_the_certificate_without_a_signal() {
    let (one, two) = (
        TestCert::new("gatehouse test one", 1),
        TestCert::new("gatehouse test two", 2),
    );
    let trusted = [&one, &two];
    let files = CertFiles::new(&one);
    let gatehouse = start(&files).await;
    let (mut open, before) = open_connection(&gatehouse, &trusted).await;
    assert_eq!(before, one.der);

    two.write(&files.cert, &files.key);
    wait_for_certificate(&gatehouse, &trusted, &two).await;

    let reply = open.send(get(HOST, "/after", false)).await;
    assert_eq!(reply.status, 200, "the connection opened before the swap");
    let (mut fresh, after) = open_connection(&gatehouse, &trusted).await;
    assert_eq!(after, two.der);
    assert_eq!(fresh.send(get(HOST, "/fresh", false)).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_replacement_certificate_is_refused_and_the_old_one_keeps_serving() {
    let (one, two) = (
        TestCert::new("gatehouse test one", 1),
        TestCert::new("gatehouse test two", 2),
    );
    let trusted = [&one, &two];
    let files = CertFiles::new(&one);
    let gatehouse = start(&files).await;

    // Not PEM at all.
    std::fs::write(&files.cert, "not a certificate\n").unwrap();
    gatehouse.process.signal(libc::SIGHUP);
    wait_for_log(&gatehouse.process, "TLS certificate reload failed").await;
    let (mut open, served) = open_connection(&gatehouse, &trusted).await;
    assert_eq!(served, one.der);

    // Valid PEM, but the key belongs to another certificate.
    std::fs::write(&files.cert, &two.cert_pem).unwrap();
    std::fs::write(&files.key, &one.key_pem).unwrap();
    gatehouse.process.signal(libc::SIGHUP);
    wait_for_log(&gatehouse.process, "does not fit the certificate").await;
    let (_, served) = open_connection(&gatehouse, &trusted).await;
    assert_eq!(served, one.der);
    assert_eq!(open.send(get(HOST, "/still", false)).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_stalling_in_or_right_after_the_handshake_are_disconnected() {
    let cert = TestCert::new("gatehouse test one", 1);
    let files = CertFiles::new(&cert);
    let gatehouse = start(&files).await; // header_read_timeout: 1s

    let started = Instant::now();
    let mut silent = TcpStream::connect(gatehouse.addr).await.unwrap();
    let mut partial = TcpStream::connect(gatehouse.addr).await.unwrap();
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
        .await
        .unwrap(); // a ClientHello's record header, no body
    let mut handshaken = connect(gatehouse.addr, client_config(&[&cert], &[b"h2"])).await;

    for stream in [&mut silent, &mut partial] {
        let closed = read_until_closed(stream, Duration::from_secs(4)).await;
        assert!(closed.is_some(), "still open after {:?}", started.elapsed());
    }
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(
        Duration::from_secs(4),
        tokio::io::AsyncReadExt::read(&mut handshaken, &mut buf),
    )
    .await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "a client silent after the handshake is still connected after {:?}: {read:?}",
        started.elapsed()
    );
    assert!(started.elapsed() >= Duration::from_millis(900));

    // Others are served meanwhile and after.
    let (mut sender, _) = open_connection(&gatehouse, &[&cert]).await;
    assert_eq!(sender.send(get(HOST, "/ok", false)).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_trust_the_certificate_fails_the_handshake() {
    let (one, other) = (
        TestCert::new("gatehouse test one", 1),
        TestCert::new("someone else", 9),
    );
    let files = CertFiles::new(&one);
    let gatehouse = start(&files).await;

    let refused = try_connect(gatehouse.addr, client_config(&[&other], &[b"http/1.1"])).await;

    assert!(
        refused.is_err(),
        "the handshake succeeded with an untrusted certificate"
    );
    let (mut sender, _) = open_connection(&gatehouse, &[&one]).await;
    assert_eq!(sender.send(get(HOST, "/ok", false)).await.status, 200);
}

/// Runs `gatehouse serve` with `config`, expecting it to exit within 20 s; returns its exit code
/// and stderr.
async fn serve_to_exit(dir: &Path, config: &str) -> (Option<i32>, String) {
    let path = dir.join("gatehouse.yaml");
    std::fs::write(&path, config).unwrap();
    let child = tokio::process::Command::new(GATEHOUSE)
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .env_remove("DATABASE_URL")
        .env("GATEHOUSE_JWT_SECRET", common::TEST_JWT_SECRET)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("gatehouse serve exits when its certificate is missing")
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_to_start_naming_a_missing_certificate_or_key() {
    let cert = TestCert::new("gatehouse test one", 1);
    let files = CertFiles::new(&cert);
    let dir = TempDir::new("tls-missing");
    let missing = dir.path().join("nowhere.crt");
    let base = ConfigYaml::new()
        .listen(common::binary::free_addr())
        .render();

    let (code, stderr) = serve_to_exit(
        dir.path(),
        &format!("{}{base}", tls_yaml(&missing, &files.key)),
    )
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("TLS certificate {}", missing.display())),
        "{stderr}"
    );

    let missing_key = dir.path().join("nowhere.key");
    let (code, stderr) = serve_to_exit(
        dir.path(),
        &format!("{}{base}", tls_yaml(&files.cert, &missing_key)),
    )
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("TLS key {}", missing_key.display())),
        "{stderr}"
    );
}
