//! One HTTP/1.1 connection to a backend: the socket and the bytes read from it that nothing
//! has consumed yet. All I/O is polled by the task of the request using it, so nothing is
//! spawned per connection.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Free space kept in the read buffer before a read.
const READ_SPACE: usize = 16 * 1024;

#[derive(Debug)]
pub(crate) struct Conn {
    pub(super) stream: TcpStream,
    /// Read and not consumed yet.
    pub(super) buf: BytesMut,
}

impl Conn {
    /// Connects to `backend` (`host:port`) within `timeout`.
    pub(crate) async fn connect(backend: &str, timeout: Duration) -> io::Result<Conn> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(backend))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: BytesMut::new(),
        })
    }

    /// Whether a parked connection can carry a request: the backend has neither closed it nor
    /// sent anything since its last response. Costs no system call until the socket has been
    /// reported readable (by then a close or stray bytes are waiting).
    pub(crate) fn is_idle(&self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Reads what the socket has into `buf`; `Ok(0)` at the end of the stream.
    ///
    /// Through `AsyncRead::poll_read`, not `try_read_buf`: a read that does not fill the space
    /// offered tells tokio the socket is drained, so the next use of the connection (the
    /// checkout's `is_idle` above all) costs no `recv` that would only say `EAGAIN`.
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < READ_SPACE / 4 {
            self.buf.reserve(READ_SPACE);
        }
        let mut read = ReadBuf::uninit(self.buf.spare_capacity_mut());
        ready!(Pin::new(&mut self.stream).poll_read(cx, &mut read))?;
        let n = read.filled().len();
        // SAFETY: `poll_read` initialised the first `n` bytes of the spare capacity (ReadBuf
        // only counts bytes as filled once written).
        unsafe { self.buf.set_len(self.buf.len() + n) };
        Poll::Ready(Ok(n))
    }
}

/// A connection whose backend switched protocols (101): the bytes it sent after the head come
/// first, then the socket's.
#[derive(Debug)]
pub(crate) struct Upgraded(Conn);

impl Upgraded {
    pub(super) fn new(mut conn: Conn) -> Self {
        if conn.buf.is_empty() {
            // Nothing to replay: an idle tunnel holds no read buffer.
            conn.buf = BytesMut::new();
        }
        Upgraded(conn)
    }
}

impl AsyncRead for Upgraded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let conn = &mut self.0;
        if conn.buf.is_empty() {
            return Pin::new(&mut conn.stream).poll_read(cx, out);
        }
        let n = conn.buf.len().min(out.remaining());
        out.put_slice(&conn.buf[..n]);
        conn.buf.advance(n);
        if conn.buf.is_empty() {
            // Replayed: the tunnel reads the socket directly from now on, and holds no buffer.
            conn.buf = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0.stream).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0.stream).poll_shutdown(cx)
    }
}
