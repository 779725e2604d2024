//! Access tokens: issued at login, verified on every proxied request (CPU only).
//!
//! The algorithm is pinned to the configured one, so `alg: none` or an HS256 token made with an
//! EdDSA public key as its secret is refused before any signature check.

use std::path::Path;
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use super::keyring::{self, Keyring};
use crate::clock::unix_secs;
use crate::config::{JwtAlgorithm, JwtSettings};
use crate::store::{Credentials, Role};

/// Tokens longer than this are refused before parsing: no honest token comes near it.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Clock skew tolerated between replicas on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 5;
/// Shortest HS256 secret accepted (RFC 7518 §3.2: at least the hash output size).
pub const MIN_SECRET_BYTES: usize = 32;

/// What a token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Account id.
    pub sub: String,
    /// Username, forwarded as `X-Forwarded-User`.
    pub username: String,
    /// Email, forwarded as `X-Forwarded-Email`.
    pub email: String,
    /// Account role.
    pub role: Role,
    /// Issuer; must match `auth.jwt.issuer`.
    pub iss: String,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Not before (Unix seconds).
    pub nbf: u64,
    /// Expiry (Unix seconds).
    pub exp: u64,
    /// Token id, the key of the logout deny-list.
    pub jti: String,
    /// The account's token generation when issued; older than the current one means revoked.
    #[serde(rename = "gen")]
    pub generation: i64,
    /// The refresh family (login or browser session) it was issued from; revoking the family
    /// revokes the token. Absent on tokens issued before families existed.
    #[serde(rename = "fam", default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
}

impl Claims {
    /// The last Unix second at which the token can still be accepted: `exp` plus the clock skew
    /// tolerated. A logout must be remembered at least this long, or the token works again
    /// between its expiry and the end of the leeway.
    pub fn accepted_until(&self) -> u64 {
        self.exp.saturating_add(LEEWAY_SECS)
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Malformed, wrongly signed, wrong algorithm or issuer, oversized, or not yet valid.
    #[error("the token is invalid")]
    Invalid,
    /// Past its `exp`.
    #[error("the token has expired")]
    Expired,
    /// Logged out, or its account was disabled.
    #[error("the token has been revoked")]
    Revoked,
}

/// A token [`TokenKeys::check`] refused: why, and whether these keys would refuse it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// What the caller is told.
    pub error: TokenError,
    /// The same token would be refused again for the life of these keys (malformed, wrongly
    /// signed, wrong algorithm or issuer, expired): safe to remember. Not lasting: a `kid` not
    /// published yet (a keyring refresh may bring it) or a `nbf` still ahead, which time
    /// alone can make valid.
    pub lasting: bool,
}

impl Refusal {
    fn lasting(error: TokenError) -> Self {
        Refusal {
            error,
            lasting: true,
        }
    }

    fn for_now(error: TokenError) -> Self {
        Refusal {
            error,
            lasting: false,
        }
    }
}

/// The key material could not be set up; `serve` refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no JWT secret: set GATEHOUSE_JWT_SECRET (at least {MIN_SECRET_BYTES} bytes) or auth.jwt.secret_file")]
    Missing,
    #[error("the JWT secret from {0} is {1} bytes; at least {MIN_SECRET_BYTES} are required")]
    TooShort(&'static str, usize),
    #[error("cannot read {0}: {1}")]
    Unreadable(String, std::io::Error),
    #[error("{0} is not a PEM Ed25519 private key: {1}")]
    BadKey(String, jsonwebtoken::errors::Error),
    #[error("GATEHOUSE_JWT_PREVIOUS_SECRET is an HS256 secret; with EdDSA, keys rotate instead")]
    PreviousWithEddsa,
}

/// Signing and verification keys with the pinned validation rules.
pub struct TokenKeys {
    header: Header,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// With EdDSA and no `key_file`: the store's rotating keys sign (the current one) and verify
    /// (the published one the token's `kid` names) instead of `encoding` and `decoding`.
    store_keys: Option<Arc<Keyring>>,
    /// The HS256 secret before the current one: verifies, never signs.
    previous: Option<DecodingKey>,
    validation: Validation,
    issuer: String,
    ttl: Duration,
    jwks: Option<JwkSet>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("TokenKeys")
            .field("algorithm", &self.header.alg)
            .field("issuer", &self.issuer)
            .field("previous_secret", &self.previous.is_some())
            .finish_non_exhaustive()
    }
}

impl TokenKeys {
    /// Keys from the config; `env_secret` (`GATEHOUSE_JWT_SECRET`) wins over `secret_file`.
    pub fn from_settings(jwt: &JwtSettings, env_secret: Option<&[u8]>) -> Result<Self, KeyError> {
        match jwt.algorithm {
            JwtAlgorithm::HS256 => {
                let secret = hs256_secret(jwt, env_secret)?;
                let mut keys = Self::hs256(&secret, &jwt.issuer, jwt.ttl);
                keys.previous =
                    previous_secret(jwt)?.map(|previous| DecodingKey::from_secret(&previous));
                Ok(keys)
            }
            JwtAlgorithm::EdDSA => {
                if jwt.previous_secret_override().is_some() {
                    return Err(KeyError::PreviousWithEddsa);
                }
                let path = jwt.key_file.as_deref().ok_or(KeyError::Missing)?;
                Self::eddsa(path, &jwt.issuer, jwt.ttl)
            }
        }
    }

    /// HS256 keys from a secret already checked for length.
    pub fn hs256(secret: &[u8], issuer: &str, ttl: Duration) -> Self {
        let encoding = EncodingKey::from_secret(secret);
        let decoding = DecodingKey::from_secret(secret);
        Self::assemble(Algorithm::HS256, encoding, decoding, None, issuer, ttl)
    }

    fn eddsa(path: &Path, issuer: &str, ttl: Duration) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        let pem =
            std::fs::read(path).map_err(|error| KeyError::Unreadable(shown.clone(), error))?;
        let encoding =
            EncodingKey::from_ed_pem(&pem).map_err(|e| KeyError::BadKey(shown.clone(), e))?;
        let jwk =
            ed25519_jwk(encoding.as_bytes()).map_err(|e| KeyError::BadKey(shown.clone(), e))?;
        let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| KeyError::BadKey(shown, e))?;
        let jwks = JwkSet { keys: vec![jwk] };
        Ok(Self::assemble(
            Algorithm::EdDSA,
            encoding,
            decoding,
            Some(jwks),
            issuer,
            ttl,
        ))
    }

    fn assemble(
        algorithm: Algorithm,
        encoding: EncodingKey,
        decoding: DecodingKey,
        jwks: Option<JwkSet>,
        issuer: &str,
        ttl: Duration,
    ) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "sub"]);
        let mut header = Header::new(algorithm);
        header.kid = jwks
            .as_ref()
            .and_then(|set| set.keys.first())
            .and_then(|key| key.common.key_id.clone());
        TokenKeys {
            header,
            encoding,
            decoding,
            store_keys: None,
            previous: None,
            validation,
            issuer: issuer.to_string(),
            ttl,
            jwks,
        }
    }

    /// EdDSA keys from the store's keyring (`auth.jwt.algorithm: EdDSA` without `key_file`):
    /// tokens are signed by the key that signs now and verified by the published key their
    /// `kid` names. Nothing is published from here: the JWKS lists the keyring's keys.
    pub fn from_keyring(keyring: Arc<Keyring>, issuer: &str, ttl: Duration) -> Self {
        let now_ms = crate::clock::unix_millis();
        let current = keyring.signer(now_ms);
        // `encoding`/`decoding` of the key signing at start; `issue_for` and `verify` ask the
        // keyring each time, so they are never used once another key signs.
        let mut keys = Self::assemble(
            Algorithm::EdDSA,
            current.encoding().clone(),
            current.decoding().clone(),
            None,
            issuer,
            ttl,
        );
        keys.store_keys = Some(keyring);
        keys
    }

    /// Token lifetime, the `expires_in` of a login.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The public keys as a JWKS document (EdDSA only; an HS256 secret is never published).
    pub fn jwks(&self) -> Option<&JwkSet> {
        self.jwks.as_ref()
    }

    /// A fresh signed token for `account`, valid from now for the configured lifetime.
    pub fn issue(&self, credentials: &Credentials) -> Result<(String, Claims), TokenError> {
        self.issue_for(credentials, self.ttl, None)
    }

    /// A fresh signed token for `account`, valid from now for `ttl` (a browser session's
    /// lifetime rather than an API token's), of the refresh `family` if any.
    pub fn issue_for(
        &self,
        credentials: &Credentials,
        ttl: Duration,
        family: Option<&str>,
    ) -> Result<(String, Claims), TokenError> {
        let now = unix_secs();
        let account = &credentials.account;
        let claims = Claims {
            sub: account.id.clone(),
            username: account.username.clone(),
            email: account.email.clone(),
            role: account.role,
            iss: self.issuer.clone(),
            iat: now,
            nbf: now,
            // Any whole number of seconds is a valid `ttl`; past u64 it means "never".
            exp: now.saturating_add(ttl.as_secs()),
            jti: format!("{:032x}", rand::random::<u128>()),
            generation: credentials.token_generation,
            family: family.map(str::to_string),
        };
        let token = match &self.store_keys {
            Some(keyring) => keyring.signer(crate::clock::unix_millis()).sign(&claims),
            None => jsonwebtoken::encode(&self.header, &claims, &self.encoding),
        }
        .map_err(|_| TokenError::Invalid)?;
        Ok((token, claims))
    }

    /// Checks signature, algorithm, issuer, `exp` and `nbf`; revocation is checked by the caller.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        self.check(token).map_err(|refusal| refusal.error)
    }

    /// [`TokenKeys::verify`], saying of a refusal whether it would last (the negative cache
    /// remembers only those).
    pub fn check(&self, token: &str) -> Result<Claims, Refusal> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Refusal::lasting(TokenError::Invalid));
        }
        if let Some(keyring) = &self.store_keys {
            return self.check_by_kid(keyring, token);
        }
        let mut decoded = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation);
        if let (Err(error), Some(previous)) = (&decoded, &self.previous) {
            // Only a signature made with another key gets the second try: the algorithm,
            // issuer and times are checked alike for both secrets.
            if *error.kind() == jsonwebtoken::errors::ErrorKind::InvalidSignature {
                decoded = jsonwebtoken::decode::<Claims>(token, previous, &self.validation);
            }
        }
        token_result(decoded)
    }

    /// Verifies against the published store key the token's `kid` names; an unknown or
    /// missing `kid` is invalid (never "try every key"). Unknown is not lasting: a key rotated
    /// in on another replica reaches this one at its next keyring refresh.
    fn check_by_kid(&self, keyring: &Keyring, token: &str) -> Result<Claims, Refusal> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| Refusal::lasting(TokenError::Invalid))?;
        let kid = header
            .kid
            .as_deref()
            .ok_or(Refusal::lasting(TokenError::Invalid))?;
        let key = keyring
            .published(kid)
            .ok_or(Refusal::for_now(TokenError::Invalid))?;
        token_result(jsonwebtoken::decode::<Claims>(
            token,
            key.decoding(),
            &self.validation,
        ))
    }
}

fn token_result(
    decoded: jsonwebtoken::errors::Result<jsonwebtoken::TokenData<Claims>>,
) -> Result<Claims, Refusal> {
    use jsonwebtoken::errors::ErrorKind;
    let error = match decoded {
        Ok(data) => return Ok(data.claims),
        Err(error) => error,
    };
    match error.kind() {
        ErrorKind::ExpiredSignature => Err(Refusal::lasting(TokenError::Expired)),
        // What the token says or how it is made: the same bytes fail the same way again.
        ErrorKind::InvalidToken
        | ErrorKind::InvalidSignature
        | ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidIssuer
        | ErrorKind::InvalidAudience
        | ErrorKind::InvalidSubject
        | ErrorKind::MissingRequiredClaim(_)
        | ErrorKind::InvalidClaimFormat(_)
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => Err(Refusal::lasting(TokenError::Invalid)),
        // `nbf` ahead (beyond the leeway) passes with time; anything else is about our keys or
        // the crypto provider, not the token, so it is not held against the token.
        _ => Err(Refusal::for_now(TokenError::Invalid)),
    }
}

fn hs256_secret(jwt: &JwtSettings, env_secret: Option<&[u8]>) -> Result<Vec<u8>, KeyError> {
    read_secret(
        env_secret,
        jwt.secret_file.as_deref(),
        ("GATEHOUSE_JWT_SECRET", "auth.jwt.secret_file"),
    )?
    .ok_or(KeyError::Missing)
}

/// The previous HS256 secret, if one is given: `GATEHOUSE_JWT_PREVIOUS_SECRET` or
/// `auth.jwt.previous_secret_file`, held to the same length rule as the current one.
fn previous_secret(jwt: &JwtSettings) -> Result<Option<Vec<u8>>, KeyError> {
    read_secret(
        jwt.previous_secret_override(),
        jwt.previous_secret_file.as_deref(),
        (
            "GATEHOUSE_JWT_PREVIOUS_SECRET",
            "auth.jwt.previous_secret_file",
        ),
    )
}

/// A secret from the environment (which wins) or a file; `None` if neither is given.
fn read_secret(
    env_secret: Option<&[u8]>,
    file: Option<&Path>,
    (env_name, file_key): (&'static str, &'static str),
) -> Result<Option<Vec<u8>>, KeyError> {
    let (secret, source) = match (env_secret, file) {
        (Some(secret), _) => (secret.to_vec(), env_name),
        (None, Some(path)) => {
            let mut bytes = std::fs::read(path)
                .map_err(|error| KeyError::Unreadable(path.display().to_string(), error))?;
            // Files written by `echo` or editors end in a newline that is not part of the secret.
            while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
                bytes.pop();
            }
            (bytes, file_key)
        }
        (None, None) => return Ok(None),
    };
    if secret.len() < MIN_SECRET_BYTES {
        return Err(KeyError::TooShort(source, secret.len()));
    }
    Ok(Some(secret))
}

/// The public JWK of a PKCS#8 Ed25519 private key (v1 as `openssl genpkey` writes it, or v2
/// with the public key embedded; jsonwebtoken's own conversion accepts only v1).
fn ed25519_jwk(pkcs8: &[u8]) -> Result<Jwk, jsonwebtoken::errors::Error> {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    use base64::engine::{general_purpose::URL_SAFE_NO_PAD, Engine};
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
        .map_err(|_| jsonwebtoken::errors::ErrorKind::InvalidEddsaKey)?;
    Ok(keyring::public_jwk(
        &URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Account;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

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
            token_generation: 3,
        }
    }

    fn keys() -> TokenKeys {
        TokenKeys::hs256(SECRET, "gatehouse", Duration::from_secs(900))
    }

    #[test]
    fn issued_tokens_verify_with_every_claim() {
        let keys = keys();
        let (token, claims) = keys.issue(&credentials()).unwrap();
        let verified = keys.verify(&token).unwrap();
        assert_eq!(verified, claims);
        assert_eq!(verified.generation, 3);
        assert_eq!(verified.exp - verified.iat, 900);
        assert_eq!(verified.jti.len(), 32);
        assert_eq!(verified.family, None);
    }

    #[test]
    fn the_family_travels_as_fam() {
        let keys = keys();
        let ttl = Duration::from_secs(60);
        let (token, _) = keys.issue_for(&credentials(), ttl, Some("f1")).unwrap();
        assert_eq!(keys.verify(&token).unwrap().family.as_deref(), Some("f1"));
    }

    #[test]
    fn a_token_signed_with_another_secret_is_invalid() {
        let other = TokenKeys::hs256(&[7u8; 32], "gatehouse", Duration::from_secs(60));
        let (token, _) = other.issue(&credentials()).unwrap();
        assert_eq!(keys().verify(&token), Err(TokenError::Invalid));
    }

    #[test]
    fn a_token_from_another_issuer_is_invalid() {
        let other = TokenKeys::hs256(SECRET, "someone-else", Duration::from_secs(60));
        let (token, _) = other.issue(&credentials()).unwrap();
        assert_eq!(keys().verify(&token), Err(TokenError::Invalid));
    }

    fn signed(claims: &Claims) -> String {
        let header = Header::new(Algorithm::HS256);
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(SECRET)).unwrap()
    }

    #[test]
    fn refusals_say_whether_they_last() {
        let keys = keys();
        let (token, claims) = keys.issue(&credentials()).unwrap();
        let lasting = |error| Err(Refusal::lasting(error));
        let other = TokenKeys::hs256(&[7u8; 32], "gatehouse", Duration::from_secs(60));
        let (wrongly_signed, _) = other.issue(&credentials()).unwrap();
        assert_eq!(keys.check(&wrongly_signed), lasting(TokenError::Invalid));
        assert_eq!(keys.check("not.a.token"), lasting(TokenError::Invalid));
        assert_eq!(keys.check(&token[1..]), lasting(TokenError::Invalid));
        let mut expired = claims.clone();
        expired.exp = unix_secs() - LEEWAY_SECS - 10;
        assert_eq!(keys.check(&signed(&expired)), lasting(TokenError::Expired));
        // Valid in a minute: time alone changes the answer.
        let mut early = claims;
        early.nbf = unix_secs() + 60;
        assert_eq!(
            keys.check(&signed(&early)),
            Err(Refusal::for_now(TokenError::Invalid))
        );
    }

    #[test]
    fn oversized_tokens_are_refused_unparsed() {
        let token = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(keys().verify(&token), Err(TokenError::Invalid));
    }

    fn with_previous(current: &[u8], previous: &[u8]) -> TokenKeys {
        let mut jwt = JwtSettings::default();
        jwt.set_previous_secret_override(previous.to_vec());
        TokenKeys::from_settings(&jwt, Some(current)).unwrap()
    }

    #[test]
    fn the_previous_secret_verifies_but_never_signs() {
        let old = keys();
        let (old_token, old_claims) = old.issue(&credentials()).unwrap();
        let rotated = with_previous(&[7u8; 32], SECRET);
        assert_eq!(rotated.verify(&old_token), Ok(old_claims));
        let (new_token, _) = rotated.issue(&credentials()).unwrap();
        assert_eq!(
            old.verify(&new_token),
            Err(TokenError::Invalid),
            "signed with the new one"
        );
        // Once the previous secret is dropped, its tokens are invalid.
        let without = TokenKeys::hs256(&[7u8; 32], "gatehouse", Duration::from_secs(900));
        assert_eq!(without.verify(&old_token), Err(TokenError::Invalid));
        assert_eq!(without.verify(&new_token).map(|_| ()), Ok(()));
    }

    #[test]
    fn the_previous_secret_gets_no_pass_on_issuer_or_expiry() {
        let rotated = with_previous(&[7u8; 32], SECRET);
        let other_issuer = TokenKeys::hs256(SECRET, "someone-else", Duration::from_secs(60));
        let (token, _) = other_issuer.issue(&credentials()).unwrap();
        assert_eq!(rotated.verify(&token), Err(TokenError::Invalid));

        let (_, mut claims) = keys().issue(&credentials()).unwrap();
        claims.exp = unix_secs() - LEEWAY_SECS - 10;
        claims.iat = claims.exp - 60;
        claims.nbf = claims.iat;
        let header = Header::new(Algorithm::HS256);
        let expired =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(SECRET)).unwrap();
        assert_eq!(rotated.verify(&expired), Err(TokenError::Expired));
    }

    #[test]
    fn previous_secrets_are_held_to_the_length_rule_and_to_hs256() {
        let mut jwt = JwtSettings::default();
        jwt.set_previous_secret_override(b"short".to_vec());
        assert!(matches!(
            TokenKeys::from_settings(&jwt, Some(SECRET)).unwrap_err(),
            KeyError::TooShort("GATEHOUSE_JWT_PREVIOUS_SECRET", 5)
        ));
        jwt.set_previous_secret_override(SECRET.to_vec());
        jwt.algorithm = JwtAlgorithm::EdDSA;
        assert!(matches!(
            TokenKeys::from_settings(&jwt, None).unwrap_err(),
            KeyError::PreviousWithEddsa
        ));
    }

    #[test]
    fn short_secrets_are_refused() {
        let jwt = JwtSettings::default();
        let error = TokenKeys::from_settings(&jwt, Some(b"short")).unwrap_err();
        assert!(matches!(
            error,
            KeyError::TooShort("GATEHOUSE_JWT_SECRET", 5)
        ));
        assert!(matches!(
            TokenKeys::from_settings(&jwt, None).unwrap_err(),
            KeyError::Missing
        ));
    }
}
