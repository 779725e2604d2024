//! Fresh, isolated databases for store tests: a new PostgreSQL database per test (on the server
//! `scripts/test` provides) and a new SQLite file per test.

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
