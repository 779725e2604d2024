//! The embedded default: one SQLite file, in WAL mode so readers never wait for the writer.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::SqliteSynchronous;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use super::sql::{self, unavailable};
use super::StoredKey;
use super::{
    identifier, redact, Account, AccountPage, AccountStore, AuditQuery, AuditRecord, Credentials,
    FailureCount, FailureRule, ListQuery, NewAccount, NewFamily, NewRefresh, Revocation,
    RevocationFeed, Rotation, StoreError, StoredEmail, ACQUIRE_TIMEOUT,
};
use super::{ApiKey, KeyCreation, KeyLimits, KeyOwner, NewApiKey};
use crate::clock::unix_millis;

/// SQLite has one writer at a time; more connections only help concurrent readers.
const MAX_CONNECTIONS: u32 = 8;

/// How long a write waits for another connection's (or process's) write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Accounts in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens `sqlite://PATH` (or `sqlite:PATH`), creating the file and its directory if
    /// missing, and migrates it.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let path = file_path(url)?;
        // Blocking, but once at startup, before anything else runs.
        if let Some(dir) = Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|e| sql::open_error(url, e))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL's default (NORMAL) may lose the last commits on power loss; an account we
            // answered 201 for must survive.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| sql::open_error(url, e))?;
        sql::MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| sql::migrate_error(url, e))?;
        Ok(SqliteStore { pool })
    }
}

impl SqliteStore {
    /// A transaction that takes the write lock at once (`BEGIN IMMEDIATE`, waiting up to the
    /// busy timeout), so it never has to upgrade a read snapshot another writer made stale.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(unavailable)
    }
}

/// The file path of a `sqlite://PATH` or `sqlite:PATH` URL.
fn file_path(url: &str) -> Result<&str, StoreError> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or_default();
    if path.is_empty() || path.contains('?') {
        return Err(StoreError::Config(format!(
            "expected sqlite://PATH (no query options), got {}",
            redact(url)
        )));
    }
    Ok(path)
}

#[async_trait]
impl AccountStore for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn create(&self, account: NewAccount) -> Result<Account, StoreError> {
        let insert = sql::Insert::new(account);
        let a = &insert.account;
        sqlx::query(sql::INSERT_ACCOUNT)
            .bind(&a.id)
            .bind(&a.username)
            .bind(&insert.username_key)
            .bind(&a.email)
            .bind(&insert.email_key)
            .bind(&insert.password_hash)
            .bind(a.role.as_str())
            .bind(a.created_at_ms)
            .execute(&self.pool)
            .await
            .map_err(sql::insert_error)?;
        Ok(insert.account)
    }

    async fn credentials(&self, email: &str) -> Result<Option<Credentials>, StoreError> {
        let row: Option<sql::CredentialsRow> = sqlx::query_as(sql::SELECT_CREDENTIALS)
            .bind(identifier::key(email))
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(row.map(Into::into))
    }

    async fn list(&self, query: &ListQuery) -> Result<AccountPage, StoreError> {
        let pattern = sql::search_pattern(query.search.as_deref());
        let rows: Vec<sql::AccountRow> = sqlx::query_as(sql::LIST_ACCOUNTS)
            .bind(&pattern)
            .bind(query.include_disabled)
            .bind(query.limit)
            .bind(query.offset)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        let total: i64 = sqlx::query_scalar(sql::COUNT_ACCOUNTS)
            .bind(&pattern)
            .bind(query.include_disabled)
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(AccountPage {
            accounts: rows.into_iter().map(Into::into).collect(),
            total,
        })
    }

    async fn disable(&self, email: &str) -> Result<Option<Revocation>, StoreError> {
        let mut tx = self.begin_write().await?;
        let row: Option<sql::AccountStateRow> = sqlx::query_as(sql::DISABLE_ACCOUNT)
            .bind(identifier::key(email))
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
        sqlx::query(sql::REVOKE_FAMILIES_BY_EMAIL)
            .bind(identifier::key(email))
            .bind(unix_millis())
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(row.map(Into::into))
    }

    async fn account_credentials(&self, id: &str) -> Result<Option<Credentials>, StoreError> {
        let row: Option<sql::CredentialsRow> = sqlx::query_as(sql::SELECT_CREDENTIALS_BY_ID)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(row.map(Into::into))
    }

    async fn start_family(
        &self,
        family: &NewFamily,
        first: Option<&NewRefresh>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(sql::INSERT_FAMILY)
            .bind(&family.id)
            .bind(&family.account_id)
            .bind(family.now)
            .bind(family.expires_at)
            .bind(family.tokens_until)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        if let Some(first) = first {
            sqlx::query(sql::INSERT_REFRESH)
                .bind(&first.hash)
                .bind(&family.id)
                .bind(family.now)
                .bind(first.idle_until)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn rotate_refresh(
        &self,
        hash: &str,
        next: &NewRefresh,
        now: i64,
    ) -> Result<Rotation, StoreError> {
        let mut tx = self.begin_write().await?;
        let rotated: Option<sql::RotatedRow> = sqlx::query_as(sql::ROTATE_REFRESH_SQLITE)
            .bind(hash)
            .bind(now)
            .bind(&next.hash)
            .bind(next.idle_until)
            .bind(next.access_until)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
        if let Some(rotated) = rotated {
            tx.commit().await.map_err(unavailable)?;
            return Ok(rotated.into());
        }
        let found: Option<sql::RefreshRow> = sqlx::query_as(sql::SELECT_REFRESH)
            .bind(hash)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
        let Some(found) = found.filter(|row| row.spent_at.is_some()) else {
            return Ok(Rotation::Invalid);
        };
        let revoked: Option<sql::FamilyRow> = sqlx::query_as(sql::REVOKE_FAMILY)
            .bind(&found.family_id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(Rotation::Reused(revoked.map(Into::into)))
    }

    async fn revoke_family(&self, id: &str, now: i64) -> Result<Option<Revocation>, StoreError> {
        let row: Option<sql::FamilyRow> = sqlx::query_as(sql::REVOKE_FAMILY)
            .bind(id)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(row.map(Into::into))
    }

    async fn end_sessions(
        &self,
        account_id: &str,
        now: i64,
    ) -> Result<Option<Revocation>, StoreError> {
        let mut tx = self.begin_write().await?;
        let row: Option<sql::AccountStateRow> = sqlx::query_as(sql::BUMP_GENERATION)
            .bind(account_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
        sqlx::query(sql::REVOKE_ACCOUNT_FAMILIES)
            .bind(account_id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(row.map(Into::into))
    }

    async fn prune_refresh(&self, now: i64) -> Result<u64, StoreError> {
        let tokens = sqlx::query(sql::DELETE_EXPIRED_REFRESH)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        let families = sqlx::query(sql::DELETE_EXPIRED_FAMILIES)
            .bind(now)
            .bind(now / 1000)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(tokens.rows_affected() + families.rows_affected())
    }

    async fn revoke_token(&self, jti: &str, expires_at: i64) -> Result<(), StoreError> {
        sqlx::query(sql::INSERT_REVOKED_TOKEN)
            .bind(jti)
            .bind(expires_at)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn revocations(&self) -> Result<Vec<Revocation>, StoreError> {
        sqlx::query(sql::DELETE_EXPIRED_TOKENS)
            .bind(unix_millis() / 1000)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        let tokens: Vec<sql::TokenRow> = sqlx::query_as(sql::SELECT_REVOKED_TOKENS)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        let accounts: Vec<sql::AccountStateRow> = sqlx::query_as(sql::SELECT_REVOKED_ACCOUNTS)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        let families: Vec<sql::FamilyRow> = sqlx::query_as(sql::SELECT_REVOKED_FAMILIES)
            .bind(unix_millis() / 1000)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        let keys: Vec<sql::RevokedKeyRow> = sqlx::query_as(sql::SELECT_REVOKED_API_KEYS)
            .bind(sql::revoked_keys_since(unix_millis()))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        let tokens = tokens.into_iter().map(Revocation::from);
        let families = families.into_iter().map(Revocation::from);
        Ok(tokens
            .chain(accounts.into_iter().map(Into::into))
            .chain(families)
            .chain(keys.into_iter().map(Revocation::from))
            .collect())
    }

    /// SQLite has no push channel: replicas poll [`AccountStore::revocations`].
    async fn feed(&self) -> Result<Option<Box<dyn RevocationFeed>>, StoreError> {
        Ok(None)
    }

    async fn stored_emails(&self) -> Result<Vec<StoredEmail>, StoreError> {
        let rows: Vec<sql::EmailRow> = sqlx::query_as(sql::SELECT_EMAILS)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn set_email(&self, id: &str, email: &str, email_key: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(sql::UPDATE_EMAIL)
            .bind(id)
            .bind(email)
            .bind(email_key)
            .execute(&self.pool)
            .await
            .map_err(sql::insert_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn failure_count(&self, key: &str) -> Result<Option<FailureCount>, StoreError> {
        let row: Option<sql::FailureRow> = sqlx::query_as(sql::SELECT_FAILURES)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(row.map(Into::into))
    }

    async fn count_failure(
        &self,
        key: &str,
        rule: &FailureRule,
    ) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar(sql::COUNT_FAILURE)
            .bind(key)
            .bind(rule.now_ms)
            .bind(rule.forget_before_ms)
            .bind(i64::from(rule.enforce))
            .bind(rule.free)
            .bind(rule.doublings_to_max())
            .bind(rule.max_wait_ms)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)
    }

    async fn take_back_failure(&self, key: &str, clear: bool) -> Result<(), StoreError> {
        let statement = if clear {
            sql::CLEAR_FAILURES
        } else {
            sql::TAKE_BACK_FAILURE
        };
        sqlx::query(statement)
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn forget_failure_counts(&self, before_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(sql::FORGET_FAILURES)
            .bind(before_ms)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected())
    }

    async fn insert_audit(&self, events: &[AuditRecord]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        for e in events {
            sqlx::query(sql::INSERT_AUDIT)
                .bind(&e.id)
                .bind(e.time_ms)
                .bind(&e.event)
                .bind(&e.username)
                .bind(&e.client)
                .bind(&e.detail)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let (before_time, before_id) = match &query.before {
            Some((time, id)) => (Some(*time), id.as_str()),
            None => (None, ""),
        };
        let rows: Vec<sql::AuditRow> = sqlx::query_as(sql::SELECT_AUDIT)
            .bind(&query.event)
            .bind(&query.username)
            .bind(before_time)
            .bind(before_id)
            .bind(query.limit)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn forget_audit_events(&self, before_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(sql::FORGET_AUDIT)
            .bind(before_ms)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query(sql::PING)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn create_api_key(
        &self,
        key: &NewApiKey,
        limits: KeyLimits,
    ) -> Result<KeyCreation, StoreError> {
        // One writer at a time (BEGIN IMMEDIATE): the count and the insert see the same rows.
        let mut tx = self.begin_write().await?;
        let disabled: Option<bool> = sqlx::query_scalar(sql::SELECT_ACCOUNT_STATE)
            .bind(&key.account_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
        if disabled != Some(false) {
            return Ok(KeyCreation::NoAccount);
        }
        let (now, day_before) = sql::key_count_window(key.created_at_ms);
        let counts: (i64, i64) = sqlx::query_as(sql::COUNT_API_KEYS)
            .bind(&key.account_id)
            .bind(now)
            .bind(day_before)
            .fetch_one(&mut *tx)
            .await
            .map_err(unavailable)?;
        if let Some(refused) = sql::key_limit(limits, counts) {
            return Ok(refused);
        }
        sqlx::query(sql::INSERT_API_KEY)
            .bind(&key.id)
            .bind(&key.account_id)
            .bind(&key.name)
            .bind(&key.hash)
            .bind(key.created_at_ms)
            .bind(key.expires_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(KeyCreation::Created(sql::new_api_key(key)))
    }

    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<KeyOwner>, StoreError> {
        let row: Option<sql::KeyOwnerRow> = sqlx::query_as(sql::SELECT_API_KEY_BY_HASH)
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(row.map(Into::into))
    }

    async fn api_keys(&self, account_id: &str) -> Result<Vec<ApiKey>, StoreError> {
        let rows: Vec<sql::ApiKeyRow> = sqlx::query_as(sql::SELECT_API_KEYS)
            .bind(account_id)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Other replicas learn of it from their next poll of [`AccountStore::revocations`].
    async fn revoke_api_key(
        &self,
        id: &str,
        account_id: Option<&str>,
        now_ms: i64,
    ) -> Result<Option<ApiKey>, StoreError> {
        let row: Option<sql::ApiKeyRow> = sqlx::query_as(sql::REVOKE_API_KEY)
            .bind(id)
            .bind(account_id)
            .bind(now_ms)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(row.map(Into::into))
    }

    async fn touch_api_keys(&self, used: &[(String, i64)]) -> Result<(), StoreError> {
        for batch in used.chunks(sql::TOUCH_BATCH) {
            let text = sql::touch_api_keys(batch.len());
            let mut query = sqlx::query(&text);
            for (id, time) in batch {
                query = query.bind(id).bind(*time);
            }
            query.execute(&self.pool).await.map_err(unavailable)?;
        }
        Ok(())
    }

    async fn prune_api_keys(&self, before_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(sql::PRUNE_API_KEYS)
            .bind(before_ms)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected())
    }

    async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        sqlx::query_as(sql::SELECT_SIGNING_KEYS)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)
    }

    async fn add_signing_key(&self, key: &StoredKey) -> Result<bool, StoreError> {
        let done = sqlx::query(sql::INSERT_SIGNING_KEY)
            .bind(&key.kid)
            .bind(key.seq)
            .bind(key.created_at_ms)
            .bind(key.signs_from_ms)
            .bind(&key.public_key)
            .bind(&key.sealed)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_path_accepts_both_url_forms() {
        assert_eq!(file_path("sqlite://data/g.db").unwrap(), "data/g.db");
        assert_eq!(file_path("sqlite:///var/g.db").unwrap(), "/var/g.db");
        assert_eq!(file_path("sqlite:g.db").unwrap(), "g.db");
    }

    #[test]
    fn file_path_rejects_empty_paths_and_options() {
        assert!(file_path("sqlite://").is_err());
        assert!(file_path("sqlite://g.db?mode=ro").is_err());
    }
}
