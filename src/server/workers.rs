//! Thread per core: several single-threaded runtimes accept from one listening socket, like
//! nginx workers. Each keeps its connections and its upstream pool to itself, so a request
//! never crosses threads; measured against one multi-threaded runtime this cut proxy CPU per
//! request by about a quarter (figures in the commit that introduced it).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::accept::{serve_worker, ServerOptions};
use super::listen::Listen;
use crate::state::AppState;

/// Serves `listener` (bound for the config's `requested` address) with `workers` threads (this
/// one included) until `shutdown` completes,
/// then every worker stops accepting and drains its in-flight requests (bounded by
/// `shutdown_timeout`); returns when all have finished.
pub async fn serve_workers(
    listener: TcpListener,
    requested: SocketAddr,
    state: Arc<AppState>,
    options: ServerOptions,
    workers: usize,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(options.max_connections));
    let (stop, stopped) = watch::channel(false);
    let listen = Arc::new(Listen::new(listener.into_std()?, requested));
    // Reloads reach the socket through the state (a changed `listen` rebinds).
    let _ = state
        .listen
        .set(Arc::clone(&listen) as Arc<dyn crate::state::Rebind>);
    let mut threads = Vec::new();
    for index in 1..workers.max(1) {
        let (state, options, permits) = (Arc::clone(&state), options.clone(), Arc::clone(&permits));
        let sockets = listen.subscribe();
        let mut stopped = stopped.clone();
        let until_stopped = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        threads.push(spawn_worker(index, move || async move {
            serve_worker(sockets, state, options, permits, until_stopped).await
        })?);
    }
    let closing = Arc::clone(&listen);
    let shutdown = async move {
        shutdown.await;
        closing.close();
        let _ = stop.send(true);
    };
    let auth = Arc::clone(&state.auth);
    let result = serve_worker(listen.subscribe(), state, options, permits, shutdown).await;
    let joined = tokio::task::spawn_blocking(move || {
        threads
            .into_iter()
            .map(JoinHandle::join)
            .collect::<Vec<_>>()
    })
    .await
    .map_err(io::Error::other)?;
    for worker in joined {
        worker.map_err(|_| io::Error::other("a worker thread panicked"))??;
    }
    // Every request has ended: its audit events, still queued, go to the store before the
    // process does.
    if !auth.audit.flush(AUDIT_FLUSH).await {
        tracing::warn!("stopping with audit events not yet stored (they are in the log)");
    }
    result
}

/// How long a stop waits for queued audit events to reach the store.
const AUDIT_FLUSH: std::time::Duration = std::time::Duration::from_secs(3);

fn spawn_worker<F, Fut>(index: usize, serve: F) -> io::Result<JoinHandle<io::Result<()>>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = io::Result<()>>,
{
    std::thread::Builder::new()
        .name(format!("gatehouse-worker-{index}"))
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(serve())
        })
}
