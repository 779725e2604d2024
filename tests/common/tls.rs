//! TLS test helpers: self-signed certificates made at test time (rcgen), a rustls client that
//! trusts exactly the given certificates, and the real binary serving TLS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::binary::{free_addr, Gatehouse};
use super::{read_reply, Reply, TestBody};

/// The name every test certificate is issued for (and clients ask for).
pub const SERVER_NAME: &str = "localhost";

/// A self-signed certificate for [`SERVER_NAME`] and its key, as PEM and DER.
pub struct TestCert {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Private key (PKCS#8), PEM.
    pub key_pem: String,
    /// Certificate, DER (what a client sees in the handshake).
    pub der: CertificateDer<'static>,
}

impl TestCert {
    /// A fresh certificate with the common name `subject` and the serial number `serial`.
    pub fn new(subject: &str, serial: u64) -> Self {
        let mut params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])
            .expect("valid subject alternative name");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, subject);
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        let key = rcgen::KeyPair::generate().expect("generate a key pair");
        let cert = params.self_signed(&key).expect("self-sign");
        TestCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// Writes the certificate and key to `cert` and `key`.
    pub fn write(&self, cert: &Path, key: &Path) {
        std::fs::write(cert, &self.cert_pem).expect("write certificate");
        std::fs::write(key, &self.key_pem).expect("write key");
    }
}

/// Where a test keeps the proxy's certificate and key: its own directory, so nothing else
/// written there (logs, the store) looks like a certificate change.
pub struct CertFiles {
    /// The certificate file.
    pub cert: PathBuf,
    /// The key file.
    pub key: PathBuf,
    _dir: super::binary::TempDir,
}

impl CertFiles {
    /// A new directory holding `initial`.
    pub fn new(initial: &TestCert) -> Self {
        let dir = super::binary::TempDir::new("certs");
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        initial.write(&cert, &key);
        CertFiles {
            cert,
            key,
            _dir: dir,
        }
    }

    /// The `tls:` lines of a config using these files.
    pub fn yaml(&self) -> String {
        tls_yaml(&self.cert, &self.key)
    }
}

/// The `tls:` block of a config.
pub fn tls_yaml(cert: &Path, key: &Path) -> String {
    format!(
        "tls:\n  cert: {}\n  key: {}\n",
        cert.display(),
        key.display()
    )
}

/// A client config trusting only `trusted`, offering `alpn` (e.g. `[b"h2"]`).
pub fn client_config(trusted: &[&TestCert], alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in trusted {
        roots.add(cert.der.clone()).expect("add trust anchor");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Connects to `addr` and completes a TLS handshake for [`SERVER_NAME`]; panics on failure.
pub async fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> TlsStream<TcpStream> {
    try_connect(addr, config)
        .await
        .unwrap_or_else(|e| panic!("TLS handshake with {addr} failed: {e}"))
}

/// [`connect`], returning the error instead of panicking.
pub async fn try_connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(SERVER_NAME).expect("valid server name");
    TlsConnector::from(config).connect(name, tcp).await
}

/// The certificate the server presented.
pub fn presented(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    let (_, session) = stream.get_ref();
    session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("the server presented a certificate")
        .clone()
        .into_owned()
}

/// The ALPN protocol agreed in the handshake.
pub fn alpn(stream: &TlsStream<TcpStream>) -> Option<Vec<u8>> {
    stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
}

/// One HTTP connection over an established TLS stream (HTTP/1.1 or HTTP/2).
pub enum Sender {
    /// HTTP/1.1.
    Http1(hyper::client::conn::http1::SendRequest<TestBody>),
    /// HTTP/2.
    Http2(hyper::client::conn::http2::SendRequest<TestBody>),
}

impl Sender {
    /// An HTTP/1.1 connection over `stream`.
    pub async fn http1(stream: TlsStream<TcpStream>) -> Self {
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(connection);
        Sender::Http1(sender)
    }

    /// An HTTP/2 connection over `stream`.
    pub async fn http2(stream: TlsStream<TcpStream>) -> Self {
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("HTTP/2 handshake");
        tokio::spawn(connection);
        Sender::Http2(sender)
    }

    /// Sends `request` and reads the whole response.
    pub async fn send(&mut self, request: Request<TestBody>) -> Reply {
        read_reply(self.send_streaming(request).await).await
    }

    /// Sends `request`; the body is left unread.
    pub async fn send_streaming(&mut self, request: Request<TestBody>) -> Response<Incoming> {
        let sent = match self {
            Sender::Http1(sender) => {
                sender.ready().await.expect("connection ready");
                sender.send_request(request).await
            }
            Sender::Http2(sender) => {
                sender.ready().await.expect("connection ready");
                sender.send_request(request).await
            }
        };
        sent.unwrap_or_else(|e| panic!("request over TLS failed: {e:?}"))
    }
}

/// The real binary serving TLS on `listen`, with a cleartext `admin_listen` used for the
/// readiness check (`Gatehouse::start` polls `/health` in cleartext).
pub struct TlsGatehouse {
    /// The running process.
    pub process: Gatehouse,
    /// Where it serves TLS.
    pub addr: SocketAddr,
}

impl TlsGatehouse {
    /// Starts `gatehouse serve` with the config `config(listen, admin_listen)`.
    pub async fn start(config: impl Fn(SocketAddr, SocketAddr) -> String) -> Self {
        let chosen = Mutex::new(None);
        let process = Gatehouse::start(&["serve"], |admin| {
            let listen = free_addr();
            *chosen.lock().unwrap() = Some(listen);
            config(listen, admin)
        })
        .await;
        let addr = chosen.lock().unwrap().expect("a listen address was chosen");
        TlsGatehouse { process, addr }
    }
}

/// A request with `Host: host` (HTTP/1.1) or `:authority` (HTTP/2, absolute URI).
pub fn get(host: &str, path: &str, http2: bool) -> Request<TestBody> {
    let builder = if http2 {
        Request::get(format!("https://{host}{path}"))
    } else {
        Request::get(path).header(http::header::HOST, host)
    };
    builder.body(super::empty()).expect("valid request")
}
