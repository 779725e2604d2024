//! Client helpers shared by the integration tests.

#![allow(dead_code)] // Each test crate uses a different subset.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::Body;
use hyper::header::HeaderMap;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A fully read response.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("response body is JSON")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers[name].to_str().expect("ASCII header")
    }
}

/// An HTTP/1.1 connection to the backend, reusable for several requests.
pub struct Conn {
    sender: hyper::client::conn::http1::SendRequest<BoxBody<Bytes, BoxError>>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Conn {
    pub async fn open(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect to backend");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(conn);
        Conn { sender }
    }

    pub async fn send<B>(&mut self, req: Request<B>) -> Reply
    where
        B: Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let req = req.map(|body| body.map_err(Into::into).boxed());
        let res = self.sender.send_request(req).await.expect("response");
        let (parts, body) = res.into_parts();
        let body = body.collect().await.expect("response body").to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }
}

/// Sends one request on a fresh HTTP/1.1 connection.
pub async fn send<B>(addr: SocketAddr, req: Request<B>) -> Reply
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    Conn::open(addr).await.send(req).await
}

/// Sends a body-less GET for `path` on a fresh connection.
pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    send(
        addr,
        Request::get(path).body(Empty::<Bytes>::new()).unwrap(),
    )
    .await
}
