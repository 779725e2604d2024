//! `--jwks URL`: the backend checks Gatehouse's `X-Gatehouse-Assertion` as a zero-trust backend
//! would, from the published keys alone: the compact JWS decoded by hand, `alg` pinned to
//! `EdDSA`, the signature checked with ed25519-dalek (not the library Gatehouse signs with),
//! `exp` (5 s of leeway) and, with `--audience`, `aud`.
//!
//! Keys are fetched from the JWKS at start-up and again when an assertion names an unknown
//! `kid` (a rotated key), at most once a second, so a flood of made-up kids cannot turn into a
//! flood of fetches.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::{general_purpose::URL_SAFE_NO_PAD, Engine};
use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use http_body_util::{BodyExt, Empty};
use hyper::Uri;
use serde_json::Value;
use tokio::net::TcpStream;

/// Clock skew tolerated on `exp`, as Gatehouse tolerates on its own tokens.
const LEEWAY_SECS: u64 = 5;
/// At most one JWKS fetch per this long.
const REFETCH_EVERY: Duration = Duration::from_secs(1);
/// A JWKS fetch that takes longer is abandoned.
const FETCH_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest assertion looked at.
const MAX_ASSERTION_BYTES: usize = 8 * 1024;

/// Verifies assertions against one JWKS URL.
#[derive(Debug)]
pub struct AssertionVerifier {
    jwks: Uri,
    audience: Option<String>,
    /// Path prefixes (whole segments) where a request without an assertion is answered anyway:
    /// routes Gatehouse forwards without a caller (`auth: none`) carry none.
    anonymous: Vec<String>,
    state: tokio::sync::Mutex<Keys>,
}

#[derive(Debug, Default)]
struct Keys {
    by_kid: HashMap<String, VerifyingKey>,
    fetched: Option<Instant>,
}

/// Why an assertion was refused; the text goes into the 401 body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Missing,
    Malformed,
    Algorithm,
    UnknownKey,
    Signature,
    Expired,
    Audience,
}

impl Refused {
    /// The `error` field of the 401.
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Missing => "missing X-Gatehouse-Assertion",
            Refused::Malformed => "malformed assertion",
            Refused::Algorithm => "assertion not signed with EdDSA",
            Refused::UnknownKey => "assertion signed by an unknown key",
            Refused::Signature => "assertion signature does not verify",
            Refused::Expired => "assertion expired",
            Refused::Audience => "assertion is for another audience",
        }
    }
}

impl AssertionVerifier {
    /// A verifier of `jwks` (an `http://` URL); `audience`, when given, must be the `aud`.
    pub fn new(jwks: &str, audience: Option<String>) -> Result<Self, String> {
        let uri: Uri = jwks.parse().map_err(|e| format!("bad --jwks URL: {e}"))?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err("--jwks must be an http://HOST:PORT/PATH URL".to_string());
        }
        Ok(AssertionVerifier {
            jwks: uri,
            audience,
            anonymous: Vec::new(),
            state: tokio::sync::Mutex::new(Keys::default()),
        })
    }

    /// Also answers requests without an assertion under these path prefixes (an assertion
    /// that is sent is still verified).
    pub fn allow_anonymous(mut self, prefixes: Vec<String>) -> Self {
        self.anonymous = prefixes;
        self
    }

    /// The verified claims of the request's assertion; `Ok(None)` for a request without one
    /// on an anonymous path.
    pub async fn check(
        &self,
        path: &str,
        assertion: Option<&[u8]>,
    ) -> Result<Option<Value>, Refused> {
        let anonymous = self.anonymous.iter().any(|prefix| {
            path.strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        });
        if assertion.is_none() && anonymous {
            return Ok(None);
        }
        self.verify(assertion).await.map(Some)
    }

    /// The verified claims of `assertion`.
    pub async fn verify(&self, assertion: Option<&[u8]>) -> Result<Value, Refused> {
        let token = assertion.ok_or(Refused::Missing)?;
        if token.len() > MAX_ASSERTION_BYTES {
            return Err(Refused::Malformed);
        }
        let token = std::str::from_utf8(token).map_err(|_| Refused::Malformed)?;
        let mut parts = token.split('.');
        let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Refused::Malformed);
        };
        let header = decode_json(header_b64)?;
        // Pinned: `none`, HS256 with the public key as secret, or anything else is refused
        // before a key is looked at.
        if header["alg"] != "EdDSA" {
            return Err(Refused::Algorithm);
        }
        let kid = header["kid"].as_str().ok_or(Refused::Malformed)?;
        let key = self.key(kid).await?;
        let signature: [u8; 64] = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(Refused::Malformed)?;
        let signed = &token[..header_b64.len() + 1 + claims_b64.len()];
        key.verify(signed.as_bytes(), &Signature::from_bytes(&signature))
            .map_err(|_| Refused::Signature)?;
        let claims = decode_json(claims_b64)?;
        let exp = claims["exp"].as_u64().ok_or(Refused::Malformed)?;
        if exp + LEEWAY_SECS <= unix_secs() {
            return Err(Refused::Expired);
        }
        if let Some(audience) = &self.audience {
            if claims["aud"] != audience.as_str() {
                return Err(Refused::Audience);
            }
        }
        Ok(claims)
    }

    /// The key `kid` names, fetching the JWKS again if it is unknown and the last fetch is more
    /// than [`REFETCH_EVERY`] ago.
    async fn key(&self, kid: &str) -> Result<VerifyingKey, Refused> {
        let mut keys = self.state.lock().await;
        if let Some(key) = keys.by_kid.get(kid) {
            return Ok(*key);
        }
        if keys.fetched.is_some_and(|at| at.elapsed() < REFETCH_EVERY) {
            return Err(Refused::UnknownKey);
        }
        keys.fetched = Some(Instant::now());
        match tokio::time::timeout(FETCH_TIMEOUT, fetch(&self.jwks)).await {
            Ok(Ok(fetched)) => keys.by_kid = fetched,
            Ok(Err(error)) => eprintln!("gatehouse-backend: JWKS fetch failed: {error}"),
            Err(_) => eprintln!("gatehouse-backend: JWKS fetch timed out"),
        }
        keys.by_kid.get(kid).copied().ok_or(Refused::UnknownKey)
    }
}

fn decode_json(part: &str) -> Result<Value, Refused> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Refused::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| Refused::Malformed)
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// GETs the JWKS and keeps its Ed25519 signing keys by `kid`.
async fn fetch(uri: &Uri) -> Result<HashMap<String, VerifyingKey>, String> {
    let authority = uri.authority().ok_or("no authority")?.clone();
    let port = authority.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((authority.host(), port))
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, authority.as_str())
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("JWKS answered {}", response.status()));
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let jwks: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    Ok(keys_of(&jwks))
}

/// The usable keys of a JWKS document: `OKP`/`Ed25519` with a `kid` and a 32-byte `x`.
fn keys_of(jwks: &Value) -> HashMap<String, VerifyingKey> {
    let mut keys = HashMap::new();
    for jwk in jwks["keys"].as_array().into_iter().flatten() {
        if jwk["kty"] != "OKP" || jwk["crv"] != "Ed25519" {
            continue;
        }
        let (Some(kid), Some(x)) = (jwk["kid"].as_str(), jwk["x"].as_str()) else {
            continue;
        };
        let key = URL_SAFE_NO_PAD
            .decode(x)
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok());
        if let Some(key) = key {
            keys.insert(kid.to_string(), key);
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn signed(key: &SigningKey, header: &Value, claims: &Value) -> String {
        let head = format!(
            "{}.{}",
            b64(&serde_json::to_vec(header).unwrap()),
            b64(&serde_json::to_vec(claims).unwrap())
        );
        let signature = key.sign(head.as_bytes());
        format!("{head}.{}", b64(&signature.to_bytes()))
    }

    /// A verifier that already holds `key` as `k1` and will not fetch (just fetched).
    fn verifier(key: &SigningKey, audience: Option<&str>) -> AssertionVerifier {
        let verifier =
            AssertionVerifier::new("http://127.0.0.1:9/jwks", audience.map(str::to_string))
                .unwrap();
        let mut keys = verifier.state.try_lock().unwrap();
        keys.by_kid.insert("k1".into(), key.verifying_key());
        keys.fetched = Some(Instant::now());
        drop(keys);
        verifier
    }

    fn claims(exp: u64) -> Value {
        serde_json::json!({"sub": "a", "aud": "app", "username": "alice", "exp": exp})
    }

    #[tokio::test]
    async fn a_good_assertion_gives_its_claims_and_bad_ones_their_reason() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let verifier = verifier(&key, Some("app"));
        let header = serde_json::json!({"alg": "EdDSA", "kid": "k1"});
        let good = signed(&key, &header, &claims(unix_secs() + 60));
        let verified = verifier.verify(Some(good.as_bytes())).await.unwrap();
        assert_eq!(verified["username"], "alice");

        let expired = signed(&key, &header, &claims(unix_secs() - 10));
        let other_key = SigningKey::from_bytes(&[8u8; 32]);
        let forged = signed(&other_key, &header, &claims(unix_secs() + 60));
        let none = signed(
            &key,
            &serde_json::json!({"alg": "none", "kid": "k1"}),
            &claims(unix_secs() + 60),
        );
        let unknown = signed(
            &key,
            &serde_json::json!({"alg": "EdDSA", "kid": "k9"}),
            &claims(unix_secs() + 60),
        );
        let mut wrong_aud = claims(unix_secs() + 60);
        wrong_aud["aud"] = "other".into();
        let wrong_aud = signed(&key, &header, &wrong_aud);
        for (token, reason) in [
            (None, Refused::Missing),
            (Some("a.b".to_string()), Refused::Malformed),
            (Some(expired), Refused::Expired),
            (Some(forged), Refused::Signature),
            (Some(none), Refused::Algorithm),
            (Some(unknown), Refused::UnknownKey),
            (Some(wrong_aud), Refused::Audience),
        ] {
            let result = verifier.verify(token.as_deref().map(str::as_bytes)).await;
            assert_eq!(result, Err(reason), "{token:?}");
        }
    }

    #[tokio::test]
    async fn anonymous_paths_pass_without_an_assertion_but_not_with_a_bad_one() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let verifier = verifier(&key, None).allow_anonymous(vec!["/public".to_string()]);
        assert_eq!(verifier.check("/public", None).await, Ok(None));
        assert_eq!(verifier.check("/public/x", None).await, Ok(None));
        assert_eq!(
            verifier.check("/publication", None).await,
            Err(Refused::Missing)
        );
        assert_eq!(verifier.check("/", None).await, Err(Refused::Missing));
        assert_eq!(
            verifier.check("/public", Some(b"x.y.z")).await,
            Err(Refused::Malformed)
        );
    }

    #[test]
    fn only_ed25519_keys_with_a_kid_are_kept() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let x = b64(key.verifying_key().as_bytes());
        let jwks = serde_json::json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "kid": "a", "x": x},
            {"kty": "OKP", "crv": "Ed25519", "x": x},
            {"kty": "RSA", "kid": "b", "n": "x", "e": "AQAB"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "c", "x": "short"},
        ]});
        let keys = keys_of(&jwks);
        assert_eq!(keys.len(), 1);
        assert!(keys.contains_key("a"));
    }
}
