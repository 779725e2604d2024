//! What both backends share: the SQL text, the migrator, row types and error mapping.
//!
//! One text serves both databases: sqlx-sqlite binds `$N` placeholders by number (a repeated
//! `$N` is one parameter, as in PostgreSQL), and every statement here uses only syntax both
//! accept (`RETURNING` and `ON CONFLICT` need SQLite 3.35+; sqlx bundles a newer one).

use sqlx::migrate::{MigrateError, Migrator};

use super::{
    identifier, redact, Account, ApiKey, AuditRecord, Credentials, FailureCount, KeyCreation,
    KeyLimits, KeyOwner, NewAccount, NewApiKey, Revocation, Role, Rotation, StoreError,
    StoredEmail, TakenField, API_KEY_REVOCATION_MEMORY_SECS,
};
use crate::clock::unix_millis;

/// The embedded migrations, run by both backends on open (re-running is a no-op).
pub(super) static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Binds: id, username, username_key, email, email_key, password_hash, role, created_at.
pub(super) const INSERT_ACCOUNT: &str = "INSERT INTO accounts \
     (id, username, username_key, email, email_key, password_hash, role, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// Binds: email_key.
pub(super) const SELECT_CREDENTIALS: &str = "SELECT id, username, email, role, created_at, \
     disabled, password_hash, token_generation FROM accounts WHERE email_key = $1";

// `$1` is the LIKE pattern or NULL for "no filter". The backslash escape is spelled out
// because only PostgreSQL defaults to it.
/// Binds: pattern (or NULL), include disabled, limit, offset.
pub(super) const LIST_ACCOUNTS: &str = r"SELECT id, username, email, role, created_at, disabled
     FROM accounts
     WHERE ($1 IS NULL OR username_key LIKE $1 ESCAPE '\' OR email_key LIKE $1 ESCAPE '\')
       AND ($2 OR NOT disabled)
     ORDER BY created_at, id LIMIT $3 OFFSET $4";

/// Binds: pattern (or NULL), include disabled; the same filter as [`LIST_ACCOUNTS`].
pub(super) const COUNT_ACCOUNTS: &str = r"SELECT COUNT(*) FROM accounts
     WHERE ($1 IS NULL OR username_key LIKE $1 ESCAPE '\' OR email_key LIKE $1 ESCAPE '\')
       AND ($2 OR NOT disabled)";

// One statement, so two concurrent disables each bump the generation (no lost update).
/// Binds: email_key.
pub(super) const DISABLE_ACCOUNT: &str = "UPDATE accounts \
     SET disabled = TRUE, token_generation = token_generation + 1 \
     WHERE email_key = $1 RETURNING id, token_generation, disabled";

/// No binds.
pub(super) const SELECT_EMAILS: &str =
    "SELECT id, username, email, email_key FROM accounts ORDER BY created_at, id";

/// Binds: id, email, email_key.
pub(super) const UPDATE_EMAIL: &str =
    "UPDATE accounts SET email = $2, email_key = $3 WHERE id = $1";

/// Binds: key.
pub(super) const SELECT_FAILURES: &str =
    "SELECT failures, last_failure FROM login_failures WHERE key = $1";

// One statement, so concurrent attempts on any replica each count and none slips past the
// back-off: the row is locked while its condition is checked and it is updated. The wait is
// min(1 s << (failures - free), max), the shift bounded by `FailureRule::doublings_to_max`.
/// Binds: key, now, forget_before, enforce (0/1), free, doublings_to_max, max_wait.
pub(super) const COUNT_FAILURE: &str = "INSERT INTO login_failures (key, failures, last_failure) \
     VALUES ($1, 1, $2) \
     ON CONFLICT (key) DO UPDATE SET \
       failures = CASE WHEN login_failures.last_failure < $3 THEN 1 \
                  ELSE login_failures.failures + 1 END, \
       last_failure = $2 \
     WHERE $4 = 0 \
        OR login_failures.last_failure < $3 \
        OR login_failures.failures < $5 \
        OR login_failures.last_failure + CASE \
             WHEN login_failures.failures - $5 >= $6 THEN $7 \
             ELSE 1000 * (CAST(1 AS BIGINT) << CAST(login_failures.failures - $5 AS INTEGER)) \
           END <= $2 \
     RETURNING failures";

/// Binds: key.
pub(super) const TAKE_BACK_FAILURE: &str =
    "UPDATE login_failures SET failures = failures - 1 WHERE key = $1 AND failures > 0";

/// Binds: key.
pub(super) const CLEAR_FAILURES: &str = "DELETE FROM login_failures WHERE key = $1";

/// Binds: before (Unix ms).
pub(super) const FORGET_FAILURES: &str = "DELETE FROM login_failures WHERE last_failure < $1";

/// Binds: jti, expires_at. Revoking twice keeps the first row.
pub(super) const INSERT_REVOKED_TOKEN: &str = "INSERT INTO revoked_tokens (jti, expires_at) \
     VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING";

/// Binds: now (Unix seconds).
pub(super) const DELETE_EXPIRED_TOKENS: &str = "DELETE FROM revoked_tokens WHERE expires_at < $1";

/// No binds.
pub(super) const SELECT_REVOKED_TOKENS: &str = "SELECT jti, expires_at FROM revoked_tokens";

/// No binds.
pub(super) const SELECT_REVOKED_ACCOUNTS: &str = "SELECT id, token_generation, disabled \
     FROM accounts WHERE disabled OR token_generation > 0";

/// Binds: id, time, event, username, client, detail.
pub(super) const INSERT_AUDIT: &str = "INSERT INTO audit_events \
     (id, time, event, username, client, detail) VALUES ($1, $2, $3, $4, $5, $6)";

// NULL binds mean "no filter"; the cursor is the (time, id) of the last event seen.
/// Binds: event (or NULL), username (or NULL), before time (or NULL), before id, limit.
pub(super) const SELECT_AUDIT: &str = "SELECT id, time, event, username, client, detail \
     FROM audit_events \
     WHERE ($1 IS NULL OR event = $1) AND ($2 IS NULL OR username = $2) \
       AND ($3 IS NULL OR time < $3 OR (time = $3 AND id < $4)) \
     ORDER BY time DESC, id DESC LIMIT $5";

/// Binds: before (Unix ms).
pub(super) const FORGET_AUDIT: &str = "DELETE FROM audit_events WHERE time < $1";

/// Binds: id, account_id, created_at (ms), expires_at (ms), tokens_until (Unix seconds).
pub(super) const INSERT_FAMILY: &str = "INSERT INTO refresh_families \
     (id, account_id, created_at, expires_at, tokens_until) VALUES ($1, $2, $3, $4, $5)";

/// Binds: hash, family_id, issued_at (ms), idle_until (ms).
pub(super) const INSERT_REFRESH: &str = "INSERT INTO refresh_tokens \
     (hash, family_id, issued_at, idle_until) VALUES ($1, $2, $3, $4)";

// A revoked family is remembered (in every replica's memory) only until its last access token
// has expired, not for its whole lifetime: each rotation moves the family's `tokens_until` up
// to the new access token's.
//
// The UPDATE that spends the token decides a rotation: of any number of concurrent refreshes
// with one token, only the first to take the row's lock finds `spent_at IS NULL`; the others
// match nothing. The token must be within its idle time and its family alive.
//
// A rotation is one round trip to the store, not five: spend the token, store its successor,
// extend the family and read the account that the new access token describes. The binds are
// the same for both stores: presented hash, now (ms), successor hash, successor idle_until (ms),
// access_until (Unix seconds). The row comes back only to the caller whose UPDATE spent the
// token; nobody else stores a successor.

/// SQLite (no data-modifying CTEs): four statements sent as one, inside the caller's
/// `BEGIN IMMEDIATE`. `changes()` is the row count of the statement before, so only the
/// UPDATE that spent the token stores a successor; the last two find the family through that
/// successor's (random, unique) hash.
pub(super) const ROTATE_REFRESH_SQLITE: &str = "UPDATE refresh_tokens SET spent_at = $2 \
     WHERE hash = $1 AND spent_at IS NULL AND idle_until >= $2 \
       AND family_id IN (SELECT id FROM refresh_families \
                         WHERE revoked_at IS NULL AND expires_at >= $2); \
     INSERT INTO refresh_tokens (hash, family_id, issued_at, idle_until) \
       SELECT $3, family_id, $2, $4 FROM refresh_tokens WHERE hash = $1 AND changes() = 1; \
     UPDATE refresh_families \
       SET tokens_until = CASE WHEN tokens_until < $5 THEN $5 ELSE tokens_until END \
       WHERE id = (SELECT family_id FROM refresh_tokens WHERE hash = $3); \
     SELECT f.id AS family_id, f.account_id, f.expires_at, a.username, a.email, a.role, \
            a.created_at, a.disabled, a.password_hash, a.token_generation \
       FROM refresh_families f LEFT JOIN accounts a ON a.id = f.account_id \
       WHERE f.id = (SELECT family_id FROM refresh_tokens WHERE hash = $3)";

/// PostgreSQL: one statement. Of concurrent rotations of one token, the UPDATE of the first
/// to take the row's lock spends it; the others re-check `spent_at IS NULL` after it commits
/// and match nothing, so their INSERT and family UPDATE see no row either.
pub(super) const ROTATE_REFRESH_POSTGRES: &str = "WITH spent AS ( \
       UPDATE refresh_tokens SET spent_at = $2 \
       WHERE hash = $1 AND spent_at IS NULL AND idle_until >= $2 \
         AND family_id IN (SELECT id FROM refresh_families \
                           WHERE revoked_at IS NULL AND expires_at >= $2) \
       RETURNING family_id), \
     successor AS ( \
       INSERT INTO refresh_tokens (hash, family_id, issued_at, idle_until) \
       SELECT $3, family_id, $2, $4 FROM spent), \
     family AS ( \
       UPDATE refresh_families \
       SET tokens_until = CASE WHEN tokens_until < $5 THEN $5 ELSE tokens_until END \
       WHERE id IN (SELECT family_id FROM spent) \
       RETURNING id, account_id, expires_at) \
     SELECT family.id AS family_id, family.account_id, family.expires_at, a.username, \
            a.email, a.role, a.created_at, a.disabled, a.password_hash, a.token_generation \
       FROM family LEFT JOIN accounts a ON a.id = family.account_id";

/// Binds: hash. What a refused refresh token was: `spent_at` set means it is being reused.
pub(super) const SELECT_REFRESH: &str =
    "SELECT family_id, spent_at FROM refresh_tokens WHERE hash = $1";

/// Binds: family id, now (ms).
pub(super) const REVOKE_FAMILY: &str = "UPDATE refresh_families SET revoked_at = $2 \
     WHERE id = $1 AND revoked_at IS NULL RETURNING id, tokens_until";

/// Binds: account id, now (ms).
pub(super) const REVOKE_ACCOUNT_FAMILIES: &str = "UPDATE refresh_families SET revoked_at = $2 \
     WHERE account_id = $1 AND revoked_at IS NULL RETURNING id, tokens_until";

/// Binds: email_key, now (ms). The families of the account with this email (for `disable`).
pub(super) const REVOKE_FAMILIES_BY_EMAIL: &str = "UPDATE refresh_families SET revoked_at = $2 \
     WHERE account_id IN (SELECT id FROM accounts WHERE email_key = $1) \
       AND revoked_at IS NULL RETURNING id, tokens_until";

/// Binds: account id. Every token of the account stops working (`POST /logout/all`).
pub(super) const BUMP_GENERATION: &str = "UPDATE accounts \
     SET token_generation = token_generation + 1 \
     WHERE id = $1 RETURNING id, token_generation, disabled";

/// Binds: account id.
pub(super) const SELECT_CREDENTIALS_BY_ID: &str = "SELECT id, username, email, role, \
     created_at, disabled, password_hash, token_generation FROM accounts WHERE id = $1";

/// Binds: now (Unix seconds).
pub(super) const SELECT_REVOKED_FAMILIES: &str = "SELECT id, tokens_until FROM refresh_families \
     WHERE revoked_at IS NOT NULL AND tokens_until >= $1";

/// Binds: now (ms). Refresh tokens past their idle time or of a family past its end.
pub(super) const DELETE_EXPIRED_REFRESH: &str = "DELETE FROM refresh_tokens \
     WHERE idle_until < $1 OR family_id IN \
       (SELECT id FROM refresh_families WHERE expires_at < $1 OR revoked_at IS NOT NULL)";

/// Binds: now (ms), now (Unix seconds). Families none of whose tokens can be accepted any more.
pub(super) const DELETE_EXPIRED_FAMILIES: &str =
    "DELETE FROM refresh_families WHERE expires_at < $1 AND tokens_until < $2";

/// No binds.
pub(super) const PING: &str = "SELECT 1";

/// Binds: kid, seq, created_at (ms), signs_from (ms), public_key, sealed. A taken `seq` (another
/// replica or rotation got there first) inserts nothing, and the caller re-reads.
pub(super) const INSERT_SIGNING_KEY: &str = "INSERT INTO signing_keys \
     (kid, seq, created_at, signs_from, public_key, sealed) VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (seq) DO NOTHING";

/// No binds.
pub(super) const SELECT_SIGNING_KEYS: &str = "SELECT kid, seq, created_at, signs_from, \
     public_key, sealed FROM signing_keys ORDER BY seq";

/// An `accounts` row as listed.
#[derive(sqlx::FromRow)]
pub(super) struct AccountRow {
    id: String,
    username: String,
    email: String,
    role: String,
    created_at: i64,
    disabled: bool,
}

impl From<AccountRow> for Account {
    fn from(row: AccountRow) -> Self {
        Account {
            id: row.id,
            username: row.username,
            email: row.email,
            role: Role::parse(&row.role),
            created_at_ms: row.created_at,
            disabled: row.disabled,
        }
    }
}

/// An `accounts` row with what login needs.
#[derive(sqlx::FromRow)]
pub(super) struct CredentialsRow {
    #[sqlx(flatten)]
    account: AccountRow,
    password_hash: String,
    token_generation: i64,
}

impl From<CredentialsRow> for Credentials {
    fn from(row: CredentialsRow) -> Self {
        Credentials {
            account: row.account.into(),
            password_hash: row.password_hash,
            token_generation: row.token_generation,
        }
    }
}

/// An account's revocation state (`id, token_generation, disabled`).
#[derive(sqlx::FromRow)]
pub(super) struct AccountStateRow {
    id: String,
    token_generation: i64,
    disabled: bool,
}

impl From<AccountStateRow> for Revocation {
    fn from(row: AccountStateRow) -> Self {
        Revocation::Account {
            id: row.id,
            generation: row.token_generation,
            disabled: row.disabled,
        }
    }
}

/// A `login_failures` row.
#[derive(sqlx::FromRow)]
pub(super) struct FailureRow {
    failures: i64,
    last_failure: i64,
}

impl From<FailureRow> for FailureCount {
    fn from(row: FailureRow) -> Self {
        FailureCount {
            failures: row.failures,
            last_failure_ms: row.last_failure,
        }
    }
}

/// An `accounts` row's email columns.
#[derive(sqlx::FromRow)]
pub(super) struct EmailRow {
    id: String,
    username: String,
    email: String,
    email_key: String,
}

impl From<EmailRow> for StoredEmail {
    fn from(row: EmailRow) -> Self {
        StoredEmail {
            id: row.id,
            username: row.username,
            email: row.email,
            email_key: row.email_key,
        }
    }
}

/// A `revoked_tokens` row.
#[derive(sqlx::FromRow)]
pub(super) struct TokenRow {
    jti: String,
    expires_at: i64,
}

impl From<TokenRow> for Revocation {
    fn from(row: TokenRow) -> Self {
        Revocation::Token {
            jti: row.jti,
            expires_at: row.expires_at,
        }
    }
}

/// An `audit_events` row.
#[derive(sqlx::FromRow)]
pub(super) struct AuditRow {
    id: String,
    time: i64,
    event: String,
    username: Option<String>,
    client: Option<String>,
    detail: String,
}

impl From<AuditRow> for AuditRecord {
    fn from(row: AuditRow) -> Self {
        AuditRecord {
            id: row.id,
            time_ms: row.time,
            event: row.event,
            username: row.username,
            client: row.client,
            detail: row.detail,
        }
    }
}

/// A revoked `refresh_families` row (`id, tokens_until`).
#[derive(sqlx::FromRow)]
pub(super) struct FamilyRow {
    id: String,
    tokens_until: i64,
}

impl From<FamilyRow> for Revocation {
    fn from(row: FamilyRow) -> Self {
        Revocation::Family {
            id: row.id,
            expires_at: row.tokens_until,
        }
    }
}

/// A `refresh_tokens` row as a refused refresh finds it.
#[derive(sqlx::FromRow)]
pub(super) struct RefreshRow {
    pub(super) family_id: String,
    pub(super) spent_at: Option<i64>,
}

/// A rotation's result: the family, and its account when that still exists (the join is an
/// outer one so that a family is never mistaken for a spent token when it has no account).
#[derive(sqlx::FromRow)]
pub(super) struct RotatedRow {
    family_id: String,
    account_id: String,
    expires_at: i64,
    username: Option<String>,
    email: Option<String>,
    role: Option<String>,
    created_at: Option<i64>,
    disabled: Option<bool>,
    password_hash: Option<String>,
    token_generation: Option<i64>,
}

impl From<RotatedRow> for Rotation {
    fn from(row: RotatedRow) -> Self {
        let owner = match (
            row.username,
            row.email,
            row.role,
            row.created_at,
            row.disabled,
            row.password_hash,
            row.token_generation,
        ) {
            (
                Some(username),
                Some(email),
                Some(role),
                Some(created_at_ms),
                Some(disabled),
                Some(password_hash),
                Some(token_generation),
            ) => Some(Credentials {
                account: Account {
                    id: row.account_id.clone(),
                    username,
                    email,
                    role: Role::parse(&role),
                    created_at_ms,
                    disabled,
                },
                password_hash,
                token_generation,
            }),
            _ => None,
        };
        Rotation::Rotated {
            family_id: row.family_id,
            account_id: row.account_id,
            expires_at: row.expires_at,
            owner,
        }
    }
}

/// A new account with its id, keys and creation time, ready to bind to [`INSERT_ACCOUNT`].
pub(super) struct Insert {
    pub(super) account: Account,
    pub(super) username_key: String,
    pub(super) email_key: String,
    pub(super) password_hash: String,
}

impl Insert {
    /// Assigns a time-ordered id (so id order follows creation order) and the folded keys.
    pub(super) fn new(new: NewAccount) -> Self {
        Insert {
            username_key: fold(&new.username),
            email_key: identifier::key(&new.email),
            password_hash: new.password_hash,
            account: Account {
                id: uuid::Uuid::now_v7().to_string(),
                username: new.username,
                email: identifier::normalize(&new.email),
                role: new.role,
                created_at_ms: unix_millis(),
                disabled: false,
            },
        }
    }
}

/// The case-folded key of a username (ASCII by validation). Done here rather than with SQL
/// `lower()`, which is ASCII-only in SQLite, so both databases compare exactly the same way.
pub(super) fn fold(value: &str) -> String {
    value.to_lowercase()
}

/// The LIKE pattern for a search term: keyed as emails are (which folds usernames too), with
/// LIKE's wildcards taken literally.
pub(super) fn search_pattern(search: Option<&str>) -> Option<String> {
    let term = identifier::key(search?);
    let mut pattern = String::with_capacity(term.len() + 2);
    pattern.push('%');
    for c in term.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    Some(pattern)
}

/// Maps an INSERT failure: a unique violation names the field (PostgreSQL reports the index
/// as the constraint, SQLite only in the message as `accounts.email_key`); anything else means
/// the store is unavailable.
pub(super) fn insert_error(error: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &error {
        if db.is_unique_violation() {
            let name = db.constraint().unwrap_or_else(|| db.message());
            if name.contains("username_key") {
                return StoreError::Taken(TakenField::Username);
            }
            if name.contains("email_key") {
                return StoreError::Taken(TakenField::Email);
            }
        }
    }
    unavailable(error)
}

/// Any other database failure. Values are always bound, never part of the SQL, so the
/// message cannot carry a password or hash.
pub(super) fn unavailable(error: sqlx::Error) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

/// A failure while opening `url`: says which database, without its password, and scrubs the
/// URL and password from the driver's message in case it repeats them.
pub(super) fn open_error(url: &str, error: impl std::fmt::Display) -> StoreError {
    let redacted = redact(url);
    let mut message = error.to_string().replace(url, &redacted);
    if let Some(password) = password(url) {
        message = message.replace(password, "***");
    }
    StoreError::Unavailable(format!("{redacted}: {message}"))
}

/// A failed migration: the database could not be reached, or its schema is not one these
/// migrations know (edited or newer migrations applied), which no retry will fix.
pub(super) fn migrate_error(url: &str, error: MigrateError) -> StoreError {
    match error {
        MigrateError::Execute(error) => open_error(url, error),
        other => StoreError::Config(format!("migrating {}: {other}", redact(url))),
    }
}

/// The password in `scheme://user:password@host…`, if any.
fn password(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let userinfo = &rest[..rest.rfind('@')?];
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then_some(password)
}

// ---------------------------------------------------------------------------------------------
// API keys (migration 0006). Times in Unix milliseconds.

/// Binds: account id. SQLite's check before an insert (its writers are serialised anyway);
/// PostgreSQL takes [`LOCK_ACCOUNT_STATE`] instead.
pub(super) const SELECT_ACCOUNT_STATE: &str = "SELECT disabled FROM accounts WHERE id = $1";

/// Binds: account id. PostgreSQL only: locks the account's row, so two concurrent creations
/// for one account count each other's key against the limit (SQLite has one writer anyway).
pub(super) const LOCK_ACCOUNT_STATE: &str =
    "SELECT disabled FROM accounts WHERE id = $1 FOR UPDATE";

/// Binds: account id, now, a day before now. The account's keys neither revoked nor expired,
/// and its keys created since the last bind; read inside the creating transaction, after
/// [`SELECT_ACCOUNT_STATE`] or [`LOCK_ACCOUNT_STATE`], so no other creation for the account
/// can slip in between.
pub(super) const COUNT_API_KEYS: &str = "SELECT \
     COUNT(CASE WHEN revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2) \
           THEN 1 END) AS live, \
     COUNT(CASE WHEN created_at > $3 THEN 1 END) AS recent \
     FROM api_keys WHERE account_id = $1";

/// Binds: id, account_id, name, hash, created_at, expires_at (or NULL).
pub(super) const INSERT_API_KEY: &str = "INSERT INTO api_keys \
     (id, account_id, name, hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)";

/// A day in milliseconds: the window of [`KeyLimits::max_per_day`].
const DAY_MS: i64 = 24 * 3600 * 1000;

/// The refusal `limits` make, given the counts [`COUNT_API_KEYS`] found.
pub(super) fn key_limit(limits: KeyLimits, (live, recent): (i64, i64)) -> Option<KeyCreation> {
    if live >= limits.max_live {
        Some(KeyCreation::TooMany)
    } else if recent >= limits.max_per_day {
        Some(KeyCreation::TooManyToday)
    } else {
        None
    }
}

/// The binds of [`COUNT_API_KEYS`] after the account id, for a key created at `now_ms`.
pub(super) fn key_count_window(now_ms: i64) -> (i64, i64) {
    (now_ms, now_ms.saturating_sub(DAY_MS))
}

/// The columns of an [`ApiKeyRow`].
macro_rules! api_key_columns {
    ($prefix:literal) => {
        concat!(
            $prefix,
            "id, ",
            $prefix,
            "account_id, ",
            $prefix,
            "name, ",
            $prefix,
            "created_at, ",
            $prefix,
            "expires_at, ",
            $prefix,
            "revoked_at, ",
            $prefix,
            "last_used_at"
        )
    };
}

/// Binds: hash.
pub(super) const SELECT_API_KEY_BY_HASH: &str = concat!(
    "SELECT ",
    api_key_columns!("k."),
    ", a.username, a.email, a.role, a.created_at AS account_created_at, a.disabled \
     FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.hash = $1"
);

/// Binds: account id.
pub(super) const SELECT_API_KEYS: &str = concat!(
    "SELECT ",
    api_key_columns!(""),
    " FROM api_keys WHERE account_id = $1 ORDER BY created_at, id"
);

/// Binds: id, account id (or NULL: any account), now.
pub(super) const REVOKE_API_KEY: &str = concat!(
    "UPDATE api_keys SET revoked_at = $3 \
     WHERE id = $1 AND ($2 IS NULL OR account_id = $2) AND revoked_at IS NULL RETURNING ",
    api_key_columns!("")
);

/// Binds: since (Unix ms): keys revoked since then, for replicas to remember.
pub(super) const SELECT_REVOKED_API_KEYS: &str =
    "SELECT id, revoked_at FROM api_keys WHERE revoked_at >= $1";

/// Binds: before (Unix ms).
pub(super) const PRUNE_API_KEYS: &str =
    "DELETE FROM api_keys WHERE revoked_at < $1 OR expires_at < $1";

/// Most keys [`touch_api_keys`] takes in one statement (two parameters each).
pub(super) const TOUCH_BATCH: usize = 500;

/// `UPDATE` of `count` keys' `last_used_at` in one statement. Binds: id, time, id, time, … A
/// time older than the stored one is ignored (replicas flush independently). Only the number
/// of placeholders varies: the values are always bound.
pub(super) fn touch_api_keys(count: usize) -> String {
    let mut case = String::from("CASE id");
    let mut ids = String::new();
    for n in 0..count {
        let (id, time) = (2 * n + 1, 2 * n + 2);
        case.push_str(&format!(" WHEN ${id} THEN ${time}"));
        if n > 0 {
            ids.push_str(", ");
        }
        ids.push_str(&format!("${id}"));
    }
    case.push_str(" END");
    format!(
        "UPDATE api_keys SET last_used_at = {case} WHERE id IN ({ids}) \
         AND (last_used_at IS NULL OR last_used_at < {case})"
    )
}

/// An `api_keys` row, without its hash.
#[derive(sqlx::FromRow)]
pub(super) struct ApiKeyRow {
    id: String,
    account_id: String,
    name: String,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    last_used_at: Option<i64>,
}

impl From<ApiKeyRow> for ApiKey {
    fn from(row: ApiKeyRow) -> Self {
        ApiKey {
            id: row.id,
            account_id: row.account_id,
            name: row.name,
            created_at_ms: row.created_at,
            expires_at_ms: row.expires_at,
            revoked_at_ms: row.revoked_at,
            last_used_at_ms: row.last_used_at,
        }
    }
}

/// A key found by hash, joined with its account.
#[derive(sqlx::FromRow)]
pub(super) struct KeyOwnerRow {
    #[sqlx(flatten)]
    key: ApiKeyRow,
    username: String,
    email: String,
    role: String,
    account_created_at: i64,
    disabled: bool,
}

impl From<KeyOwnerRow> for KeyOwner {
    fn from(row: KeyOwnerRow) -> Self {
        KeyOwner {
            account: Account {
                id: row.key.account_id.clone(),
                username: row.username,
                email: row.email,
                role: Role::parse(&row.role),
                created_at_ms: row.account_created_at,
                disabled: row.disabled,
            },
            key: row.key.into(),
        }
    }
}

/// A revoked key's id and revocation time.
#[derive(sqlx::FromRow)]
pub(super) struct RevokedKeyRow {
    id: String,
    revoked_at: i64,
}

impl From<RevokedKeyRow> for Revocation {
    fn from(row: RevokedKeyRow) -> Self {
        Revocation::ApiKey {
            id: row.id,
            until: row.revoked_at.div_euclid(1000) + API_KEY_REVOCATION_MEMORY_SECS,
        }
    }
}

/// The row [`INSERT_API_KEY`] wrote for `key`.
pub(super) fn new_api_key(key: &NewApiKey) -> ApiKey {
    ApiKey {
        id: key.id.clone(),
        account_id: key.account_id.clone(),
        name: key.name.clone(),
        created_at_ms: key.created_at_ms,
        expires_at_ms: key.expires_at_ms,
        revoked_at_ms: None,
        last_used_at_ms: None,
    }
}

/// The earliest revocation time (Unix ms) [`SELECT_REVOKED_API_KEYS`] returns at `now_ms`.
pub(super) fn revoked_keys_since(now_ms: i64) -> i64 {
    now_ms.saturating_sub(API_KEY_REVOCATION_MEMORY_SECS * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_pattern_takes_wildcards_literally() {
        assert_eq!(search_pattern(Some("A%b_c\\")).unwrap(), r"%a\%b\_c\\%");
        assert_eq!(search_pattern(None), None);
    }

    #[test]
    fn fold_lowercases_beyond_ascii() {
        assert_eq!(fold("ÉLODIE@Example.COM"), "élodie@example.com");
    }

    #[test]
    fn searches_are_keyed_like_emails() {
        assert_eq!(
            search_pattern(Some("\u{212A}ATE_")).as_deref(),
            Some("%kate\\_%")
        );
    }

    #[test]
    fn open_error_hides_the_password() {
        let url = "postgres://app:s3cret@db/x";
        let error = open_error(url, format!("cannot reach {url} with s3cret"));
        let message = error.to_string();
        assert!(!message.contains("s3cret"), "{message}");
        assert!(message.contains("postgres://app:***@db/x"), "{message}");
    }

    #[test]
    fn touching_keys_binds_an_id_and_a_time_per_key() {
        let sql = touch_api_keys(2);
        assert_eq!(
            sql,
            "UPDATE api_keys SET last_used_at = CASE id WHEN $1 THEN $2 WHEN $3 THEN $4 END \
             WHERE id IN ($1, $3) AND (last_used_at IS NULL OR last_used_at < \
             CASE id WHEN $1 THEN $2 WHEN $3 THEN $4 END)"
        );
    }

    #[test]
    fn password_is_found_only_in_userinfo() {
        assert_eq!(password("postgres://app:pw@h/x"), Some("pw"));
        assert_eq!(password("postgres://app@h/x"), None);
        assert_eq!(password("sqlite://data/g.db"), None);
    }
}
