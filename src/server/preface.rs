//! The deadline before a connection's protocol is known.
//!
//! hyper-util's auto builder reads up to 24 bytes to tell HTTP/1 from the HTTP/2 preface, with
//! no time limit, and hyper's header-read timeout only starts after that. A client that sends
//! nothing, or a few bytes of the preface, would hold a connection slot forever (slowloris).

use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::{sleep, timeout};

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Re-check interval while a client is part-way through the HTTP/2 preface (rare: the
/// preface normally arrives in one segment), because `peek` reports data already seen.
const PARTIAL_PREFACE_POLL: Duration = Duration::from_millis(5);

/// Whether enough bytes arrive within `deadline` for the protocol to be decided without
/// waiting: any byte that rules out HTTP/2, or the whole HTTP/2 preface. Bytes are only
/// peeked, so hyper reads them again.
pub(super) async fn arrives(stream: &TcpStream, deadline: Duration) -> bool {
    let decided = async {
        let mut buf = [0u8; H2_PREFACE.len()];
        loop {
            let n = stream.peek(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            if n == H2_PREFACE.len() || buf[..n] != H2_PREFACE[..n] {
                return Some(());
            }
            sleep(PARTIAL_PREFACE_POLL).await;
        }
    };
    matches!(timeout(deadline, decided).await, Ok(Some(())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        (client, listener.accept().await.unwrap().0)
    }

    #[tokio::test]
    async fn an_http1_request_line_decides_at_once() {
        let (mut client, server) = pair().await;
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert!(arrives(&server, Duration::from_secs(1)).await);
    }

    #[tokio::test]
    async fn silence_times_out() {
        let (_client, server) = pair().await;
        assert!(!arrives(&server, Duration::from_millis(100)).await);
    }

    #[tokio::test]
    async fn a_stalled_partial_h2_preface_times_out() {
        let (mut client, server) = pair().await;
        client.write_all(&H2_PREFACE[..16]).await.unwrap();
        assert!(!arrives(&server, Duration::from_millis(100)).await);
    }

    #[tokio::test]
    async fn a_complete_h2_preface_decides() {
        let (mut client, server) = pair().await;
        client.write_all(H2_PREFACE).await.unwrap();
        assert!(arrives(&server, Duration::from_secs(1)).await);
    }

    #[tokio::test]
    async fn a_closed_connection_is_not_served() {
        let (client, server) = pair().await;
        drop(client);
        assert!(!arrives(&server, Duration::from_secs(1)).await);
    }
}
