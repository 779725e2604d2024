//! `X-Gatehouse-Assertion` and the store's signing keys: what a backend receives, verified with
//! an Ed25519 implementation independent of the one that signs (ed25519-dalek, from the JWKS
//! alone, the compact JWS decoded by hand); client-sent assertions; the private key at rest;
//! start-up with a wrong or missing secret; rotation across two replicas on one PostgreSQL; and
//! EdDSA access tokens signed by the same keys.

use crate::common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use http::Request;
use serde_json::Value;

use common::accounts::{base64url_decode, claims_of, now, CONTROL};
use common::binary::{Gatehouse, TempDir, GATEHOUSE};
use common::postgres::{drop_database, fresh_database};
use common::{backends, empty, Client, ConfigYaml, Proxy, ServiceYaml};

const APP: &str = "app.test";
const KEY_SECRET: &str = "assertion-test-key-secret-0123456789abcdef";
const PASSWORD: &str = "correct horse battery";

/// A config whose signing-key secret is in a file of its own directory.
fn keyed(config: ConfigYaml, extra: &str) -> ConfigYaml {
    let secret = config.dir().join("key-secret");
    std::fs::write(&secret, KEY_SECRET).expect("write key secret");
    config.auth(
        "keys",
        &format!("{{secret_file: {}{extra}}}", secret.display()),
    )
}

/// The published keys of a proxy, with the response's `Cache-Control`.
async fn jwks(client: &Client) -> (Vec<Value>, String) {
    let reply = client.get(CONTROL, "/.well-known/jwks.json").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let keys = reply.json()["keys"].as_array().expect("keys").clone();
    (keys, reply.header("cache-control").to_string())
}

fn kids(keys: &[Value]) -> Vec<String> {
    keys.iter()
        .map(|key| key["kid"].as_str().expect("kid").to_string())
        .collect()
}

/// Verifies a compact JWS with ed25519-dalek against the JWK its header's `kid` names: the
/// header must say `alg: EdDSA`; returns (header, claims).
fn verify_independently(token: &str, keys: &[Value]) -> (Value, Value) {
    let mut parts = token.split('.');
    let (header_b64, claims_b64, signature_b64) = (
        parts.next().expect("header"),
        parts.next().expect("claims"),
        parts.next().expect("signature"),
    );
    assert!(parts.next().is_none(), "three parts");
    let header: Value = serde_json::from_slice(&base64url_decode(header_b64)).unwrap();
    assert_eq!(header["alg"], "EdDSA", "{header}");
    let kid = header["kid"].as_str().expect("kid in the header");
    let jwk = keys
        .iter()
        .find(|key| key["kid"] == kid)
        .unwrap_or_else(|| panic!("kid {kid} is not published: {keys:?}"));
    assert_eq!(jwk["kty"], "OKP");
    assert_eq!(jwk["crv"], "Ed25519");
    assert_eq!(jwk["alg"], "EdDSA");
    assert_eq!(jwk["use"], "sig");
    let x: [u8; 32] = base64url_decode(jwk["x"].as_str().unwrap())
        .try_into()
        .expect("32-byte key");
    let key = VerifyingKey::from_bytes(&x).expect("a valid Ed25519 point");
    let signature: [u8; 64] = base64url_decode(signature_b64)
        .try_into()
        .expect("64-byte signature");
    let signed = format!("{header_b64}.{claims_b64}");
    key.verify(signed.as_bytes(), &Signature::from_bytes(&signature))
        .expect("the signature verifies with the published key");
    let claims: Value = serde_json::from_slice(&base64url_decode(claims_b64)).unwrap();
    (header, claims)
}

/// GET `/` on `host` with the token and extra headers; the echo backend's JSON.
async fn echoed(client: &Client, host: &str, token: Option<&str>, extra: &[(&str, &str)]) -> Value {
    let mut request = Request::get("/").header("host", host);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let reply = client.send(request.body(empty()).unwrap()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

fn assertion_of(echo: &Value) -> Option<String> {
    echo["headers"]
        .get("x-gatehouse-assertion")
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assertions_name_the_caller_and_verify_against_the_jwks() {
    let backend = backends(1).await[0];
    let config = keyed(
        ConfigYaml::new().service(
            ServiceYaml::new("app", APP)
                .set("assertion", "true")
                .backend(backend),
        ),
        ", assertion_ttl: 60s, publish_delay: 10s",
    );
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();
    let token = client
        .signed_up("alice", "alice@example.com", PASSWORD)
        .await;
    let account = claims_of(&token);

    let before = now();
    let echo = echoed(&client, APP, Some(&token), &[]).await;
    let assertion = assertion_of(&echo).expect("the backend got an assertion");
    let (keys, cache_control) = jwks(&client).await;
    assert_eq!(keys.len(), 1, "one key created on first start: {keys:?}");
    assert_eq!(cache_control, "public, max-age=5", "half the publish delay");
    let (header, claims) = verify_independently(&assertion, &keys);
    assert_eq!(header["kid"], keys[0]["kid"]);
    assert_eq!(claims["iss"], "gatehouse");
    assert_eq!(claims["aud"], "app");
    assert_eq!(claims["sub"], account["sub"]);
    assert_eq!(claims["username"], "alice");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["role"], "user");
    let iat = claims["iat"].as_u64().expect("iat");
    assert!(iat >= before && iat <= now(), "iat {iat} is now");
    assert_eq!(claims["exp"].as_u64().expect("exp"), iat + 60);
    // The identity headers still come along.
    assert_eq!(echo["headers"]["x-forwarded-user"], "alice");

    // Cached: the next request carries the same assertion, not a new signature.
    let again = echoed(&client, APP, Some(&token), &[]).await;
    assert_eq!(assertion_of(&again).as_deref(), Some(assertion.as_str()));
    // Another caller gets their own.
    let bob = client.signed_up("bob", "bob@example.com", PASSWORD).await;
    let bobs = assertion_of(&echoed(&client, APP, Some(&bob), &[]).await).unwrap();
    let (_, bob_claims) = verify_independently(&bobs, &keys);
    assert_eq!(bob_claims["username"], "bob");

    // A tampered assertion fails the independent check.
    let mut forged: Vec<&str> = assertion.split('.').collect();
    let claims_b64 = common::accounts::base64url_encode(
        serde_json::to_vec(&serde_json::json!({"sub": "x", "role": "admin"}))
            .unwrap()
            .as_slice(),
    );
    forged[1] = &claims_b64;
    let forged = forged.join(".");
    let result = std::panic::catch_unwind(|| verify_independently(&forged, &keys));
    assert!(result.is_err(), "a forged assertion must not verify");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sent_assertions_are_removed_on_every_service() {
    let backend = backends(1).await[0];
    // A custom identity_headers list without `x-gatehouse-*`: the assertion is removed anyway.
    let config = keyed(
        ConfigYaml::new()
            .top("identity_headers", "[remote-user]")
            .service(
                ServiceYaml::new("app", APP)
                    .set("assertion", "true")
                    .backend(backend),
            )
            .service(ServiceYaml::new("plain", "plain.test").backend(backend))
            .service(ServiceYaml::open("open", "open.test").backend(backend)),
        "",
    );
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();
    let token = client
        .signed_up("carol", "carol@example.com", PASSWORD)
        .await;
    let forged = [
        ("X-Gatehouse-Assertion", "forged.by.client"),
        ("X_Gatehouse_Assertion", "forged.underscore.client"),
    ];

    let on_app = echoed(&client, APP, Some(&token), &forged).await;
    let (keys, _) = jwks(&client).await;
    let received = assertion_of(&on_app).expect("Gatehouse's own assertion");
    assert_ne!(received, "forged.by.client");
    verify_independently(&received, &keys);

    let on_plain = echoed(&client, "plain.test", Some(&token), &forged).await;
    let on_open = echoed(&client, "open.test", None, &forged).await;
    let on_open_with_token = echoed(&client, "open.test", Some(&token), &forged).await;
    for (what, echo) in [
        ("app", &on_app),
        ("plain", &on_plain),
        ("open", &on_open),
        ("open with a token", &on_open_with_token),
    ] {
        let headers = echo["headers"].as_object().expect("headers");
        for (name, value) in headers {
            let folded = name.replace('_', "-");
            if folded == "x-gatehouse-assertion" {
                assert!(
                    what == "app" && name == "x-gatehouse-assertion",
                    "{what}: the backend received {name}: {value}"
                );
                assert!(
                    !value.as_str().unwrap().contains("client"),
                    "{what}: {value}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_private_key_is_never_in_the_database_file() {
    let backend = backends(1).await[0];
    let config = keyed(
        ConfigYaml::new().service(
            ServiceYaml::new("app", APP)
                .set("assertion", "true")
                .backend(backend),
        ),
        "",
    );
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();
    let token = client.signed_up("dave", "dave@example.com", PASSWORD).await;
    echoed(&client, APP, Some(&token), &[]).await;

    // The private key, unsealed with the secret: what must not be in the file.
    let store = gatehouse::store::open(&config.database_url())
        .await
        .unwrap();
    let rows = store.signing_keys().await.unwrap();
    assert_eq!(rows.len(), 1);
    let sealer = gatehouse::auth::sealing::Sealer::new(KEY_SECRET.as_bytes());
    let pkcs8 = sealer.open(&rows[0].kid, &rows[0].sealed).unwrap();
    // PKCS#8 v2 for Ed25519: the 32-byte seed follows `04 20` at offset 16.
    assert_eq!(&pkcs8[14..16], &[0x04, 0x20], "an Ed25519 PKCS#8 document");
    let seed = &pkcs8[16..48];
    let signing = ed25519_dalek::SigningKey::from_bytes(seed.try_into().unwrap());
    let public = base64url_decode(&rows[0].public_key);
    assert_eq!(signing.verifying_key().as_bytes(), public.as_slice());

    let mut file = Vec::new();
    let path = config
        .database_url()
        .trim_start_matches("sqlite://")
        .to_string();
    for suffix in ["", "-wal"] {
        if let Ok(bytes) = std::fs::read(format!("{path}{suffix}")) {
            file.extend(bytes);
        }
    }
    assert!(
        file.windows(public.len()).any(|w| w == public.as_slice())
            || String::from_utf8_lossy(&file).contains(&rows[0].public_key),
        "the scan reads the store (the public key is there)"
    );
    assert!(
        !file.windows(32).any(|w| w == seed),
        "the raw private key is in the file"
    );
    assert!(
        !file.windows(pkcs8.len()).any(|w| w == pkcs8.as_slice()),
        "the PKCS#8 private key is in the file"
    );
    let seed_b64 = common::accounts::base64url_encode(seed);
    assert!(!String::from_utf8_lossy(&file).contains(&seed_b64));
}

/// Runs `gatehouse serve` with `secret` (or none) until it exits; its stderr.
fn serve_until_exit(config: &str, database_url: &str, secret: Option<&str>) -> String {
    let dir = TempDir::new("keys-start");
    let path = dir.write("gatehouse.yaml", config);
    let mut command = Command::new(GATEHOUSE);
    command
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .env("DATABASE_URL", database_url)
        .env("GATEHOUSE_JWT_SECRET", common::TEST_JWT_SECRET)
        .env_remove("GATEHOUSE_KEY_SECRET");
    if let Some(secret) = secret {
        command.env("GATEHOUSE_KEY_SECRET", secret);
    }
    let output = command.output().expect("run gatehouse");
    assert!(!output.status.success(), "gatehouse must refuse to start");
    String::from_utf8_lossy(&output.stderr).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_secret_refuses_to_start_with_a_clear_message() {
    let backend = backends(1).await[0];
    let dir = TempDir::new("keys-db");
    let database_url = format!("sqlite://{}", dir.path().join("g.db").display());
    let config = |listen: SocketAddr| {
        ConfigYaml::new()
            .listen(listen)
            .service(
                ServiceYaml::new("app", APP)
                    .set("assertion", "true")
                    .backend(backend),
            )
            .render()
    };
    // Missing: refused before anything is created.
    let missing = serve_until_exit(&config(common::binary::free_addr()), &database_url, None);
    assert!(
        missing.contains("service app (assertion: true) needs the signing-key secret")
            && missing.contains("GATEHOUSE_KEY_SECRET"),
        "{missing}"
    );
    let short = serve_until_exit(
        &config(common::binary::free_addr()),
        &database_url,
        Some("short"),
    );
    assert!(short.contains("at least 32 are required"), "{short}");
    assert!(
        !short.contains("short\n"),
        "the secret is not printed: {short}"
    );

    // The first start creates the key under the right secret.
    let first = Gatehouse::start_with_env(
        &["serve"],
        &[
            ("DATABASE_URL", &database_url),
            ("GATEHOUSE_KEY_SECRET", KEY_SECRET),
        ],
        config,
    )
    .await;
    drop(first);
    let store = gatehouse::store::open(&database_url).await.unwrap();
    let before = store.signing_keys().await.unwrap();
    assert_eq!(before.len(), 1);

    let wrong_secret = "another-secret-that-is-long-enough-0123456789";
    let wrong = serve_until_exit(
        &config(common::binary::free_addr()),
        &database_url,
        Some(wrong_secret),
    );
    assert!(
        wrong.contains(&format!("does not open signing key {}", before[0].kid)),
        "{wrong}"
    );
    assert!(
        !wrong.contains(wrong_secret),
        "the secret is not printed: {wrong}"
    );
    // And it made no key of its own.
    assert_eq!(store.signing_keys().await.unwrap(), before);
}

/// Runs `gatehouse keys ARGS --config PATH` against `database_url`; its stdout.
fn keys_command(args: &[&str], config: &std::path::Path, database_url: &str) -> String {
    let output = Command::new(GATEHOUSE)
        .arg("keys")
        .args(args)
        .arg("--config")
        .arg(config)
        .env("DATABASE_URL", database_url)
        .env("GATEHOUSE_KEY_SECRET", KEY_SECRET)
        .output()
        .expect("run gatehouse keys");
    assert!(
        output.status.success(),
        "gatehouse keys {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// The kid that signed the assertion `client` gets now.
async fn signing_kid(client: &Client, token: &str) -> String {
    let echo = echoed(client, APP, Some(token), &[]).await;
    let assertion = assertion_of(&echo).expect("assertion");
    let (keys, _) = jwks(client).await;
    let (header, _) = verify_independently(&assertion, &keys);
    header["kid"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_published_at_once_and_signs_after_the_delay_on_every_replica() {
    let Some(database_url) = fresh_database().await else {
        return;
    };
    let backend = backends(1).await[0];
    let render = |listen: SocketAddr| {
        ConfigYaml::new()
            .listen(listen)
            .auth("keys", "{publish_delay: 2s}")
            .service(
                ServiceYaml::new("app", APP)
                    .set("assertion", "true")
                    .backend(backend),
            )
            .render()
    };
    let env = [
        ("DATABASE_URL", database_url.as_str()),
        ("GATEHOUSE_KEY_SECRET", KEY_SECRET),
    ];
    // Two replicas starting together: one first key between them.
    let (a, b) = tokio::join!(
        Gatehouse::start_with_env(&["serve"], &env, render),
        Gatehouse::start_with_env(&["serve"], &env, render)
    );
    let (on_a, on_b) = (Client::http1(a.addr), Client::http1(b.addr));
    let token = on_a.signed_up("erin", "erin@example.com", PASSWORD).await;
    let (keys_a, cache_control) = jwks(&on_a).await;
    let (keys_b, _) = jwks(&on_b).await;
    assert_eq!(kids(&keys_a), kids(&keys_b), "one keyset");
    assert_eq!(keys_a.len(), 1, "one first key: {keys_a:?}");
    assert_eq!(cache_control, "public, max-age=1");
    let old = kids(&keys_a)[0].clone();
    assert_eq!(signing_kid(&on_a, &token).await, old);
    assert_eq!(signing_kid(&on_b, &token).await, old);

    let dir = TempDir::new("keys-cli");
    let config = dir.write("gatehouse.yaml", &render(common::binary::free_addr()));
    let rotated = Instant::now();
    let printed = keys_command(&["rotate"], &config, &database_url);
    let new = printed.split('\t').next().unwrap().trim().to_string();
    assert_ne!(new, old);

    // Published on both replicas well before it signs (they re-read every 500 ms here).
    for client in [&on_a, &on_b] {
        loop {
            let (keys, _) = jwks(client).await;
            if kids(&keys).contains(&new) {
                assert!(kids(&keys).contains(&old), "the old key stays published");
                break;
            }
            assert!(
                rotated.elapsed() < Duration::from_millis(1500),
                "not published in time"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let list = keys_command(&["list"], &config, &database_url);
    assert!(
        list.contains(&format!("{old}\t")) && list.contains("\tsigning\n"),
        "{list}"
    );
    assert!(
        list.contains(&format!("{new}\t")) && list.contains("\tnext\n"),
        "{list}"
    );
    // Not signing yet: the cached assertion and a fresh one alike come from the old key.
    if rotated.elapsed() < Duration::from_millis(1800) {
        assert_eq!(signing_kid(&on_b, &token).await, old);
    }

    // After the delay both sign with the new key; the old one is still published.
    for client in [&on_a, &on_b] {
        loop {
            let kid = signing_kid(client, &token).await;
            if kid == new {
                assert!(
                    rotated.elapsed() >= Duration::from_secs(2),
                    "signed before the delay"
                );
                break;
            }
            assert!(
                rotated.elapsed() < Duration::from_secs(5),
                "the new key never signed"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (keys, _) = jwks(client).await;
        assert!(kids(&keys).contains(&old), "a retired key stays published");
    }
    let list = keys_command(&["list"], &config, &database_url);
    assert!(
        list.contains("\tretired\n") && list.contains("\tsigning\n"),
        "{list}"
    );
    drop((a, b));
    drop_database(&database_url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eddsa_access_tokens_are_signed_by_the_store_keys_without_a_key_file() {
    let backend = backends(1).await[0];
    let config = keyed(
        ConfigYaml::new()
            .jwt("algorithm", "EdDSA")
            .service(ServiceYaml::new("app", APP).backend(backend)),
        "",
    );
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();
    let token = client.signed_up("fay", "fay@example.com", PASSWORD).await;
    let (keys, _) = jwks(&client).await;
    let (header, claims) = verify_independently(&token, &keys);
    assert_eq!(header["kid"], keys[0]["kid"]);
    assert_eq!(claims["username"], "fay");
    let echo = echoed(&client, APP, Some(&token), &[]).await;
    assert_eq!(echo["headers"]["x-forwarded-user"], "fay");
    assert!(
        assertion_of(&echo).is_none(),
        "no assertion unless asked for"
    );

    // A token naming an unknown kid is refused.
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    let mut forged_header = header.clone();
    forged_header["kid"] = Value::from("unknown-kid");
    parts[0] = common::accounts::base64url_encode(&serde_json::to_vec(&forged_header).unwrap());
    let reply = client.with_token("GET", APP, "/", &parts.join(".")).await;
    assert_eq!(reply.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_backend_verifies_assertions_from_the_jwks() {
    // The proxy's address first: the backend is told its JWKS URL before the proxy starts.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let jwks_url = format!("http://{addr}/.well-known/jwks.json");
    let verifier =
        gatehouse_backend::AssertionVerifier::new(&jwks_url, Some("app".to_string())).unwrap();
    let backend = gatehouse_backend::spawn_verifying("v0", verifier).await;
    let config = keyed(
        ConfigYaml::new()
            .service(
                ServiceYaml::new("app", APP)
                    .set("assertion", "true")
                    .backend(backend),
            )
            .service(
                ServiceYaml::new("other", "other.test")
                    .set("assertion", "true")
                    .backend(backend),
            )
            .service(ServiceYaml::new("plain", "plain.test").backend(backend)),
        "",
    );
    let text = config.render();
    let settings = gatehouse::config::parse_str(&text, "test.yaml").unwrap();
    let state = gatehouse::start(&settings).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        gatehouse::serve(listener, state, &settings, async move {
            let _ = stopped.await;
        })
        .await
    });
    let client = Client::http1(addr);
    let token = client.signed_up("gus", "gus@example.com", PASSWORD).await;

    let echo = echoed(&client, APP, Some(&token), &[]).await;
    assert_eq!(echo["assertion"]["username"], "gus", "{echo}");
    assert_eq!(echo["assertion"]["aud"], "app");

    let refused = |host: &'static str| {
        let client = client.clone();
        let token = token.clone();
        async move {
            let reply = client.with_token("GET", host, "/", &token).await;
            assert_eq!(reply.status, 401, "{host}: {}", reply.text());
            reply.json()["error"].as_str().unwrap().to_string()
        }
    };
    assert_eq!(refused("plain.test").await, "missing X-Gatehouse-Assertion");
    assert_eq!(
        refused("other.test").await,
        "assertion is for another audience"
    );

    // Straight to the backend with a forged one (right kid, wrong signature).
    let assertion = echo_assertion(&client, &token).await;
    let mut parts: Vec<&str> = assertion.split('.').collect();
    let forged_claims =
        common::accounts::base64url_encode(br#"{"sub":"x","aud":"app","exp":9999999999}"#);
    parts[1] = &forged_claims;
    let direct = Client::http1(backend);
    let reply = direct
        .send(
            Request::get("/")
                .header("host", "v0")
                .header("x-gatehouse-assertion", parts.join("."))
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.json()["error"], "assertion signature does not verify");
    let _ = stop.send(());
}

/// The assertion the echo backend behind `app.test` reports (as a header it received).
async fn echo_assertion(client: &Client, token: &str) -> String {
    let echo = echoed(client, APP, Some(token), &[]).await;
    assertion_of(&echo).expect("assertion")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_assertions_on_by_reload_without_signing_keys_is_refused() {
    let backend = backends(1).await[0];
    let render = move |listen: SocketAddr, assertion: bool| {
        ConfigYaml::new()
            .listen(listen)
            .service(
                ServiceYaml::new("app", APP)
                    .set("assertion", if assertion { "true" } else { "false" })
                    .backend(backend),
            )
            .render()
    };
    // Started without a key secret (no store keys needed then).
    let gatehouse = Gatehouse::start(&["serve"], |listen| render(listen, false)).await;
    let client = Client::http1(gatehouse.addr);
    let token = client.signed_up("hal", "hal@example.com", PASSWORD).await;
    assert!(assertion_of(&echoed(&client, APP, Some(&token), &[]).await).is_none());

    gatehouse.rewrite_config(&render(gatehouse.addr, true));
    gatehouse.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(3);
    while !gatehouse.logs().contains("config reload failed") {
        assert!(
            Instant::now() < deadline,
            "no reload failure:\n{}",
            gatehouse.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        gatehouse.logs().contains(
            "service app has assertion: true, but Gatehouse started without signing keys"
        ),
        "{}",
        gatehouse.logs()
    );
    // The old config keeps serving.
    let echo = echoed(&client, APP, Some(&token), &[]).await;
    assert_eq!(echo["headers"]["x-forwarded-user"], "hal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_caller_gets_the_same_assertion_as_a_login() {
    let backend = backends(1).await[0];
    let config = keyed(
        ConfigYaml::new().service(
            ServiceYaml::new("app", APP)
                .set("assertion", "true")
                .backend(backend),
        ),
        "",
    );
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();
    let token = client
        .signed_up("carol", "carol@example.com", PASSWORD)
        .await;
    let created = client
        .send(
            Request::post("/api_keys")
                .header("host", CONTROL)
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(common::full(br#"{"name":"ci job"}"#.to_vec()))
                .unwrap(),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let key = created.json()["key"].as_str().expect("key").to_string();

    let echo = echoed(&client, APP, Some(&key), &[]).await;
    assert_eq!(echo["headers"]["x-forwarded-user"], "carol");
    assert!(
        echo["headers"].get("authorization").is_none(),
        "the key is not forwarded: {echo}"
    );
    let assertion = assertion_of(&echo).expect("an API-key caller gets an assertion");
    let (keys, _) = jwks(&client).await;
    let (_, claims) = verify_independently(&assertion, &keys);
    assert_eq!(claims["sub"], claims_of(&token)["sub"]);
    assert_eq!(claims["username"], "carol");
    assert_eq!(claims["aud"], "app");
    // Capped by the assertion lifetime (default 5 minutes), not the key's, which never expires.
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert_eq!(exp - iat, 300, "{claims}");
}
