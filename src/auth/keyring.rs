//! The Ed25519 signing keys every replica shares through the account store: which key signs
//! now, which are published in the JWKS, and keeping that in step with the store.
//!
//! A key's life, by its row's times (`seq` orders keys; `signs_from` is when one starts):
//! - **next**: added by `gatehouse keys rotate`, published at once, not signing until
//!   `signs_from` (`auth.keys.publish_delay` later), so caches of the JWKS see it first;
//! - **signing**: the latest key whose `signs_from` has passed;
//! - **retired**: a later key signs now; still published while something it signed can be
//!   valid: until that later key's `signs_from` + the longest lifetime it signs for + leeway +
//!   one refresh interval (a replica that has not re-read yet keeps signing with it that long);
//! - **expired**: no longer published nor loaded.
//!
//! Every replica computes the same states from the same rows and its own clock, so the switch
//! needs no message: only a new row has to be read, and [`follow`] re-reads every
//! [`refresh_interval`] (a quarter of the publish delay, at most 5 s), on the control runtime.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::engine::{general_purpose::URL_SAFE_NO_PAD, Engine};
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm,
    OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};

use super::sealing::{SealError, Sealer, MIN_KEY_SECRET_BYTES};
use crate::config::{AuthSettings, JwtAlgorithm, KeySettings};
use crate::store::{AccountStore, StoreError, StoredKey};

/// Rotations that lose the race for a `seq` this many times in a row give up.
const INSERT_ATTEMPTS: usize = 5;

/// Why the signing keys cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// No secret configured where store keys are needed.
    #[error("{0} needs the signing-key secret: set GATEHOUSE_KEY_SECRET (at least {MIN_KEY_SECRET_BYTES} bytes) or auth.keys.secret_file")]
    MissingSecret(String),
    /// The secret is shorter than [`MIN_KEY_SECRET_BYTES`].
    #[error("the signing-key secret from {0} is {1} bytes; at least {MIN_KEY_SECRET_BYTES} are required")]
    ShortSecret(&'static str, usize),
    /// The secret file cannot be read.
    #[error("cannot read auth.keys.secret_file {0}: {1}")]
    Unreadable(String, std::io::Error),
    /// The secret does not open a key of the store.
    #[error("the signing-key secret does not open signing key {0} in the account store: it is not the secret the keys were sealed with (or the row was altered). Start with the original GATEHOUSE_KEY_SECRET / auth.keys.secret_file; a new secret cannot read the existing keys")]
    WrongSecret(String),
    /// A row that opens but does not hold a valid key for its `kid`.
    #[error("signing key {0} in the account store is corrupt: {1}")]
    Corrupt(String, &'static str),
    /// The store could not be read or written.
    #[error("signing keys: {0}")]
    Store(#[from] StoreError),
    /// Key generation failed (the system random source).
    #[error("cannot generate a signing key")]
    Generate,
    /// Every attempt to add a key lost a race with another writer.
    #[error("could not add a signing key: other rotations kept taking its place; try again")]
    Contended,
}

/// The secret that seals the keys: `GATEHOUSE_KEY_SECRET` (wins) or `auth.keys.secret_file`;
/// `None` if neither is given.
pub fn key_secret(keys: &KeySettings) -> Result<Option<Vec<u8>>, KeyringError> {
    let (secret, source) = match (keys.secret_override(), &keys.secret_file) {
        (Some(secret), _) => (secret.to_vec(), "GATEHOUSE_KEY_SECRET"),
        (None, Some(path)) => {
            let mut bytes = std::fs::read(path)
                .map_err(|error| KeyringError::Unreadable(path.display().to_string(), error))?;
            // Files written by `echo` or editors end in a newline that is not part of the secret.
            while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
                bytes.pop();
            }
            (bytes, "auth.keys.secret_file")
        }
        (None, None) => return Ok(None),
    };
    if secret.len() < MIN_KEY_SECRET_BYTES {
        return Err(KeyringError::ShortSecret(source, secret.len()));
    }
    Ok(Some(secret))
}

/// Where a key is in its life at one moment (see the module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Published, not signing yet.
    Next,
    /// The key that signs.
    Signing,
    /// Published, no longer signing.
    Retired,
    /// Neither.
    Expired,
}

impl KeyState {
    /// The word `gatehouse keys list` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Next => "next",
            KeyState::Signing => "signing",
            KeyState::Retired => "retired",
            KeyState::Expired => "expired",
        }
    }
}

/// The state of each key at `now_ms`, given their `signs_from` times in `seq` order and how
/// long a retired key stays published (`keep_ms`).
pub fn key_states(signs_from: &[i64], now_ms: i64, keep_ms: i64) -> Vec<KeyState> {
    // The latest key that has started; before any has (a replica whose clock is behind the
    // one that created the first key), the first key.
    let signer = signs_from
        .iter()
        .rposition(|&from| from <= now_ms)
        .unwrap_or(0);
    (0..signs_from.len())
        .map(|i| {
            if i == signer {
                return KeyState::Signing;
            }
            if signs_from[i] > now_ms && i > signer {
                return KeyState::Next;
            }
            // Retired from the moment a later key starts (the signer, or one in between).
            let retired_at = signs_from[i + 1..]
                .iter()
                .copied()
                .min()
                .unwrap_or(i64::MAX);
            if now_ms < retired_at.saturating_add(keep_ms) {
                KeyState::Retired
            } else {
                KeyState::Expired
            }
        })
        .collect()
}

/// One key, opened.
pub struct SigningKey {
    /// The JWT header's `kid`.
    pub kid: String,
    /// Its row's `seq`.
    pub seq: i64,
    /// When it starts signing, Unix ms.
    pub signs_from_ms: i64,
    jwk: Jwk,
    header: Header,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Signs `claims` as a compact JWS with this key's `kid`.
    pub fn sign<T: serde::Serialize>(
        &self,
        claims: &T,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&self.header, claims, &self.encoding)
    }

    /// The key that verifies this key's signatures.
    pub fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }

    /// The private key, for a signer that keeps its own copy.
    pub fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }
}

/// The keys loaded at one moment (every key not yet expired), in `seq` order.
#[derive(Debug, Default)]
struct KeySet {
    keys: Vec<Arc<SigningKey>>,
}

/// The shared signing keys and the secret that opens them.
#[derive(Debug)]
pub struct Keyring {
    set: ArcSwap<KeySet>,
    sealer: Sealer,
    keep_ms: i64,
    publish_delay: Duration,
}

/// How often replicas re-read the key table: a quarter of the publish delay, between 250 ms and
/// 5 s. With the JWKS `max-age` at half the delay, a new key reaches every verifier's cache
/// within three quarters of the delay, before it signs.
pub fn refresh_interval(publish_delay: Duration) -> Duration {
    (publish_delay / 4).clamp(Duration::from_millis(250), Duration::from_secs(5))
}

/// The JWKS `Cache-Control: max-age`: half the publish delay (whole seconds, at most 300).
pub fn jwks_max_age(publish_delay: Duration) -> u64 {
    (publish_delay.as_secs() / 2).min(300)
}

/// How long a retired key stays published: the longest lifetime anything it signed can have,
/// the verification leeway, and one refresh interval (the most a replica may lag in switching).
pub fn keep_published(longest_lifetime: Duration, publish_delay: Duration) -> i64 {
    let keep = longest_lifetime
        + Duration::from_secs(super::jwt::LEEWAY_SECS)
        + refresh_interval(publish_delay);
    i64::try_from(keep.as_millis()).unwrap_or(i64::MAX)
}

/// [`keep_published`] for a config: assertions, and access and session tokens when store keys
/// sign those too (EdDSA without `key_file`).
pub fn keep_published_for(auth: &AuthSettings) -> i64 {
    let mut longest = auth.keys.assertion_ttl;
    if uses_store_keys_for_tokens(auth) {
        longest = longest.max(auth.jwt.ttl).max(auth.session.ttl);
    }
    keep_published(longest, auth.keys.publish_delay)
}

/// Whether access tokens are signed with the store's keys: EdDSA without a `key_file`.
pub fn uses_store_keys_for_tokens(auth: &AuthSettings) -> bool {
    auth.jwt.algorithm == JwtAlgorithm::EdDSA && auth.jwt.key_file.is_none()
}

impl Keyring {
    /// Loads the store's keys, creating the first one if there is none (the database decides
    /// between replicas starting together; every one then re-reads). Every key still in use must
    /// open with `secret`: a wrong secret is an error, never a reason to make new keys. Returns
    /// the keyring and, if this call created the first key, its `kid`.
    pub async fn start(
        store: &dyn AccountStore,
        secret: &[u8],
        keep_ms: i64,
        publish_delay: Duration,
    ) -> Result<(Keyring, Option<String>), KeyringError> {
        let sealer = Sealer::new(secret);
        let mut rows = store.signing_keys().await?;
        let mut created = None;
        if rows.is_empty() {
            let now = crate::clock::unix_millis();
            let first = new_key(&sealer, 1, now, now)?;
            if store.add_signing_key(&first).await? {
                created = Some(first.kid.clone());
            }
            rows = store.signing_keys().await?;
        }
        let keyring = Keyring {
            set: ArcSwap::from_pointee(KeySet::default()),
            sealer,
            keep_ms,
            publish_delay,
        };
        keyring.load(rows)?;
        if keyring.set.load().keys.is_empty() {
            // Unreachable while inserts work (the newest key is never expired); refuse to run
            // without a key rather than fail each assertion later.
            return Err(KeyringError::Store(StoreError::Unavailable(
                "the signing_keys table holds no usable key".to_string(),
            )));
        }
        Ok((keyring, created))
    }

    /// Re-reads the key table, opening keys not seen before. On an error the keys in use stay.
    pub async fn refresh(&self, store: &dyn AccountStore) -> Result<(), KeyringError> {
        let rows = store.signing_keys().await?;
        self.load(rows)
    }

    fn load(&self, rows: Vec<StoredKey>) -> Result<(), KeyringError> {
        let now = crate::clock::unix_millis();
        let times: Vec<i64> = rows.iter().map(|row| row.signs_from_ms).collect();
        let states = key_states(&times, now, self.keep_ms);
        let current = self.set.load();
        let mut keys = Vec::with_capacity(rows.len());
        for (row, state) in rows.iter().zip(states) {
            if state == KeyState::Expired {
                continue;
            }
            match current.keys.iter().find(|key| key.kid == row.kid) {
                Some(known) => keys.push(Arc::clone(known)),
                None => keys.push(Arc::new(open_key(&self.sealer, row)?)),
            }
        }
        if keys.is_empty() {
            // Only a table whose every key expired (impossible while the newest signs); keep
            // what there was rather than sign with nothing.
            return Ok(());
        }
        let changed = keys.len() != current.keys.len()
            || keys.iter().zip(&current.keys).any(|(a, b)| a.kid != b.kid);
        if changed {
            self.set.store(Arc::new(KeySet { keys }));
        }
        Ok(())
    }

    /// The key that signs at `now_ms`.
    pub fn signer(&self, now_ms: i64) -> Arc<SigningKey> {
        let set = self.set.load();
        // Loaded keys are never empty (start fails otherwise); the newest started one signs.
        let index = set
            .keys
            .iter()
            .rposition(|key| key.signs_from_ms <= now_ms)
            .unwrap_or(0);
        Arc::clone(&set.keys[index])
    }

    /// The `seq` of the key that signs at `now_ms`, without cloning it: the assertion cache's
    /// check that its entries were signed by the current key.
    pub fn signer_seq(&self, now_ms: i64) -> i64 {
        let set = self.set.load();
        set.keys
            .iter()
            .rev()
            .find(|key| key.signs_from_ms <= now_ms)
            .or_else(|| set.keys.first())
            .map_or(0, |key| key.seq)
    }

    /// The published key with this `kid`, for verifying a token.
    pub fn published(&self, kid: &str) -> Option<Arc<SigningKey>> {
        self.set
            .load()
            .keys
            .iter()
            .find(|key| key.kid == kid)
            .cloned()
    }

    /// Every published public key, oldest first.
    pub fn jwks(&self) -> JwkSet {
        let set = self.set.load();
        JwkSet {
            keys: set.keys.iter().map(|key| key.jwk.clone()).collect(),
        }
    }

    /// The JWKS response's `max-age`, in seconds.
    pub fn max_age(&self) -> u64 {
        jwks_max_age(self.publish_delay)
    }

    /// How often [`follow`] re-reads the store.
    pub fn refresh_every(&self) -> Duration {
        refresh_interval(self.publish_delay)
    }
}

/// Re-reads the key table every [`Keyring::refresh_every`], forever (a task on the control
/// runtime). A failure keeps the keys in use and is logged; the next tick tries again.
pub async fn follow(keyring: Arc<Keyring>, store: Arc<dyn AccountStore>) {
    let mut every = tokio::time::interval(keyring.refresh_every());
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Err(error) = keyring.refresh(&*store).await {
            tracing::warn!(%error, "could not re-read the signing keys; keeping the loaded ones");
        }
    }
}

/// Adds a key that is published now and signs after `publish_delay` (never before the newest
/// existing key starts: keys start in `seq` order). The secret must open the newest existing
/// key first, so a wrong secret cannot leave a key nobody else can open.
pub async fn rotate(
    store: &dyn AccountStore,
    secret: &[u8],
    publish_delay: Duration,
) -> Result<StoredKey, KeyringError> {
    let sealer = Sealer::new(secret);
    let delay_ms = i64::try_from(publish_delay.as_millis()).unwrap_or(i64::MAX);
    for _ in 0..INSERT_ATTEMPTS {
        let rows = store.signing_keys().await?;
        let now = crate::clock::unix_millis();
        let (seq, signs_from) = match rows.last() {
            Some(newest) => {
                open_key(&sealer, newest)?;
                let from = now.saturating_add(delay_ms).max(newest.signs_from_ms);
                (newest.seq + 1, from)
            }
            // No key yet: the first one signs at once, as a starting replica's would.
            None => (1, now),
        };
        let key = new_key(&sealer, seq, now, signs_from)?;
        if store.add_signing_key(&key).await? {
            return Ok(key);
        }
    }
    Err(KeyringError::Contended)
}

/// A fresh key as a row: its private half sealed under `kid`.
fn new_key(
    sealer: &Sealer,
    seq: i64,
    now_ms: i64,
    signs_from_ms: i64,
) -> Result<StoredKey, KeyringError> {
    let pkcs8 =
        Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| KeyringError::Generate)?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| KeyringError::Generate)?;
    let public_key = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
    let kid = key_id(&public_key);
    let sealed = sealer.seal(&kid, pkcs8.as_ref());
    Ok(StoredKey {
        kid,
        seq,
        created_at_ms: now_ms,
        signs_from_ms,
        public_key,
        sealed,
    })
}

/// Opens a row: unseals the private key and checks it belongs to the row's public key and kid.
fn open_key(sealer: &Sealer, row: &StoredKey) -> Result<SigningKey, KeyringError> {
    let pkcs8 = sealer
        .open(&row.kid, &row.sealed)
        .map_err(|error| match error {
            SealError::WrongSecret => KeyringError::WrongSecret(row.kid.clone()),
            SealError::Malformed => KeyringError::Corrupt(row.kid.clone(), "malformed sealed key"),
        })?;
    let pair = Ed25519KeyPair::from_pkcs8(&pkcs8)
        .map_err(|_| KeyringError::Corrupt(row.kid.clone(), "not an Ed25519 private key"))?;
    let public_key = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
    if public_key != row.public_key || key_id(&public_key) != row.kid {
        return Err(KeyringError::Corrupt(
            row.kid.clone(),
            "the private key does not match the row's public key",
        ));
    }
    let jwk = public_jwk(&public_key);
    let decoding = DecodingKey::from_ed_components(&public_key)
        .map_err(|_| KeyringError::Corrupt(row.kid.clone(), "bad public key"))?;
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(row.kid.clone());
    Ok(SigningKey {
        kid: row.kid.clone(),
        seq: row.seq,
        signs_from_ms: row.signs_from_ms,
        jwk,
        header,
        encoding: EncodingKey::from_ed_der(&pkcs8),
        decoding,
    })
}

/// The public JWK (`kty OKP`, `crv Ed25519`, `alg EdDSA`, `use sig`, `kid`) of a raw key
/// (base64url), for the store's keys and for a `key_file` key alike.
pub(super) fn public_jwk(x: &str) -> Jwk {
    let mut jwk = Jwk {
        common: CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(KeyAlgorithm::EdDSA),
            ..Default::default()
        },
        algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
            key_type: OctetKeyPairType::OctetKeyPair,
            curve: EllipticCurve::Ed25519,
            x: x.to_string(),
        }),
    };
    jwk.common.key_id = Some(key_id(x));
    jwk
}

/// The RFC 7638 thumbprint of the key (SHA-256 of `{"crv","kty","x"}`), base64url: every
/// replica and every verifier computes the same `kid` from the public key alone.
fn key_id(x: &str) -> String {
    use sha2::{Digest, Sha256};
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::ThumbprintHash;
    use KeyState::*;

    #[test]
    fn a_lone_key_signs() {
        assert_eq!(key_states(&[0], 10, 100), [Signing]);
        // Even before its start by this replica's clock.
        assert_eq!(key_states(&[50], 10, 100), [Signing]);
    }

    #[test]
    fn a_rotated_key_is_next_then_signs_and_the_old_one_retires_then_expires() {
        let keys = [0, 1_000];
        assert_eq!(key_states(&keys, 500, 300), [Signing, Next]);
        assert_eq!(key_states(&keys, 1_000, 300), [Retired, Signing]);
        assert_eq!(key_states(&keys, 1_299, 300), [Retired, Signing]);
        assert_eq!(key_states(&keys, 1_300, 300), [Expired, Signing]);
    }

    #[test]
    fn two_rotations_in_one_delay_start_in_order() {
        let keys = [0, 1_000, 1_500];
        assert_eq!(key_states(&keys, 900, 300), [Signing, Next, Next]);
        assert_eq!(key_states(&keys, 1_200, 300), [Retired, Signing, Next]);
        assert_eq!(key_states(&keys, 1_600, 300), [Expired, Retired, Signing]);
        assert_eq!(key_states(&keys, 1_800, 300), [Expired, Expired, Signing]);
    }

    #[test]
    fn the_kid_is_the_rfc_7638_thumbprint() {
        let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        assert_eq!(
            key_id(x),
            public_jwk(x).thumbprint(ThumbprintHash::SHA256).unwrap()
        );
    }

    #[test]
    fn a_new_key_opens_and_signs_what_its_public_half_verifies() {
        let sealer = Sealer::new(&[7u8; 32]);
        let row = new_key(&sealer, 1, 0, 0).unwrap();
        let key = open_key(&sealer, &row).unwrap();
        let token = key
            .sign(&serde_json::json!({"sub": "a", "exp": u64::MAX / 2}))
            .unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
        validation.set_required_spec_claims(&["sub"]);
        let decoded =
            jsonwebtoken::decode::<serde_json::Value>(&token, key.decoding(), &validation).unwrap();
        assert_eq!(decoded.header.kid.as_deref(), Some(row.kid.as_str()));
    }

    #[test]
    fn a_row_under_another_secret_or_with_a_swapped_public_key_is_refused() {
        let sealer = Sealer::new(&[7u8; 32]);
        let row = new_key(&sealer, 1, 0, 0).unwrap();
        let wrong = Sealer::new(&[8u8; 32]);
        assert!(matches!(
            open_key(&wrong, &row),
            Err(KeyringError::WrongSecret(_))
        ));
        let other = new_key(&sealer, 2, 0, 0).unwrap();
        let swapped = StoredKey {
            public_key: other.public_key,
            ..row
        };
        assert!(matches!(
            open_key(&sealer, &swapped),
            Err(KeyringError::Corrupt(..))
        ));
    }

    #[test]
    fn refresh_and_cache_lifetimes_keep_a_new_key_ahead_of_its_signing() {
        for secs in [1, 2, 60, 3600] {
            let delay = Duration::from_secs(secs);
            let reach = refresh_interval(delay) + Duration::from_secs(jwks_max_age(delay));
            assert!(reach < delay, "{secs}s: {reach:?}");
        }
    }
}
