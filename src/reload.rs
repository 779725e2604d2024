//! Config reload: build a whole new snapshot from the file and swap it in only if it is valid.

use std::path::Path;
use std::sync::Arc;

use crate::config::{self, ConfigError};
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
    let old = state.routes.load_full();
    let new = Router::build(&settings, &state.metrics, Some(&old));
    for (service, backend) in old.departed_backends(&new) {
        state.metrics.forget_backend(&service, &backend);
    }
    state.routes.store(Arc::new(new));
    tracing::info!(config = %path.display(), services = settings.services.len(), "config reloaded");
    Ok(())
}

/// Reloads on every SIGHUP until the process ends. Listener and limit changes need a restart.
#[cfg(unix)]
pub async fn on_sighup(path: std::path::PathBuf, state: Arc<AppState>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; config reload is off");
        return;
    };
    while hangups.recv().await.is_some() {
        if let Err(error) = reload(&path, &state) {
            tracing::error!(%error, "config reload failed; keeping the previous config");
        }
    }
}
