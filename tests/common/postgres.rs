//! Fresh, isolated databases for store tests: a new PostgreSQL database per test (on the server
//! `scripts/test` provides) and a new SQLite file per test; and a PostgreSQL server of a test's
//! own, for tests that stop it.

use std::path::{Path, PathBuf};
use std::process::Command;

use sqlx::Connection;

use super::binary::TempDir;

/// The URL of a new, empty database on the server in `GATEHOUSE_TEST_POSTGRES`, or `None` (the
/// caller skips) when that is unset. Panics instead when `GATEHOUSE_REQUIRE_POSTGRES=1`, so CI
/// cannot pass by skipping.
pub async fn fresh_database() -> Option<String> {
    let Ok(server) = std::env::var("GATEHOUSE_TEST_POSTGRES") else {
        if std::env::var("GATEHOUSE_REQUIRE_POSTGRES").as_deref() == Ok("1") {
            panic!("GATEHOUSE_REQUIRE_POSTGRES=1 but GATEHOUSE_TEST_POSTGRES is not set");
        }
        eprintln!("skipping PostgreSQL: GATEHOUSE_TEST_POSTGRES not set");
        return None;
    };
    let name = format!("gh_{:016x}", rand::random::<u64>());
    let mut admin = sqlx::PgConnection::connect(&server)
        .await
        .unwrap_or_else(|e| panic!("connect to GATEHOUSE_TEST_POSTGRES: {e}"));
    // The name is ours (hex), never user input: identifiers cannot be bound.
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    let _ = admin.close().await;
    Some(with_database(&server, &name))
}

/// Drops a database made by [`fresh_database`] (call it when the test passed; a failed test's
/// database stays for a look). `WITH (FORCE)` closes what the test's pools left open.
pub async fn drop_database(url: &str) {
    let server = std::env::var("GATEHOUSE_TEST_POSTGRES").expect("GATEHOUSE_TEST_POSTGRES");
    let name = url.rsplit('/').next().unwrap_or_default();
    let name = name.split('?').next().unwrap_or_default();
    assert!(name.starts_with("gh_"), "not a test database: {name}");
    let mut admin = sqlx::PgConnection::connect(&server).await.expect("connect");
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("DROP DATABASE {name}: {e}"));
    let _ = admin.close().await;
}

/// `url` with its database name replaced by `name` (query options kept).
pub fn with_database(url: &str, name: &str) -> String {
    let host_start = url.find("://").map_or(0, |i| i + 3);
    let (base, query) = match url.find('?') {
        Some(q) => url.split_at(q),
        None => (url, ""),
    };
    let host_end = base[host_start..]
        .find('/')
        .map_or(base.len(), |i| host_start + i);
    format!("{}/{name}{query}", &base[..host_end])
}

/// A SQLite database file in a fresh temp dir (removed when the [`TempDir`] drops), and its
/// `sqlite://` URL. The file itself does not exist yet.
pub fn fresh_sqlite() -> (TempDir, String) {
    let dir = TempDir::new("store");
    let url = format!("sqlite://{}", dir.path().join("db/gatehouse.db").display());
    (dir, url)
}

/// A PostgreSQL cluster of a test's own (`scripts/postgres-throwaway`), for tests that pause
/// and resume the server: the shared one must not be stopped under other tests. Removed on
/// drop.
pub struct OwnCluster {
    dir: PathBuf,
    /// Where it listens, as a connection URL.
    pub url: String,
}

impl OwnCluster {
    /// Starts one; `None` (the caller skips, saying so for `test`) when this run provides no
    /// PostgreSQL. The server is installed when the test command provides one
    /// (`GATEHOUSE_TEST_POSTGRES`, set by `scripts/test`); with `GATEHOUSE_REQUIRE_POSTGRES=1`
    /// its absence fails instead.
    pub fn start(test: &str) -> Option<Self> {
        if std::env::var("GATEHOUSE_TEST_POSTGRES").is_err() {
            assert_ne!(
                std::env::var("GATEHOUSE_REQUIRE_POSTGRES").as_deref(),
                Ok("1"),
                "GATEHOUSE_REQUIRE_POSTGRES=1 but GATEHOUSE_TEST_POSTGRES is not set"
            );
            eprintln!("SKIPPED: {test}: GATEHOUSE_TEST_POSTGRES not set (run ./scripts/test)");
            return None;
        }
        let dir =
            std::env::temp_dir().join(format!("gatehouse-cluster-{:x}", rand::random::<u64>()));
        let url = throwaway("start", &dir);
        Some(OwnCluster { dir, url })
    }

    /// `pause` (the server stops answering) or `resume` it.
    pub fn run(&self, action: &str) {
        throwaway(action, &self.dir);
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = Command::new(THROWAWAY).arg("stop").arg(&self.dir).output();
    }
}

const THROWAWAY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postgres-throwaway");

/// Runs `postgres-throwaway ACTION DIR`, asserting it succeeds; returns its stdout, trimmed.
fn throwaway(action: &str, dir: &Path) -> String {
    let output = Command::new(THROWAWAY)
        .arg(action)
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("run {THROWAWAY}: {e}"));
    assert!(
        output.status.success(),
        "postgres-throwaway {action} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("UTF-8 output")
        .trim()
        .to_string()
}
