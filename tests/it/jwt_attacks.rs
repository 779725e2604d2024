//! Attacks on access tokens, against the real binary: every forgery is refused with 401 (or 431
//! when it does not even fit a request head) and the backend never hears of it. `tokens.rs`
//! covers the basic forgeries in-process; this file adds the `alg` spellings and shapes, key
//! confusion with every form of the EdDSA public key, attacker keys advertised through `jku`,
//! `x5u` and `jwk`, payload and signature splicing, the leeway boundary and token sizes.
//!
//! Tokens are built by hand (base64url + aws-lc-rs HMAC / Ed25519), so a header can say
//! anything, even what jsonwebtoken itself would refuse to write.

use crate::common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::engine::{general_purpose::STANDARD, Engine};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use common::accounts::{base64url_decode, base64url_encode, claims_of, now, CONTROL};
use common::binary::{Gatehouse, TempDir};
use common::scrape::{count, scrape};
use common::{
    assert_invalid_token_about, backends, send_raw, Client, ConfigYaml, CountingRelay, Reply,
    ServiceYaml,
};

/// An `auth: required` service (also claiming `127.0.0.1`, the `:authority` of HTTP/2 tests).
const APP: &str = "app.test";
/// An `auth: required` service restricted to `roles: [admin]`.
const ADMINS: &str = "admins.test";
const PASSWORD: &str = "correct horse battery";

// ---------------------------------------------------------------------------------------------
// Building tokens

/// `base64url(header).base64url(claims)`, the JWS signing input.
fn signing_input(header: &Value, claims: &Value) -> String {
    let part = |value: &Value| base64url_encode(&serde_json::to_vec(value).expect("JSON"));
    format!("{}.{}", part(header), part(claims))
}

/// A compact JWS whose signature is `sign(signing input)`.
fn jws(header: &Value, claims: &Value, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let input = signing_input(header, claims);
    let signature = sign(input.as_bytes());
    format!("{input}.{}", base64url_encode(&signature))
}

/// An HMAC signer for `alg` (HS256, HS384 or HS512) keyed with `secret`.
fn hmac(alg: &str, secret: &[u8]) -> impl FnOnce(&[u8]) -> Vec<u8> {
    use aws_lc_rs::hmac;
    let algorithm = match alg {
        "HS256" => hmac::HMAC_SHA256,
        "HS384" => hmac::HMAC_SHA384,
        "HS512" => hmac::HMAC_SHA512,
        other => panic!("not an HMAC algorithm: {other}"),
    };
    let key = hmac::Key::new(algorithm, secret);
    move |input| hmac::sign(&key, input).as_ref().to_vec()
}

/// `claims` HS256-signed with the proxy's own secret and any header.
fn with_test_secret(header: &Value, claims: &Value) -> String {
    jws(
        header,
        claims,
        hmac("HS256", common::TEST_JWT_SECRET.as_bytes()),
    )
}

/// `claims` with `key` set to `value` (`Value::Null` removes it).
fn edited(claims: &Value, key: &str, value: Value) -> Value {
    let mut claims = claims.clone();
    let object = claims.as_object_mut().expect("claims object");
    if value.is_null() {
        object.remove(key);
    } else {
        object.insert(key.to_string(), value);
    }
    claims
}

/// An Ed25519 key pair and its PKCS#8 form.
struct EdKey {
    pair: Ed25519KeyPair,
    pkcs8: Vec<u8>,
}

impl EdKey {
    fn generate() -> Self {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("generate Ed25519");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("parse PKCS#8");
        EdKey {
            pair,
            pkcs8: pkcs8.as_ref().to_vec(),
        }
    }

    fn private_pem(&self) -> String {
        pem("PRIVATE KEY", &self.pkcs8)
    }

    fn public(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    /// The SubjectPublicKeyInfo DER of the public key (RFC 8410 §4).
    fn spki_der(&self) -> Vec<u8> {
        let mut der = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        der.extend_from_slice(&self.public());
        der
    }

    /// A public JWK as an attacker would publish it.
    fn jwk(&self, kid: &str) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "x": base64url_encode(&self.public()), "kid": kid,
               "use": "sig", "alg": "EdDSA"})
    }

    fn signer(&self) -> impl FnOnce(&[u8]) -> Vec<u8> + '_ {
        move |input| self.pair.sign(input).as_ref().to_vec()
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        STANDARD.encode(der)
    )
}

// ---------------------------------------------------------------------------------------------
// The proxy under attack

enum Signing {
    /// HS256 with `GATEHOUSE_JWT_SECRET` (the test secret).
    Hs256,
    /// EdDSA with this key, written to a key file.
    EdDsa(Arc<EdKey>),
}

/// A running `gatehouse serve` with two locked services behind a connection-counting relay,
/// and one genuine user, `alice`.
struct Target {
    gatehouse: Gatehouse,
    relay: CountingRelay,
    client: Client,
    /// Alice's genuine token and its claims.
    token: String,
    claims: Value,
    _key_dir: TempDir,
}

impl Target {
    async fn start(signing: Signing) -> Self {
        let backend = backends(1).await[0];
        let relay = CountingRelay::start(backend).await;
        let key_dir = TempDir::new("jwt-key");
        let key_file: Option<PathBuf> = match &signing {
            Signing::Hs256 => None,
            Signing::EdDsa(key) => Some(key_dir.write("ed25519.pem", &key.private_pem())),
        };
        let relay_addr = relay.addr;
        let gatehouse = Gatehouse::start(&["serve"], |listen| {
            let mut config = ConfigYaml::new()
                .listen(listen)
                .service(
                    ServiceYaml::new("app", APP)
                        .host("127.0.0.1")
                        .backend(relay_addr),
                )
                .service(
                    ServiceYaml::new("admins", ADMINS)
                        .set("roles", "[admin]")
                        .backend(relay_addr),
                );
            if let Some(key_file) = &key_file {
                config = config
                    .jwt("algorithm", "EdDSA")
                    .jwt("key_file", &key_file.display().to_string());
            }
            config.render()
        })
        .await;
        let client = Client::http1(gatehouse.addr);
        let token = client
            .signed_up("alice", "alice@example.com", PASSWORD)
            .await;
        let claims = claims_of(&token);
        let target = Target {
            gatehouse,
            relay,
            client,
            token,
            claims,
            _key_dir: key_dir,
        };
        // The genuine token works, so every refusal below is about the forgery alone.
        target
            .assert_accepted(&target.token, "alice's own token")
            .await;
        target
    }

    async fn get(&self, host: &str, path: &str, token: &str) -> Reply {
        self.client.with_token("GET", host, path, token).await
    }

    /// Refused with `invalid_token` on a proxied service and on the control plane.
    async fn assert_refused(&self, token: &str, what: &str) {
        for (host, path) in [(APP, "/"), (CONTROL, "/accounts")] {
            let reply = self.get(host, path, token).await;
            assert_invalid_token_about(&reply, &format!("{what} on {host}"));
        }
    }

    /// Proxied to the backend as alice.
    async fn assert_accepted(&self, token: &str, what: &str) {
        let reply = self.get(APP, "/", token).await;
        assert_eq!(
            reply.status,
            200,
            "{what}: {:?}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(
            reply.echoed_header("x-forwarded-user").as_deref(),
            Some("alice"),
            "{what}"
        );
    }

    /// Refusals counted in `gatehouse_auth_failures_total` (invalid and expired).
    async fn refusals(&self) -> u64 {
        let text = scrape(self.gatehouse.addr).await;
        let failures = |reason| {
            count(
                &text,
                "gatehouse_auth_failures_total",
                &[("reason", reason)],
            )
        };
        failures("invalid") + failures("expired")
    }

    /// Refuses every token of `forgeries` on both planes, counts each refusal, and lets none
    /// through to the backend.
    async fn assert_all_refused(&self, forgeries: &[(String, String)]) {
        let before = self.refusals().await;
        let contacted = self.relay.connections();
        for (what, token) in forgeries {
            self.assert_refused(token, what).await;
        }
        assert_eq!(
            self.refusals().await - before,
            2 * forgeries.len() as u64,
            "every refusal is counted"
        );
        assert_eq!(
            self.relay.connections(),
            contacted,
            "a forged token reached the backend"
        );
        self.assert_accepted(&self.token, "alice's own token, afterwards")
            .await;
    }
}

/// A plain HTTP server that answers every request with `body` (a JWKS), counting connections:
/// the URL an attacker puts in `jku` / `x5u`.
struct KeyServer {
    url: String,
    connections: Arc<AtomicUsize>,
}

impl KeyServer {
    async fn start(body: String) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind 127.0.0.1:0");
        let addr: SocketAddr = listener.local_addr().expect("local address");
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let body = body.clone();
                tokio::spawn(async move {
                    let mut head = [0u8; 4096];
                    let _ = stream.read(&mut head).await;
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        KeyServer {
            url: format!("http://{addr}/.well-known/jwks.json"),
            connections,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

fn named(what: &str, token: String) -> (String, String) {
    (what.to_string(), token)
}

// ---------------------------------------------------------------------------------------------
// alg: none

/// `alg: none` in any letter case, with no signature part, an empty one, or alice's real
/// signature carried over; and headers with no usable `alg` at all.
fn unsigned_forgeries(target: &Target) -> Vec<(String, String)> {
    let real_signature = target.token.rsplit('.').next().expect("signature");
    let as_admin = edited(&target.claims, "role", json!("admin"));
    let mut forgeries = Vec::new();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let input = signing_input(&json!({"alg": alg, "typ": "JWT"}), &as_admin);
        forgeries.push(named(&format!("alg {alg}, two parts"), input.clone()));
        forgeries.push(named(
            &format!("alg {alg}, empty signature"),
            format!("{input}."),
        ));
        forgeries.push(named(
            &format!("alg {alg}, real signature"),
            format!("{input}.{real_signature}"),
        ));
    }
    for header in [
        json!({"typ": "JWT"}),
        json!({"alg": ""}),
        json!({"alg": null}),
    ] {
        let input = signing_input(&header, &target.claims);
        forgeries.push(named(&format!("header {header}"), format!("{input}.")));
    }
    forgeries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_tokens_are_refused_under_hs256() {
    let target = Target::start(Signing::Hs256).await;
    target
        .assert_all_refused(&unsigned_forgeries(&target))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_tokens_are_refused_under_eddsa() {
    let target = Target::start(Signing::EdDsa(Arc::new(EdKey::generate()))).await;
    target
        .assert_all_refused(&unsigned_forgeries(&target))
        .await;
}

// ---------------------------------------------------------------------------------------------
// Key confusion

/// Under EdDSA, an HMAC token keyed with anything public about the key (raw bytes, the JWKS
/// `x` text, SPKI DER or PEM, the whole JWKS document, the `kid`) is refused: the algorithm is
/// pinned, so the public key is never used as an HMAC secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hmac_tokens_keyed_with_the_public_eddsa_key_are_refused() {
    let key = Arc::new(EdKey::generate());
    let target = Target::start(Signing::EdDsa(Arc::clone(&key))).await;
    let jwks = target.client.get(CONTROL, "/.well-known/jwks.json").await;
    assert_eq!(jwks.status, 200);
    let published = &jwks.json()["keys"][0];
    let x = published["x"].as_str().expect("x").to_string();
    assert_eq!(base64url_decode(&x), key.public(), "the JWKS is our key");
    let kid = published["kid"].as_str().expect("kid").to_string();

    // Sanity: these claims signed with the real private key pass, so only the key matters.
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": kid});
    let genuine = jws(&header, &target.claims, key.signer());
    target
        .assert_accepted(&genuine, "EdDSA-signed by the test with the server's key")
        .await;

    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("raw public key", key.public()),
        ("JWKS x text", x.clone().into_bytes()),
        ("SPKI DER", key.spki_der()),
        ("SPKI PEM", pem("PUBLIC KEY", &key.spki_der()).into_bytes()),
        ("JWKS document", jwks.body.to_vec()),
        ("kid", kid.clone().into_bytes()),
    ];
    let mut forgeries = Vec::new();
    for (what, secret) in &secrets {
        for alg in ["HS256", "HS384", "HS512"] {
            let header = json!({"alg": alg, "typ": "JWT", "kid": kid});
            let token = jws(&header, &target.claims, hmac(alg, secret));
            forgeries.push(named(&format!("{alg} keyed with the {what}"), token));
        }
    }
    target.assert_all_refused(&forgeries).await;
}

// ---------------------------------------------------------------------------------------------
// kid, jku, x5u, jwk

/// Headers naming keys are ignored: verification uses the configured key only. So alice's
/// claims re-signed with the real secret pass whatever `kid`, `jku`, `x5u`, `x5c` or `jwk`
/// they carry, and the URLs are never fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_headers_are_ignored_and_their_urls_never_fetched() {
    let target = Target::start(Signing::Hs256).await;
    let attacker = EdKey::generate();
    let server = KeyServer::start(json!({"keys": [attacker.jwk("evil")]}).to_string()).await;
    let headers = [
        json!({"alg": "HS256", "kid": "../../../../dev/null"}),
        json!({"alg": "HS256", "kid": "' UNION SELECT 'secret' --"}),
        json!({"alg": "HS256", "jku": server.url}),
        json!({"alg": "HS256", "x5u": server.url}),
        json!({"alg": "HS256", "x5c": [STANDARD.encode(b"not a certificate")]}),
        json!({"alg": "HS256", "jwk": attacker.jwk("evil")}),
        json!({"alg": "HS256", "typ": "JWT", "kid": "evil", "jku": server.url, "x5u": server.url}),
    ];
    for header in &headers {
        let token = with_test_secret(header, &target.claims);
        target
            .assert_accepted(&token, &format!("real secret, header {header}"))
            .await;
    }
    assert_eq!(server.connections(), 0, "a header URL was fetched");
}

/// Tokens signed with an attacker's key, advertised through `jku`, `x5u` or an embedded `jwk`
/// (with the attacker's or the server's own `kid`), are refused under both algorithms, and
/// the advertised URL is never fetched.
async fn attacker_keys_are_refused(signing: Signing) {
    let target = Target::start(signing).await;
    let attacker = EdKey::generate();
    let server = KeyServer::start(json!({"keys": [attacker.jwk("evil")]}).to_string()).await;
    let served_kid = header_kid(&target.token);
    let as_admin = edited(&target.claims, "role", json!("admin"));
    let attacker_secret = b"attacker-secret-0123456789abcdef-0123";
    let oct = json!({"kty": "oct", "k": base64url_encode(attacker_secret), "kid": "evil"});
    let mut forgeries = Vec::new();
    for kid in ["evil", served_kid.as_str()] {
        for (via, extra) in [
            ("jku", json!({"jku": server.url})),
            ("x5u", json!({"x5u": server.url})),
            ("jwk", json!({"jwk": attacker.jwk(kid)})),
        ] {
            let mut header = json!({"alg": "EdDSA", "typ": "JWT", "kid": kid});
            header
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let token = jws(&header, &as_admin, attacker.signer());
            forgeries.push(named(
                &format!("EdDSA attacker key via {via}, kid {kid}"),
                token,
            ));
        }
    }
    let header = json!({"alg": "HS256", "kid": "evil", "jwk": oct, "jku": server.url});
    let token = jws(&header, &as_admin, hmac("HS256", attacker_secret));
    forgeries.push(named("HS256 attacker secret in an embedded oct jwk", token));

    target.assert_all_refused(&forgeries).await;
    assert_eq!(server.connections(), 0, "an advertised key URL was fetched");
}

/// The `kid` of a token's header, or "" when it has none (HS256 tokens).
fn header_kid(token: &str) -> String {
    let header: Value = serde_json::from_slice(&base64url_decode(
        token.split('.').next().expect("header part"),
    ))
    .expect("JSON header");
    header["kid"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacker_keys_advertised_in_headers_are_refused_under_hs256() {
    attacker_keys_are_refused(Signing::Hs256).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacker_keys_advertised_in_headers_are_refused_under_eddsa() {
    attacker_keys_are_refused(Signing::EdDsa(Arc::new(EdKey::generate()))).await;
}

// ---------------------------------------------------------------------------------------------
// Payload edits and signature splicing

/// Alice's header and signature with an edited payload, bob's payload under alice's signature,
/// and re-encodings of alice's own parts: all refused, and none reaches the backend as
/// anyone (the admin-only service included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edited_payloads_and_spliced_signatures_are_refused() {
    let target = Target::start(Signing::Hs256).await;
    let bob = target
        .client
        .signed_up("bob", "bob@example.com", PASSWORD)
        .await;
    let bob_claims = claims_of(&bob);
    let parts: Vec<&str> = target.token.split('.').collect();
    let (header, signature) = (parts[0], parts[2]);
    let keeping_signature = |claims: &Value| {
        let payload = base64url_encode(&serde_json::to_vec(claims).unwrap());
        format!("{header}.{payload}.{signature}")
    };
    let claims = &target.claims;
    let year = 365 * 24 * 3600;
    let mut forgeries = vec![
        named(
            "role admin",
            keeping_signature(&edited(claims, "role", json!("admin"))),
        ),
        named(
            "bob's sub",
            keeping_signature(&edited(claims, "sub", bob_claims["sub"].clone())),
        ),
        named(
            "username bob",
            keeping_signature(&edited(claims, "username", json!("bob"))),
        ),
        named(
            "email bob",
            keeping_signature(&edited(claims, "email", json!("bob@example.com"))),
        ),
        named(
            "exp a year on",
            keeping_signature(&edited(claims, "exp", json!(now() + year))),
        ),
        named(
            "jti changed",
            keeping_signature(&edited(claims, "jti", json!("0"))),
        ),
        named(
            "gen bumped",
            keeping_signature(&edited(claims, "gen", json!(99))),
        ),
        named("bob's payload, alice's signature", {
            let bob_payload = bob.split('.').nth(1).unwrap();
            format!("{header}.{bob_payload}.{signature}")
        }),
        named("alice's payload, bob's signature", {
            let bob_signature = bob.rsplit('.').next().unwrap();
            format!("{header}.{}.{bob_signature}", parts[1])
        }),
        named("header edited", {
            let edited_header = base64url_encode(br#"{"alg":"HS256","typ":"JWT","kid":"x"}"#);
            format!("{edited_header}.{}.{signature}", parts[1])
        }),
        named("a fourth part", format!("{}.{signature}", target.token)),
        named(
            "padded payload",
            format!("{header}.{}=.{signature}", parts[1]),
        ),
        named("signature in padded standard base64", {
            let bytes = base64url_decode(signature);
            format!("{header}.{}.{}", parts[1], STANDARD.encode(bytes))
        }),
    ];
    // The last character of a 32-byte signature carries 4 bits and 2 unused ones; setting an
    // unused bit gives another spelling of the same bytes, which a strict decoder refuses.
    let last = signature.chars().last().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let index = alphabet.find(last).unwrap();
    let sloppy = alphabet.chars().nth(index | 1).unwrap();
    if sloppy != last {
        let mut respelled = target.token.clone();
        respelled.pop();
        respelled.push(sloppy);
        forgeries.push(named("non-canonical signature spelling", respelled));
    }
    target.assert_all_refused(&forgeries).await;

    // Not even the role edit gets onto the admin-only service: 401 there, not a 403 that would
    // mean the claims were read.
    let as_admin = keeping_signature(&edited(claims, "role", json!("admin")));
    assert_eq!(target.get(ADMINS, "/", &as_admin).await.status, 401);
    assert_eq!(target.get(ADMINS, "/", &target.token).await.status, 403);
}

// ---------------------------------------------------------------------------------------------
// Time and issuer claims

/// `exp` and `nbf` hold to a 5 s leeway (src/auth/jwt.rs): within it a token passes, well
/// beyond it (30 s, far more than any test's scheduling delay) it is refused; claims of the
/// wrong type or issuer are refused whatever their value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_and_issuer_claims_are_enforced_beyond_the_leeway() {
    let target = Target::start(Signing::Hs256).await;
    let claims = &target.claims;
    let hs = json!({"alg": "HS256", "typ": "JWT"});
    let t = now();

    for (what, edited_claims) in [
        ("exp 1 s ago", edited(claims, "exp", json!(t - 1))),
        ("nbf in 1 s", edited(claims, "nbf", json!(t + 1))),
    ] {
        let token = with_test_secret(&hs, &edited_claims);
        target
            .assert_accepted(&token, &format!("{what} (within the leeway)"))
            .await;
    }

    let refused: Vec<(&str, Value)> = vec![
        ("exp 30 s ago", edited(claims, "exp", json!(t - 30))),
        ("exp at 0", edited(claims, "exp", json!(0))),
        ("nbf in 30 s", edited(claims, "nbf", json!(t + 30))),
        ("no exp", edited(claims, "exp", Value::Null)),
        (
            "exp as a string",
            edited(claims, "exp", json!((t + 600).to_string())),
        ),
        (
            "exp as a fraction",
            edited(claims, "exp", json!((t + 600) as f64 + 0.5)),
        ),
        ("exp negative", edited(claims, "exp", json!(-1))),
        ("exp past u64", edited(claims, "exp", json!(1e20))),
        (
            "nbf as a string",
            edited(claims, "nbf", json!(t.to_string())),
        ),
        ("wrong iss", edited(claims, "iss", json!("someone-else"))),
        (
            "iss in another case",
            edited(claims, "iss", json!("Gatehouse")),
        ),
        (
            "iss as a list",
            edited(claims, "iss", json!(["gatehouse", "someone-else"])),
        ),
        ("no sub", edited(claims, "sub", Value::Null)),
        ("no jti", edited(claims, "jti", Value::Null)),
        ("unknown role", edited(claims, "role", json!("root"))),
    ];
    let forgeries: Vec<(String, String)> = refused
        .iter()
        .map(|(what, c)| named(what, with_test_secret(&hs, c)))
        .collect();
    target.assert_all_refused(&forgeries).await;
}

// ---------------------------------------------------------------------------------------------
// Size

/// A token past the 64 KiB request-head limit (`limits.max_header_bytes`) is 431 before
/// anything parses it: on a fresh HTTP/1.1 connection, on HTTP/2, and on a keep-alive
/// connection that has already served a request. One that fits the head but is far past the
/// 8 KiB token limit is an ordinary 401. None reaches the backend, and the proxy serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_tokens_are_refused_before_they_are_parsed() {
    let target = Target::start(Signing::Hs256).await;
    let contacted = target.relay.connections();
    // Base64 makes 3 bytes of padding 4 bytes of token.
    let token_of = |kib: usize| {
        let claims = edited(&target.claims, "pad", json!("p".repeat(kib * 1024 * 3 / 4)));
        let token = with_test_secret(&json!({"alg": "HS256"}), &claims);
        assert!((kib * 1024..kib * 1024 + 1024).contains(&token.len()));
        token
    };
    let huge = token_of(100);

    // `target.client` holds a keep-alive connection that has served requests already.
    let reply = target.get(APP, "/", &huge).await;
    assert_eq!(
        reply.status,
        431,
        "HTTP/1.1, warm keep-alive connection: a 100 KiB head passed the 64 KiB limit: {:?}",
        String::from_utf8_lossy(&reply.body)
    );

    let request = format!(
        "GET / HTTP/1.1\r\nHost: {APP}\r\nAuthorization: Bearer {huge}\r\nConnection: close\r\n\r\n"
    );
    let raw = send_raw(target.gatehouse.addr, request.as_bytes()).await;
    assert_eq!(raw.status, 431, "HTTP/1.1, fresh connection: {raw:?}");

    let h2 = Client::http2(target.gatehouse.addr);
    let bearer = |token: &str| {
        http::Request::get("/")
            .header("authorization", format!("Bearer {token}"))
            .body(common::empty())
            .unwrap()
    };
    let reply = h2.send(bearer(&huge)).await;
    assert_eq!(reply.version, http::Version::HTTP_2);
    assert_eq!(reply.status, 431, "HTTP/2");

    let before = target.refusals().await;
    target.assert_refused(&token_of(48), "a 48 KiB token").await;
    assert_eq!(target.refusals().await - before, 2);
    assert_eq!(
        target.relay.connections(),
        contacted,
        "the backend was contacted"
    );

    target
        .assert_accepted(&target.token, "alice's own token, afterwards")
        .await;
    assert_eq!(
        h2.send(bearer(&target.token)).await.status,
        200,
        "HTTP/2 serves on"
    );
}
