//! The deadline before a connection's protocol is known.
//!
//! hyper-util's auto builder reads up to 24 bytes to tell HTTP/1 from the HTTP/2 preface, with
//! no time limit, and hyper's header-read timeout only starts after that. A client that sends
//! nothing, or a few bytes of the preface, would hold a connection slot forever (slowloris).
//!
//! A cleartext socket is peeked; a TLS stream cannot be, so its first bytes are read and
//! handed back to hyper by `Replay` (`replay.rs`). The bytes also name the protocol, so each connection is
//! served by hyper's HTTP/1 or HTTP/2 connection alone, and an HTTP/1 connection's task is not
//! sized for HTTP/2's state.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout};

use super::replay::Replay;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Re-check interval while a client is part-way through the HTTP/2 preface (rare: the
/// preface normally arrives in one segment), because `peek` reports data already seen.
const PARTIAL_PREFACE_POLL: Duration = Duration::from_millis(5);

/// The protocol a connection speaks, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    Http1,
    /// The client sent the HTTP/2 connection preface (h2c prior knowledge, or TLS with h2).
    Http2,
}

impl Protocol {
    /// The protocol of a connection whose first bytes, `decided` ones, are `bytes`.
    fn of(bytes: &[u8]) -> Protocol {
        if bytes == H2_PREFACE {
            Protocol::Http2
        } else {
            Protocol::Http1
        }
    }
}

/// The protocol, when enough bytes arrive within `deadline` for it to be decided without
/// waiting: any byte that rules out HTTP/2, or the whole HTTP/2 preface. Bytes are only
/// peeked, so hyper reads them again.
pub(super) async fn arrives(stream: &TcpStream, deadline: Duration) -> Option<Protocol> {
    let decided = async {
        let mut buf = [0u8; H2_PREFACE.len()];
        loop {
            let n = stream.peek(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            if decided(&buf[..n]) {
                return Some(Protocol::of(&buf[..n]));
            }
            sleep(PARTIAL_PREFACE_POLL).await;
        }
    };
    timeout(deadline, decided).await.ok().flatten()
}

/// Whether `bytes` (the start of a connection) already tell HTTP/1 from HTTP/2.
fn decided(bytes: &[u8]) -> bool {
    bytes.len() == H2_PREFACE.len() || bytes[..] != H2_PREFACE[..bytes.len()]
}

/// Reads from `stream` until the protocol is decided, as [`arrives`] does for a socket, and
/// returns the stream with those bytes put back; `None` if it closes first. The caller bounds
/// the wait.
pub(super) async fn read_decided<S: AsyncRead + Unpin>(mut stream: S) -> Option<Replay<S>> {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut n = 0;
    while n == 0 || !decided(&buf[..n]) {
        match stream.read(&mut buf[n..]).await {
            Ok(0) | Err(_) => return None,
            Ok(read) => n += read,
        }
    }
    Some(Replay::new(stream, BytesMut::from(&buf[..n])))
}

impl<S> Replay<S> {
    /// The protocol its first bytes name (those `read_decided` read).
    pub(super) fn protocol(&self) -> Protocol {
        Protocol::of(self.unread())
    }
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
        assert_eq!(
            arrives(&server, Duration::from_secs(1)).await,
            Some(Protocol::Http1)
        );
    }

    #[tokio::test]
    async fn silence_times_out() {
        let (_client, server) = pair().await;
        assert_eq!(arrives(&server, Duration::from_millis(100)).await, None);
    }

    #[tokio::test]
    async fn a_stalled_partial_h2_preface_times_out() {
        let (mut client, server) = pair().await;
        client.write_all(&H2_PREFACE[..16]).await.unwrap();
        assert_eq!(arrives(&server, Duration::from_millis(100)).await, None);
    }

    #[tokio::test]
    async fn a_complete_h2_preface_decides() {
        let (mut client, server) = pair().await;
        client.write_all(H2_PREFACE).await.unwrap();
        assert_eq!(
            arrives(&server, Duration::from_secs(1)).await,
            Some(Protocol::Http2)
        );
    }

    #[tokio::test]
    async fn read_bytes_are_replayed_before_the_rest() {
        let (mut client, server) = pair().await;
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        drop(client);
        let mut replay = read_decided(server).await.expect("decided");
        assert_eq!(replay.protocol(), Protocol::Http1);
        let mut all = Vec::new();
        replay.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"GET / HTTP/1.1\r\n\r\n");
    }

    #[tokio::test]
    async fn a_split_h2_preface_is_read_whole_and_replayed() {
        let (mut client, server) = pair().await;
        let reading = tokio::spawn(read_decided(server));
        client.write_all(&H2_PREFACE[..10]).await.unwrap();
        sleep(Duration::from_millis(20)).await;
        assert!(!reading.is_finished());
        client.write_all(&H2_PREFACE[10..]).await.unwrap();
        client.write_all(b"frames").await.unwrap();
        drop(client);
        let mut replay = reading.await.unwrap().expect("decided");
        assert_eq!(replay.protocol(), Protocol::Http2);
        let mut all = Vec::new();
        replay.read_to_end(&mut all).await.unwrap();
        assert_eq!(&all[..H2_PREFACE.len()], H2_PREFACE);
        assert_eq!(&all[H2_PREFACE.len()..], b"frames");
    }

    #[tokio::test]
    async fn a_stream_closed_inside_the_preface_is_not_served() {
        let (mut client, server) = pair().await;
        client.write_all(&H2_PREFACE[..5]).await.unwrap();
        drop(client);
        assert!(read_decided(server).await.is_none());
    }

    #[tokio::test]
    async fn a_closed_connection_is_not_served() {
        let (client, server) = pair().await;
        drop(client);
        assert_eq!(arrives(&server, Duration::from_secs(1)).await, None);
    }
}
