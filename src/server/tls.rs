//! TLS on the main listener (rustls): ALPN `h2` and `http/1.1`, TLS 1.2 and 1.3 with rustls'
//! safe defaults, and a certificate that is swapped while serving.
//!
//! The certificate lives behind an `ArcSwap` read by a `ResolvesServerCert`, so a reload
//! (SIGHUP, or a change of either file) never touches the `ServerConfig` or any open
//! connection: sessions already established keep their keys, new handshakes get the new
//! certificate. A pair that does not load (unreadable, not PEM, key not matching the
//! certificate) is logged and the previous one keeps serving.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

use super::preface::{self, Protocol};
use super::stream::ClientStream;
use crate::config::TlsSettings;
use crate::file_watch::{self, FileWatch};

/// Why a certificate and key could not be loaded; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read the TLS {what} {}: {source}", path.display())]
    Read {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The reason.
        source: std::io::Error,
    },
    /// A file is not the PEM expected.
    #[error("the TLS {what} {} is not usable PEM: {source}", path.display())]
    Pem {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The reason.
        source: pem::Error,
    },
    /// The key cannot sign, or does not belong to the certificate.
    #[error("the TLS key {} does not fit the certificate {}: {source}", key.display(), cert.display())]
    Key {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// The reason.
        source: rustls::Error,
    },
}

/// The listener's TLS side: a fixed `ServerConfig` over a swappable certificate.
#[derive(Debug)]
pub struct ServerTls {
    files: TlsSettings,
    provider: Arc<CryptoProvider>,
    config: Arc<ServerConfig>,
    live: Arc<LiveCert>,
}

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    /// New handshakes present the certificate now in the files.
    Changed,
    /// The files hold what is already served.
    Unchanged,
}

impl ServerTls {
    /// Loads the certificate chain and key named in `files` (PEM).
    pub fn load(files: &TlsSettings) -> Result<Arc<Self>, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let (key, source) = read_pair(files, &provider)?;
        let live = Arc::new(LiveCert {
            current: ArcSwap::from_pointee(key),
            source: Mutex::new(source),
        });
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("the aws-lc-rs provider supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&live) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(ServerTls {
            files: files.clone(),
            provider,
            config: Arc::new(config),
            live,
        }))
    }

    /// Re-reads both files; on success new handshakes use them, on error nothing changes.
    pub fn reload(&self) -> Result<Reloaded, TlsError> {
        let (key, source) = read_pair(&self.files, &self.provider)?;
        let mut served = self.live.source.lock().unwrap_or_else(|e| e.into_inner());
        if *served == source {
            return Ok(Reloaded::Unchanged);
        }
        self.live.current.store(Arc::new(key));
        *served = source;
        Ok(Reloaded::Changed)
    }

    /// [`ServerTls::reload`], logged; `trigger` says what asked for it.
    pub fn reload_logged(&self, trigger: &str) {
        match self.reload() {
            Ok(Reloaded::Changed) => tracing::info!(
                trigger,
                cert = %self.files.cert.display(),
                "TLS certificate reloaded"
            ),
            Ok(Reloaded::Unchanged) => {
                tracing::debug!(trigger, "TLS certificate files unchanged")
            }
            Err(error) => tracing::error!(
                trigger,
                %error,
                "TLS certificate reload failed; keeping the previous certificate"
            ),
        }
    }

    /// Reloads on every SIGHUP until the process ends.
    #[cfg(unix)]
    pub async fn reload_on_sighup(self: Arc<Self>) {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; TLS certificate reload on SIGHUP is off");
            return;
        };
        while hangups.recv().await.is_some() {
            self.reload_logged("SIGHUP");
        }
    }

    /// Reloads whenever the certificate or key file changes, for as long as the returned guard
    /// lives. Must be called inside a Tokio runtime. A watcher that cannot start is logged and
    /// `None` returned: SIGHUP still works.
    pub fn watch(self: &Arc<Self>) -> Option<CertWatch> {
        let (changed, changes) = mpsc::channel(1);
        match file_watch::watch(&[&self.files.cert, &self.files.key], changed) {
            Ok(watch) => {
                tokio::spawn(reload_on_change(Arc::clone(self), changes));
                Some(CertWatch { _watch: watch })
            }
            Err(error) => {
                tracing::warn!(%error, "cannot watch the TLS files; reload them with SIGHUP");
                None
            }
        }
    }

    /// An acceptor for new connections (cheap: it shares the config).
    pub(super) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.config))
    }
}

/// Keeps the file watch of [`ServerTls::watch`] running; dropping it stops the watch.
pub struct CertWatch {
    _watch: FileWatch,
}

impl std::fmt::Debug for CertWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertWatch")
    }
}

/// The certificate new handshakes get, and the file bytes it was built from (to tell a real
/// change from a touch).
#[derive(Debug)]
struct LiveCert {
    current: ArcSwap<CertifiedKey>,
    source: Mutex<Vec<u8>>,
}

impl ResolvesServerCert for LiveCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Completes the handshake and reads until the HTTP version is known (returned with the
/// stream), both within `deadline` (a client stalling in either would otherwise hold a
/// connection slot, like a slow header sender). `None` when the client fails or is too slow; the reason is logged at debug level.
pub(super) async fn accept(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    deadline: Duration,
) -> Option<(ClientStream, Protocol)> {
    let peer = stream.peer_addr().ok();
    let accepted = timeout(deadline, async {
        let session = acceptor
            .accept(stream)
            .await
            .map_err(|error| tracing::debug!(?peer, %error, "TLS handshake failed"))
            .ok()?;
        preface::read_decided(session).await
    })
    .await;
    match accepted {
        Ok(Some(stream)) => {
            let protocol = stream.protocol();
            Some((ClientStream::Tls(Box::new(stream)), protocol))
        }
        Ok(None) => None,
        Err(_) => {
            tracing::debug!(
                ?peer,
                "TLS handshake or first request not within the header read timeout; closing"
            );
            None
        }
    }
}

/// Reads and checks both files; returns the pair and the bytes it came from.
fn read_pair(
    files: &TlsSettings,
    provider: &CryptoProvider,
) -> Result<(CertifiedKey, Vec<u8>), TlsError> {
    let read = |what, path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            what,
            path: path.to_path_buf(),
            source,
        })
    };
    let cert_pem = read("certificate", &files.cert)?;
    let key_pem = read("key", &files.key)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error("certificate", &files.cert))?;
    if chain.is_empty() {
        return Err(pem_error("certificate", &files.cert)(
            pem::Error::NoItemsFound,
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(pem_error("key", &files.key))?;
    let certified =
        CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Key {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        })?;
    let mut source = cert_pem;
    source.extend_from_slice(&key_pem);
    Ok((certified, source))
}

fn pem_error<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(pem::Error) -> TlsError + 'a {
    move |source| TlsError::Pem {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Waits for a change, lets the writer finish, reloads; ends when the watch is dropped.
async fn reload_on_change(tls: Arc<ServerTls>, mut changes: mpsc::Receiver<()>) {
    while changes.recv().await.is_some() {
        if !file_watch::settle(&mut changes).await {
            return;
        }
        tls.reload_logged("file change");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_certificate_is_named_in_the_error() {
        let files = TlsSettings {
            cert: "/nonexistent/gatehouse/tls.crt".into(),
            key: "/nonexistent/gatehouse/tls.key".into(),
        };
        let error = ServerTls::load(&files).unwrap_err().to_string();
        assert!(
            error.contains("certificate /nonexistent/gatehouse/tls.crt"),
            "{error}"
        );
    }
}
