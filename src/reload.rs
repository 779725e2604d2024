//! Config reload: build a whole new snapshot from the file and swap it in only if it is valid;
//! on SIGHUP and when the file changes on disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::config::{self, ConfigError};
use crate::file_watch;
use crate::router::Router;
use crate::state::AppState;

/// Re-reads `path` and swaps the routing table; on error the old table keeps serving. Either
/// way the outcome is counted in `gatehouse_config_reloads_total`.
pub fn reload(path: &Path, state: &AppState) -> Result<(), ConfigError> {
    let result = swap(path, state);
    state.metrics.reload(result.is_ok());
    result
}

fn swap(path: &Path, state: &AppState) -> Result<(), ConfigError> {
    let settings = config::load(path)?;
    refuse_assertions_without_keys(path, &settings, state)?;
    // The new address first: if it cannot be bound, nothing of the new config is applied.
    if let Some(listen) = state.listen.get() {
        listen
            .rebind(settings.listen)
            .map_err(|error| ConfigError {
                path: path.display().to_string(),
                location: None,
                message: format!("cannot listen on {}: {error}", settings.listen),
            })?;
    }
    let old = state.routes.load_full();
    let tls = state.proto == "https";
    let new = Router::build(&settings, &state.metrics, Some(&old), tls);
    for (service, backend) in old.departed_backends(&new) {
        state.metrics.forget_backend(&service, &backend);
    }
    state.routes.store(Arc::new(new));
    tracing::info!(config = %path.display(), services = settings.services.len(), "config reloaded");
    Ok(())
}

/// `assertion: true` needs the store's signing keys, which are opened at start only when a
/// signing-key secret is configured: without them the reload is refused rather than forwarding
/// requests the backends would reject.
fn refuse_assertions_without_keys(
    path: &Path,
    settings: &config::Settings,
    state: &AppState,
) -> Result<(), ConfigError> {
    if state.auth.assertions.is_some() {
        return Ok(());
    }
    match settings.services.iter().find(|service| service.assertion) {
        Some(service) => Err(ConfigError {
            path: path.display().to_string(),
            location: None,
            message: format!(
                "service {} has assertion: true, but Gatehouse started without signing keys: \
                 set GATEHOUSE_KEY_SECRET or auth.keys.secret_file and restart",
                service.name.0
            ),
        }),
        None => Ok(()),
    }
}

/// Reloads on every SIGHUP, and when the config file changes on disk, until the process ends.
/// A new `listen` address is bound and served without dropping open connections; `limits`
/// (but `body_read_timeout` and `min_body_rate`), `tls`, `database`, `auth`, `trusted_proxies`,
/// `workers` and `admin_listen` changes need a restart.
///
/// The watch and the signal handler are installed when this is called, not when the returned
/// future first runs: a change (or a SIGHUP) right after start is never missed.
#[cfg(unix)]
pub fn on_sighup(path: PathBuf, state: Arc<AppState>) -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let (changed, mut changes) = mpsc::channel::<()>(1);
    let watch = file_watch::watch(&[&path], changed)
        .inspect_err(
            |error| tracing::warn!(%error, "cannot watch the config file; reload on SIGHUP only"),
        )
        .ok();
    let mut hangups = signal(SignalKind::hangup())
        .inspect_err(|error| tracing::warn!(%error, "cannot listen for SIGHUP"))
        .ok();
    async move {
        // Kept alive for as long as this task runs.
        let _watch = watch;
        // Unknown at first: the file may have changed between the start's read and now, so
        // the first change event reloads whatever is there (at worst once more than needed).
        let mut applied = None;
        loop {
            let forced = tokio::select! {
                Some(()) = hangup(&mut hangups) => true,
                Some(()) = changes.recv() => {
                    file_watch::settle(&mut changes).await;
                    false
                }
                else => return,
            };
            // Editors and Kubernetes touch files without changing them; only a new text (or a
            // SIGHUP) reloads.
            let now = fingerprint(&path);
            if forced || now != applied {
                applied = now;
                report(reload(&path, &state));
            }
        }
    }
}

#[cfg(unix)]
async fn hangup(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

fn report(result: Result<(), ConfigError>) {
    if let Err(error) = result {
        tracing::error!(%error, "config reload failed; keeping the previous config");
    }
}

/// The file's text, to tell a real change from a touch (`None` when unreadable).
fn fingerprint(path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path).ok()
}
