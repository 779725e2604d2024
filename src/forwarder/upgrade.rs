//! `Upgrade` (WebSocket and friends) as a tunnel: the request goes to the backend with its
//! `Upgrade` header, and only when the backend really answers `101 Switching Protocols` are the
//! two connections joined, byte for byte, until either side closes or the tunnel has carried
//! nothing either way for the service's `timeouts.tunnel_idle`.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::h1::BackendBody;
use crate::request::ConnectionSlot;

/// Whether the client asks to switch to WebSocket (HTTP/1.1 `Connection: upgrade` +
/// `Upgrade: websocket`). Other protocols are not tunnelled: an `h2c` upgrade through a lenient
/// backend would let the client speak HTTP/2 past the proxy's authentication and header rules
/// (h2c smuggling), so their `Upgrade` header is dropped like any hop-by-hop header.
pub(super) fn requested<B>(request: &Request<B>) -> bool {
    request.version() == Version::HTTP_11
        && request
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
        && request
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// The client side of a tunnel: its upgrade handle, and its connection's slot, which the
/// tunnel holds so it counts as a connection for as long as it lives.
pub(super) struct ClientSide {
    upgrade: OnUpgrade,
    slot: Option<ConnectionSlot>,
}

/// Takes the client connection's upgrade handle (and slot) out of the request.
pub(super) fn client_side(request: &mut Request<Incoming>) -> ClientSide {
    ClientSide {
        slot: request.extensions_mut().remove::<ConnectionSlot>(),
        upgrade: hyper::upgrade::on(request),
    }
}

/// The protocol asked for, before the hop-by-hop headers are stripped.
pub(super) fn protocol(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(header::UPGRADE)
        .cloned()
        .unwrap_or(HeaderValue::from_static("websocket"))
}

/// Puts back the two headers the backend needs to switch (stripping removed them as hop-by-hop).
pub(super) fn restore_request_headers(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// When the backend switched protocols, keeps the 101's `Upgrade`/`Connection` for the client
/// and joins the two connections in a task of their own; any other answer is passed on as a
/// plain response (with hop-by-hop headers removed) and the client's upgrade is dropped.
pub(super) fn tunnel_if_switched(
    response: &mut Response<BackendBody>,
    client_side: ClientSide,
    idle: Duration,
) {
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        super::headers::strip_hop_by_hop(response.headers_mut());
        return;
    }
    let Some(upstream) = response.body_mut().take_upgraded() else {
        return;
    };
    tokio::spawn(async move {
        let _slot = client_side.slot;
        match client_side.upgrade.await {
            Ok(client) => join(TokioIo::new(client), upstream, idle).await,
            Err(error) => tracing::debug!(%error, "the client's upgrade did not complete"),
        }
    });
}

/// Copies both ways until both sides have closed, or nothing has moved either way for `idle`.
async fn join<C, U>(client: C, upstream: U, idle: Duration)
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Arc::new(Activity::new());
    let mut client = Stamped::new(client, &activity);
    let mut upstream = Stamped::new(upstream, &activity);
    let mut up = Direction::default();
    let mut down = Direction::default();
    let copy = std::future::poll_fn(|cx| {
        let up_done = up.poll(cx, &mut client, &mut upstream)?.is_ready();
        let down_done = down.poll(cx, &mut upstream, &mut client)?.is_ready();
        match up_done && down_done {
            true => Poll::Ready(Ok::<(), io::Error>(())),
            false => Poll::Pending,
        }
    });
    tokio::pin!(copy);
    let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
    loop {
        let silent = activity.silent_ms();
        if silent >= idle_ms {
            tracing::debug!(
                ?idle,
                "tunnel closed after carrying nothing for its idle timeout"
            );
            return;
        }
        tokio::select! {
            ended = &mut copy => {
                if let Err(error) = ended {
                    tracing::debug!(%error, "upgraded connection ended with an error");
                }
                return;
            }
            // Checked again when the deadline as last known comes; traffic meanwhile moved it.
            () = tokio::time::sleep(Duration::from_millis(idle_ms - silent)) => {}
        }
    }
}

/// Bytes read at a time, on the stack.
const COPY_CHUNK: usize = 16 * 1024;

/// One direction of a tunnel. Unlike `tokio::io::copy_bidirectional`, which keeps an 8 KiB
/// buffer per direction for the tunnel's life, bytes are read onto the stack and written at
/// once; only what the other side does not take at once waits on the heap, until it does. An
/// idle tunnel holds no buffer (nginx keeps its proxy buffers).
#[derive(Default)]
struct Direction {
    /// Read and not written yet, from `at` on.
    pending: Vec<u8>,
    at: usize,
    /// Written since the last flush.
    unflushed: bool,
    /// The source has ended.
    read_done: bool,
    /// The end has been passed on (the destination shut down for writing).
    done: bool,
}

impl Direction {
    /// Moves what `from` has to `to`; ready once `from` has ended and `to` has been shut down.
    fn poll<R, W>(&mut self, cx: &mut Context<'_>, from: &mut R, to: &mut W) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        loop {
            while self.at < self.pending.len() {
                let n =
                    std::task::ready!(Pin::new(&mut *to).poll_write(cx, &self.pending[self.at..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.at += n;
                self.unflushed = true;
            }
            if self.pending.capacity() != 0 {
                self.pending = Vec::new();
                self.at = 0;
            }
            if self.read_done {
                std::task::ready!(Pin::new(&mut *to).poll_shutdown(cx))?;
                self.done = true;
                return Poll::Ready(Ok(()));
            }
            let mut stack = [std::mem::MaybeUninit::<u8>::uninit(); COPY_CHUNK];
            let mut buf = ReadBuf::uninit(&mut stack);
            match Pin::new(&mut *from).poll_read(cx, &mut buf) {
                Poll::Ready(result) => result?,
                Poll::Pending => {
                    // Nothing more to send for now: what was written goes out.
                    if self.unflushed {
                        std::task::ready!(Pin::new(&mut *to).poll_flush(cx))?;
                        self.unflushed = false;
                    }
                    return Poll::Pending;
                }
            }
            let data = buf.filled();
            if data.is_empty() {
                self.read_done = true;
                continue;
            }
            let written = match Pin::new(&mut *to).poll_write(cx, data) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => 0,
            };
            self.unflushed |= written > 0;
            if written < data.len() {
                self.pending = data[written..].to_vec();
                self.at = 0;
            }
        }
    }
}

/// When a tunnel last carried a byte, on tokio's clock (so a test can pause it).
struct Activity {
    start: tokio::time::Instant,
    /// Milliseconds after `start`.
    last: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: tokio::time::Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn stamp(&self) {
        self.last.store(self.now_ms(), Ordering::Relaxed);
    }

    fn silent_ms(&self) -> u64 {
        self.now_ms()
            .saturating_sub(self.last.load(Ordering::Relaxed))
    }
}

/// One side of a tunnel, stamping the shared activity whenever bytes arrive from it (each byte
/// written was read from the other side, so reads are all the activity there is).
struct Stamped<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Stamped<T> {
    fn new(inner: T, activity: &Arc<Activity>) -> Self {
        Stamped {
            inner,
            activity: Arc::clone(activity),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Stamped<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.stamp();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Stamped<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Both ways at once through pipes of 61 bytes, so nearly every write is partial and the
    /// rest waits on the heap; then each side's end is passed on, and the tunnel ends.
    #[tokio::test]
    async fn a_tunnel_carries_both_ways_under_back_pressure_and_passes_each_end_on() {
        let (client, client_far) = tokio::io::duplex(61);
        let (upstream, upstream_far) = tokio::io::duplex(61);
        let tunnel = tokio::spawn(join(client, upstream, Duration::from_secs(60)));
        let up: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let down: Vec<u8> = (0..150_000u32).map(|i| (i % 241) as u8).collect();
        let pump = |mut side: tokio::io::DuplexStream, send: Vec<u8>| async move {
            let (mut read, mut write) = tokio::io::split(&mut side);
            let sending = async {
                write.write_all(&send).await.unwrap();
                write.shutdown().await.unwrap();
            };
            let mut got = Vec::new();
            let receiving = read.read_to_end(&mut got);
            let ((), received) = tokio::join!(sending, receiving);
            received.unwrap();
            got
        };
        let (at_upstream, at_client) = tokio::join!(
            pump(upstream_far, down.clone()),
            pump(client_far, up.clone())
        );
        assert!(
            at_upstream == up,
            "the upstream got {} bytes",
            at_upstream.len()
        );
        assert!(
            at_client == down,
            "the client got {} bytes",
            at_client.len()
        );
        tokio::time::timeout(Duration::from_secs(5), tunnel)
            .await
            .expect("the tunnel ends once both sides have")
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_tunnel_closes_after_its_idle_time_and_a_busy_one_does_not() {
        let (client, mut client_far) = tokio::io::duplex(64);
        let (upstream, mut upstream_far) = tokio::io::duplex(64);
        let tunnel = tokio::spawn(join(client, upstream, Duration::from_secs(10)));
        // Traffic every 6 s keeps it open well past 10 s (the paused clock jumps, no real wait).
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_secs(6)).await;
            client_far.write_all(b"ping").await.unwrap();
            let mut got = [0u8; 4];
            upstream_far.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"ping");
        }
        assert!(!tunnel.is_finished());
        tokio::time::sleep(Duration::from_secs(11)).await;
        tokio::task::yield_now().await;
        assert!(
            tunnel.is_finished(),
            "a tunnel silent for 11 s of 10 is still open"
        );
    }
}
