//! `gatehouse probe URL`: a health check for container runtimes, so images need no curl. GETs an
//! `http://host:port/path` URL and succeeds on a 2xx answer within the timeout.

use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Uri};
use http_body_util::Empty;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Not an `http://host:port/path` URL.
    #[error("not an http:// URL: {0}")]
    BadUrl(String),
    /// No answer in time.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    /// Could not connect or exchange.
    #[error("{0}")]
    Failed(String),
    /// Answered, but not 2xx.
    #[error("answered {0}")]
    Status(http::StatusCode),
}

/// GETs `url`; `Ok` with the status when it is 2xx.
pub async fn probe(url: &str, timeout: Duration) -> Result<http::StatusCode, ProbeError> {
    let uri: Uri = url.parse().map_err(|_| ProbeError::BadUrl(url.into()))?;
    let authority = match (uri.scheme_str(), uri.authority()) {
        (Some("http"), Some(authority)) => authority.clone(),
        _ => return Err(ProbeError::BadUrl(url.into())),
    };
    let address = match authority.port_u16() {
        Some(_) => authority.as_str().to_string(),
        None => format!("{}:80", authority.host()),
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let exchange = async {
        let failed = |e: &dyn std::fmt::Display| ProbeError::Failed(e.to_string());
        let stream = TcpStream::connect(&address).await.map_err(|e| failed(&e))?;
        let (mut sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| failed(&e))?;
        tokio::spawn(connection);
        let request = Request::get(path)
            .header(header::HOST, authority.as_str())
            .header(header::USER_AGENT, "gatehouse-probe")
            .body(Empty::<Bytes>::new())
            .map_err(|e| failed(&e))?;
        let response = sender.send_request(request).await.map_err(|e| failed(&e))?;
        Ok(response.status())
    };
    let status = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ProbeError::TimedOut(timeout))??;
    if status.is_success() {
        Ok(status)
    } else {
        Err(ProbeError::Status(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_http_urls_are_probed() {
        for url in ["https://a/health", "a:1/health", "http:///x"] {
            let err = probe(url, Duration::from_secs(1)).await.unwrap_err();
            assert!(matches!(err, ProbeError::BadUrl(_)), "{url}: {err}");
        }
    }

    #[tokio::test]
    async fn a_closed_port_fails() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/health");
        assert!(matches!(
            probe(&url, Duration::from_secs(1)).await,
            Err(ProbeError::Failed(_))
        ));
    }
}
