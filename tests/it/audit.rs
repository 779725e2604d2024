//! The audit trail (`GET /audit`): one event of each kind with the right username, client and
//! detail; admins only; filters and paging, newest first; events kept across a restart of
//! `gatehouse serve` on SQLite and PostgreSQL; and no password, token or unknown typed email in
//! the store or the audit log lines.

use crate::common;
use crate::signin::{csrf_token, form, post_form, set_cookies, sign_in, value_of};

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::accounts::{claims_of, gatehouse_accounts, rfc3339_nanos, CONTROL};
use common::binary::{Gatehouse, TempDir};
use common::postgres::{drop_database, fresh_database};
use common::{
    assert_json_error, assert_missing_token, backends, Client, ConfigYaml, Proxy, Reply,
    ServiceYaml,
};

const SERVICE: &str = "app.my-company.com";
const EMAIL: &str = "alice@example.test";
const PASSWORD: &str = "correct horse battery";
const WRONG: &str = "wrong-horse-staple-9731";
/// An email typed for no account: it must be recorded nowhere.
const UNKNOWN: &str = "typed-by-mistake-5521@nowhere.test";
/// The client address the tests' second client connects from.
const CLIENT: &str = "127.0.0.7";

/// Creates an admin account with the CLI (an `account_created` event written straight to the
/// store) and logs it in.
async fn admin_token(client: &Client, database_url: &str, username: &str) -> String {
    let email = format!("{username}@example.com");
    let args = [
        "create",
        "--email",
        &email,
        "--username",
        username,
        "--admin",
        "--password-stdin",
    ];
    gatehouse_accounts(database_url, &args, &format!("{PASSWORD}\n")).await;
    let token = client.token(&email, PASSWORD).await;
    assert_eq!(claims_of(&token)["role"], "admin");
    token
}

async fn audit(client: &Client, query: &str, token: &str) -> Reply {
    client
        .with_token("GET", CONTROL, &format!("/audit?{query}"), token)
        .await
}

/// `GET /audit?query` until it lists `count` events (the queue is written every 250 ms).
async fn events(client: &Client, query: &str, token: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = audit(client, query, token).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let events = reply.json()["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if events.len() >= count || Instant::now() > deadline {
            assert_eq!(events.len(), count, "{events:#?}");
            return events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// (event, username, client, detail) of each event.
fn summary(events: &[Value]) -> Vec<(String, Value, Value, Value)> {
    events
        .iter()
        .map(|e| {
            let keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(
                keys,
                ["client", "detail", "event", "id", "time", "username"],
                "{e}"
            );
            let time = e["time"].as_str().unwrap();
            assert!(time.ends_with('Z') && rfc3339_nanos(time).is_some(), "{e}");
            let event = e["event"].as_str().unwrap().to_string();
            (
                event,
                e["username"].clone(),
                e["client"].clone(),
                e["detail"].clone(),
            )
        })
        .collect()
}

fn row(
    event: &str,
    username: Value,
    client: Value,
    detail: Value,
) -> (String, Value, Value, Value) {
    (event.to_string(), username, client, detail)
}

/// Fails if any of `secrets` occurs in `haystack` (named `what` in the message).
fn assert_absent(haystack: &[u8], secrets: &[&str], what: &str) {
    for secret in secrets {
        let found = haystack
            .windows(secret.len())
            .any(|window| window == secret.as_bytes());
        assert!(!found, "{what} holds {secret:?}");
    }
}

/// Every file of the SQLite store at `url` (the database and its WAL), as bytes.
fn sqlite_bytes(url: &str) -> Vec<u8> {
    let path = url.strip_prefix("sqlite://").expect("a sqlite:// URL");
    let mut bytes = std::fs::read(path).expect("the database file");
    bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_credential_event_is_recorded_with_its_account_client_and_detail() {
    let backend = backends(1).await[0];
    let config = ConfigYaml::new()
        .auth("session", "{ cookie_domain: my-company.com }")
        .service(ServiceYaml::new("app", SERVICE).backend(backend));
    let proxy = Proxy::start(&config).await;
    let url = config.database_url();
    let admin = admin_token(&proxy.client(), &url, "boss").await;

    let ip: IpAddr = CLIENT.parse().unwrap();
    let client = Client::http1_from(proxy.addr, ip);
    let token = client.signed_up("alice", EMAIL, PASSWORD).await;
    assert_eq!(client.login(EMAIL, WRONG).await.status, 401);
    assert_eq!(client.login(UNKNOWN, WRONG).await.status, 401);
    let logout = client.with_token("POST", CONTROL, "/logout", &token).await;
    assert_eq!(logout.status, 204);

    let signed_in = sign_in(&client, SERVICE, EMAIL, PASSWORD, "/").await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.text());
    let session = value_of(set_cookies(&signed_in, "gatehouse_session")[0]).to_string();
    let refused = sign_in(&client, SERVICE, UNKNOWN, PASSWORD, "/").await;
    assert_eq!(refused.status, 401);
    let csrf = csrf_token(&client, SERVICE).await;
    let cookies = format!("gatehouse_session={session}; gatehouse_csrf={csrf}");
    let origin = format!("http://{SERVICE}");
    let headers = [("cookie", cookies.as_str()), ("origin", origin.as_str())];
    let out = post_form(
        &client,
        SERVICE,
        "/.gatehouse/signout",
        &headers,
        form(&[("csrf", &csrf)]),
    )
    .await;
    assert_eq!(out.status, 303, "{}", out.text());
    gatehouse_accounts(&url, &["disable", "--email", EMAIL], "").await;

    let all = events(&proxy.client(), "", &admin, 11).await;
    let (alice, none, at) = (json!("alice"), Value::Null, json!(CLIENT));
    let mut expected = vec![
        row(
            "account_created",
            json!("boss"),
            none.clone(),
            json!({"source": "cli", "role": "admin"}),
        ),
        row(
            "login_success",
            json!("boss"),
            json!("127.0.0.1"),
            json!({}),
        ),
        row(
            "account_created",
            alice.clone(),
            at.clone(),
            json!({"source": "api", "role": "user"}),
        ),
        row("login_success", alice.clone(), at.clone(), json!({})),
        row(
            "login_failure",
            alice.clone(),
            at.clone(),
            json!({"reason": "wrong_password"}),
        ),
        row(
            "login_failure",
            none.clone(),
            at.clone(),
            json!({"reason": "unknown_account"}),
        ),
        row(
            "logout",
            alice.clone(),
            at.clone(),
            json!({"source": "api"}),
        ),
        row("signin_success", alice.clone(), at.clone(), json!({})),
        row(
            "signin_failure",
            none.clone(),
            at.clone(),
            json!({"reason": "unknown_account"}),
        ),
        row(
            "logout",
            alice.clone(),
            at.clone(),
            json!({"source": "signin"}),
        ),
        row(
            "account_disabled",
            alice.clone(),
            none.clone(),
            json!({"source": "cli"}),
        ),
    ];
    expected.reverse();
    assert_eq!(summary(&all), expected, "newest first");

    // Nothing secret or typed-for-nobody in the store's files or the answer.
    let secrets = [
        PASSWORD,
        WRONG,
        UNKNOWN,
        token.as_str(),
        session.as_str(),
        "nowhere.test",
    ];
    assert_absent(&sqlite_bytes(&url), &secrets, "the SQLite store");
    let listed = audit(&proxy.client(), "limit=1000", &admin).await;
    assert_absent(&listed.body, &secrets, "GET /audit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_is_for_admins_and_filters_and_pages_newest_first() {
    let config = ConfigYaml::new();
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();
    let admin = admin_token(&client, &config.database_url(), "boss").await;
    let user = client.signed_up("alice", EMAIL, PASSWORD).await;
    for _ in 0..4 {
        assert_eq!(client.login(EMAIL, WRONG).await.status, 401);
    }

    assert_missing_token(&client.get(CONTROL, "/audit").await);
    assert_json_error(&audit(&client, "", &user).await, 403, "forbidden");
    let post = client.with_token("POST", CONTROL, "/audit", &admin).await;
    assert_eq!(
        (post.status.as_u16(), post.header("allow")),
        (405, "GET, HEAD")
    );
    for bad in [
        "event=login",
        "limit=0",
        "limit=1001",
        "limit=ten",
        "before=yesterday",
    ] {
        assert_json_error(&audit(&client, bad, &admin).await, 400, "invalid_query");
    }

    let all = events(&client, "", &admin, 8).await;
    let reply = audit(&client, "", &admin).await;
    assert_eq!(reply.header("cache-control"), "no-store");
    assert_eq!(reply.header("x-content-type-options"), "nosniff");
    assert_eq!(reply.header("content-type"), "application/json");
    let ids: Vec<&str> = all.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let times: Vec<i128> = all
        .iter()
        .map(|e| rfc3339_nanos(e["time"].as_str().unwrap()).unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    assert_eq!(all[7]["event"], "account_created");
    assert_eq!(all[0]["event"], "login_failure");

    // Pages of 3, each from the id of the last event seen, join up to the whole list.
    let mut paged = Vec::new();
    let mut query = "limit=3".to_string();
    loop {
        let page = audit(&client, &query, &admin).await.json()["events"]
            .as_array()
            .cloned()
            .unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        query = format!("limit=3&before={}", last["id"].as_str().unwrap());
        paged.extend(page);
    }
    assert_eq!(paged, all);

    let failures = pairs(&client, "event=login_failure", &admin).await;
    assert_eq!(failures.len(), 4);
    assert!(failures.iter().all(|(_, u)| u == "alice"), "{failures:?}");
    assert_eq!(pairs(&client, "username=alice", &admin).await.len(), 6);
    assert_eq!(
        pairs(&client, "username=boss&event=login_success", &admin).await,
        [("login_success".to_string(), json!("boss"))]
    );
    assert_eq!(pairs(&client, "username=nobody", &admin).await, []);
    assert_eq!(pairs(&client, "limit=2", &admin).await.len(), 2);
}

/// (event, username) of each event `GET /audit?query` lists.
async fn pairs(client: &Client, query: &str, token: &str) -> Vec<(String, Value)> {
    let reply = audit(client, query, token).await;
    assert_eq!(reply.status, 200, "{query}: {}", reply.text());
    let events = reply.json()["events"].as_array().cloned().unwrap();
    events
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_string(),
                e["username"].clone(),
            )
        })
        .collect()
}

async fn serve(url: &str) -> Gatehouse {
    Gatehouse::start_with_env(&["serve"], &[("DATABASE_URL", url)], |listen| {
        ConfigYaml::new().listen(listen).render()
    })
    .await
}

/// Events written by one `gatehouse serve` are there for the next on the same store, and its
/// `gatehouse::audit` log lines name events without any secret.
async fn events_survive_a_restart(url: &str) {
    let mut first = serve(url).await;
    let client = Client::http1(first.addr);
    let admin = admin_token(&client, url, "boss").await;
    let token = client.signed_up("alice", EMAIL, PASSWORD).await;
    assert_eq!(client.login(EMAIL, WRONG).await.status, 401);
    assert_eq!(client.login(UNKNOWN, WRONG).await.status, 401);
    let logout = client.with_token("POST", CONTROL, "/logout", &token).await;
    assert_eq!(logout.status, 204);
    let before = events(&client, "", &admin, 7).await;
    // The last event goes in right before the stop: shutdown writes what is still queued.
    assert_eq!(client.login(EMAIL, WRONG).await.status, 401);
    first.signal(libc::SIGTERM);
    assert!(first.wait_exit(Duration::from_secs(20)).await.is_some());

    let logs = first.logs();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("gatehouse::audit"))
        .collect();
    assert_eq!(lines.len(), 7, "one line per event the proxy saw:\n{logs}");
    for event in [
        "login_success",
        "login_failure",
        "account_created",
        "logout",
    ] {
        assert!(lines.iter().any(|l| l.contains(event)), "{event}:\n{logs}");
    }
    assert_absent(
        logs.as_bytes(),
        &[PASSWORD, WRONG, UNKNOWN, token.as_str(), admin.as_str()],
        "the log",
    );

    let second = serve(url).await;
    let client = Client::http1(second.addr);
    let admin = client.token("boss@example.com", PASSWORD).await;
    let after = events(&client, "", &admin, 9).await;
    assert_eq!(after[0]["event"], "login_success", "the new login");
    assert_eq!(
        after[1]["event"], "login_failure",
        "the event queued at the stop"
    );
    assert_eq!(after[2..], before[..], "every earlier event, as it was");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_survive_a_restart_on_sqlite() {
    let dir = TempDir::new("audit");
    let url = format!("sqlite://{}", Path::new(dir.path()).join("g.db").display());
    events_survive_a_restart(&url).await;
    let secrets = [PASSWORD, WRONG, UNKNOWN];
    assert_absent(&sqlite_bytes(&url), &secrets, "the SQLite store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_survive_a_restart_on_postgres() {
    let Some(url) = fresh_database().await else {
        return;
    };
    events_survive_a_restart(&url).await;
    // Every text column of the audit table, searched for what must never be there.
    let store = gatehouse::store::open(&url).await.expect("open");
    let query = gatehouse::store::AuditQuery {
        limit: 1000,
        ..Default::default()
    };
    let rows = store.audit_events(&query).await.expect("list");
    assert_eq!(rows.len(), 9);
    let text = format!("{rows:?}");
    assert_absent(text.as_bytes(), &[PASSWORD, WRONG, UNKNOWN], "audit_events");
    drop(store);
    drop_database(&url).await;
}

/// Refresh tokens leave their trail too: a rotation as `refresh` (with the family), a spent
/// token presented again as `refresh_reuse`, and `POST /logout/all` as `logout_all`; never a
/// refresh token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_reuse_and_logout_all_are_recorded() {
    let config = ConfigYaml::new();
    let database_url = config.database_url();
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();
    let admin = admin_token(&client, &database_url, "boss").await;
    client.signed_up("alice", EMAIL, PASSWORD).await;
    let login = client.login(EMAIL, PASSWORD).await.json();
    let first = login["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_string();
    let grant = |token: &str| json!({ "grant_type": "refresh_token", "refresh_token": token });
    let rotated = client.post_json("/token", &grant(&first)).await;
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    let second = rotated.json()["access_token"].as_str().unwrap().to_string();
    let reused = client.post_json("/token", &grant(&first)).await;
    assert_eq!(reused.status, 401);
    let fresh = client.token(EMAIL, PASSWORD).await;
    let all = client
        .with_token("POST", CONTROL, "/logout/all", &fresh)
        .await;
    assert_eq!(all.status, 204, "{}", all.text());

    let query = |event: &str| format!("event={event}");
    let refresh = events(&client, &query("refresh"), &admin, 1).await;
    assert_eq!(refresh[0]["username"], "alice");
    let family = claims_of(&second)["fam"].clone();
    assert_eq!(refresh[0]["detail"]["family"], family);
    let reuse = events(&client, &query("refresh_reuse"), &admin, 1).await;
    assert_eq!(reuse[0]["detail"]["family"], family);
    let logout_all = events(&client, &query("logout_all"), &admin, 1).await;
    assert_eq!(logout_all[0]["username"], "alice");
    let every = audit(&client, "limit=1000", &admin).await;
    assert!(
        !every.text().contains(&first),
        "a refresh token in the trail"
    );
}
