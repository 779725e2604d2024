//! The account store: one [`AccountStore`] trait over embedded SQLite (the default) and
//! PostgreSQL (shared by replicas), both created from the same embedded migrations.
//!
//! Uniqueness of usernames and emails is the database's job (unique indexes, conflicts mapped to
//! [`StoreError::Taken`]), never a read-then-write here. Revocations (logged-out tokens, bumped
//! account generations) are stored too, so every replica can learn them: PostgreSQL pushes them
//! with `NOTIFY`, SQLite replicas poll [`AccountStore::revocations`].

mod api_key;
pub mod identifier;
mod postgres;
mod signing_keys;
mod sql;
mod sqlite;

use std::time::Duration;

use async_trait::async_trait;

pub use api_key::{
    ApiKey, KeyCreation, KeyLimits, KeyOwner, NewApiKey, API_KEY_RETENTION_MS,
    API_KEY_REVOCATION_MEMORY_SECS,
};
pub use postgres::PostgresStore;
pub use signing_keys::StoredKey;
pub use sqlite::SqliteStore;

/// An account as anyone may see it (never the hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Stable id (a UUID), the token's `sub`.
    pub id: String,
    /// Unique, as registered.
    pub username: String,
    /// Unique by its [`identifier::key`]; stored as [`identifier::normalize`] makes it.
    pub email: String,
    /// `user` or `admin`.
    pub role: Role,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
    /// A disabled account cannot log in and its tokens are rejected.
    pub disabled: bool,
}

/// What login needs: the account, its hash and its revocation state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The account itself.
    pub account: Account,
    /// PHC-format argon2id hash.
    pub password_hash: String,
    /// Tokens carry the generation they were issued under; a bump revokes all older ones.
    pub token_generation: i64,
}

/// A new account, its password already hashed.
#[derive(Debug, Clone)]
pub struct NewAccount {
    /// Validated username.
    pub username: String,
    /// Validated email (stored NFKC-normalised, unique by its [`identifier::key`]).
    pub email: String,
    /// PHC-format argon2id hash.
    pub password_hash: String,
    /// Role of the new account.
    pub role: Role,
}

/// What an account may do beyond proxying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// An ordinary account.
    User,
    /// May see the accounts list when `accounts_page: admin`, and services with `roles: [admin]`.
    Admin,
}

impl Role {
    /// The stored and serialised name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    /// Parses a stored name; anything unknown is an ordinary user (least privilege).
    pub fn parse(name: &str) -> Role {
        match name {
            "admin" => Role::Admin,
            _ => Role::User,
        }
    }
}

/// One page of the account list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountPage {
    /// The accounts of the page, oldest first.
    pub accounts: Vec<Account>,
    /// How many accounts match the filter in all.
    pub total: i64,
}

/// Which page of which accounts.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Case-insensitive substring of username or email; `None` lists all.
    pub search: Option<String>,
    /// Rows to skip.
    pub offset: i64,
    /// Rows to return.
    pub limit: i64,
    /// Whether disabled accounts are listed too (an administrator's view).
    pub include_disabled: bool,
}

/// A revocation, as stored and as broadcast between replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// A logged-out token: rejected until it would have expired anyway.
    Token {
        /// The token's `jti`.
        jti: String,
        /// Its `exp`, Unix seconds.
        expires_at: i64,
    },
    /// An account's current state: tokens of an older generation, or of a disabled account,
    /// are rejected.
    Account {
        /// The account id (`sub`).
        id: String,
        /// Current token generation.
        generation: i64,
        /// Whether the account is disabled.
        disabled: bool,
    },
    /// A revoked refresh family (a login or browser session ended): access tokens carrying
    /// its id (`fam`) are rejected.
    Family {
        /// The family id.
        id: String,
        /// The last second any of its access tokens could be accepted, Unix seconds.
        expires_at: i64,
    },
    /// A revoked API key: refused from now on, and remembered by every replica until `until`
    /// ([`API_KEY_REVOCATION_MEMORY_SECS`] after the revocation).
    ApiKey {
        /// The key's id.
        id: String,
        /// Unix seconds.
        until: i64,
    },
}

/// A new refresh family: one login or browser session. Times are Unix milliseconds, but for
/// `tokens_until` (seconds, as token claims).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFamily {
    /// Random id, the `fam` claim of its access tokens.
    pub id: String,
    /// The account it belongs to.
    pub account_id: String,
    /// When it starts.
    pub now: i64,
    /// Its absolute end: no refresh after this.
    pub expires_at: i64,
    /// The last second an access token issued from it could be accepted.
    pub tokens_until: i64,
}

/// A refresh token to store: only its SHA-256 hash, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRefresh {
    /// Lower-case hex SHA-256 of the token.
    pub hash: String,
    /// Unused past this (Unix milliseconds), it is expired (`auth.refresh.idle`).
    pub idle_until: i64,
    /// The last second (Unix seconds) the access token issued with it could be accepted: a
    /// revocation of the family is remembered at least that long.
    pub access_until: i64,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was spent and its successor stored.
    Rotated {
        /// Its family.
        family_id: String,
        /// The family's account.
        account_id: String,
        /// The family's absolute end, Unix milliseconds.
        expires_at: i64,
        /// The account as it is now, read in the same round trip (`None` if it is gone), for
        /// the new access token.
        owner: Option<Credentials>,
    },
    /// Unknown, expired (idle or absolute), or of a revoked family.
    Invalid,
    /// Already spent: presented again, so it has leaked. Its family was revoked (`Some` if
    /// by this call, `None` if it was already).
    Reused(Option<Revocation>),
}

/// An account's email as stored, for checking rows written under older normalisation rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEmail {
    /// The account id.
    pub id: String,
    /// The username, for reports.
    pub username: String,
    /// The email column.
    pub email: String,
    /// The uniqueness key column.
    pub email_key: String,
}

/// A failed-login counter, shared by replicas through the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureCount {
    /// Failures counted.
    pub failures: i64,
    /// When the last one happened, Unix milliseconds.
    pub last_failure_ms: i64,
}

/// When [`AccountStore::count_failure`] holds a key back: once it has `free` failures, until
/// `min(1 s × 2^(failures − free), max_wait)` after its last failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureRule {
    /// The time of this failure, Unix milliseconds.
    pub now_ms: i64,
    /// Counters whose last failure is older than this are forgotten.
    pub forget_before_ms: i64,
    /// Whether the back-off holds at all (`false`: just count).
    pub enforce: bool,
    /// Failures before the back-off starts.
    pub free: i64,
    /// The longest wait, milliseconds.
    pub max_wait_ms: i64,
}

impl FailureRule {
    /// The smallest number of doublings of 1 s that reaches `max_wait_ms` (at most 40, some
    /// 35 years): from there on the wait is `max_wait_ms`, and the shift in SQL never
    /// overflows.
    pub fn doublings_to_max(&self) -> i64 {
        let mut doublings = 0;
        while doublings < 40 && 1000_i64 << doublings < self.max_wait_ms {
            doublings += 1;
        }
        doublings
    }
}

/// One audit-trail event as stored (`audit_events`). Never a password, token or hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// A UUID v7 whose timestamp is `time_ms`: time-ordered, and the paging cursor.
    pub id: String,
    /// When it happened, Unix milliseconds.
    pub time_ms: i64,
    /// The event name (`login_success`, …).
    pub event: String,
    /// The account's username, when an account is known.
    pub username: Option<String>,
    /// The client IP as the proxy determined it; `None` from the command line.
    pub client: Option<String>,
    /// A small JSON object, as text.
    pub detail: String,
}

/// Which audit events, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this event name.
    pub event: Option<String>,
    /// Only this username.
    pub username: Option<String>,
    /// Only events older than this one (`time`, `id`): the last event of the previous page.
    pub before: Option<(i64, String)>,
    /// Rows to return.
    pub limit: i64,
}

/// Which field a registration collided on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakenField {
    /// Another account has this username.
    Username,
    /// Another account has this email (in any letter case).
    Email,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write.
    #[error("{0:?} is already taken")]
    Taken(TakenField),
    /// The database could not be reached or answered with an error.
    #[error("account store unavailable: {0}")]
    Unavailable(String),
    /// The URL or schema is unusable.
    #[error("account store misconfigured: {0}")]
    Config(String),
}

/// The live stream of revocations from other replicas (PostgreSQL `LISTEN`).
#[async_trait]
pub trait RevocationFeed: Send {
    /// The next revocation; `Ok(None)` when the connection was lost and notifications may have
    /// been missed (the caller resynchronises in full, then calls again, which reconnects).
    async fn next(&mut self) -> Result<Option<Revocation>, StoreError>;
}

/// Where accounts and revocations live.
#[async_trait]
pub trait AccountStore: Send + Sync + std::fmt::Debug {
    /// `sqlite` or `postgres`, for logs.
    fn kind(&self) -> &'static str;

    /// Inserts an account; [`StoreError::Taken`] if the username or email exists.
    async fn create(&self, account: NewAccount) -> Result<Account, StoreError>;

    /// The account whose email has the same [`identifier::key`], with what login needs.
    async fn credentials(&self, email: &str) -> Result<Option<Credentials>, StoreError>;

    /// Every account's email and key as stored, oldest first.
    async fn stored_emails(&self) -> Result<Vec<StoredEmail>, StoreError>;

    /// Rewrites an account's email and key; [`StoreError::Taken`] if another account has the
    /// key. Returns whether the account exists.
    async fn set_email(&self, id: &str, email: &str, email_key: &str) -> Result<bool, StoreError>;

    /// One page of accounts, filtered by `query.search`.
    async fn list(&self, query: &ListQuery) -> Result<AccountPage, StoreError>;

    /// Disables the account with this email, bumps its token generation (revoking every
    /// token it holds) and revokes its refresh families; returns the new state, or `None` if no such account.
    async fn disable(&self, email: &str) -> Result<Option<Revocation>, StoreError>;

    /// Records a logged-out token until `expires_at` (the last second it could be accepted:
    /// its expiry plus the verification leeway) and tells the other replicas.
    async fn revoke_token(&self, jti: &str, expires_at: i64) -> Result<(), StoreError>;

    /// Every revocation still in force (tokens not yet expired, accounts disabled or with a
    /// bumped generation, revoked families whose tokens could still be accepted); also
    /// deletes expired token rows.
    async fn revocations(&self) -> Result<Vec<Revocation>, StoreError>;

    /// The account with this id, with what a token needs (`None` if there is none).
    async fn account_credentials(&self, id: &str) -> Result<Option<Credentials>, StoreError>;

    /// Stores a new family and, unless it is a browser session, its first refresh token.
    async fn start_family(
        &self,
        family: &NewFamily,
        first: Option<&NewRefresh>,
    ) -> Result<(), StoreError>;

    /// Spends the refresh token whose hash is `hash` at `now` (Unix ms) and stores `next` as its
    /// successor in one round trip whose conditional UPDATE decides (of racing calls exactly
    /// one rotates), moving the family's `tokens_until` on to `next.access_until`. A spent token revokes its family
    /// and tells the other replicas.
    async fn rotate_refresh(
        &self,
        hash: &str,
        next: &NewRefresh,
        now: i64,
    ) -> Result<Rotation, StoreError>;

    /// Revokes one family (logout, sign-out) at `now` (Unix ms) and tells the other replicas;
    /// `None` if it was unknown or revoked already.
    async fn revoke_family(&self, id: &str, now: i64) -> Result<Option<Revocation>, StoreError>;

    /// Ends everything the account holds (`POST /logout/all`): its token generation is bumped
    /// and all its families revoked, and the other replicas told. `None` if no such account.
    async fn end_sessions(
        &self,
        account_id: &str,
        now: i64,
    ) -> Result<Option<Revocation>, StoreError>;

    /// Deletes refresh tokens past their idle time or of ended families, and families none of
    /// whose access tokens can be accepted any more, as of `now` (Unix ms); returns how many
    /// rows.
    async fn prune_refresh(&self, now: i64) -> Result<u64, StoreError>;

    /// The failed-login counter under `key`, if any.
    async fn failure_count(&self, key: &str) -> Result<Option<FailureCount>, StoreError>;

    /// Counts one failure under `key` at `rule.now_ms`, in one atomic statement, unless `rule`
    /// holds the key back; returns the new count, or `None` when held back (nothing written).
    /// A counter whose last failure is older than `rule.forget_before_ms` starts again at 1.
    async fn count_failure(&self, key: &str, rule: &FailureRule)
        -> Result<Option<i64>, StoreError>;

    /// Takes one failure back from the counter under `key`, or deletes it when `clear`.
    async fn take_back_failure(&self, key: &str, clear: bool) -> Result<(), StoreError>;

    /// Deletes counters whose last failure is older than `before_ms`; returns how many.
    async fn forget_failure_counts(&self, before_ms: i64) -> Result<u64, StoreError>;

    /// Writes audit events, all in one transaction.
    async fn insert_audit(&self, events: &[AuditRecord]) -> Result<(), StoreError>;

    /// Audit events matching `query`, newest first.
    async fn audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;

    /// Deletes audit events older than `before_ms`; returns how many.
    async fn forget_audit_events(&self, before_ms: i64) -> Result<u64, StoreError>;

    /// A push feed of revocations, or `None` if this store must be polled.
    async fn feed(&self) -> Result<Option<Box<dyn RevocationFeed>>, StoreError>;

    /// A trivial round trip, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Stores `key` unless its account is missing or disabled, or is at one of `limits`
    /// (checked and written atomically).
    async fn create_api_key(
        &self,
        key: &NewApiKey,
        limits: KeyLimits,
    ) -> Result<KeyCreation, StoreError>;

    /// The key whose hash is `hash`, revoked and expired ones included, with its account.
    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<KeyOwner>, StoreError>;

    /// The account's keys (never their hashes), oldest first.
    async fn api_keys(&self, account_id: &str) -> Result<Vec<ApiKey>, StoreError>;

    /// Revokes the key `id` at `now_ms` (only if it belongs to `account_id`, when given) and
    /// tells the other replicas; `None` if there is no such unrevoked key (of that account).
    async fn revoke_api_key(
        &self,
        id: &str,
        account_id: Option<&str>,
        now_ms: i64,
    ) -> Result<Option<ApiKey>, StoreError>;

    /// Records when keys were last used: `(id, Unix ms)` pairs, in one statement; a time older
    /// than the stored one is ignored.
    async fn touch_api_keys(&self, used: &[(String, i64)]) -> Result<(), StoreError>;

    /// Deletes keys revoked or expired before `before_ms`; returns how many.
    async fn prune_api_keys(&self, before_ms: i64) -> Result<u64, StoreError>;

    /// Every signing key, oldest (lowest `seq`) first.
    async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError>;

    /// Adds a signing key unless one with its `seq` exists; returns whether it was added (a
    /// `false` means another replica or rotation took that `seq`: re-read and decide again).
    async fn add_signing_key(&self, key: &StoredKey) -> Result<bool, StoreError>;
}

/// How long a request may wait for a pooled database connection before the store is reported
/// unavailable (503) rather than hanging the client.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Opens (and migrates) the store at `url`: `sqlite://PATH` or `postgres://…`.
pub async fn open(url: &str) -> Result<Box<dyn AccountStore>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Box::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Box::new(PostgresStore::open(url).await?))
    } else {
        Err(StoreError::Config(format!(
            "unsupported database URL scheme in {}",
            redact(url)
        )))
    }
}

/// The URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_the_password_only() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(redact("sqlite://data/g.db"), "sqlite://data/g.db");
    }

    #[test]
    fn the_wait_doubles_from_one_second_until_it_reaches_the_maximum() {
        let rule = |max_wait_ms| FailureRule {
            now_ms: 0,
            forget_before_ms: 0,
            enforce: true,
            free: 5,
            max_wait_ms,
        };
        assert_eq!(
            rule(900_000).doublings_to_max(),
            10,
            "512 s < 15 min <= 1024 s"
        );
        assert_eq!(rule(1_000).doublings_to_max(), 0);
        assert_eq!(rule(0).doublings_to_max(), 0);
        assert_eq!(rule(i64::MAX).doublings_to_max(), 40);
    }

    #[test]
    fn unknown_roles_parse_as_user() {
        assert_eq!(Role::parse("admin"), Role::Admin);
        assert_eq!(Role::parse("root"), Role::User);
    }
}
