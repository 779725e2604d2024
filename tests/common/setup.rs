//! The real binary with two services behind counting relays and a signed-up user: the setting
//! of the tests that steer the proxy with headers and paths (`it/header_abuse.rs`,
//! `it/paths.rs`).

use super::binary::Gatehouse;
use super::{backends, raw_exchange, Client, ConfigYaml, CountingRelay, RawReply, ServiceYaml};

/// The password of `alice`, the one account.
pub const PASSWORD: &str = "correct horse battery";

/// The binary with `private.test` (auth required, backend `b0`) and `open.test` (no auth,
/// backend `b1`), each behind a relay counting the connections that reach it, and a token for
/// `alice`.
pub struct Setup {
    /// The running binary.
    pub gatehouse: Gatehouse,
    /// In front of `private.test`'s backend.
    pub private: CountingRelay,
    /// In front of `open.test`'s backend.
    pub open: CountingRelay,
    /// Alice's access token.
    pub token: String,
}

impl Setup {
    /// Starts the backends, the relays and the binary, and signs `alice` up.
    pub async fn start() -> Self {
        let echo = backends(2).await;
        let private = CountingRelay::start(echo[0]).await;
        let open = CountingRelay::start(echo[1]).await;
        let (private_addr, open_addr) = (private.addr, open.addr);
        let gatehouse = Gatehouse::start(&["serve"], |listen| {
            ConfigYaml::new()
                .listen(listen)
                .service(ServiceYaml::new("private", "private.test").backend(private_addr))
                .service(ServiceYaml::open("open", "open.test").backend(open_addr))
                .render()
        })
        .await;
        let token = Client::http1(gatehouse.addr)
            .signed_up("alice", "alice@example.com", PASSWORD)
            .await;
        Setup {
            gatehouse,
            private,
            open,
            token,
        }
    }

    /// Sends `head` (request line and headers, each ending in CRLF) plus `Connection: close`.
    pub async fn send(&self, head: &str) -> RawReply {
        raw_exchange(
            self.gatehouse.addr,
            &format!("{head}Connection: close\r\n\r\n"),
        )
        .await
    }

    /// `METHOD TARGET` on `host` with the extra header lines, `Connection: close`.
    pub async fn request(&self, method: &str, target: &str, host: &str, extra: &str) -> RawReply {
        self.send(&format!(
            "{method} {target} HTTP/1.1\r\nHost: {host}\r\n{extra}"
        ))
        .await
    }

    /// The backends reached so far: (private, open).
    pub fn reached(&self) -> (usize, usize) {
        (self.private.connections(), self.open.connections())
    }
}
