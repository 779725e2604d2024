//! The HTTP backend that Gatehouse's integration tests and load benchmarks
//! put behind the proxy.
//!
//! Every request is answered with a JSON echo of what arrived (method, path
//! and query, headers, body length), so a test can assert on exactly what
//! the proxy forwarded. A few paths add behaviour:
//!
//! * `/slow/SECONDS` waits (fractions allowed) before answering;
//! * `/status/CODE` answers with that status (200–999; anything else is 400);
//! * `/bytes/N` streams `N` bytes of `x` instead of the echo.
//!
//! With `--jwks URL` ([`spawn_verifying`]), every request must carry a valid
//! `X-Gatehouse-Assertion` (401 otherwise) and the echo adds its verified claims as
//! `assertion` (see `assertion.rs`).
//!
//! Each response carries `x-backend: NAME` so load-balancing tests can tell
//! backends apart. Request and response bodies are streamed, never buffered,
//! so multi-gigabyte transfers run in constant memory and the backend stays
//! cheap enough not to be the bottleneck of a benchmark.

mod assertion;
mod body;
mod handler;

pub use assertion::AssertionVerifier;

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::handler::Backend;

/// A body of `len` bytes of `x`, produced 64 KiB at a time from one static buffer, so tests can
/// push gigabytes without holding them in memory.
pub fn generated_body(
    len: u64,
) -> impl hyper::body::Body<Data = bytes::Bytes, Error = std::convert::Infallible> + Send + 'static
{
    body::ResponseBody::generated(len)
}

/// How long to pause after an accept error such as `EMFILE`: retrying at
/// once would spin on the same error, while a short pause lets in-flight
/// connections finish and free descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves HTTP/1.1 (with keep-alive) and cleartext HTTP/2 on `listener`
/// forever, answering as the backend called `name`.
///
/// Each connection runs in its own tokio task. Accept errors are reported on
/// stderr and retried, so running out of file descriptors under load slows
/// the backend down instead of stopping it.
///
/// # Panics
///
/// Panics if `name` is not a valid HTTP header value (it is sent back in
/// `x-backend`).
pub async fn serve(listener: TcpListener, name: String) {
    run(listener, Arc::new(Backend::new(name))).await;
}

/// [`serve`], requiring a valid `X-Gatehouse-Assertion` on every request when `verifier`.
pub async fn serve_verifying(
    listener: TcpListener,
    name: String,
    verifier: Option<AssertionVerifier>,
) {
    run(listener, Arc::new(Backend::verifying(name, verifier))).await;
}

/// [`spawn`] for a backend that verifies assertions with `verifier`.
pub async fn spawn_verifying(name: &str, verifier: AssertionVerifier) -> SocketAddr {
    spawn_backend(Arc::new(Backend::verifying(
        name.to_owned(),
        Some(verifier),
    )))
    .await
}

/// Binds `127.0.0.1:0`, runs [`serve`] on the current tokio runtime and
/// returns the bound address. The server lives as long as the runtime.
///
/// # Panics
///
/// Panics if called outside a tokio runtime, if no loopback port can be
/// bound, or if `name` is not a valid HTTP header value.
pub async fn spawn(name: &str) -> SocketAddr {
    // Built before spawning so a bad name panics in the caller, not in a
    // detached task where the test would only see connection errors.
    spawn_backend(Arc::new(Backend::new(name.to_owned()))).await
}

/// Binds `127.0.0.1:0` and serves `backend` there from a spawned task.
async fn spawn_backend(backend: Arc<Backend>) -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener
        .local_addr()
        .expect("local address of bound listener");
    tokio::spawn(run(listener, backend));
    addr
}

async fn run(listener: TcpListener, backend: Arc<Backend>) {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(err) if is_peer_error(&err) => continue,
            Err(err) => {
                eprintln!("gatehouse-backend: accept failed, retrying: {err}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Small JSON replies must not wait for the client's delayed ACK.
        if let Err(err) = stream.set_nodelay(true) {
            eprintln!("gatehouse-backend: cannot set TCP_NODELAY: {err}");
        }
        let backend = Arc::clone(&backend);
        let builder = Arc::clone(&builder);
        tokio::spawn(async move {
            let service = service_fn(move |req| handler::handle(Arc::clone(&backend), req));
            // Connection errors are clients hanging up mid-exchange, which
            // timeout tests and benchmarks do on purpose; reporting them
            // would only bury real problems.
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Errors caused by one peer that do not affect the listener itself.
fn is_peer_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
    )
}
