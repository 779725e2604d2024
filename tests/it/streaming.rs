//! 1 GiB each way through the real binary, in bounded memory (peak RSS from `/proc`).

use crate::common;

use std::time::Instant;

use common::binary::Gatehouse;
use common::{backends, empty, ConfigYaml, ServiceYaml};
use http::Request;
use http_body_util::BodyExt;

const GIB: u64 = 1 << 30;
/// The proxy's peak resident memory must stay under this after moving 1 GiB.
const RSS_LIMIT: u64 = 100 * 1024 * 1024;

/// The binary in front of one backend, with a service timeout long enough for a debug build to
/// push 1 GiB before the backend's answer (it replies after reading the whole upload).
async fn gatehouse_over_one_backend() -> Gatehouse {
    let backend = backends(1).await;
    Gatehouse::start(&["serve"], move |listen| {
        ConfigYaml::new()
            .listen(listen)
            .service(
                ServiceYaml::open("bulk", "bulk.test")
                    .set("timeout", "10m")
                    .backends(&backend),
            )
            .render()
    })
    .await
}

fn assert_bounded_memory(gatehouse: &Gatehouse, what: &str) {
    let peak = gatehouse.peak_rss_bytes();
    eprintln!(
        "{what}: gatehouse peak RSS {:.1} MiB",
        peak as f64 / 1048576.0
    );
    assert!(
        peak < RSS_LIMIT,
        "{what}: peak RSS {:.1} MiB is over {} MiB",
        peak as f64 / 1048576.0,
        RSS_LIMIT / 1048576
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_gib_upload_streams_through_the_binary_in_bounded_memory() {
    let gatehouse = gatehouse_over_one_backend().await;
    let client = common::Client::http1(gatehouse.addr);

    let started = Instant::now();
    let request = Request::post("/upload")
        .header("host", "bulk.test")
        .body(
            gatehouse_backend::generated_body(GIB)
                .map_err(|never| match never {})
                .boxed(),
        )
        .unwrap();
    let reply = client.send(request).await;
    eprintln!("1 GiB upload took {:?}", started.elapsed());

    assert_eq!(reply.status, 200, "{}", gatehouse.logs());
    assert_eq!(reply.backend(), "b0");
    let echo = reply.json();
    assert_eq!(echo["body_len"], GIB);
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["headers"]["content-length"], GIB.to_string());
    assert_bounded_memory(&gatehouse, "1 GiB upload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_gib_download_streams_through_the_binary_in_bounded_memory() {
    let gatehouse = gatehouse_over_one_backend().await;
    let client = common::Client::http1(gatehouse.addr);

    let started = Instant::now();
    let request = Request::get(format!("/bytes/{GIB}"))
        .header("host", "bulk.test")
        .body(empty())
        .unwrap();
    let response = client.send_streaming(request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-backend"], "b0");
    assert_eq!(
        response.headers()["content-length"],
        GIB.to_string().as_str()
    );
    let mut body = response.into_body();
    let mut received = 0u64;
    let mut first_byte_ok = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("body frame");
        if let Some(data) = frame.data_ref() {
            if received == 0 && !data.is_empty() {
                first_byte_ok = data[0] == b'x';
            }
            received += data.len() as u64;
        }
    }
    eprintln!("1 GiB download took {:?}", started.elapsed());

    assert_eq!(received, GIB);
    assert!(first_byte_ok, "the body is the backend's `x` bytes");
    assert_bounded_memory(&gatehouse, "1 GiB download");
}
