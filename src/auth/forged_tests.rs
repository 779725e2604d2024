//! `Auth` against forged tokens, in process: the refused-token cache, the per-network bucket of
//! verifications, and a key rotated in after a token naming it was refused.

use std::net::IpAddr;
use std::time::Duration;

use http::{header, HeaderMap, HeaderValue};

use super::*;
use crate::config::parse_str;
use crate::store::{Account, Credentials, Role};

const SECRET: &[u8] = b"forged-tests-secret-0123456789abcdef";

/// A fresh scratch directory for a store, removed when dropped.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> Self {
        let name = format!("gatehouse-forged-{:016x}", rand::random::<u64>());
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn database(&self) -> String {
        format!("sqlite://{}", self.0.join("accounts.db").display())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An `Auth` from `auth:` YAML (the secret set as the environment would), on a scratch store.
async fn started(scratch: &Scratch, auth_yaml: &str) -> Auth {
    let yaml = format!("auth:\n{auth_yaml}services: []\n");
    let mut settings = parse_str(&yaml, "forged-tests.yaml").unwrap();
    settings.auth.jwt.set_secret_override(SECRET.to_vec());
    settings.auth.keys.set_secret_override(SECRET.to_vec());
    Auth::start(&settings.auth, &scratch.database(), Metrics::new())
        .await
        .unwrap()
}

fn credentials() -> Credentials {
    Credentials {
        account: Account {
            id: "acc-1".into(),
            username: "alice".into(),
            email: "alice@example.com".into(),
            role: Role::User,
            created_at_ms: 0,
            disabled: false,
        },
        password_hash: String::new(),
        token_generation: 0,
    }
}

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let value = HeaderValue::try_from(format!("Bearer {token}")).unwrap();
    headers.insert(header::AUTHORIZATION, value);
    headers
}

/// `token` with its signature altered: well-formed, wrongly signed.
fn forged(token: &str) -> String {
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let first = if signature.starts_with('A') { 'B' } else { 'A' };
    format!("{signed}.{first}{}", &signature[1..])
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// `gatehouse_token_verifications_total{result}`.
fn verifications(auth: &Auth, result: &str) -> u64 {
    let text = String::from_utf8(auth.metrics.encode()).unwrap();
    let series = format!("gatehouse_token_verifications_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |count| count.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_forgery_is_verified_once_then_refused_from_memory() {
    let scratch = Scratch::new();
    let auth = started(&scratch, "  jwt: {algorithm: HS256}\n").await;
    let (token, _) = auth.keys.issue(&credentials()).unwrap();
    let headers = bearer(&forged(&token));
    for _ in 0..5 {
        assert_eq!(
            auth.authenticate(&headers, ip("192.0.2.1")).unwrap_err(),
            AuthError::Token(TokenError::Invalid)
        );
    }
    assert_eq!(verifications(&auth, "invalid"), 1);
    assert_eq!(verifications(&auth, "cached_invalid"), 4);
    // The genuine token is not refused for its forgery's sake.
    assert!(auth.authenticate(&bearer(&token), ip("192.0.2.1")).is_ok());
    assert_eq!(verifications(&auth, "valid"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_remembered_as_expired() {
    let scratch = Scratch::new();
    let auth = started(&scratch, "  jwt: {algorithm: HS256}\n").await;
    let (_, mut claims) = auth.keys.issue(&credentials()).unwrap();
    claims.exp = crate::clock::unix_secs() - jwt::LEEWAY_SECS - 10;
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    for _ in 0..2 {
        assert_eq!(
            auth.authenticate(&bearer(&expired), ip("192.0.2.1")).err(),
            Some(AuthError::Token(TokenError::Expired))
        );
    }
    assert_eq!(verifications(&auth, "invalid"), 1);
    assert_eq!(verifications(&auth, "cached_invalid"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_flooding_new_forgeries_is_throttled_but_its_known_tokens_are_not() {
    let scratch = Scratch::new();
    let limits = "  limits: {token_verifications_per_second: 1, token_verification_burst: 5}\n";
    let auth = started(&scratch, &format!("  jwt: {{algorithm: HS256}}\n{limits}")).await;
    let attacker = ip("192.0.2.1");
    let (known, _) = auth.keys.issue(&credentials()).unwrap();
    assert!(auth.authenticate(&bearer(&known), attacker).is_ok());
    let base = forged(&known);
    let answers: Vec<_> = (0..10)
        .map(|n| auth.authenticate(&bearer(&format!("{base}{n}")), attacker))
        .collect();
    // One verification went to the known token, four to forgeries; then unchecked refusals.
    assert!(answers[..4]
        .iter()
        .all(|answer| answer.as_ref().err() == Some(&AuthError::Token(TokenError::Invalid))));
    for answer in &answers[4..] {
        let Err(AuthError::Throttled(throttled)) = answer else {
            panic!("not throttled: {answer:?}");
        };
        assert!(
            (1..=2).contains(&throttled.retry_after_secs),
            "{throttled:?}"
        );
    }
    assert_eq!(verifications(&auth, "throttled"), 6);
    // A token it presented before costs no verification, so it still passes; a repeated
    // forgery is still refused from memory rather than throttled.
    assert!(auth.authenticate(&bearer(&known), attacker).is_ok());
    let repeated = bearer(&format!("{base}0"));
    assert_eq!(
        auth.authenticate(&repeated, attacker).err(),
        Some(AuthError::Token(TokenError::Invalid))
    );
    // Another network has its own bucket: a new genuine token verifies there.
    let (fresh, _) = auth.keys.issue(&credentials()).unwrap();
    assert!(auth
        .authenticate(&bearer(&fresh), ip("198.51.100.7"))
        .is_ok());
}

/// A token whose `kid` this replica has not loaded yet is refused, but not remembered: once
/// the keyring is refreshed the same token passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_of_a_key_not_yet_loaded_passes_once_the_keyring_has_it() {
    let scratch = Scratch::new();
    // A long publish delay: the keyring re-reads the store only every 5 s, so this test
    // decides when it learns of the new key.
    let auth = started(
        &scratch,
        "  jwt: {algorithm: EdDSA}\n  keys: {publish_delay: 24h}\n",
    )
    .await;
    // The keyring's first re-read comes at once; let it pass before the rotation.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rotated = keyring::rotate(&*auth.store, SECRET, Duration::ZERO)
        .await
        .unwrap();
    // Another replica, which has read the table since: it signs with the new key.
    let (elsewhere, _) = Keyring::start(&*auth.store, SECRET, i64::MAX / 4, Duration::ZERO)
        .await
        .unwrap();
    let signer = elsewhere.signer(crate::clock::unix_millis());
    assert_eq!(signer.kid, rotated.kid);
    let (_, claims) = auth.keys.issue(&credentials()).unwrap();
    let token = signer.sign(&claims).unwrap();
    let client = ip("192.0.2.1");
    for _ in 0..3 {
        assert_eq!(
            auth.authenticate(&bearer(&token), client).err(),
            Some(AuthError::Token(TokenError::Invalid))
        );
    }
    assert_eq!(verifications(&auth, "cached_invalid"), 0, "not remembered");
    let keyring = auth.keyring.as_ref().unwrap();
    keyring.refresh(&*auth.store).await.unwrap();
    let identity = auth.authenticate(&bearer(&token), client).unwrap();
    assert_eq!(identity.claims.username, "alice");
    // A forgery naming the published key is wrongly signed for good, and remembered.
    let forgery = bearer(&forged(&token));
    for _ in 0..2 {
        assert!(auth.authenticate(&forgery, client).is_err());
    }
    assert_eq!(verifications(&auth, "cached_invalid"), 1);
}
