//! Tokens on proxied requests: who gets through, what the backend learns (the user's identity
//! in `X-Forwarded-User`/`-Email`, never the token unless asked), and every forgery that must
//! not work.

use crate::common;

use std::time::{Duration, Instant};

use common::accounts::{claims_of, now, sign_hs256, sign_test, unsigned, CONTROL};
use common::{assert_invalid_token, backends, ConfigYaml, CountingRelay, Proxy, ServiceYaml};
use serde_json::{json, Value};

const APP: &str = "app.test";

/// A proxy with one `auth: required` service behind a connection-counting relay.
async fn locked_app(extra: &[(&str, &str)]) -> (Proxy, CountingRelay) {
    let backend = backends(1).await[0];
    let relay = CountingRelay::start(backend).await;
    let mut service = ServiceYaml::new("app", APP).backend(relay.addr);
    for (key, value) in extra {
        service = service.set(key, value);
    }
    let proxy = Proxy::start(&ConfigYaml::new().service(service)).await;
    (proxy, relay)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_token_reaches_the_backend_as_the_user_without_the_token() {
    let (proxy, _relay) = locked_app(&[]).await;
    let client = proxy.client();
    let token = client
        .signed_up("alice", "Alice@Example.com", "correct horse")
        .await;

    let request = http::Request::get("/whoami")
        .header("host", APP)
        .header("authorization", format!("Bearer {token}"))
        .header("x-forwarded-user", "mallory")
        .header("x_forwarded_email", "mallory@evil.test")
        .body(common::empty())
        .unwrap();
    let reply = client.send(request).await;

    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(
        reply.echoed_header("x-forwarded-user").as_deref(),
        Some("alice")
    );
    assert_eq!(
        reply.echoed_header("x-forwarded-email").as_deref(),
        Some("Alice@Example.com")
    );
    assert_eq!(reply.echoed_header("x_forwarded_email"), None);
    assert_eq!(reply.echoed_header("authorization"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_authorization_passes_the_token_on() {
    let (proxy, _relay) = locked_app(&[("forward_authorization", "true")]).await;
    let client = proxy.client();
    let token = client
        .signed_up("bob", "bob@example.com", "correct horse")
        .await;

    let reply = client.with_token("GET", APP, "/", &token).await;

    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.echoed_header("authorization"),
        Some(format!("Bearer {token}"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_service_passes_authorization_untouched_and_sets_no_identity() {
    let backend = backends(1).await[0];
    let config = ConfigYaml::new().service(ServiceYaml::open("open", "open.test").backend(backend));
    let proxy = Proxy::start(&config).await;

    let reply = proxy
        .client()
        .with_token("GET", "open.test", "/", "anything")
        .await;

    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.echoed_header("authorization").as_deref(),
        Some("Bearer anything")
    );
    assert_eq!(reply.echoed_header("x-forwarded-user"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_schemes_count_as_no_token() {
    let (proxy, relay) = locked_app(&[]).await;
    let request = http::Request::get("/")
        .header("host", APP)
        .header("authorization", "Basic YWxpY2U6cHc=")
        .body(common::empty())
        .unwrap();

    let reply = proxy.client().send(request).await;

    assert_eq!(reply.status, 401);
    assert_eq!(reply.header("www-authenticate"), "Bearer");
    assert_eq!(reply.json()["error"], "missing_token");
    assert_eq!(relay.connections(), 0);
}

/// Every forgery of a real token, each refused with `invalid_token` before the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_are_refused_and_never_reach_the_backend() {
    let (proxy, relay) = locked_app(&[]).await;
    let client = proxy.client();
    let token = client
        .signed_up("carol", "carol@example.com", "correct horse")
        .await;
    let claims = claims_of(&token);
    let with = |key: &str, value: Value| {
        let mut edited = claims.clone();
        edited[key] = value;
        edited
    };
    let without = |key: &str| {
        let mut edited = claims.clone();
        edited.as_object_mut().unwrap().remove(key);
        edited
    };
    let parts: Vec<&str> = token.split('.').collect();
    let edited_payload = common::accounts::base64url_encode(
        serde_json::to_vec(&with("username", json!("admin")))
            .unwrap()
            .as_slice(),
    );
    let hs = json!({"alg": "HS256", "typ": "JWT"});
    let forgeries: Vec<(&str, String)> = vec![
        ("alg none", unsigned(&json!({"alg": "none"}), &claims)),
        ("alg None", unsigned(&json!({"alg": "None"}), &claims)),
        ("alg NONE", unsigned(&json!({"alg": "NONE"}), &claims)),
        (
            "alg HS512",
            sign_hs256(&json!({"alg": "HS512"}), &claims, b"x"),
        ),
        ("wrong key", sign_hs256(&hs, &claims, &[7u8; 32])),
        (
            "payload edited",
            format!("{}.{}.{}", parts[0], edited_payload, parts[2]),
        ),
        ("signature cut", format!("{}.{}.", parts[0], parts[1])),
        ("expired", sign_test(&with("exp", json!(now() - 60)))),
        (
            "nbf in the future",
            sign_test(&with("nbf", json!(now() + 600))),
        ),
        ("missing exp", sign_test(&without("exp"))),
        ("missing nbf", sign_test(&without("nbf"))),
        ("wrong iss", sign_test(&with("iss", json!("someone-else")))),
        ("missing iss", sign_test(&without("iss"))),
        (
            "9 KiB",
            sign_test(&with("pad", json!("p".repeat(9 * 1024)))),
        ),
        ("garbage", "not.a.token".to_string()),
        ("kid/jku headers", {
            let header =
                json!({"alg": "HS256", "kid": "../../etc/passwd", "jku": "http://evil.test/jwks"});
            sign_hs256(&header, &with("exp", json!(now() - 60)), b"x")
        }),
    ];

    for (what, forged) in &forgeries {
        for (host, path) in [(APP, "/"), (CONTROL, "/accounts")] {
            let reply = client.with_token("GET", host, path, forged).await;
            assert_eq!(reply.status, 401, "{what} on {host}: {:?}", reply.body);
            assert_invalid_token(&reply);
        }
    }
    assert_eq!(relay.connections(), 0, "a forged token reached the backend");
    // The genuine token still works, so the refusals above were about the forgeries.
    assert_eq!(client.with_token("GET", APP, "/", &token).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_signed_with_the_right_secret_and_claims_is_accepted() {
    // The forgery test relies on sign_test producing what Gatehouse accepts.
    let (proxy, _relay) = locked_app(&[]).await;
    let client = proxy.client();
    let token = client
        .signed_up("dave", "dave@example.com", "correct horse")
        .await;
    let resigned = sign_test(&claims_of(&token));

    let reply = client.with_token("GET", APP, "/", &resigned).await;

    assert_eq!(reply.status, 200, "{:?}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_restrict_a_service_to_admins() {
    let (proxy, relay) = locked_app(&[("roles", "[admin]")]).await;
    let client = proxy.client();
    let token = client
        .signed_up("erin", "erin@example.com", "correct horse")
        .await;

    let refused = client.with_token("GET", APP, "/", &token).await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.json()["error"], "forbidden");
    assert_eq!(relay.connections(), 0);

    let admin = sign_test(&{
        let mut claims = claims_of(&token);
        claims["role"] = json!("admin");
        claims
    });
    assert_eq!(client.with_token("GET", APP, "/", &admin).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refused_once_its_ttl_has_passed() {
    let backend = backends(1).await[0];
    let config = ConfigYaml::new()
        .jwt("ttl", "1s")
        .service(ServiceYaml::new("app", APP).backend(backend));
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();
    let token = client
        .signed_up("frank", "frank@example.com", "correct horse")
        .await;
    assert_eq!(client.with_token("GET", APP, "/", &token).await.status, 200);

    // exp = iat + 1 s, plus at most 5 s of leeway.
    tokio::time::sleep(Duration::from_millis(7_100)).await;

    assert_invalid_token(&client.with_token("GET", APP, "/", &token).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_out_token_stays_refused_through_the_expiry_leeway() {
    let backend = backends(1).await[0];
    let config = ConfigYaml::new()
        .jwt("ttl", "1s")
        .service(ServiceYaml::new("app", APP).backend(backend));
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();
    let token = client
        .signed_up("hank", "hank@example.com", "correct horse")
        .await;
    let exp = claims_of(&token)["exp"].as_u64().unwrap();
    let reply = client.with_token("POST", CONTROL, "/logout", &token).await;
    assert_eq!(reply.status, 204);

    // Past `exp` but inside the 5 s of leeway a token is still verified as valid, so only the
    // logout stands between it and the backend. By now the deny-list has been pruned and
    // re-read from the store several times (every 250 ms).
    while now() < exp + 3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        now() <= exp + 4,
        "the test ran too slowly to land inside the leeway"
    );
    let reply = client.with_token("GET", APP, "/", &token).await;
    assert_invalid_token(&reply);
    assert_eq!(reply.json()["message"], "the token has been revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_an_account_revokes_its_tokens_within_a_second() {
    let (proxy, _relay) = locked_app(&[]).await;
    let client = proxy.client();
    let token = client
        .signed_up("gina", "gina@example.com", "correct horse")
        .await;
    assert_eq!(client.with_token("GET", APP, "/", &token).await.status, 200);
    let database_url = proxy_database(&proxy);

    let disabled = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["accounts", "disable", "--email", "GINA@example.com"])
        .env("DATABASE_URL", &database_url)
        .output()
        .unwrap();
    assert!(disabled.status.success(), "{disabled:?}");
    let started = Instant::now();

    loop {
        let reply = client.with_token("GET", APP, "/", &token).await;
        if reply.status == 401 {
            assert_invalid_token(&reply);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "still accepted after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        client
            .login("gina@example.com", "correct horse")
            .await
            .status,
        401
    );
}

fn proxy_database(proxy: &Proxy) -> String {
    proxy.database_url.clone()
}

/// An Ed25519 private key as PKCS#8 PEM.
fn ed25519_pem() -> String {
    use aws_lc_rs::signature::Ed25519KeyPair;
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).unwrap();
    use base64::engine::{general_purpose::STANDARD, Engine};
    let body = STANDARD.encode(pkcs8.as_ref());
    format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eddsa_tokens_verify_and_the_public_key_is_published_as_jwks() {
    let backend = backends(1).await[0];
    let config = ConfigYaml::new();
    let key = config.dir().join("ed25519.pem");
    std::fs::write(&key, ed25519_pem()).unwrap();
    let config = config
        .jwt("algorithm", "EdDSA")
        .jwt("key_file", &key.display().to_string())
        .service(ServiceYaml::new("app", APP).backend(backend));
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();
    let token = client
        .signed_up("hana", "hana@example.com", "correct horse")
        .await;

    let header: Value = serde_json::from_slice(&common::accounts::base64url_decode(
        token.split('.').next().unwrap(),
    ))
    .unwrap();
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(client.with_token("GET", APP, "/", &token).await.status, 200);

    let jwks = client.get(CONTROL, "/.well-known/jwks.json").await;
    assert_eq!(jwks.status, 200);
    let jwk = &jwks.json()["keys"][0];
    assert_eq!(
        (jwk["kty"].as_str(), jwk["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    assert_eq!(jwk["kid"], header["kid"]);
    assert!(jwk.get("d").is_none(), "the private key was published");

    // Key confusion: an HS256 token whose "secret" is the published public key.
    let public = common::accounts::base64url_decode(jwk["x"].as_str().unwrap());
    let confused = sign_hs256(&json!({"alg": "HS256"}), &claims_of(&token), &public);
    assert_invalid_token(&client.with_token("GET", APP, "/", &confused).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_publishes_no_jwks() {
    let proxy = Proxy::start(&ConfigYaml::new()).await;
    let reply = proxy.client().get(CONTROL, "/.well-known/jwks.json").await;
    assert_eq!(reply.status, 404);
}

/// `GATEHOUSE_JWT_PREVIOUS_SECRET` lets the secret change without logging anyone out: tokens
/// signed with the old secret keep working while it is given as the previous one, new tokens
/// are signed with the new secret only, and dropping the previous secret ends the old tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_secret_keeps_tokens_of_the_previous_one_until_it_is_dropped() {
    use common::binary::Gatehouse;
    const OLD: &str = "old-secret-0123456789abcdef-0123456789";
    const NEW: &str = "new-secret-0123456789abcdef-0123456789";
    let backend = backends(1).await[0];
    let config = ConfigYaml::new().service(ServiceYaml::new("app", APP).backend(backend));
    let url = config.database_url();
    let serve = |env: Vec<(&'static str, &'static str)>| {
        let config = config.clone();
        let url = url.clone();
        async move {
            let mut env = env;
            let url: &'static str = Box::leak(url.into_boxed_str());
            env.push(("DATABASE_URL", url));
            Gatehouse::start_with_env(&["serve"], &env, move |listen| {
                config.clone().listen(listen).render()
            })
            .await
        }
    };
    let user = |client: &common::Client, token: String| {
        let client = client.clone();
        async move {
            let reply = client.with_token("GET", APP, "/", &token).await;
            (
                reply.status.as_u16(),
                reply.echoed_header("x-forwarded-user"),
            )
        }
    };

    let mut old = serve(vec![("GATEHOUSE_JWT_SECRET", OLD)]).await;
    let client = common::Client::http1(old.addr);
    let old_token = client
        .signed_up("rotator", "rotator@example.com", "correct horse battery")
        .await;
    assert_eq!(user(&client, old_token.clone()).await.0, 200);
    old.signal(libc::SIGTERM);
    assert!(old.wait_exit(Duration::from_secs(20)).await.is_some());

    let mut rotated = serve(vec![
        ("GATEHOUSE_JWT_SECRET", NEW),
        ("GATEHOUSE_JWT_PREVIOUS_SECRET", OLD),
    ])
    .await;
    let client = common::Client::http1(rotated.addr);
    assert_eq!(
        user(&client, old_token.clone()).await,
        (200, Some("rotator".to_string())),
        "a token of the previous secret still works"
    );
    let new_token = client
        .token("rotator@example.com", "correct horse battery")
        .await;
    let verifies_with = |secret: &str| {
        let key = jsonwebtoken::DecodingKey::from_secret(secret.as_bytes());
        let validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        jsonwebtoken::decode::<Value>(&new_token, &key, &validation).is_ok()
    };
    assert!(
        verifies_with(NEW) && !verifies_with(OLD),
        "new tokens are signed with the new secret, never the previous one"
    );
    rotated.signal(libc::SIGTERM);
    assert!(rotated.wait_exit(Duration::from_secs(20)).await.is_some());

    let after = serve(vec![("GATEHOUSE_JWT_SECRET", NEW)]).await;
    let client = common::Client::http1(after.addr);
    assert_eq!(user(&client, new_token).await.0, 200);
    let (status, forwarded) = user(&client, old_token).await;
    assert_eq!(
        (status, forwarded),
        (401, None),
        "the previous secret is gone"
    );
}
