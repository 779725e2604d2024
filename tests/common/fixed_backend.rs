//! A backend that answers every request with the same headers, for tests about what the proxy
//! adds to (or keeps of) a backend's response headers.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// A running fixed-answer backend.
pub struct FixedBackend {
    /// Where it listens.
    pub addr: SocketAddr,
    requests: Arc<AtomicUsize>,
}

impl FixedBackend {
    /// Answers `200 fixed` with `headers` (name, value) to every request, on `127.0.0.1:0`.
    pub async fn start(headers: &[(&str, &str)]) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let headers: Arc<Vec<(HeaderName, HeaderValue)>> = Arc::new(
            headers
                .iter()
                .map(|(n, v)| (n.parse().expect("name"), v.parse().expect("value")))
                .collect(),
        );
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&requests);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (headers, counter) = (Arc::clone(&headers), Arc::clone(&counter));
                let service = service_fn(move |_request| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let mut response = Response::new(Full::new(Bytes::from_static(b"fixed")));
                    for (name, value) in headers.iter() {
                        response.headers_mut().append(name.clone(), value.clone());
                    }
                    async move { Ok::<_, std::convert::Infallible>(response) }
                });
                tokio::spawn(async move {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FixedBackend { addr, requests }
    }

    /// Requests answered so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}
