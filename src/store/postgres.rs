//! PostgreSQL, shared by replicas: revocations are pushed to every replica with `NOTIFY`.

use async_trait::async_trait;
use sqlx::postgres::{PgConnection, PgListener, PgPool, PgPoolOptions};

use super::sql::{self, unavailable};
use super::StoredKey;
use super::{
    identifier, Account, AccountPage, AccountStore, AuditQuery, AuditRecord, Credentials,
    FailureCount, FailureRule, ListQuery, NewAccount, NewFamily, NewRefresh, Revocation,
    RevocationFeed, Rotation, StoreError, StoredEmail, ACQUIRE_TIMEOUT,
};
use super::{ApiKey, KeyCreation, KeyLimits, KeyOwner, NewApiKey};
use crate::clock::unix_millis;

/// The pool per replica; an open revocation feed holds one of these connections for good.
const MAX_CONNECTIONS: u32 = 16;

/// The `LISTEN`/`NOTIFY` channel revocations travel on.
const CHANNEL: &str = "gatehouse_revocations";

/// Binds: channel, payload ([`encode`]).
const NOTIFY: &str = "SELECT pg_notify($1, $2)";

/// Whether PostgreSQL can hold `value`: its text type refuses NUL with an error, which must not
/// turn a login with a NUL in the email into a 503 (and an error log line per attempt). No
/// stored email contains one (validation refuses control characters), so such a lookup finds
/// nothing, as it does on SQLite.
fn storable(value: &str) -> bool {
    !value.contains('\0')
}

/// Accounts in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `postgres://…` and migrates the database.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .map_err(|e| sql::open_error(url, e))?;
        // sqlx holds an advisory lock while migrating, so replicas starting together are safe.
        sql::MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| sql::migrate_error(url, e))?;
        Ok(PostgresStore { pool })
    }
}

/// Tells the other replicas. Called inside the writing transaction: PostgreSQL delivers the
/// notice only when it commits, so no replica hears of a write that was rolled back, and no
/// write commits unannounced.
async fn notify(tx: &mut PgConnection, revocation: &Revocation) -> Result<(), StoreError> {
    sqlx::query(NOTIFY)
        .bind(CHANNEL)
        .bind(encode(revocation))
        .execute(tx)
        .await
        .map_err(unavailable)?;
    Ok(())
}

/// [`notify`] for each revoked family, inside the same transaction.
async fn notify_all(
    tx: &mut PgConnection,
    families: Vec<sql::FamilyRow>,
) -> Result<(), StoreError> {
    for family in families {
        notify(tx, &Revocation::from(family)).await?;
    }
    Ok(())
}

#[async_trait]
impl AccountStore for PostgresStore {
    fn kind(&self) -> &'static str {
        "postgres"
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
        if !storable(email) {
            return Ok(None);
        }
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
        if !storable(email) {
            return Ok(None);
        }
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let row: Option<sql::AccountStateRow> = sqlx::query_as(sql::DISABLE_ACCOUNT)
            .bind(identifier::key(email))
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
        let Some(revocation) = row.map(Revocation::from) else {
            return Ok(None); // Dropping `tx` rolls back the no-op.
        };
        notify(&mut tx, &revocation).await?;
        let families: Vec<sql::FamilyRow> = sqlx::query_as(sql::REVOKE_FAMILIES_BY_EMAIL)
            .bind(identifier::key(email))
            .bind(unix_millis())
            .fetch_all(&mut *tx)
            .await
            .map_err(unavailable)?;
        notify_all(&mut tx, families).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(Some(revocation))
    }

    async fn account_credentials(&self, id: &str) -> Result<Option<Credentials>, StoreError> {
        if !storable(id) {
            return Ok(None);
        }
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
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
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
        if !storable(hash) {
            return Ok(Rotation::Invalid);
        }
        // One statement in its own implicit transaction: the usual case costs one round trip.
        let rotated: Option<sql::RotatedRow> = sqlx::query_as(sql::ROTATE_REFRESH_POSTGRES)
            .bind(hash)
            .bind(now)
            .bind(&next.hash)
            .bind(next.idle_until)
            .bind(next.access_until)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        if let Some(rotated) = rotated {
            return Ok(rotated.into());
        }
        // Refused: find out whether the token was spent before (reuse) or never valid.
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
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
        let revocation = revoked.map(Revocation::from);
        if let Some(revocation) = &revocation {
            notify(&mut tx, revocation).await?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(Rotation::Reused(revocation))
    }

    async fn revoke_family(&self, id: &str, now: i64) -> Result<Option<Revocation>, StoreError> {
        if !storable(id) {
            return Ok(None);
        }
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let row: Option<sql::FamilyRow> = sqlx::query_as(sql::REVOKE_FAMILY)
            .bind(id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
        let revocation = row.map(Revocation::from);
        if let Some(revocation) = &revocation {
            notify(&mut tx, revocation).await?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(revocation)
    }

    async fn end_sessions(
        &self,
        account_id: &str,
        now: i64,
    ) -> Result<Option<Revocation>, StoreError> {
        if !storable(account_id) {
            return Ok(None);
        }
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let row: Option<sql::AccountStateRow> = sqlx::query_as(sql::BUMP_GENERATION)
            .bind(account_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
        let Some(revocation) = row.map(Revocation::from) else {
            return Ok(None);
        };
        notify(&mut tx, &revocation).await?;
        let families: Vec<sql::FamilyRow> = sqlx::query_as(sql::REVOKE_ACCOUNT_FAMILIES)
            .bind(account_id)
            .bind(now)
            .fetch_all(&mut *tx)
            .await
            .map_err(unavailable)?;
        notify_all(&mut tx, families).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(Some(revocation))
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
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        sqlx::query(sql::INSERT_REVOKED_TOKEN)
            .bind(jti)
            .bind(expires_at)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        let revocation = Revocation::Token {
            jti: jti.to_string(),
            expires_at,
        };
        notify(&mut tx, &revocation).await?;
        tx.commit().await.map_err(unavailable)
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

    async fn feed(&self) -> Result<Option<Box<dyn RevocationFeed>>, StoreError> {
        let listener = listen(&self.pool).await?;
        Ok(Some(Box::new(PgFeed {
            pool: self.pool.clone(),
            listener: Some(listener),
        })))
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
        let filters = [query.event.as_deref(), query.username.as_deref()];
        if !filters.into_iter().flatten().all(storable) {
            return Ok(Vec::new());
        }
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
        if !storable(&key.account_id) || !storable(&key.name) {
            return Ok(KeyCreation::NoAccount);
        }
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        // The account's row lock serialises creations for one account, so the count below
        // sees every key a concurrent creation committed.
        let disabled: Option<bool> = sqlx::query_scalar(sql::LOCK_ACCOUNT_STATE)
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
        if !storable(hash) {
            return Ok(None);
        }
        let row: Option<sql::KeyOwnerRow> = sqlx::query_as(sql::SELECT_API_KEY_BY_HASH)
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(row.map(Into::into))
    }

    async fn api_keys(&self, account_id: &str) -> Result<Vec<ApiKey>, StoreError> {
        if !storable(account_id) {
            return Ok(Vec::new());
        }
        let rows: Vec<sql::ApiKeyRow> = sqlx::query_as(sql::SELECT_API_KEYS)
            .bind(account_id)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn revoke_api_key(
        &self,
        id: &str,
        account_id: Option<&str>,
        now_ms: i64,
    ) -> Result<Option<ApiKey>, StoreError> {
        if !storable(id) || !account_id.is_none_or(storable) {
            return Ok(None);
        }
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let row: Option<sql::ApiKeyRow> = sqlx::query_as(sql::REVOKE_API_KEY)
            .bind(id)
            .bind(account_id)
            .bind(now_ms)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
        let Some(key) = row.map(ApiKey::from) else {
            return Ok(None);
        };
        if let Some(revocation) = key.revocation() {
            notify(&mut tx, &revocation).await?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(Some(key))
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

/// A connection of `pool` listening on [`CHANNEL`]. It is taken from the pool for good.
async fn listen(pool: &PgPool) -> Result<PgListener, StoreError> {
    let mut listener = PgListener::connect_with(pool).await.map_err(unavailable)?;
    listener.listen(CHANNEL).await.map_err(unavailable)?;
    Ok(listener)
}

/// Revocations from `LISTEN gatehouse_revocations`.
struct PgFeed {
    pool: PgPool,
    /// `None` after an error, until the next call listens again.
    listener: Option<PgListener>,
}

#[async_trait]
impl RevocationFeed for PgFeed {
    async fn next(&mut self) -> Result<Option<Revocation>, StoreError> {
        let Some(listener) = &mut self.listener else {
            // Listen first, then have the caller resync: nothing sent after the resync's
            // snapshot can be missed.
            self.listener = Some(listen(&self.pool).await?);
            return Ok(None);
        };
        loop {
            // `try_recv` (unlike `recv`) reports a lost connection as `Ok(None)`, after
            // listening again on a new one.
            match listener.try_recv().await {
                Ok(Some(notice)) => match decode(notice.payload()) {
                    Some(revocation) => return Ok(Some(revocation)),
                    None => tracing::warn!(
                        payload = notice.payload(),
                        "skipping an undecodable revocation notice"
                    ),
                },
                Ok(None) => return Ok(None),
                // sqlx would reconnect silently on the next call (e.g. when its own reconnect
                // failed, or on a reset connection), hiding the gap; drop it and start over.
                Err(error) => {
                    self.listener = None;
                    return Err(unavailable(error));
                }
            }
        }
    }
}

/// The notice payload: `t <expires_at> <jti>`, `f <expires_at> <family id>`,
/// `a <generation> <0|1> <id>` or `k <until> <api key id>`. The free-form
/// field comes last, so it may contain anything (even spaces).
fn encode(revocation: &Revocation) -> String {
    match revocation {
        Revocation::Token { jti, expires_at } => format!("t {expires_at} {jti}"),
        Revocation::Family { id, expires_at } => format!("f {expires_at} {id}"),
        Revocation::Account {
            id,
            generation,
            disabled,
        } => format!("a {generation} {} {id}", u8::from(*disabled)),
        Revocation::ApiKey { id, until } => format!("k {until} {id}"),
    }
}

/// The inverse of [`encode`]; `None` for anything else (another version, another sender).
fn decode(payload: &str) -> Option<Revocation> {
    let (kind, rest) = payload.split_once(' ')?;
    match kind {
        "t" => {
            let (expires_at, jti) = rest.split_once(' ')?;
            Some(Revocation::Token {
                expires_at: expires_at.parse().ok()?,
                jti: non_empty(jti)?,
            })
        }
        "f" => {
            let (expires_at, id) = rest.split_once(' ')?;
            Some(Revocation::Family {
                expires_at: expires_at.parse().ok()?,
                id: non_empty(id)?,
            })
        }
        "a" => {
            let (generation, rest) = rest.split_once(' ')?;
            let (disabled, id) = rest.split_once(' ')?;
            let disabled = match disabled {
                "0" => false,
                "1" => true,
                _ => return None,
            };
            Some(Revocation::Account {
                generation: generation.parse().ok()?,
                disabled,
                id: non_empty(id)?,
            })
        }
        "k" => {
            let (until, id) = rest.split_once(' ')?;
            Some(Revocation::ApiKey {
                until: until.parse().ok()?,
                id: non_empty(id)?,
            })
        }
        _ => None,
    }
}

fn non_empty(field: &str) -> Option<String> {
    (!field.is_empty()).then(|| field.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_revocations_round_trip() {
        let token = Revocation::Token {
            jti: "j 1".into(),
            expires_at: 1_700_000_000,
        };
        assert_eq!(encode(&token), "t 1700000000 j 1");
        assert_eq!(decode(&encode(&token)), Some(token));
    }

    #[test]
    fn family_revocations_round_trip() {
        let family = Revocation::Family {
            id: "f1".into(),
            expires_at: 1_700_000_000,
        };
        assert_eq!(encode(&family), "f 1700000000 f1");
        assert_eq!(decode(&encode(&family)), Some(family));
        assert_eq!(decode("f 1"), None);
        assert_eq!(decode("f x id"), None);
    }

    #[test]
    fn account_revocations_round_trip() {
        for disabled in [false, true] {
            let account = Revocation::Account {
                id: "0190-abc".into(),
                generation: 3,
                disabled,
            };
            assert_eq!(decode(&encode(&account)), Some(account));
        }
        let disabled = Revocation::Account {
            id: "x".into(),
            generation: 1,
            disabled: true,
        };
        assert_eq!(encode(&disabled), "a 1 1 x");
    }

    #[test]
    fn api_key_revocations_round_trip() {
        let key = Revocation::ApiKey {
            id: "0190-key".into(),
            until: 1_700_003_600,
        };
        assert_eq!(encode(&key), "k 1700003600 0190-key");
        assert_eq!(decode(&encode(&key)), Some(key));
        assert_eq!(decode("k 1"), None);
        assert_eq!(decode("k x id"), None);
        assert_eq!(decode("k 1 "), None);
    }

    #[test]
    fn decode_rejects_garbage() {
        for payload in [
            "",
            " ",
            "t",
            "t 1",
            "t 1 ",
            "t x j",
            "a 1 1",
            "a 1 2 id",
            "a x 1 id",
            "a 1 1 ",
            "x 1 j",
            "T 1 j",
            "t 99999999999999999999 j",
            "\u{0} \u{0}",
            "a  1 id",
        ] {
            assert_eq!(decode(payload), None, "{payload:?}");
        }
    }
}
