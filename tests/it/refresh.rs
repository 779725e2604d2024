//! Refresh tokens: rotation at `POST /token`, reuse detection ending the whole family (on
//! every replica), exactly one winner among racing refreshes, logout of one family against
//! logout of all, disabled accounts, idle and absolute expiry, the form encoding, and no
//! refresh token (nor its hash) in any log.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::accounts::{claims_of, concurrently, CONTROL};
use common::binary::Gatehouse;
use common::{assert_json_error, backends, Client, ConfigYaml, Proxy, Reply, ServiceYaml};
use serde_json::json;

const APP: &str = "app.test";
const EMAIL: &str = "rhea@example.com";
const PASSWORD: &str = "correct horse";

/// A proxy with one `auth: required` service, `app.test`, and `auth.refresh` as given.
async fn app(database_url: Option<&str>, refresh: Option<&str>) -> Proxy {
    let backend = backends(1).await[0];
    let mut config = ConfigYaml::new().service(ServiceYaml::new("app", APP).backend(backend));
    if let Some(url) = database_url {
        config = config.database(url);
    }
    if let Some(refresh) = refresh {
        config = config.auth("refresh", refresh);
    }
    Proxy::start(&config).await
}

/// One login's pair.
#[derive(Debug, Clone)]
struct Pair {
    access: String,
    refresh: String,
}

fn pair_of(reply: &Reply) -> Pair {
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.header("cache-control"), "no-store");
    let body = reply.json();
    Pair {
        access: body["access_token"].as_str().expect("access_token").into(),
        refresh: body["refresh_token"]
            .as_str()
            .expect("refresh_token")
            .into(),
    }
}

async fn login(client: &Client) -> Pair {
    pair_of(&client.login(EMAIL, PASSWORD).await)
}

async fn signed_up(client: &Client) -> Pair {
    assert_eq!(client.register("rhea", EMAIL, PASSWORD).await.status, 201);
    login(client).await
}

async fn refresh(client: &Client, token: &str) -> Reply {
    let body = json!({ "grant_type": "refresh_token", "refresh_token": token });
    client.post_json("/token", &body).await
}

async fn app_status(client: &Client, access: &str) -> u16 {
    client
        .with_token("GET", APP, "/", access)
        .await
        .status
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_rotates_the_pair_and_a_spent_token_ends_the_family() {
    let proxy = app(None, None).await;
    let client = proxy.client();
    let first = signed_up(&client).await;
    let login_reply = client.login(EMAIL, PASSWORD).await;
    let body = login_reply.json();
    assert_eq!(body["refresh_expires_in"], 7 * 24 * 3600);
    let token = body["refresh_token"].as_str().unwrap();
    assert!(token.len() >= 43, "256 bits of base64url: {token}");
    assert!(token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    let family = claims_of(&first.access)["fam"]
        .as_str()
        .unwrap()
        .to_string();

    let second = pair_of(&refresh(&client, &first.refresh).await);
    assert_ne!(second.refresh, first.refresh);
    assert_eq!(claims_of(&second.access)["fam"], family.as_str());
    assert_eq!(app_status(&client, &second.access).await, 200);
    let third = pair_of(&refresh(&client, &second.refresh).await);
    assert_eq!(app_status(&client, &third.access).await, 200);

    // The first token again: spent, so it has leaked. The whole family ends.
    assert_json_error(
        &refresh(&client, &first.refresh).await,
        401,
        "invalid_grant",
    );
    assert_json_error(
        &refresh(&client, &third.refresh).await,
        401,
        "invalid_grant",
    );
    for access in [&first.access, &second.access, &third.access] {
        assert_eq!(app_status(&client, access).await, 401);
    }
    // Another login of the account is another family.
    let other = pair_of(&login_reply);
    assert_eq!(app_status(&client, &other.access).await, 200);
    assert_eq!(refresh(&client, &other.refresh).await.status, 200);

    let metrics = client.get(CONTROL, "/metrics").await.body;
    let metrics = String::from_utf8_lossy(&metrics);
    for line in [
        r#"gatehouse_token_refreshes_total{result="success"} 3"#,
        r#"gatehouse_token_refreshes_total{result="reused"} 1"#,
        r#"gatehouse_token_refreshes_total{result="invalid"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tokens_and_other_grants_are_refused() {
    let proxy = app(None, None).await;
    let client = proxy.client();
    assert_json_error(
        &refresh(&client, "bm90IGEgdG9rZW4").await,
        401,
        "invalid_grant",
    );
    assert_json_error(&refresh(&client, "").await, 401, "invalid_grant");
    let password = json!({ "grant_type": "password", "refresh_token": "x" });
    let reply = client.post_json("/token", &password).await;
    assert_json_error(&reply, 400, "unsupported_grant_type");
    let missing = json!({ "grant_type": "refresh_token" });
    assert_eq!(client.post_json("/token", &missing).await.status, 400);
    assert_eq!(client.get(CONTROL, "/token").await.status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_encoded_refresh_works_as_rfc_6749_writes_it() {
    let proxy = app(None, None).await;
    let client = proxy.client();
    let first = signed_up(&client).await;
    let form = format!(
        "grant_type=refresh_token&refresh_token={}",
        form_urlencoded::byte_serialize(first.refresh.as_bytes()).collect::<String>()
    );
    let reply = client
        .post_raw(
            "/token",
            Some("application/x-www-form-urlencoded"),
            common::full(form),
        )
        .await;
    let second = pair_of(&reply);
    assert_eq!(app_status(&client, &second.access).await, 200);
    let form = "grant_type=client_credentials";
    let reply = client
        .post_raw(
            "/token",
            Some("application/x-www-form-urlencoded"),
            common::full(form),
        )
        .await;
    assert_json_error(&reply, 400, "unsupported_grant_type");
}

/// Ten refreshes of one token at once: exactly one gets a pair.
async fn exactly_one_racing_refresh_wins(database_url: Option<&str>) {
    let proxy = app(database_url, None).await;
    let client = proxy.client();
    let first = signed_up(&client).await;
    let token = first.refresh.clone();
    let statuses = concurrently(10, 10, move |_| {
        let client = client.clone();
        let token = token.clone();
        async move { refresh(&client, &token).await.status.as_u16() }
    })
    .await;
    let won = statuses.iter().filter(|status| **status == 200).count();
    let lost = statuses.iter().filter(|status| **status == 401).count();
    assert_eq!((won, lost), (1, 9), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_of_ten_racing_refreshes_wins_on_sqlite() {
    exactly_one_racing_refresh_wins(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_of_ten_racing_refreshes_wins_on_postgres() {
    let Some(url) = common::postgres::fresh_database().await else {
        return;
    };
    exactly_one_racing_refresh_wins(Some(&url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_ends_its_own_family_and_logout_all_ends_every_one() {
    let proxy = app(None, None).await;
    let client = proxy.client();
    let phone = signed_up(&client).await;
    let laptop = login(&client).await;
    let tablet = login(&client).await;

    let out = client
        .with_token("POST", CONTROL, "/logout", &phone.access)
        .await;
    assert_eq!(out.status, 204);
    assert_eq!(app_status(&client, &phone.access).await, 401);
    assert_json_error(
        &refresh(&client, &phone.refresh).await,
        401,
        "invalid_grant",
    );
    assert_eq!(app_status(&client, &laptop.access).await, 200);
    let laptop = pair_of(&refresh(&client, &laptop.refresh).await);

    let all = client
        .with_token("POST", CONTROL, "/logout/all", &laptop.access)
        .await;
    assert_eq!(all.status, 204, "{:?}", all.body);
    for pair in [&laptop, &tablet] {
        assert_eq!(app_status(&client, &pair.access).await, 401);
        assert_json_error(&refresh(&client, &pair.refresh).await, 401, "invalid_grant");
    }
    let again = login(&client).await;
    assert_eq!(app_status(&client, &again.access).await, 200);
    let unauthenticated = client.post_json("/logout/all", &json!({})).await;
    assert_eq!(unauthenticated.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_account_can_no_longer_refresh() {
    let proxy = app(None, None).await;
    let client = proxy.client();
    let pair = signed_up(&client).await;
    common::accounts::gatehouse_accounts(&proxy.database_url, &["disable", "--email", EMAIL], "")
        .await;
    assert_json_error(&refresh(&client, &pair.refresh).await, 401, "invalid_grant");
    let since = Instant::now();
    while app_status(&client, &pair.access).await != 401 {
        assert!(since.elapsed() < Duration::from_secs(1), "still accepted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_family_ends_at_its_absolute_lifetime() {
    let proxy = app(None, Some("{ttl: 2s, idle: 1h}")).await;
    let client = proxy.client();
    let first = signed_up(&client).await;
    let second = pair_of(&refresh(&client, &first.refresh).await);
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert_json_error(
        &refresh(&client, &second.refresh).await,
        401,
        "invalid_grant",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_token_unused_for_its_idle_time_expires() {
    let proxy = app(None, Some("{ttl: 1h, idle: 3s}")).await;
    let client = proxy.client();
    let first = signed_up(&client).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Used in time: a new token with a new idle time, past the first one's.
    let second = pair_of(&refresh(&client, &first.refresh).await);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let third = pair_of(&refresh(&client, &second.refresh).await);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_json_error(
        &refresh(&client, &third.refresh).await,
        401,
        "invalid_grant",
    );
}

async fn replica(database_url: &str, backend: SocketAddr) -> Gatehouse {
    Gatehouse::start_with_env(
        &["serve"],
        &[("DATABASE_URL", database_url), ("RUST_LOG", "debug")],
        |listen| {
            ConfigYaml::new()
                .listen(listen)
                .service(ServiceYaml::new("app", APP).backend(backend))
                .render()
        },
    )
    .await
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_on_one_replica_ends_the_family_on_the_other_within_a_second() {
    let Some(url) = common::postgres::fresh_database().await else {
        return;
    };
    let backend = backends(1).await[0];
    let a = replica(&url, backend).await;
    let b = replica(&url, backend).await;
    let (on_a, on_b) = (Client::http1(a.addr), Client::http1(b.addr));
    let first = signed_up(&on_a).await;
    let second = pair_of(&refresh(&on_a, &first.refresh).await);
    assert_eq!(app_status(&on_a, &second.access).await, 200);
    assert_eq!(app_status(&on_b, &second.access).await, 200);

    // A thief replays the spent token on B.
    assert_json_error(&refresh(&on_b, &first.refresh).await, 401, "invalid_grant");
    let since = Instant::now();
    loop {
        if app_status(&on_a, &second.access).await == 401 {
            eprintln!("reuse on B seen by A after {:?}", since.elapsed());
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(1),
            "A still accepts the family's access token after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_json_error(&refresh(&on_a, &second.refresh).await, 401, "invalid_grant");

    for replica in [&a, &b] {
        let logs = replica.logs();
        for secret in [&first.refresh, &second.refresh] {
            assert!(
                !logs.contains(secret.as_str()),
                "a refresh token in the log"
            );
            assert!(
                !logs.contains(&sha256_hex(secret)),
                "a refresh hash in the log"
            );
        }
    }
    common::postgres::drop_database(&url).await;
}

#[test]
fn refresh_keys_are_checked_with_line_and_column() {
    let base = |refresh: &str| format!("auth:\n  refresh:\n{refresh}services: []\n");
    for (refresh, at, phrase) in [
        ("    ttl: 0s\n", "t.yaml:3:10:", "greater than zero"),
        ("    idle: 7 days\n", "t.yaml:3:11:", "invalid duration"),
        ("    reuse: 1s\n", "t.yaml:3:5:", "unknown field `reuse`"),
    ] {
        let error = gatehouse::config::parse_str(&base(refresh), "t.yaml")
            .expect_err(refresh)
            .to_string();
        assert!(
            error.starts_with(at) && error.contains(phrase),
            "{refresh}: {error}"
        );
    }
    let settings = gatehouse::config::parse_str("services: []\n", "t.yaml").unwrap();
    assert_eq!(
        settings.auth.refresh.ttl,
        Duration::from_secs(30 * 24 * 3600)
    );
    assert_eq!(
        settings.auth.refresh.idle,
        Duration::from_secs(7 * 24 * 3600)
    );
    let text = base("    ttl: 2h\n    idle: 15m\n");
    let settings = gatehouse::config::parse_str(&text, "t.yaml").unwrap();
    assert_eq!(settings.auth.refresh.ttl, Duration::from_secs(7200));
    assert_eq!(settings.auth.refresh.idle, Duration::from_secs(900));
}
