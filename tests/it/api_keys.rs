//! API keys: the store contract on SQLite and PostgreSQL, the HTTP endpoints, proxied
//! `Authorization: Bearer gh_…` against real backends, the bound on lookups of made-up keys,
//! revocation across replicas, and `gatehouse apikeys` run as a binary.

use crate::common;
use crate::store::contract;

use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse::auth::api_key_cache::{LOOKUPS_PER_SECOND, LOOKUP_BURST};
use gatehouse::auth::api_keys;
use gatehouse::store::{
    self, AccountStore, AuditQuery, KeyCreation, KeyLimits, NewAccount, NewApiKey, Revocation, Role,
};
use serde_json::{json, Value};

use common::accounts::{gatehouse_accounts, CONTROL};
use common::postgres::{drop_database, fresh_database, fresh_sqlite, OwnCluster};
use common::scrape::{count, scrape};
use common::{assert_invalid_token, backends, Client, ConfigYaml, Proxy, ServiceYaml};

const APP: &str = "app.test";
const PASSWORD: &str = "correct horse";

// ---------------------------------------------------------------------------------------------
// The store contract

contract!(
    api_keys_are_stored_found_by_hash_listed_and_revoked_by_their_owner,
    the_live_key_limit_counts_neither_revoked_nor_expired_keys,
    keys_are_refused_to_disabled_and_unknown_accounts,
    keys_created_in_the_last_day_count_against_the_daily_limit_even_revoked,
    last_use_is_written_in_one_statement_and_never_moves_back,
    revoked_and_expired_keys_are_pruned_after_retention,
);

async fn open(url: &str) -> Arc<dyn AccountStore> {
    Arc::from(
        store::open(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}")),
    )
}

async fn account(store: &dyn AccountStore, name: &str) -> String {
    let created = store
        .create(NewAccount {
            username: name.to_string(),
            email: format!("{name}@example.com"),
            password_hash: "$argon2id$fake".to_string(),
            role: Role::User,
        })
        .await
        .expect("create account");
    created.id
}

fn new_key(account_id: &str, now: i64, expires_at_ms: Option<i64>) -> (NewApiKey, String) {
    let generated = api_keys::generate();
    let key = NewApiKey {
        id: uuid::Uuid::now_v7().to_string(),
        account_id: account_id.to_string(),
        name: "ci".to_string(),
        hash: generated.hash,
        created_at_ms: now,
        expires_at_ms,
    };
    (key, generated.key)
}

/// At most `max_live` live keys, and no daily bound to speak of.
fn live(max_live: i64) -> KeyLimits {
    KeyLimits {
        max_live,
        max_per_day: 1_000,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn api_keys_are_stored_found_by_hash_listed_and_revoked_by_their_owner(url: &str) {
    let store = open(url).await;
    let (alice, bob) = (
        account(&*store, "alice").await,
        account(&*store, "bob").await,
    );
    let now = now_ms();
    let (key, _) = new_key(&alice, now, Some(now + 60_000));
    let KeyCreation::Created(created) = store.create_api_key(&key, live(10)).await.unwrap() else {
        panic!("not created");
    };
    assert_eq!(
        (created.id.as_str(), created.revoked_at_ms),
        (key.id.as_str(), None)
    );

    let found = store
        .api_key_by_hash(&key.hash)
        .await
        .unwrap()
        .expect("found");
    assert_eq!(found.key, created);
    assert_eq!(found.account.username, "alice");
    assert!(store
        .api_key_by_hash(&"0".repeat(64))
        .await
        .unwrap()
        .is_none());
    assert!(store
        .api_key_by_hash("x' OR '1'='1")
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.api_keys(&alice).await.unwrap(), vec![created.clone()]);
    assert!(store.api_keys(&bob).await.unwrap().is_empty());

    // Another account's, or an unknown id: nothing happens.
    assert_eq!(
        store
            .revoke_api_key(&key.id, Some(&bob), now)
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.revoke_api_key("nope", None, now).await.unwrap(), None);
    assert!(store
        .api_key_by_hash(&key.hash)
        .await
        .unwrap()
        .unwrap()
        .key
        .is_live(now));

    let revoked = store
        .revoke_api_key(&key.id, Some(&alice), now + 1)
        .await
        .unwrap()
        .expect("revoked");
    assert_eq!(revoked.revoked_at_ms, Some(now + 1));
    assert_eq!(
        store.revoke_api_key(&key.id, None, now + 2).await.unwrap(),
        None,
        "once"
    );
    let found = store.api_key_by_hash(&key.hash).await.unwrap().unwrap();
    assert!(!found.key.is_live(now + 2));
    let expected = revoked.revocation().expect("a revocation");
    assert!(matches!(&expected, Revocation::ApiKey { id, .. } if *id == key.id));
    assert!(
        store.revocations().await.unwrap().contains(&expected),
        "replicas that poll or resync learn of it"
    );
}

async fn the_live_key_limit_counts_neither_revoked_nor_expired_keys(url: &str) {
    let store = open(url).await;
    let alice = account(&*store, "alice").await;
    let now = now_ms();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (key, _) = new_key(&alice, now, None);
        assert!(matches!(
            store.create_api_key(&key, live(2)).await.unwrap(),
            KeyCreation::Created(_)
        ));
        ids.push(key.id);
    }
    let (third, _) = new_key(&alice, now, None);
    assert_eq!(
        store.create_api_key(&third, live(2)).await.unwrap(),
        KeyCreation::TooMany
    );
    assert!(
        store.api_key_by_hash(&third.hash).await.unwrap().is_none(),
        "not written"
    );

    store
        .revoke_api_key(&ids[0], None, now)
        .await
        .unwrap()
        .expect("revoked");
    let (expiring, _) = new_key(&alice, now, Some(now + 1));
    assert!(matches!(
        store.create_api_key(&expiring, live(2)).await.unwrap(),
        KeyCreation::Created(_)
    ));
    // Once that one has expired, it no longer counts either.
    let (later, _) = new_key(&alice, now + 10, None);
    assert!(matches!(
        store.create_api_key(&later, live(2)).await.unwrap(),
        KeyCreation::Created(_)
    ));
    assert_eq!(store.api_keys(&alice).await.unwrap().len(), 4);
}

async fn keys_created_in_the_last_day_count_against_the_daily_limit_even_revoked(url: &str) {
    let store = open(url).await;
    let alice = account(&*store, "alice").await;
    let now = now_ms();
    let limits = KeyLimits {
        max_live: 10,
        max_per_day: 2,
    };
    let (old, _) = new_key(&alice, now - 25 * 3600 * 1000, None);
    assert!(matches!(
        store.create_api_key(&old, limits).await.unwrap(),
        KeyCreation::Created(_)
    ));
    for _ in 0..2 {
        let (key, _) = new_key(&alice, now, None);
        assert!(matches!(
            store.create_api_key(&key, limits).await.unwrap(),
            KeyCreation::Created(_)
        ));
        store
            .revoke_api_key(&key.id, None, now)
            .await
            .unwrap()
            .expect("revoked");
    }
    let (next, _) = new_key(&alice, now, None);
    assert_eq!(
        store.create_api_key(&next, limits).await.unwrap(),
        KeyCreation::TooManyToday
    );
    assert!(
        store.api_key_by_hash(&next.hash).await.unwrap().is_none(),
        "not written"
    );
}

async fn keys_are_refused_to_disabled_and_unknown_accounts(url: &str) {
    let store = open(url).await;
    let alice = account(&*store, "alice").await;
    let (unknown, _) = new_key("no-such-account", now_ms(), None);
    assert_eq!(
        store.create_api_key(&unknown, live(10)).await.unwrap(),
        KeyCreation::NoAccount
    );
    store
        .disable("alice@example.com")
        .await
        .unwrap()
        .expect("disabled");
    let (key, _) = new_key(&alice, now_ms(), None);
    assert_eq!(
        store.create_api_key(&key, live(10)).await.unwrap(),
        KeyCreation::NoAccount
    );
    assert!(store.api_keys(&alice).await.unwrap().is_empty());
}

async fn last_use_is_written_in_one_statement_and_never_moves_back(url: &str) {
    let store = open(url).await;
    let alice = account(&*store, "alice").await;
    let now = now_ms();
    let (a, _) = new_key(&alice, now, None);
    let (b, _) = new_key(&alice, now, None);
    for key in [&a, &b] {
        store.create_api_key(key, live(10)).await.unwrap();
    }
    store
        .touch_api_keys(&[(a.id.clone(), now + 5), (b.id.clone(), now + 7)])
        .await
        .unwrap();
    store
        .touch_api_keys(&[(a.id.clone(), now + 1)])
        .await
        .unwrap();
    let used: Vec<_> = store
        .api_keys(&alice)
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.id, k.last_used_at_ms))
        .collect();
    assert!(used.contains(&(a.id.clone(), Some(now + 5))), "{used:?}");
    assert!(used.contains(&(b.id.clone(), Some(now + 7))), "{used:?}");
    // More keys than one batch takes still land.
    let many: Vec<_> = (0..600).map(|n| (format!("missing-{n}"), now)).collect();
    store.touch_api_keys(&many).await.unwrap();
}

async fn revoked_and_expired_keys_are_pruned_after_retention(url: &str) {
    let store = open(url).await;
    let alice = account(&*store, "alice").await;
    let now = now_ms();
    let (kept, _) = new_key(&alice, now, None);
    let (expired, _) = new_key(&alice, now, Some(now - 10));
    let (revoked, _) = new_key(&alice, now, None);
    for key in [&kept, &expired, &revoked] {
        store.create_api_key(key, live(10)).await.unwrap();
    }
    store
        .revoke_api_key(&revoked.id, None, now - 5)
        .await
        .unwrap();
    assert_eq!(store.prune_api_keys(now).await.unwrap(), 2);
    let left: Vec<_> = store
        .api_keys(&alice)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(left, vec![kept.id]);
}

// ---------------------------------------------------------------------------------------------
// Through the proxy

async fn proxy_on(database: Option<&str>) -> Proxy {
    let backend = backends(1).await[0];
    let mut config = ConfigYaml::new().service(ServiceYaml::new("app", APP).backend(backend));
    if let Some(url) = database {
        config = config.database(url);
    }
    Proxy::start(&config).await
}

impl Client {
    /// `POST /api_keys` with `token` and `body`.
    async fn create_key(&self, token: &str, body: &Value) -> common::Reply {
        let request = http::Request::post("/api_keys")
            .header(http::header::HOST, CONTROL)
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(common::full(serde_json::to_vec(body).unwrap()))
            .unwrap();
        self.send(request).await
    }

    /// Creates a key (201 expected); returns its id and the key.
    async fn new_key(&self, token: &str, name: &str) -> (String, String) {
        let reply = self.create_key(token, &json!({ "name": name })).await;
        assert_eq!(reply.status, 201, "{}", reply.text());
        let body = reply.json();
        (
            body["id"].as_str().unwrap().into(),
            body["key"].as_str().unwrap().into(),
        )
    }
}

/// The whole life of a key on one store: create, use, list, last use, revoke.
async fn lifecycle(database: Option<&str>) {
    let proxy = proxy_on(database).await;
    let client = proxy.client();
    let token = client.signed_up("kim", "kim@example.com", PASSWORD).await;

    let reply = client
        .create_key(
            &token,
            &json!({ "name": "deploy bot", "expires_in": "90d" }),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(reply.header("cache-control"), "no-store");
    let body = reply.json();
    let (id, key) = (body["id"].as_str().unwrap(), body["key"].as_str().unwrap());
    assert!(key.starts_with("gh_") && key.len() == 46, "{key}");
    assert_eq!(body["name"], "deploy bot");
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(body["expires_at"].as_str().is_some(), "{body}");

    let used = client.with_token("GET", APP, "/hello", key).await;
    assert_eq!(used.status, 200, "{}", used.text());
    assert_eq!(
        used.echoed_header("x-forwarded-user").as_deref(),
        Some("kim")
    );
    assert_eq!(
        used.echoed_header("x-forwarded-email").as_deref(),
        Some("kim@example.com")
    );
    assert_eq!(
        used.echoed_header("authorization"),
        None,
        "the key is not forwarded"
    );

    // Listed without the key or its hash; the last use shows after a flush (every 5 s).
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        let listed = client.with_token("GET", CONTROL, "/api_keys", &token).await;
        assert_eq!(listed.status, 200, "{}", listed.text());
        let text = listed.text();
        assert!(!text.contains(key) && !text.contains(&key[3..]), "{text}");
        assert!(
            !text.contains(&api_keys::hex(&api_keys::digest(key))),
            "{text}"
        );
        let keys = listed.json()["api_keys"].as_array().unwrap().clone();
        assert_eq!(keys.len(), 1);
        assert_eq!(
            (keys[0]["id"].as_str(), keys[0]["name"].as_str()),
            (Some(id), Some("deploy bot"))
        );
        assert_eq!(keys[0].get("key"), None);
        if keys[0]["last_used_at"].is_string() {
            break;
        }
        assert!(Instant::now() < deadline, "last use never written: {text}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let revoked = client
        .with_token("DELETE", CONTROL, &format!("/api_keys/{id}"), &token)
        .await;
    assert_eq!(revoked.status, 204, "{}", revoked.text());
    assert_invalid_token(&client.with_token("GET", APP, "/hello", key).await);
    let again = client
        .with_token("DELETE", CONTROL, &format!("/api_keys/{id}"), &token)
        .await;
    assert_eq!(again.status, 404, "revoked once");

    // Both events audited, never with the key.
    let store = open(&proxy.database_url).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let query = AuditQuery {
            limit: 50,
            ..AuditQuery::default()
        };
        let events = store.audit_events(&query).await.unwrap();
        let names: Vec<_> = events.iter().map(|e| e.event.as_str()).collect();
        if names.contains(&"api_key_created") && names.contains(&"api_key_revoked") {
            for event in &events {
                assert!(!event.detail.contains(key), "{event:?}");
            }
            let created = events
                .iter()
                .find(|e| e.event == "api_key_created")
                .unwrap();
            assert_eq!(created.username.as_deref(), Some("kim"));
            assert!(created.detail.contains(id), "{created:?}");
            break;
        }
        assert!(Instant::now() < deadline, "audit events missing: {names:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn lifecycle_on_sqlite() {
    lifecycle(None).await;
}

#[tokio::test]
async fn lifecycle_on_postgres() {
    let Some(url) = fresh_database().await else {
        return;
    };
    lifecycle(Some(&url)).await;
    drop_database(&url).await;
}

/// A burst of made-up keys: every one refused, and the store asked at most what the bucket
/// allows (its burst plus its refill over the burst's duration).
#[tokio::test]
async fn made_up_keys_are_refused_and_bounded_in_store_lookups() {
    let proxy = proxy_on(None).await;
    let client = proxy.client();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let client = client.clone();
        tasks.spawn(async move {
            for _ in 0..50 {
                let key = api_keys::generate().key;
                let reply = client.with_token("GET", APP, "/", &key).await;
                assert_invalid_token(&reply);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a client task");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let text = scrape(proxy.addr).await;
    let looked_up: u64 = ["found", "unknown", "refused", "error"]
        .iter()
        .map(|result| {
            count(
                &text,
                "gatehouse_api_key_lookups_total",
                &[("result", result)],
            )
        })
        .sum();
    let throttled = count(
        &text,
        "gatehouse_api_key_lookups_total",
        &[("result", "throttled")],
    );
    let bound = f64::from(LOOKUP_BURST) + f64::from(LOOKUPS_PER_SECOND) * elapsed + 1.0;
    eprintln!(
        "400 made-up keys in {elapsed:.2} s: {looked_up} lookups, {throttled} refused unasked"
    );
    assert!(looked_up as f64 <= bound, "{looked_up} lookups > {bound}");
    assert_eq!(
        looked_up + throttled,
        400,
        "every key either looked up or refused unasked"
    );
    assert!(throttled > 0);
    // The same made-up key again is answered from the negative cache, not the store.
    let key = api_keys::generate().key;
    tokio::time::sleep(Duration::from_millis(300)).await; // a bucket token or more back
    for _ in 0..5 {
        assert_invalid_token(&client.with_token("GET", APP, "/", &key).await);
    }
    let after = scrape(proxy.addr).await;
    let unknown = |text: &str| {
        count(
            text,
            "gatehouse_api_key_lookups_total",
            &[("result", "unknown")],
        )
    };
    assert_eq!(
        unknown(&after),
        unknown(&text) + 1,
        "asked once for five tries"
    );
    // Malformed keys never reach the bucket or the store.
    assert_invalid_token(&client.with_token("GET", APP, "/", "gh_short").await);
}

/// A job that starts many requests at once with a new key: one lookup, every request served.
#[tokio::test]
async fn concurrent_first_requests_with_a_new_key_share_one_lookup() {
    // The service also claims 127.0.0.1: an h2 client sends the proxy's address as `:authority`.
    let backend = backends(1).await[0];
    let service = ServiceYaml::new("app", APP)
        .host("127.0.0.1")
        .backend(backend);
    let proxy = Proxy::start(&ConfigYaml::new().service(service)).await;
    let client = proxy.client();
    let token = client.signed_up("joy", "joy@example.com", PASSWORD).await;
    let (_, key) = client.new_key(&token, "ci").await;
    // One HTTP/2 connection, opened first: the requests arrive together, and the worker takes
    // them all in while the first lookup is still out on the control runtime.
    let h2 = Client::http2(proxy.addr);
    let anonymous = h2
        .send(http::Request::get("/").body(common::empty()).unwrap())
        .await;
    assert_eq!(anonymous.status, 401);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..(2 * LOOKUP_BURST) {
        let (h2, key) = (h2.clone(), key.clone());
        tasks.spawn(async move {
            let request = http::Request::get("/")
                .header(http::header::AUTHORIZATION, format!("Bearer {key}"))
                .body(common::empty())
                .unwrap();
            h2.send(request).await.status
        });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.expect("a request task"), 200);
    }
    let text = scrape(proxy.addr).await;
    let lookups = |result| {
        count(
            &text,
            "gatehouse_api_key_lookups_total",
            &[("result", result)],
        )
    };
    assert_eq!((lookups("found"), lookups("throttled")), (1, 0));
}

/// An API key manages nothing: it cannot create, list or revoke keys (a leaked key must not
/// mint more), nor end sessions.
#[tokio::test]
async fn an_api_key_cannot_manage_api_keys() {
    let proxy = proxy_on(None).await;
    let client = proxy.client();
    let token = client.signed_up("lee", "lee@example.com", PASSWORD).await;
    let (id, key) = client.new_key(&token, "ci").await;
    assert_invalid_token(&client.create_key(&key, &json!({ "name": "more" })).await);
    assert_invalid_token(&client.with_token("GET", CONTROL, "/api_keys", &key).await);
    let path = format!("/api_keys/{id}");
    assert_invalid_token(&client.with_token("DELETE", CONTROL, &path, &key).await);
    assert_invalid_token(
        &client
            .with_token("POST", CONTROL, "/logout/all", &key)
            .await,
    );
    let listed = client.with_token("GET", CONTROL, "/api_keys", &token).await;
    assert_eq!(
        listed.json()["api_keys"].as_array().unwrap().len(),
        1,
        "nothing minted"
    );
    assert_eq!(client.with_token("GET", APP, "/", &key).await.status, 200);
}

/// Another account can neither see nor revoke a key; `POST /logout/all` ends sessions, not
/// keys.
#[tokio::test]
async fn another_account_cannot_delete_your_key_and_logout_all_keeps_it() {
    let proxy = proxy_on(None).await;
    let client = proxy.client();
    let owner = client.signed_up("olga", "olga@example.com", PASSWORD).await;
    let other = client.signed_up("otto", "otto@example.com", PASSWORD).await;
    let (id, key) = client.new_key(&owner, "ci").await;

    let theirs = client
        .with_token("DELETE", CONTROL, &format!("/api_keys/{id}"), &other)
        .await;
    common::assert_json_error(&theirs, 404, "not_found");
    let unknown = client
        .with_token("DELETE", CONTROL, "/api_keys/no-such-id", &owner)
        .await;
    common::assert_json_error(&unknown, 404, "not_found");
    let listed = client.with_token("GET", CONTROL, "/api_keys", &other).await;
    assert_eq!(listed.json()["api_keys"], json!([]));
    assert_eq!(client.with_token("GET", APP, "/", &key).await.status, 200);

    let ended = client
        .with_token("POST", CONTROL, "/logout/all", &owner)
        .await;
    assert_eq!(ended.status, 204);
    assert_invalid_token(&client.with_token("GET", APP, "/", &owner).await);
    let used = client.with_token("GET", APP, "/", &key).await;
    assert_eq!(
        used.status,
        200,
        "a key outlives the sessions: {}",
        used.text()
    );
}

/// Bad names and lifetimes are clear 400s that create nothing; wrong methods are 405 with
/// `Allow`.
#[tokio::test]
async fn bad_requests_create_nothing() {
    let proxy = proxy_on(None).await;
    let client = proxy.client();
    let token = client.signed_up("bob", "bob@example.com", PASSWORD).await;
    let cases = [
        (json!({ "name": "" }), "invalid_name"),
        (json!({ "name": "x".repeat(65) }), "invalid_name"),
        (json!({ "name": "line\nbreak" }), "invalid_name"),
        (
            json!({ "name": "ok", "expires_in": "1w" }),
            "invalid_expires_in",
        ),
        (
            json!({ "name": "ok", "expires_in": 59 }),
            "invalid_expires_in",
        ),
        (
            json!({ "name": "ok", "expires_in": "3651d" }),
            "invalid_expires_in",
        ),
        (json!({ "name": "ok", "expires_in": -1 }), "invalid_request"),
        (json!({ "name": "ok", "scope": "all" }), "invalid_request"),
        (json!({}), "invalid_request"),
    ];
    for (body, code) in cases {
        let reply = client.create_key(&token, &body).await;
        common::assert_json_error_about(&reply, 400, code, &body.to_string());
    }
    let listed = client.with_token("GET", CONTROL, "/api_keys", &token).await;
    assert_eq!(listed.json()["api_keys"], json!([]));
    common::assert_missing_token(&client.post_json("/api_keys", &json!({ "name": "x" })).await);

    // The limit of live keys per account: the next one is 409 until one is revoked.
    let mut first = None;
    for n in 0..api_keys::MAX_LIVE_KEYS {
        let (id, _) = client.new_key(&token, &format!("key {n}")).await;
        first.get_or_insert(id);
    }
    let over = client
        .create_key(&token, &json!({ "name": "one more" }))
        .await;
    common::assert_json_error(&over, 409, "too_many_api_keys");
    let path = format!("/api_keys/{}", first.unwrap());
    assert_eq!(
        client
            .with_token("DELETE", CONTROL, &path, &token)
            .await
            .status,
        204
    );
    client.new_key(&token, "one more").await;
    let put = client.with_token("PUT", CONTROL, "/api_keys", &token).await;
    assert_eq!(
        (put.status.as_u16(), put.header("allow")),
        (405, "GET, HEAD, POST")
    );
    let get_one = client
        .with_token("GET", CONTROL, "/api_keys/x", &token)
        .await;
    assert_eq!(
        (get_one.status.as_u16(), get_one.header("allow")),
        (405, "DELETE")
    );
}

/// A key past its expiry is refused from memory, without waiting for anything else.
#[tokio::test]
async fn an_expired_key_is_refused() {
    let proxy = proxy_on(None).await;
    let client = proxy.client();
    client.signed_up("eve", "eve@example.com", PASSWORD).await;
    // HTTP takes no lifetime under a minute, so the store is given a short one directly.
    let store = open(&proxy.database_url).await;
    let owner = store.credentials("eve@example.com").await.unwrap().unwrap();
    let expires = now_ms() + 1_500;
    let (row, key) = new_key(&owner.account.id, now_ms(), Some(expires));
    store.create_api_key(&row, live(10)).await.unwrap();
    assert_eq!(client.with_token("GET", APP, "/", &key).await.status, 200);
    tokio::time::sleep(Duration::from_millis(
        (expires - now_ms()).max(0) as u64 + 50,
    ))
    .await;
    let reply = client.with_token("GET", APP, "/", &key).await;
    assert_invalid_token(&reply);
    assert!(reply.text().contains("expired"), "{}", reply.text());
}

/// `gatehouse accounts disable` ends the account's keys within a second.
#[tokio::test]
async fn a_disabled_accounts_key_is_refused_within_a_second() {
    let proxy = proxy_on(None).await;
    let client = proxy.client();
    let token = client.signed_up("dan", "dan@example.com", PASSWORD).await;
    let (_, key) = client.new_key(&token, "ci").await;
    assert_eq!(client.with_token("GET", APP, "/", &key).await.status, 200);
    gatehouse_accounts(
        &proxy.database_url,
        &["disable", "--email", "dan@example.com"],
        "",
    )
    .await;
    refused_within_a_second(&client, &key, Instant::now(), "disable").await;
}

/// Polls with `key` until 401, which must come within one second of `since`.
async fn refused_within_a_second(client: &Client, key: &str, since: Instant, what: &str) {
    loop {
        let reply = client.with_token("GET", APP, "/", key).await;
        if reply.status == 401 {
            eprintln!("{what}: refused after {:?}", since.elapsed());
            return;
        }
        assert_eq!(reply.status, 200, "{what}: {}", reply.text());
        assert!(
            since.elapsed() < Duration::from_secs(1),
            "{what}: still accepted after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Two replicas on one PostgreSQL: a key made on A works on B, and revoked on A it is refused
/// by B (which holds it in memory) within a second, through NOTIFY.
#[tokio::test]
async fn a_revocation_reaches_the_other_replica_within_a_second() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let (a, b) = (proxy_on(Some(&url)).await, proxy_on(Some(&url)).await);
    let (on_a, on_b) = (a.client(), b.client());
    let token = on_a.signed_up("rui", "rui@example.com", PASSWORD).await;
    let (id, key) = on_a.new_key(&token, "ci").await;
    for _ in 0..5 {
        assert_eq!(on_b.with_token("GET", APP, "/", &key).await.status, 200);
    }
    let found = count(
        &scrape(b.addr).await,
        "gatehouse_api_key_lookups_total",
        &[("result", "found")],
    );
    assert_eq!(
        found, 1,
        "B asked the store once for five requests, then held the key"
    );
    let revoked = on_a
        .with_token("DELETE", CONTROL, &format!("/api_keys/{id}"), &token)
        .await;
    assert_eq!(revoked.status, 204);
    let since = Instant::now();
    assert_invalid_token(&on_a.with_token("GET", APP, "/", &key).await);
    refused_within_a_second(&on_b, &key, since, "revoked on A, seen by B").await;
    drop((a, b));
    drop_database(&url).await;
}

/// The SQLite file (with its WAL) holds the key's hash but never the key.
#[tokio::test]
async fn the_key_is_never_in_the_database_file() {
    let proxy = proxy_on(None).await;
    let client = proxy.client();
    let token = client.signed_up("sam", "sam@example.com", PASSWORD).await;
    let (_, key) = client.new_key(&token, "ci").await;
    assert_eq!(client.with_token("GET", APP, "/", &key).await.status, 200);
    let path = proxy
        .database_url
        .strip_prefix("sqlite://")
        .unwrap()
        .to_string();
    let mut bytes = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        if let Ok(more) = std::fs::read(format!("{path}{suffix}")) {
            bytes.extend(more);
        }
    }
    let holds = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(
        holds(&api_keys::hex(&api_keys::digest(&key))),
        "the scan finds the stored hash"
    );
    assert!(!holds(&key), "the key is in the database file");
    assert!(
        !holds(&key[3..]),
        "the key's random part is in the database file"
    );
}

/// `gatehouse apikeys create` prints a key that works through a proxy; `list` shows it without
/// the key; `revoke` ends it; bad input exits non-zero and writes nothing.
#[tokio::test]
async fn the_cli_creates_lists_and_revokes_keys() {
    let (_dir, url) = fresh_sqlite();
    let proxy = proxy_on(Some(&url)).await;
    let client = proxy.client();
    client.signed_up("cli", "cli@example.com", PASSWORD).await;

    let created = apikeys(
        &url,
        &[
            "create",
            "--email",
            "cli@example.com",
            "--name",
            "nightly",
            "--expires",
            "90d",
        ],
    )
    .await;
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let key = String::from_utf8(created.stdout)
        .unwrap()
        .trim()
        .to_string();
    assert!(
        api_keys::well_formed(&key),
        "stdout is the key alone: {key:?}"
    );
    let used = client.with_token("GET", APP, "/", &key).await;
    assert_eq!(
        used.echoed_header("x-forwarded-user").as_deref(),
        Some("cli")
    );

    let listed = apikeys(&url, &["list", "--email", "cli@example.com"]).await;
    assert!(listed.status.success());
    let text = String::from_utf8(listed.stdout).unwrap();
    assert!(!text.contains(&key), "{text}");
    let row = text.lines().nth(1).expect("one key");
    assert!(row.contains("\tnightly\t"), "{text}");
    let id = row.split('\t').next().unwrap().to_string();

    let revoked = apikeys(&url, &["revoke", "--id", &id]).await;
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    refused_within_a_second(&client, &key, Instant::now(), "revoked by the CLI").await;
    assert!(
        !apikeys(&url, &["revoke", "--id", &id])
            .await
            .status
            .success(),
        "revoked once"
    );

    for bad in [
        vec![
            "create",
            "--email",
            "cli@example.com",
            "--name",
            "bad\tname",
        ],
        vec![
            "create",
            "--email",
            "cli@example.com",
            "--name",
            "ok",
            "--expires",
            "1w",
        ],
        vec!["create", "--email", "nobody@example.com", "--name", "ok"],
    ] {
        let refused = apikeys(&url, &bad).await;
        assert!(!refused.status.success(), "{bad:?}");
        assert!(refused.stdout.is_empty(), "{bad:?}: no key printed");
    }
    let listed = apikeys(&url, &["list", "--email", "cli@example.com"]).await;
    assert_eq!(
        String::from_utf8(listed.stdout).unwrap().lines().count(),
        2,
        "still one key"
    );
}

async fn apikeys(url: &str, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(common::binary::GATEHOUSE)
        .arg("apikeys")
        .args(args)
        .env("DATABASE_URL", url)
        .output()
        .await
        .expect("run gatehouse apikeys")
}

/// With the store down, a key this replica holds keeps proxying (no database call per
/// request), while one it has not seen is answered 503, not 401; back up, that one works too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_key_needs_no_store_and_an_unseen_one_waits_for_it() {
    let Some(cluster) = OwnCluster::start("API keys with the store down") else {
        return;
    };
    let proxy = proxy_on(Some(&cluster.url)).await;
    let client = proxy.client();
    let token = client.signed_up("ida", "ida@example.com", PASSWORD).await;
    let (_, known) = client.new_key(&token, "held").await;
    let (_, unseen) = client.new_key(&token, "not yet used").await;
    assert_eq!(client.with_token("GET", APP, "/", &known).await.status, 200);

    cluster.run("pause");
    for _ in 0..3 {
        assert_eq!(client.with_token("GET", APP, "/", &known).await.status, 200);
    }
    let started = Instant::now();
    let reply = client.with_token("GET", APP, "/", &unseen).await;
    common::assert_json_error(&reply, 503, "store_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );

    cluster.run("resume");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let reply = client.with_token("GET", APP, "/", &unseen).await;
        if reply.status == 200 {
            break;
        }
        assert_eq!(reply.status, 503, "{}", reply.text());
        assert!(
            Instant::now() < deadline,
            "the unseen key never worked after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
