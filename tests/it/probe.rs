//! `gatehouse probe URL`, the container health check: exit 0 on a 2xx answer, 1 otherwise.

use crate::common;

use std::process::Command;

use common::{ConfigYaml, Proxy};

fn probe(url: &str) -> std::process::Output {
    Command::new(common::binary::GATEHOUSE)
        .args(["probe", url, "--timeout", "2s"])
        .output()
        .expect("run gatehouse probe")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_exits_0_on_2xx_and_1_on_anything_else() {
    let proxy = Proxy::start(&ConfigYaml::new()).await;
    let healthy = probe(&format!("http://{}/health", proxy.addr));
    assert_eq!(healthy.status.code(), Some(0), "{healthy:?}");
    assert!(String::from_utf8_lossy(&healthy.stdout).contains("200"));

    let missing = probe(&format!("http://{}/nowhere", proxy.addr));
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("404"),
        "{missing:?}"
    );

    let closed = probe(&format!("http://{}/health", common::refused_addr()));
    assert_eq!(closed.status.code(), Some(1));

    let bad = probe("ftp://example.com/");
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not an http:// URL"));
}
