//! Reading `/metrics`: fetch the exposition and look up one sample by name and labels.

use std::net::SocketAddr;

use super::raw_exchange;

/// The Prometheus text exposition at `addr` (control plane, or the admin listener).
pub async fn scrape(addr: SocketAddr) -> String {
    let reply = raw_exchange(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status, 200, "GET /metrics");
    String::from_utf8(reply.body.to_vec()).expect("UTF-8 exposition")
}

/// The value of the sample `name` whose labels include every pair of `labels`; `None` when
/// no such series exists.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            let matches = metric == name
                && labels.iter().all(|(k, v)| {
                    label_text
                        .split(',')
                        .any(|pair| pair == format!("{k}=\"{v}\""))
                });
            matches.then(|| value.parse().expect("numeric sample"))
        })
}

/// Like [`sample`], with a missing series read as 0 (counters not yet touched).
pub fn count(text: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    sample(text, name, labels).unwrap_or(0.0) as u64
}
