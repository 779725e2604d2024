//! API keys: what a key looks like, the rules for its name and lifetime, and creating one.
//! The request path's side (the cache, the bounded lookups, last-used batching) is
//! `api_key_cache`.
//!
//! A key is `gh_` followed by 256 random bits in unpadded base64url (46 characters in all). It
//! is shown once, at creation, and stored only as its SHA-256 (lower-case hex). A fast hash is
//! right here where argon2 is right for passwords: argon2's cost exists to slow down guessing of
//! low-entropy secrets, but nobody can guess 256 random bits, fast hash or not, while a
//! deliberately slow hash on a credential presented with every request would hand anyone who
//! sends made-up keys a way to burn CPU. SHA-256 also makes the stored form a lookup key (a
//! unique index), which a salted hash cannot be.

use std::time::Duration;

use base64::engine::{general_purpose::URL_SAFE_NO_PAD, Engine};
use sha2::{Digest, Sha256};

use crate::clock::unix_millis;
use crate::store::{AccountStore, ApiKey, KeyCreation, KeyLimits, NewApiKey, StoreError};

/// What every key starts with, so scanners (and people) can tell a Gatehouse key.
pub const PREFIX: &str = "gh_";

/// Random bytes in a key.
const KEY_BYTES: usize = 32;

/// Length of a key's random part in unpadded base64url.
const ENCODED_LEN: usize = 43;

/// Most keys an account may hold that are neither revoked nor expired.
pub const MAX_LIVE_KEYS: i64 = 100;

/// Most keys an account may create in 24 hours, revoked ones included: a create-and-revoke
/// loop cannot grow the table (or every replica's memory of revoked keys) without bound.
pub const MAX_KEYS_PER_DAY: i64 = 200;

/// Longest key name, in characters (all ASCII).
pub const MAX_NAME_LEN: usize = 64;

/// Shortest lifetime a key may be given.
pub const MIN_LIFETIME: Duration = Duration::from_secs(60);

/// Longest lifetime a key may be given (ten years); a key without one never expires.
pub const MAX_LIFETIME: Duration = Duration::from_secs(3650 * 24 * 3600);

/// A new key: the text shown once and the hash that is stored.
#[derive(Debug)]
pub struct NewKey {
    /// `gh_…`, for the owner's eyes only.
    pub key: String,
    /// Its SHA-256, lower-case hex.
    pub hash: String,
}

/// A fresh key from the operating system's generator (through `rand`'s thread RNG, a CSPRNG
/// reseeded from the OS).
pub fn generate() -> NewKey {
    let key = format!(
        "{PREFIX}{}",
        URL_SAFE_NO_PAD.encode(rand::random::<[u8; KEY_BYTES]>())
    );
    let hash = hex(&digest(&key));
    NewKey { key, hash }
}

/// Whether a bearer token is meant as an API key (and so is never tried as a JWT, whose
/// base64url header can never start with `gh_`).
pub fn is_api_key(token: &str) -> bool {
    token.starts_with(PREFIX)
}

/// Whether `token` has the exact shape of a key: anything else is refused without a lookup.
pub fn well_formed(token: &str) -> bool {
    token.strip_prefix(PREFIX).is_some_and(|random| {
        random.len() == ENCODED_LEN
            && random
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// SHA-256 of the key text.
pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Lower-case hex, the stored form of a digest.
pub fn hex(digest: &[u8; 32]) -> String {
    use std::fmt::Write;
    digest.iter().fold(String::with_capacity(64), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// A name is 1 to 64 characters of letters, digits, spaces and `_ . - : /`, not starting or
/// ending with a space: shown in lists and logs, so nothing that could forge a line or a
/// column.
pub fn check_name(name: &str) -> Result<(), String> {
    let allowed =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, ' ' | '_' | '.' | '-' | ':' | '/');
    let trimmed = name.trim_matches(' ') == name;
    if (1..=MAX_NAME_LEN).contains(&name.len()) && trimmed && name.chars().all(allowed) {
        Ok(())
    } else {
        Err(format!(
            "name must be 1 to {MAX_NAME_LEN} characters of letters, digits, spaces, '_', '.', \
             '-', ':' or '/', not starting or ending with a space"
        ))
    }
}

/// A lifetime such as `90d`, `12h`, `30m`, `45s` or a bare number of seconds, between
/// [`MIN_LIFETIME`] and [`MAX_LIFETIME`].
pub fn parse_lifetime(text: &str) -> Result<Duration, String> {
    let explain = || {
        format!(
            "expires_in must be a whole number of seconds or of days, hours, minutes or seconds \
             such as 90d, 12h, 30m or 3600s, from {}s to {}d",
            MIN_LIFETIME.as_secs(),
            MAX_LIFETIME.as_secs() / 86_400
        )
    };
    let (digits, unit) = match text.char_indices().last() {
        Some((at, unit @ ('d' | 'h' | 'm' | 's'))) => (&text[..at], unit),
        _ => (text, 's'),
    };
    if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(explain());
    }
    let count: u64 = digits.parse().map_err(|_| explain())?;
    let unit_secs = match unit {
        'd' => 86_400,
        'h' => 3_600,
        'm' => 60,
        _ => 1,
    };
    check_lifetime(Duration::from_secs(count * unit_secs)).map_err(|_| explain())
}

/// `lifetime` if it lies between [`MIN_LIFETIME`] and [`MAX_LIFETIME`].
pub fn check_lifetime(lifetime: Duration) -> Result<Duration, String> {
    if (MIN_LIFETIME..=MAX_LIFETIME).contains(&lifetime) {
        Ok(lifetime)
    } else {
        Err(format!(
            "a key lives from {}s to {}d",
            MIN_LIFETIME.as_secs(),
            MAX_LIFETIME.as_secs() / 86_400
        ))
    }
}

/// Why no key was created.
#[derive(Debug, thiserror::Error)]
pub enum CreateRefused {
    /// The account already holds [`MAX_LIVE_KEYS`] live keys.
    #[error(
        "the account already holds {MAX_LIVE_KEYS} API keys that are neither revoked nor expired"
    )]
    TooMany,
    /// The account created [`MAX_KEYS_PER_DAY`] keys in the last 24 hours.
    #[error(
        "the account created {MAX_KEYS_PER_DAY} API keys in the last 24 hours; try again later"
    )]
    TooManyToday,
    /// No such account, or it is disabled.
    #[error("no such account, or it is disabled")]
    NoAccount,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates a key for `account_id` (name and lifetime already checked); returns its row and the
/// key text, which exists nowhere else once the caller has shown it.
pub async fn create(
    store: &dyn AccountStore,
    account_id: &str,
    name: &str,
    lifetime: Option<Duration>,
) -> Result<(ApiKey, String), CreateRefused> {
    let new = generate();
    let now = unix_millis();
    let expires_at_ms = lifetime.map(|lifetime| {
        now.saturating_add(i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX))
    });
    let row = NewApiKey {
        id: uuid::Uuid::now_v7().to_string(),
        account_id: account_id.to_string(),
        name: name.to_string(),
        hash: new.hash,
        created_at_ms: now,
        expires_at_ms,
    };
    let limits = KeyLimits {
        max_live: MAX_LIVE_KEYS,
        max_per_day: MAX_KEYS_PER_DAY,
    };
    match store.create_api_key(&row, limits).await? {
        KeyCreation::Created(key) => Ok((key, new.key)),
        KeyCreation::TooMany => Err(CreateRefused::TooMany),
        KeyCreation::TooManyToday => Err(CreateRefused::TooManyToday),
        KeyCreation::NoAccount => Err(CreateRefused::NoAccount),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_well_formed_carries_256_bits_and_hashes_to_its_stored_form() {
        let new = generate();
        assert!(well_formed(&new.key), "{}", new.key);
        assert_eq!(new.key.len(), PREFIX.len() + ENCODED_LEN);
        let random = URL_SAFE_NO_PAD.decode(&new.key[PREFIX.len()..]).unwrap();
        assert_eq!(random.len() * 8, 256);
        assert_eq!(new.hash, hex(&digest(&new.key)));
        assert_eq!(new.hash.len(), 64);
        assert_ne!(generate().key, new.key);
    }

    #[test]
    fn malformed_keys_are_not_well_formed() {
        let good = generate().key;
        assert!(!well_formed(&good[..good.len() - 1]));
        assert!(!well_formed(&format!("{good}A")));
        assert!(!well_formed(&good.replacen("gh_", "gx_", 1)));
        assert!(!well_formed(&format!("gh_{}", "+".repeat(ENCODED_LEN))));
        assert!(!well_formed("gh_"));
        assert!(is_api_key("gh_anything") && !is_api_key("eyJhbGciOi"));
    }

    #[test]
    fn names_are_bounded_plain_text() {
        assert!(check_name("ci deploy: prod/eu-1").is_ok());
        assert!(check_name(&"a".repeat(MAX_NAME_LEN)).is_ok());
        for bad in ["", " lead", "trail ", "tab\there", "new\nline", "ü", "a\"b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name(&"a".repeat(MAX_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn lifetimes_take_units_or_seconds_within_bounds() {
        assert_eq!(parse_lifetime("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_lifetime("12h"), Ok(Duration::from_secs(12 * 3_600)));
        assert_eq!(parse_lifetime("30m"), Ok(Duration::from_secs(1_800)));
        assert_eq!(parse_lifetime("3600s"), Ok(Duration::from_secs(3_600)));
        assert_eq!(parse_lifetime("3600"), Ok(Duration::from_secs(3_600)));
        assert_eq!(parse_lifetime("3650d"), Ok(MAX_LIFETIME));
        for bad in [
            "",
            "d",
            "59",
            "59s",
            "3651d",
            "-5d",
            "1.5d",
            "1w",
            "90 d",
            "99999999999999d",
            "+60",
        ] {
            assert!(parse_lifetime(bad).is_err(), "{bad:?}");
        }
    }
}
