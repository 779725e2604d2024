//! Forged tokens must not be able to take a core (README "Forged tokens"): a bad token sent
//! again is refused from memory, not verified again; a flood of distinct forgeries from one
//! client network is refused unchecked (429) past the network's verification bucket, while
//! tokens that network presented before, and other networks, are served; behind a trusted
//! proxy the bucket is the forwarded client's; and a token naming a key the proxy has not
//! loaded yet is not remembered as refused, so it passes once the key arrives.
//!
//! These run with the binary's default bucket (burst 50, 20 a second), which the test harness
//! otherwise turns off.

use crate::common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use http::Request;
use serde_json::Value;

use common::accounts::{base64url_decode, base64url_encode, CONTROL};
use common::scrape::{count, scrape};
use common::{
    assert_invalid_token_about, assert_rate_limited_about, backends, empty, Client, ConfigYaml,
    Proxy, Reply, ServiceYaml,
};
use gatehouse::auth::keyring::{self, Keyring};

const APP: &str = "app.test";
const PASSWORD: &str = "correct horse battery";
const KEY_SECRET: &str = "forged-tokens-test-key-secret-0123456789";
/// The default bucket (`auth.limits.token_verification_burst`).
const BURST: usize = 50;
const VERIFICATIONS: &str = "gatehouse_token_verifications_total";

/// An `auth: required` service with the binary's default verification bucket.
async fn config() -> ConfigYaml {
    let backend = backends(1).await[0];
    ConfigYaml::new()
        .auth_limit_default("token_verifications_per_second")
        .auth_limit_default("token_verification_burst")
        .service(ServiceYaml::new("app", APP).backend(backend))
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// `token` with its signature's first character changed: well-formed, wrongly signed.
fn forged(token: &str) -> String {
    let (signed, signature) = token.rsplit_once('.').expect("a JWS");
    let first = if signature.starts_with('A') { 'B' } else { 'A' };
    format!("{signed}.{first}{}", &signature[1..])
}

/// The `n`th of a series of distinct forgeries of `token` (its claims' `jti` changed, so each
/// is a new, well-formed, wrongly signed token).
fn nth_forgery(token: &str, n: usize) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&base64url_decode(parts[1])).unwrap();
    claims["jti"] = Value::from(format!("forged-{n}"));
    let claims = base64url_encode(&serde_json::to_vec(&claims).unwrap());
    parts[1] = &claims;
    parts.join(".")
}

/// The verification counters, by result.
async fn verifications(proxy: &Proxy) -> [u64; 4] {
    let text = scrape(proxy.addr).await;
    ["valid", "invalid", "cached_invalid", "throttled"]
        .map(|result| count(&text, VERIFICATIONS, &[("result", result)]))
}

async fn get(client: &Client, token: &str, forwarded_for: Option<&str>) -> Reply {
    let mut request = Request::get("/")
        .header("host", APP)
        .header("authorization", format!("Bearer {token}"));
    if let Some(client_ip) = forwarded_for {
        request = request.header("x-forwarded-for", client_ip);
    }
    client.send(request.body(empty()).unwrap()).await
}

fn assert_served(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 200, "{what}: {}", reply.text());
    assert!(reply.headers.get("x-backend").is_some(), "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_forgery_is_verified_once_then_refused_from_memory() {
    let proxy = Proxy::start(&config().await).await;
    let client = proxy.client();
    let token = client
        .signed_up("alice", "alice@example.com", PASSWORD)
        .await;
    let forgery = forged(&token);
    let before = verifications(&proxy).await;
    let failures_before = count(
        &scrape(proxy.addr).await,
        "gatehouse_auth_failures_total",
        &[("reason", "invalid")],
    );
    for n in 0..100 {
        let reply = get(&client, &forgery, None).await;
        assert_invalid_token_about(&reply, &format!("repeat {n}"));
    }
    // The control plane shares the memory.
    let reply = client
        .with_token("GET", CONTROL, "/accounts", &forgery)
        .await;
    assert_invalid_token_about(&reply, "on the control plane");
    let after = verifications(&proxy).await;
    assert_eq!(after[1] - before[1], 1, "verified once: {after:?}");
    assert_eq!(after[2] - before[2], 100, "then refused from memory");
    assert_eq!(
        after[3], 0,
        "never throttled: a repeat takes nothing from the bucket"
    );
    // Every refusal is still counted as the invalid token it is.
    let failures = count(
        &scrape(proxy.addr).await,
        "gatehouse_auth_failures_total",
        &[("reason", "invalid")],
    );
    assert_eq!(failures - failures_before, 101);
    assert_served(&get(&client, &token, None).await, "alice's own token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_new_forgeries_is_throttled_per_network_and_known_tokens_still_pass() {
    let proxy = Proxy::start(&config().await).await;
    let signup = proxy.client();
    let bob = signup.signed_up("bob", "bob@example.com", PASSWORD).await;
    // Carol's tokens are new to the replica: never verified.
    signup
        .signed_up("carol", "carol@example.com", PASSWORD)
        .await;
    let mut carol = Vec::new();
    for _ in 0..3 {
        carol.push(signup.token("carol@example.com", PASSWORD).await);
    }
    let attacker = Client::http1_from(proxy.addr, loopback(2));
    // Bob works from the attacker's network: his token is verified (one from the bucket).
    assert_served(&get(&attacker, &bob, None).await, "bob before the flood");

    let before = verifications(&proxy).await;
    let started = Instant::now();
    let mut answers = Vec::new();
    for n in 0..150 {
        answers.push(get(&attacker, &nth_forgery(&bob, n), None).await);
    }
    let elapsed = started.elapsed();
    // The bucket holds 50 (bob's one came back within 50 ms).
    for (n, reply) in answers.iter().take(BURST - 1).enumerate() {
        assert_invalid_token_about(reply, &format!("forgery {n}, within the burst"));
    }
    let throttled = answers.iter().filter(|reply| reply.status == 429).count();
    for reply in answers.iter().filter(|reply| reply.status == 429) {
        assert_rate_limited_about(reply, "a forgery past the burst");
    }
    let checked = answers.len() - throttled;
    // At most the burst and 20 a second more were verified, however fast they came.
    let refill = (elapsed.as_secs_f64() * 20.0).ceil() as usize;
    assert!(
        checked <= BURST + refill,
        "{checked} verified in {elapsed:?}"
    );
    assert!(throttled > 0, "none of 150 throttled in {elapsed:?}");
    let after = verifications(&proxy).await;
    assert_eq!(after[1] - before[1], checked as u64, "{after:?}");
    assert_eq!(after[3] - before[3], throttled as u64, "{after:?}");

    // Bob's token, verified before, still passes from the flooding network.
    assert_served(&get(&attacker, &bob, None).await, "bob during the flood");
    // A forgery already refused is refused from memory (401), not throttled.
    assert_invalid_token_about(
        &get(&attacker, &nth_forgery(&bob, 0), None).await,
        "a repeat",
    );
    // A new genuine token cannot be checked from that network while its bucket is empty:
    // the price of the bucket. Each try is made right after a forgery found it empty; one
    // token comes back every 50 ms, so a try can race a refill, but not three in a row.
    let mut refused = None;
    for (n, token) in carol.iter().enumerate() {
        drain_bucket(&attacker, &bob, 1_000 + 100 * n).await;
        let reply = get(&attacker, token, None).await;
        if reply.status == 429 {
            assert_rate_limited_about(&reply, "a new token from the flooding network");
            refused = Some(n);
            break;
        }
        assert_served(&reply, "a new token that raced a refill");
    }
    let refused = refused.expect("a new token from the flooding network was always checked");
    // From another network the same token is checked and served.
    let elsewhere = Client::http1_from(proxy.addr, loopback(3));
    let reply = get(&elsewhere, &carol[refused], None).await;
    assert_served(&reply, "carol from another network");
}

/// Sends new forgeries from `client` until one finds its network's bucket empty (429). The
/// tokens that came back meanwhile (one every 50 ms: the assertions and metrics reads before
/// take time) are each spent on a forgery that is verified and refused (401); ten in a row
/// verified would mean the bucket does not throttle. `first` numbers the forgeries, which
/// must be new to the proxy (a repeated one is refused from memory, spending nothing).
async fn drain_bucket(client: &Client, genuine: &str, first: usize) {
    for n in first..first + 10 {
        let probe = get(client, &nth_forgery(genuine, n), None).await;
        if probe.status == 429 {
            assert_rate_limited_about(&probe, "a forgery while the flood's bucket is empty");
            return;
        }
        assert_invalid_token_about(&probe, "a forgery that took a refilled token");
    }
    panic!("ten new forgeries in a row were verified: the bucket did not throttle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_bucket_is_the_forwarded_clients() {
    let config = config().await.trusted_proxies(&["127.0.0.4/32"]);
    let proxy = Proxy::start(&config).await;
    let dave = proxy
        .client()
        .signed_up("dave", "dave@example.com", PASSWORD)
        .await;
    let ingress = Client::http1_from(proxy.addr, loopback(4));
    let mut refused = None;
    for n in 0..200 {
        let reply = get(&ingress, &nth_forgery(&dave, n), Some("203.0.113.9")).await;
        if reply.status == 429 {
            refused = Some(n);
            break;
        }
        assert_invalid_token_about(&reply, &format!("forgery {n}"));
    }
    let refused = refused.expect("the forwarded client was never throttled");
    assert!(refused >= BURST, "throttled after {refused}");
    // Another client behind the same ingress has its own bucket.
    let other = get(&ingress, &dave, Some("203.0.113.10")).await;
    assert_served(&other, "dave, forwarded for another client");
}

/// A token naming a key this replica has not loaded is refused, and not remembered as refused:
/// once the key is in the store and the replica has re-read it (every 250 ms with a 1 s
/// publish delay), the same token passes. Were the refusal remembered, it would be refused for
/// another minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_of_a_key_not_yet_loaded_passes_once_the_key_arrives() {
    let base = config().await;
    let secret = base.dir().join("key-secret");
    std::fs::write(&secret, KEY_SECRET).unwrap();
    let config = base.jwt("algorithm", "EdDSA").auth(
        "keys",
        &format!("{{secret_file: {}, publish_delay: 1s}}", secret.display()),
    );
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();
    let token = client.signed_up("erin", "erin@example.com", PASSWORD).await;
    let claims: Value =
        serde_json::from_slice(&base64url_decode(token.split('.').nth(1).unwrap())).unwrap();

    // A key made elsewhere (another store, the same secret), not yet in this proxy's store.
    let scratch = common::binary::TempDir::new("forged-keys");
    let elsewhere_url = format!("sqlite://{}", scratch.path().join("other.db").display());
    let elsewhere = gatehouse::store::open(&elsewhere_url).await.unwrap();
    let keep = keyring::keep_published(Duration::from_secs(3600), Duration::from_secs(1));
    let (other_ring, _) = Keyring::start(&*elsewhere, KEY_SECRET.as_bytes(), keep, Duration::ZERO)
        .await
        .unwrap();
    let signer = other_ring.signer(gatehouse::clock::unix_millis());
    let new_key_token = signer.sign(&claims).unwrap();
    for n in 0..3 {
        let reply = get(&client, &new_key_token, None).await;
        assert_invalid_token_about(&reply, &format!("unknown kid, try {n}"));
    }
    let counts = verifications(&proxy).await;
    assert_eq!(counts[2], 0, "an unknown kid is not remembered: {counts:?}");

    // The key arrives in this proxy's store (published now, signing in an hour), as a
    // rotation elsewhere would put it there.
    let mut row = elsewhere.signing_keys().await.unwrap().remove(0);
    let store = gatehouse::store::open(&config.database_url())
        .await
        .unwrap();
    row.seq = store.signing_keys().await.unwrap().last().unwrap().seq + 1;
    row.signs_from_ms = gatehouse::clock::unix_millis() + 3_600_000;
    assert!(store.add_signing_key(&row).await.unwrap());
    let added = Instant::now();
    loop {
        let reply = get(&client, &new_key_token, None).await;
        if reply.status == 200 {
            break;
        }
        assert_invalid_token_about(&reply, "before the re-read");
        assert!(
            added.elapsed() < Duration::from_secs(5),
            "still refused {:?} after the key arrived",
            added.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_served(
        &get(&client, &new_key_token, None).await,
        "the new key's token",
    );
}
