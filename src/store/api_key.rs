//! API keys as the store holds them: never the key, only its SHA-256 (`hash`).

use super::{Account, Revocation};

/// How long every replica remembers a revoked key's id (seconds after its revocation), so that
/// a lookup which read the row just before the revocation committed cannot put the key back
/// into a replica's cache: [`super::AccountStore::revocations`] returns keys revoked this
/// recently, and the in-memory copy is pruned after the same time.
pub const API_KEY_REVOCATION_MEMORY_SECS: i64 = 3600;

/// Revoked or expired keys stay listed this long, then the minute loop deletes them (so an
/// account that keeps creating and revoking keys cannot grow the table without bound).
pub const API_KEY_RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;

/// An API key's row, without its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// A UUID v7, shown to the owner and used to revoke the key.
    pub id: String,
    /// The owning account's id.
    pub account_id: String,
    /// The owner's label for it.
    pub name: String,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
    /// Past this (Unix milliseconds) the key is refused; `None`: never.
    pub expires_at_ms: Option<i64>,
    /// When it was revoked, Unix milliseconds.
    pub revoked_at_ms: Option<i64>,
    /// When it was last used, as last flushed by a replica (Unix milliseconds).
    pub last_used_at_ms: Option<i64>,
}

impl ApiKey {
    /// Whether the key authenticates at `now_ms`: not revoked and not expired.
    pub fn is_live(&self, now_ms: i64) -> bool {
        self.revoked_at_ms.is_none() && self.expires_at_ms.is_none_or(|end| now_ms < end)
    }

    /// The revocation every replica must apply, once the key is revoked.
    pub fn revocation(&self) -> Option<Revocation> {
        self.revoked_at_ms.map(|at| Revocation::ApiKey {
            id: self.id.clone(),
            until: at.div_euclid(1000) + API_KEY_REVOCATION_MEMORY_SECS,
        })
    }
}

/// A key to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    /// Its id (a UUID v7).
    pub id: String,
    /// The owning account.
    pub account_id: String,
    /// The owner's label, already validated.
    pub name: String,
    /// Lower-case hex SHA-256 of the key.
    pub hash: String,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
    /// Expiry, Unix milliseconds; `None`: never.
    pub expires_at_ms: Option<i64>,
}

/// How many keys an account may have: checked and written atomically with each new key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLimits {
    /// Keys neither revoked nor expired.
    pub max_live: i64,
    /// Keys created (revoked ones included) in the 24 hours before the new one: bounds the
    /// rows and the revocations a create-and-revoke loop can make.
    pub max_per_day: i64,
}

/// What storing a new key did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyCreation {
    /// Stored.
    Created(ApiKey),
    /// The account already holds the most live keys allowed; nothing was written.
    TooMany,
    /// The account created the most keys allowed in the last 24 hours; nothing was written.
    TooManyToday,
    /// No such account, or it is disabled; nothing was written.
    NoAccount,
}

/// A key found by its hash, with the account it authenticates as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOwner {
    /// The key (revoked or expired keys are found too, so the caller can tell why it refuses).
    pub key: ApiKey,
    /// Its account as it is now.
    pub account: Account,
}
