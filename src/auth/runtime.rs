//! The control runtime: a small multi-threaded tokio runtime of its own for database
//! connections, the revocation feed and password hashing.
//!
//! The proxy's workers are single-threaded runtimes; a database connection opened on one of them
//! would only make progress while that worker polls it. Keeping all store I/O here means any
//! worker can await a store call, and a slow database or a login storm never sits on a worker.

use std::future::Future;

use tokio::runtime::{Builder, Runtime};

/// Owns the runtime; dropping it stops its tasks without blocking the caller.
#[derive(Debug)]
pub struct ControlRuntime {
    runtime: Option<Runtime>,
    cores: usize,
}

impl ControlRuntime {
    /// One async thread (store I/O is light) and a blocking pool for hashing.
    pub fn start() -> std::io::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let runtime = Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(cores + 2)
            .thread_name("gatehouse-control")
            .enable_all()
            .build()?;
        Ok(ControlRuntime {
            runtime: Some(runtime),
            cores,
        })
    }

    /// CPU cores of the machine: the password hashing concurrency.
    pub fn cores(&self) -> usize {
        self.cores
    }

    /// Runs `work` on the control runtime and waits for it from any runtime.
    pub async fn run<F>(&self, work: F) -> Result<F::Output, String>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle()
            .spawn(work)
            .await
            .map_err(|error| format!("control task failed: {error}"))
    }

    /// Starts a background task on the control runtime.
    pub fn spawn<F>(&self, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        drop(self.handle().spawn(work));
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("the runtime lives until drop")
            .handle()
    }
}

impl Drop for ControlRuntime {
    fn drop(&mut self) {
        // The last owner may be an async task; a blocking shutdown there would panic.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
