//! The real `gatehouse` binary as a child process: temp dirs, free ports, readiness, signals,
//! and its peak memory from `/proc`.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::raw_exchange;

/// The binary under test.
pub const GATEHOUSE: &str = env!("CARGO_BIN_EXE_gatehouse");

/// A directory under Cargo's per-target temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty directory whose name starts with `tag`.
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `text` to `name` inside the directory and returns the file's path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback address that was free a moment ago: bound to port 0, read, released.
pub fn free_addr() -> SocketAddr {
    let listener = StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address")
}

/// Runs `gatehouse check --config PATH` to completion.
pub fn check(path: &Path) -> Output {
    run_to_exit("check", path)
}

/// Runs `gatehouse SUBCOMMAND --config PATH` to completion (for commands expected to exit).
pub fn run_to_exit(subcommand: &str, path: &Path) -> Output {
    Command::new(GATEHOUSE)
        .env_remove("DATABASE_URL")
        .env_remove("GATEHOUSE_JWT_SECRET")
        .arg(subcommand)
        .arg("--config")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("run gatehouse {subcommand}: {e}"))
}

/// A running `gatehouse` process; killed on drop if it is still running.
pub struct Gatehouse {
    /// The address from its config's `listen`.
    pub addr: SocketAddr,
    child: Child,
    config: PathBuf,
    log: PathBuf,
    _dir: TempDir,
}

impl Gatehouse {
    /// Starts `gatehouse ARGS --config PATH` with the config `config(listen)` and waits until
    /// `/health` answers. A port taken between choosing and binding it is retried.
    ///
    /// The process gets the test JWT secret and its own SQLite store through the environment
    /// (`GATEHOUSE_JWT_SECRET`, `DATABASE_URL`), so it never depends on files of a config
    /// builder that is gone by then.
    pub async fn start(args: &[&str], config: impl Fn(SocketAddr) -> String) -> Self {
        Self::start_with_env(args, &[], config).await
    }

    /// [`Gatehouse::start`] with extra environment variables, which win over the defaults
    /// (e.g. `("DATABASE_URL", postgres_url)` for replicas sharing one store).
    pub async fn start_with_env(
        args: &[&str],
        env: &[(&str, &str)],
        config: impl Fn(SocketAddr) -> String,
    ) -> Self {
        for _ in 0..5 {
            let dir = TempDir::new("gatehouse");
            let addr = free_addr();
            let config_path = dir.write("gatehouse.yaml", &config(addr));
            let log = dir.path().join("stderr.log");
            let own_store = format!("sqlite://{}", dir.path().join("gatehouse.db").display());
            let child = Command::new(GATEHOUSE)
                .args(args)
                .arg("--config")
                .arg(&config_path)
                .env("RUST_LOG", "info")
                .env("GATEHOUSE_JWT_SECRET", super::TEST_JWT_SECRET)
                .env("DATABASE_URL", own_store)
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(File::create(&log).expect("create log file"))
                .spawn()
                .expect("spawn gatehouse");
            let mut gatehouse = Gatehouse {
                addr,
                child,
                config: config_path,
                log,
                _dir: dir,
            };
            if gatehouse.wait_ready().await {
                return gatehouse;
            }
            let logs = gatehouse.logs();
            if !logs.contains("cannot listen") {
                panic!("gatehouse exited before it was ready:\n{logs}");
            }
        }
        panic!("no free port could be bound after 5 attempts");
    }

    /// Polls `/health` until 200 (true) or the process exits (false); panics after 20 s.
    async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.child.try_wait().expect("poll child").is_some() {
                return false;
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                let reply = raw_exchange(
                    self.addr,
                    "GET /health HTTP/1.1\r\nHost: control.test\r\nConnection: close\r\n\r\n",
                )
                .await;
                if reply.status == 200 {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("gatehouse was not ready within 20 s:\n{}", self.logs());
    }

    /// Replaces its config file (picked up on SIGHUP).
    pub fn rewrite_config(&self, text: &str) {
        std::fs::write(&self.config, text).expect("rewrite config");
    }

    /// The process id.
    pub fn pid(&self) -> libc::pid_t {
        libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t")
    }

    /// Sends a signal (e.g. `libc::SIGTERM`).
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own live child.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill({}, {signal}) failed", self.pid());
    }

    /// Peak resident set size so far (`VmHWM` in `/proc/PID/status`), in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        let line = status
            .lines()
            .find(|line| line.starts_with("VmHWM:"))
            .expect("VmHWM line");
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .expect("VmHWM value in kB");
        kib * 1024
    }

    /// Waits up to `within` for the process to exit; `None` if it is still running.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll child") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Everything it has written to stderr so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Gatehouse {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
