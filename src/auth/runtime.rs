//! The control runtime: a small multi-threaded tokio runtime of its own for database
//! connections, the revocation feed and password hashing.
//!
//! The proxy's workers are single-threaded runtimes; a database connection opened on one of them
//! would only make progress while that worker polls it. Keeping all store I/O here means any
//! worker can await a store call, and a slow database or a login storm never sits on a worker.
//!
//! Its threads also run at a lower CPU priority than the workers (`CONTROL_NICE`): on a core
//! shared with a worker, a storm of refreshes or logins takes the CPU the proxied requests leave
//! over instead of queueing them (`benches/load/refresh-load` measures the effect).

use std::future::Future;

use tokio::runtime::{Builder, Runtime};

/// How many nice steps the control runtime's threads (and the threads they start, such as the
/// SQLite driver's, which inherit it) sit below the process. Ten steps gives them about a tenth
/// of a core that a worker also wants, and all of a core nobody else does.
pub const CONTROL_NICE: i32 = 10;

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
            .on_thread_start(lower_priority(base_nice()))
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

/// What each control thread does first: lower its CPU priority to `CONTROL_NICE` steps below
/// `base` (the starting thread's), at most 19, the lowest. A fixed target rather than a step
/// from the thread's own value, because threads started by a control thread inherit its value
/// and must not sink further. On Linux the nice value is a thread's own (`setpriority` with
/// `PRIO_PROCESS` and id 0 changes only the caller) and lowering it needs no privilege.
/// Elsewhere the threads keep the process's priority.
fn lower_priority(base: i32) -> impl Fn() + Send + Sync + 'static {
    let lowered = (base + CONTROL_NICE).min(19);
    move || {
        #[cfg(target_os = "linux")]
        // SAFETY: setpriority takes no pointers; it only changes this thread's nice value.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, lowered) } != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "could not lower the control runtime's priority"
            );
        }
        #[cfg(not(target_os = "linux"))]
        let _ = lowered;
    }
}

/// The calling thread's nice value (0 where threads have none of their own). getpriority
/// returns -1 both as a value and as an error, but asking about oneself cannot fail.
fn base_nice() -> i32 {
    #[cfg(target_os = "linux")]
    // SAFETY: getpriority takes no pointers.
    return unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    #[cfg(not(target_os = "linux"))]
    0
}

impl Drop for ControlRuntime {
    fn drop(&mut self) {
        // The last owner may be an async task; a blocking shutdown there would panic.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn control_threads_and_the_threads_they_start_run_at_the_lower_priority() {
        let runtime = ControlRuntime::start().expect("runtime");
        let work = runtime.run(async {
            let task = base_nice();
            let spawned = tokio::task::spawn_blocking(|| {
                std::thread::spawn(base_nice).join().expect("thread")
            })
            .await
            .expect("blocking task");
            (task, spawned)
        });
        let (task, spawned) = runtime.handle().block_on(work).expect("ran");
        let ours = base_nice();
        let lowered = (ours + CONTROL_NICE).min(19);
        assert_eq!(task, lowered);
        assert_eq!(spawned, lowered);
        if ours < 19 {
            assert!(lowered > ours, "the caller's own thread keeps its priority");
        }
    }
}
