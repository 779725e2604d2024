//! One client connection as hyper sees it: a cleartext socket or a TLS session, behind one
//! concrete type so a single connection builder serves both without dynamic dispatch.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::replay::Replay;

/// A client connection ready for hyper.
#[derive(Debug)]
pub(super) enum ClientStream {
    /// Cleartext (HTTP/1.1 or h2c); nothing was read from it yet.
    Plain(TcpStream),
    /// TLS, with the first bytes already read (to bound the wait for them) and put back.
    /// Boxed: a TLS session is large and cleartext connections should not pay for it.
    Tls(Box<Replay<TlsStream<TcpStream>>>),
    /// Cleartext HTTP/1.1 handed over by Gatehouse's own server (`h1`) with the bytes it had
    /// read but not served. Boxed: most cleartext connections never get here.
    Continued(Box<Replay<TcpStream>>),
}

macro_rules! delegate {
    ($self:ident, $stream:ident => $call:expr) => {
        match $self.get_mut() {
            ClientStream::Plain($stream) => {
                let $stream = Pin::new($stream);
                $call
            }
            ClientStream::Tls($stream) => {
                let $stream = Pin::new(&mut **$stream);
                $call
            }
            ClientStream::Continued($stream) => {
                let $stream = Pin::new(&mut **$stream);
                $call
            }
        }
    };
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, stream => stream.poll_read(cx, buf))
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, stream => stream.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, stream => stream.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientStream::Plain(stream) => stream.is_write_vectored(),
            ClientStream::Tls(stream) => stream.is_write_vectored(),
            ClientStream::Continued(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, stream => stream.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, stream => stream.poll_shutdown(cx))
    }
}
