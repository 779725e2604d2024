//! `gatehouse apikeys …`: API keys straight against the store, for operators and scripts (no
//! running proxy needed: replicas learn of a revocation through the store, within a second).
//! `create` prints the key once, on a line of its own (stdout), and the rest on stderr, so
//! `KEY=$(gatehouse apikeys create …)` captures only the key. `create` and `revoke` write their
//! audit events (`api_key_created`, `api_key_revoked`) with `{"source":"cli"}`.

use crate::auth::api_keys::{self, CreateRefused};
use crate::auth::audit::{self, AuditEvent};
use crate::clock::unix_millis;
use crate::store::AccountStore;

use super::accounts::AdminError;

/// Creates a key named `name` for the account with `email`, living `expires` (`90d`, …) or
/// forever; prints the key.
pub async fn create(
    store: &dyn AccountStore,
    email: &str,
    name: &str,
    expires: Option<&str>,
) -> Result<(), AdminError> {
    api_keys::check_name(name).map_err(AdminError::Invalid)?;
    let lifetime = expires
        .map(|text| {
            api_keys::parse_lifetime(text).map_err(|e| e.replace("expires_in", "--expires"))
        })
        .transpose()
        .map_err(AdminError::Invalid)?;
    let account = store
        .credentials(email)
        .await?
        .ok_or_else(|| AdminError::Invalid(format!("no account has the email {email}")))?
        .account;
    let (key, secret) = api_keys::create(store, &account.id, name, lifetime)
        .await
        .map_err(|refused| match refused {
            CreateRefused::Store(error) => AdminError::Store(error),
            CreateRefused::NoAccount => {
                AdminError::Invalid(format!("the account {email} is disabled"))
            }
            other => AdminError::Invalid(other.to_string()),
        })?;
    let detail = serde_json::json!({ "source": "cli", "key_id": key.id, "name": key.name });
    audit::write_now(
        store,
        AuditEvent::ApiKeyCreated,
        Some(&account.username),
        detail,
    )
    .await?;
    let expires = key
        .expires_at_ms
        .map_or_else(|| "never".to_string(), |ms| ms.to_string());
    eprintln!(
        "created API key {} ({}) for {} <{}>, expires_at_ms {expires}; it is shown only now:",
        key.id, key.name, account.username, account.email
    );
    println!("{secret}");
    Ok(())
}

/// Prints the account's keys, tab-separated, oldest first (never the keys).
pub async fn list(store: &dyn AccountStore, email: &str) -> Result<(), AdminError> {
    let account = store
        .credentials(email)
        .await?
        .ok_or_else(|| AdminError::Invalid(format!("no account has the email {email}")))?
        .account;
    let keys = store.api_keys(&account.id).await?;
    let time = |ms: Option<i64>| ms.map_or_else(|| "-".to_string(), |ms| ms.to_string());
    println!("id\tname\tcreated_at_ms\texpires_at_ms\tlast_used_at_ms\trevoked_at_ms");
    for key in &keys {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            key.id,
            key.name,
            key.created_at_ms,
            time(key.expires_at_ms),
            time(key.last_used_at_ms),
            time(key.revoked_at_ms)
        );
    }
    eprintln!("{} API keys", keys.len());
    Ok(())
}

/// Revokes the key `id` (of any account) on every replica.
pub async fn revoke(store: &dyn AccountStore, id: &str) -> Result<(), AdminError> {
    let key = store
        .revoke_api_key(id, None, unix_millis())
        .await?
        .ok_or_else(|| AdminError::Invalid(format!("no unrevoked API key has the id {id}")))?;
    let owner = store.account_credentials(&key.account_id).await?;
    let username = owner.map(|c| c.account.username);
    let detail = serde_json::json!({ "source": "cli", "key_id": key.id, "name": key.name });
    audit::write_now(
        store,
        AuditEvent::ApiKeyRevoked,
        username.as_deref(),
        detail,
    )
    .await?;
    println!("revoked API key {} ({})", key.id, key.name);
    Ok(())
}
