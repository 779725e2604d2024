//! `auth.keys`: the signing keys kept in the account store (assertions to backends, EdDSA
//! access tokens without `key_file`), how long a rotated key waits before it signs, and how long
//! an assertion lives.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::values::Dur;

/// Longest assertion lifetime: a stolen assertion (a backend's log, a proxy in between) is
/// worth at most this long.
pub const MAX_ASSERTION_TTL: Duration = Duration::from_secs(300);
/// Shortest assertion lifetime: shorter ones would be re-signed nearly per request and fail
/// on backends whose clocks drift by a few seconds.
pub const MIN_ASSERTION_TTL: Duration = Duration::from_secs(10);
/// Shortest publish delay: replicas must re-read the key table and caches fetch the JWKS
/// within it (they re-read every quarter of the delay, at most every 5 s).
pub const MIN_PUBLISH_DELAY: Duration = Duration::from_secs(1);
/// Longest publish delay (a rotation that takes days to start signing is a typo).
pub const MAX_PUBLISH_DELAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Signing keys in the store. The secret comes from `GATEHOUSE_KEY_SECRET` or `secret_file`,
/// and is needed only when store keys are used.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawKeys")]
pub struct KeySettings {
    /// File holding the secret (≥ 32 bytes) that seals the private keys at rest.
    pub secret_file: Option<PathBuf>,
    /// How long a rotated key is published before it signs.
    pub publish_delay: Duration,
    /// Lifetime of an `X-Gatehouse-Assertion` (at most 300 s).
    pub assertion_ttl: Duration,
    /// The secret from `GATEHOUSE_KEY_SECRET`, set by the binary (never read from YAML).
    secret_override: Option<KeySecret>,
}

impl KeySettings {
    /// The secret given by the environment, which wins over `secret_file`.
    pub fn secret_override(&self) -> Option<&[u8]> {
        self.secret_override.as_ref().map(|s| s.0.as_slice())
    }

    /// Sets the secret given by the environment.
    pub fn set_secret_override(&mut self, secret: Vec<u8>) {
        self.secret_override = Some(KeySecret(secret));
    }

    /// Whether a secret is configured at all (environment or file).
    pub fn has_secret(&self) -> bool {
        self.secret_override.is_some() || self.secret_file.is_some()
    }
}

impl Default for KeySettings {
    fn default() -> Self {
        KeySettings {
            secret_file: None,
            publish_delay: Duration::from_secs(60),
            assertion_ttl: MAX_ASSERTION_TTL,
            secret_override: None,
        }
    }
}

/// Key material that must never reach a log line.
#[derive(Clone)]
struct KeySecret(Vec<u8>);

impl std::fmt::Debug for KeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeySecret(<{} bytes>)", self.0.len())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeys {
    #[serde(default)]
    secret_file: Option<PathBuf>,
    #[serde(default)]
    publish_delay: Option<Dur>,
    #[serde(default)]
    assertion_ttl: Option<Dur>,
}

impl TryFrom<RawKeys> for KeySettings {
    type Error = String;
    fn try_from(raw: RawKeys) -> Result<Self, String> {
        let defaults = KeySettings::default();
        let publish_delay = raw.publish_delay.map_or(defaults.publish_delay, |d| d.0);
        let assertion_ttl = raw.assertion_ttl.map_or(defaults.assertion_ttl, |d| d.0);
        check_publish_delay(publish_delay)?;
        check_assertion_ttl(assertion_ttl)?;
        Ok(KeySettings {
            secret_file: raw.secret_file,
            publish_delay,
            assertion_ttl,
            secret_override: None,
        })
    }
}

/// `auth.keys.publish_delay` between 1 s and 24 h.
fn check_publish_delay(delay: Duration) -> Result<(), String> {
    if !(MIN_PUBLISH_DELAY..=MAX_PUBLISH_DELAY).contains(&delay) {
        return Err(format!(
            "auth.keys.publish_delay must be between 1s and 24h (got {delay:?}): a rotated key \
             is published this long before it signs"
        ));
    }
    Ok(())
}

/// `auth.keys.assertion_ttl` between 10 s and 300 s.
fn check_assertion_ttl(ttl: Duration) -> Result<(), String> {
    if !(MIN_ASSERTION_TTL..=MAX_ASSERTION_TTL).contains(&ttl) {
        return Err(format!(
            "auth.keys.assertion_ttl must be between 10s and 300s (got {ttl:?}): an assertion \
             is a bearer credential for its service"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assertion_ttl_is_held_to_ten_to_three_hundred_seconds() {
        assert!(check_assertion_ttl(Duration::from_secs(300)).is_ok());
        assert!(check_assertion_ttl(Duration::from_secs(10)).is_ok());
        let error = check_assertion_ttl(Duration::from_secs(301)).unwrap_err();
        assert!(error.contains("auth.keys.assertion_ttl"), "{error}");
        assert!(check_assertion_ttl(Duration::from_secs(9)).is_err());
    }

    #[test]
    fn publish_delay_is_held_to_one_second_to_a_day() {
        assert!(check_publish_delay(Duration::from_secs(1)).is_ok());
        assert!(check_publish_delay(Duration::from_millis(999)).is_err());
        assert!(check_publish_delay(Duration::from_secs(86_401)).is_err());
    }

    #[test]
    fn defaults_are_one_minute_and_five_minutes() {
        let keys: KeySettings = serde_yaml_ng::from_str("{}").unwrap();
        assert_eq!(keys.publish_delay, Duration::from_secs(60));
        assert_eq!(keys.assertion_ttl, Duration::from_secs(300));
        assert!(!keys.has_secret());
    }

    #[test]
    fn the_secret_never_prints() {
        let mut keys = KeySettings::default();
        keys.set_secret_override(b"do-not-print-this-secret-anywhere".to_vec());
        assert!(!format!("{keys:?}").contains("do-not-print"));
    }
}
