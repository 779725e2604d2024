//! `gatehouse keys …`: the store's signing keys, straight against the store like
//! `gatehouse accounts` (no running proxy needed: replicas re-read the key table by themselves).
//! `rotate` writes its audit event (`signing_key_rotated`) straight to the store.

use crate::auth::audit::{self, AuditEvent};
use crate::auth::keyring::{self, KeyringError};
use crate::clock::rfc3339;
use crate::config::AuthSettings;
use crate::store::AccountStore;

/// A key command failed.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error(transparent)]
    Keyring(#[from] KeyringError),
}

/// Adds a signing key, published at once, signing after `auth.keys.publish_delay`; prints its
/// kid and when it starts signing. Needs the signing-key secret, and refuses one that does not
/// open the existing keys.
pub async fn rotate(store: &dyn AccountStore, auth: &AuthSettings) -> Result<(), KeysError> {
    let secret = keyring::key_secret(&auth.keys)?
        .ok_or_else(|| KeyringError::MissingSecret("gatehouse keys rotate".to_string()))?;
    let key = keyring::rotate(store, &secret, auth.keys.publish_delay).await?;
    let detail = serde_json::json!({
        "source": "cli",
        "kid": key.kid,
        "signs_from": rfc3339(key.signs_from_ms),
    });
    if let Err(error) = audit::write_now(store, AuditEvent::SigningKeyRotated, None, detail).await {
        eprintln!("warning: the key was added but its audit event was not written: {error}");
    }
    println!("{}\tsigns from {}", key.kid, rfc3339(key.signs_from_ms));
    Ok(())
}

/// Prints every key, oldest first, tab-separated: kid, created, signs from, state (`next`,
/// `signing`, `retired` (still published), `expired`), by this machine's clock and the config's
/// token lifetimes.
pub async fn list(store: &dyn AccountStore, auth: &AuthSettings) -> Result<(), KeysError> {
    let rows = store.signing_keys().await.map_err(KeyringError::Store)?;
    let times: Vec<i64> = rows.iter().map(|row| row.signs_from_ms).collect();
    let states = keyring::key_states(
        &times,
        crate::clock::unix_millis(),
        keyring::keep_published_for(auth),
    );
    println!("kid\tcreated\tsigns_from\tstate");
    for (row, state) in rows.iter().zip(states) {
        println!(
            "{}\t{}\t{}\t{}",
            row.kid,
            rfc3339(row.created_at_ms),
            rfc3339(row.signs_from_ms),
            state.as_str()
        );
    }
    Ok(())
}
