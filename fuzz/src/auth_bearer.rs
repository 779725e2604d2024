//! `auth_bearer`: an `Authorization` header → `Auth::authenticate`, the check every proxied
//! request of an `auth: required` service goes through (bearer parsing, the verified-token
//! cache, JWT verification with the algorithm pinned, the revocation deny-lists).
//!
//! Input: one byte, then the rest. Bit 0 of the byte picks the keys: HS256 (a fixed secret) or
//! EdDSA (a fixed Ed25519 key). Bit 1 picks what the rest is:
//! - clear: the raw `Authorization` value, e.g. `Bearer eyJ…` (reaches the signature check);
//! - set: a JWT header (JSON), a newline, and a payload (JSON), which the target encodes and
//!   signs with the right key, so mutations reach the claims parsing and checks behind the
//!   signature.
//!
//! Promised: an accepted token is signed with the pinned algorithm, names the configured issuer,
//! is within its `exp`/`nbf` (with the leeway), is not revoked, and gives the same identity
//! from the cache as from a fresh verification; asking twice gives the same answer (the second
//! time from the verified-token cache or the refused-token cache).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use gatehouse::auth::{Auth, Identity};
use gatehouse::clock::unix_secs as unix_now;
use gatehouse::config::parse_str;
use gatehouse::metrics::Metrics;
use gatehouse::store::Revocation;
use http::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use jsonwebtoken::{Algorithm, EncodingKey};

/// The HS256 secret the fixture's keys use; seeds in `corpus/auth_bearer` are signed with it.
pub(crate) const HS256_SECRET: &[u8] = b"gatehouse-fuzz-secret-0123456789";
/// The Ed25519 key's seed (PKCS#8 v1 below); fixed so that seed tokens stay valid.
const ED25519_SEED: [u8; 32] = [0x42; 32];
/// `iss` the fixture requires.
pub(crate) const ISSUER: &str = "gatehouse";
/// The `exp`/`nbf` leeway of `auth::jwt` (seconds).
const LEEWAY_SECS: u64 = 5;
/// A revoked token id, a disabled account and an account whose tokens before generation 5
/// are revoked: seeds carry these so the deny-lists are exercised.
pub(crate) const REVOKED_JTI: &str = "revoked-jti";
pub(crate) const DISABLED_SUB: &str = "disabled-account";
pub(crate) const BUMPED_SUB: &str = "bumped-account";
const BUMPED_GENERATION: i64 = 5;
/// The one client every input comes from.
const CLIENT: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// A started `Auth` and the key that signs for it.
pub(crate) struct Keyed {
    pub(crate) auth: Auth,
    encoding: EncodingKey,
    algorithm: Algorithm,
}

/// Authenticates the header `data` describes and checks the answer: `Some(accepted)`, or
/// `None` when the bytes are no header value.
pub fn auth_bearer(data: &[u8]) -> Option<bool> {
    let (&mode, rest) = data.split_first()?;
    let keyed = &fixture()[usize::from(mode & 1)];
    let signed = mode & 2 != 0;
    let value = if signed {
        let (header, payload) = split_at_newline(rest);
        signed_value(keyed, header, payload)
    } else {
        rest.to_vec()
    };
    // hyper hands over only valid header values.
    let value = HeaderValue::from_bytes(&value).ok()?;
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, value);
    let first = keyed.auth.authenticate(&headers, CLIENT);
    let second = keyed.auth.authenticate(&headers, CLIENT);
    match (&first, &second) {
        (Ok(a), Ok(b)) => assert_eq!(a.claims, b.claims, "the cache changed the identity"),
        (Err(a), Err(b)) => {
            assert_eq!(a, b, "the same token refused for two reasons");
            return Some(false);
        }
        _ => panic!("asked twice, answered {first:?} then {second:?}"),
    }
    let identity = first.ok()?;
    check_accepted(keyed, &headers, &identity, signed.then_some(rest));
    Some(true)
}

fn split_at_newline(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.iter().position(|&b| b == b'\n') {
        Some(at) => (&bytes[..at], &bytes[at + 1..]),
        None => (bytes, &[]),
    }
}

/// `Bearer header.payload.signature`, signed with `keyed`'s key.
pub(crate) fn signed_value(keyed: &Keyed, header: &[u8], payload: &[u8]) -> Vec<u8> {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &keyed.encoding, keyed.algorithm)
            .expect("the fixture's key signs");
    format!("Bearer {message}.{signature}").into_bytes()
}

fn check_accepted(keyed: &Keyed, headers: &HeaderMap, identity: &Identity, signed: Option<&[u8]>) {
    let claims = &identity.claims;
    let now = unix_now();
    assert_eq!(claims.iss, ISSUER, "a token of another issuer accepted");
    assert!(
        claims.exp + LEEWAY_SECS >= now,
        "an expired token accepted: {claims:?}"
    );
    assert!(
        claims.nbf <= now + LEEWAY_SECS,
        "a token not yet valid accepted: {claims:?}"
    );
    assert_ne!(claims.jti, REVOKED_JTI, "a logged-out token accepted");
    assert_ne!(
        claims.sub, DISABLED_SUB,
        "a disabled account's token accepted"
    );
    assert!(
        claims.sub != BUMPED_SUB || claims.generation >= BUMPED_GENERATION,
        "a token of a revoked generation accepted"
    );
    assert_eq!(identity.caller.user.as_bytes(), claims.username.as_bytes());
    assert_eq!(identity.caller.email.as_bytes(), claims.email.as_bytes());
    if let Some(input) = signed {
        let (header, _) = split_at_newline(input);
        let header: serde_json::Value =
            serde_json::from_slice(header).expect("an accepted token's header is JSON");
        let expected = if keyed.algorithm == Algorithm::HS256 {
            "HS256"
        } else {
            "EdDSA"
        };
        assert_eq!(header["alg"], expected, "the algorithm is not pinned");
    }
    // The cached identity is what a fresh verification gives (unless it expired in between).
    let token = gatehouse::auth::bearer_token(headers).expect("an accepted request has a token");
    if claims.exp > now + 60 {
        assert_eq!(keyed.auth.keys.verify(token).as_ref(), Ok(claims));
    }
}

/// Where this process keeps the fixture's SQLite stores and key file: under `target/tmp` for
/// the stable tests, else the temporary directory (`scripts/fuzz` points it into target/fuzz).
pub(crate) fn fixture_dir() -> PathBuf {
    let base = option_env!("CARGO_TARGET_TMPDIR").map_or_else(std::env::temp_dir, PathBuf::from);
    base.join(format!("gatehouse-fuzz-{}", std::process::id()))
}

/// The two `Auth`s (HS256, EdDSA), started once per process on SQLite stores in
/// [`fixture_dir`].
pub(crate) fn fixture() -> &'static [Keyed; 2] {
    static FIXTURE: OnceLock<[Keyed; 2]> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = fixture_dir();
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime to start Auth on");
        let hs = runtime.block_on(start(&dir, "hs256", "HS256", ""));
        let key = dir.join("ed25519.pem");
        std::fs::write(&key, ed25519_pem()).expect("the key file");
        let key_file = format!(", key_file: \"{}\"", key.display());
        let ed = runtime.block_on(start(&dir, "eddsa", "EdDSA", &key_file));
        [
            Keyed {
                auth: hs,
                encoding: EncodingKey::from_secret(HS256_SECRET),
                algorithm: Algorithm::HS256,
            },
            Keyed {
                auth: ed,
                encoding: EncodingKey::from_ed_pem(ed25519_pem().as_bytes()).expect("the key"),
                algorithm: Algorithm::EdDSA,
            },
        ]
    })
}

/// An `Auth` as `gatehouse serve` starts it, from config text; tokens live for a century so
/// the seed tokens never expire. The verification bucket is off: every input comes from one
/// client, and what is fuzzed is verification, not the bucket.
async fn start(dir: &Path, name: &str, algorithm: &str, extra: &str) -> Auth {
    let config = format!(
        "database: {{ url: \"sqlite://{}/{name}.db\" }}\n\
         auth:\n  jwt: {{ algorithm: {algorithm}, issuer: {ISSUER}, ttl: 876000h{extra} }}\n\
         \x20 limits: {{ token_verifications_per_second: 0 }}\n\
         services: []\n",
        dir.display()
    );
    let mut settings = parse_str(&config, "fuzz-auth.yaml").expect("the fixture's config");
    settings.auth.jwt.set_secret_override(HS256_SECRET.to_vec());
    let auth = Auth::start(&settings.auth, &settings.database.url, Metrics::new())
        .await
        .expect("Auth starts");
    let far = i64::MAX / 2;
    for revocation in [
        Revocation::Token {
            jti: REVOKED_JTI.into(),
            expires_at: far,
        },
        Revocation::Account {
            id: DISABLED_SUB.into(),
            generation: 0,
            disabled: true,
        },
        Revocation::Account {
            id: BUMPED_SUB.into(),
            generation: BUMPED_GENERATION,
            disabled: false,
        },
    ] {
        auth.revocations.apply(&revocation);
    }
    auth
}

/// The fixed Ed25519 key as PKCS#8 v1 PEM (`openssl genpkey -algorithm ed25519` writes this).
fn ed25519_pem() -> String {
    const PKCS8_V1_PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let der = [&PKCS8_V1_PREFIX[..], &ED25519_SEED[..]].concat();
    let body = STANDARD.encode(der);
    format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n")
}
