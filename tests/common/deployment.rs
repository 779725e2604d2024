//! A deployment for attacks on the account endpoints: the real binary on a fresh SQLite or
//! PostgreSQL store that the test can also read directly, to check what an attack left there.

use serde_json::Value;
use sqlx::{PgPool, SqlitePool};

use super::binary::{Gatehouse, TempDir};
use super::postgres::{drop_database, fresh_database, fresh_sqlite};
use super::{Client, ConfigYaml};

/// Which store a deployment runs on.
#[derive(Clone, Copy)]
pub enum Store {
    Sqlite,
    Postgres,
}

/// A pool on the deployment's store, for reading what the binary wrote.
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Db {
    /// Connects to the store at `url` (`sqlite:` or PostgreSQL).
    pub async fn connect(url: &str) -> Self {
        if url.starts_with("sqlite:") {
            Db::Sqlite(
                SqlitePool::connect(url)
                    .await
                    .expect("open the SQLite store"),
            )
        } else {
            Db::Postgres(PgPool::connect(url).await.expect("connect to PostgreSQL"))
        }
    }

    /// How many accounts there are.
    pub async fn rows(&self) -> i64 {
        let sql = "SELECT COUNT(*) FROM accounts";
        match self {
            Db::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
            Db::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        }
        .expect("count accounts")
    }

    /// `(email, password_hash)` of every account, oldest first.
    pub async fn hashes(&self) -> Vec<(String, String)> {
        let sql = "SELECT email, password_hash FROM accounts ORDER BY created_at, id";
        match self {
            Db::Sqlite(pool) => sqlx::query_as(sql).fetch_all(pool).await,
            Db::Postgres(pool) => sqlx::query_as(sql).fetch_all(pool).await,
        }
        .expect("read password hashes")
    }

    /// Closes the pool.
    pub async fn close(&self) {
        match self {
            Db::Sqlite(pool) => pool.close().await,
            Db::Postgres(pool) => pool.close().await,
        }
    }
}

/// `gatehouse serve` on a store of its own.
pub struct Deployment {
    /// The running binary.
    pub gatehouse: Gatehouse,
    /// A client aimed at it.
    pub client: Client,
    /// The store, read directly.
    pub db: Db,
    /// The store's URL.
    pub url: String,
    _dir: Option<TempDir>,
}

impl Deployment {
    /// `gatehouse serve` with `configure(config)` on a fresh store; `None` (skip) when
    /// PostgreSQL is asked for but not available.
    pub async fn start(store: Store, configure: impl Fn(ConfigYaml) -> ConfigYaml) -> Option<Self> {
        let (dir, url) = match store {
            Store::Sqlite => {
                let (dir, url) = fresh_sqlite();
                (Some(dir), url)
            }
            Store::Postgres => (None, fresh_database().await?),
        };
        let gatehouse = Gatehouse::start_with_env(&["serve"], &[("DATABASE_URL", &url)], |at| {
            configure(ConfigYaml::new().listen(at)).render()
        })
        .await;
        let client = Client::http1(gatehouse.addr);
        let db = Db::connect(&url).await;
        Some(Deployment {
            gatehouse,
            client,
            db,
            url,
            _dir: dir,
        })
    }

    /// Registers (201 expected) and returns the account as the API showed it.
    pub async fn registered(&self, username: &str, email: &str, password: &str) -> Value {
        let reply = self.client.register(username, email, password).await;
        assert_eq!(reply.status, 201, "register {username}: {}", reply.text());
        reply.json()
    }

    /// Drops a PostgreSQL test database (kept when the test failed before this, for a look).
    pub async fn finish(self) {
        self.db.close().await;
        drop(self.gatehouse);
        if self.url.starts_with("postgres") {
            drop_database(&self.url).await;
        }
    }
}
