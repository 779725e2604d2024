//! The `AccountStore` contract, run against SQLite and PostgreSQL alike: every test below is a
//! plain async fn over a database URL, and `contract!` makes a `sqlite::` and a `postgres::`
//! test of each. PostgreSQL tests need `GATEHOUSE_TEST_POSTGRES` (`scripts/test` provides it).

use crate::common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use gatehouse::store::{
    self, AccountStore, AuditQuery, AuditRecord, FailureRule, ListQuery, NewAccount, NewFamily,
    NewRefresh, Revocation, Role, Rotation, StoreError, TakenField,
};

use common::postgres::{drop_database, fresh_database, fresh_sqlite, with_database};

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let (_dir, url) = super::fresh_sqlite();
                    super::$name(&url).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(url) = super::fresh_database().await else { return };
                    super::$name(&url).await;
                    super::drop_database(&url).await;
                }
            )*
        }
    };
}

/// For the contract tests of other areas' store methods (`api_keys`).
pub(crate) use contract;

contract!(
    create_then_credentials_by_email_in_other_case,
    duplicate_username_in_any_case_is_taken,
    duplicate_email_in_other_case_is_taken_and_nothing_is_written,
    concurrent_creates_of_one_email_succeed_exactly_once,
    concurrent_distinct_creates_all_land,
    list_pages_oldest_first_with_the_total,
    search_matches_username_or_email_in_any_case,
    search_takes_wildcards_and_backslashes_literally,
    sql_in_fields_and_search_is_only_data,
    disable_bumps_the_generation_and_blocks_login,
    disable_of_an_unknown_email_is_none,
    revocations_hold_tokens_and_accounts_and_drop_expired_tokens,
    reopening_keeps_accounts_and_reruns_migrations,
    feed_hears_revocations_from_another_replica,
    ping_answers,
    failure_counts_count_atomically_and_hold_back_past_the_free_ones,
    audit_events_page_newest_first_filter_and_are_pruned_by_age,
    a_refresh_token_rotates_once_and_its_reuse_revokes_the_family,
    of_racing_rotations_of_one_token_exactly_one_wins,
    a_rotation_reads_the_account_and_only_the_winner_stores_a_successor,
    expired_refresh_tokens_do_not_rotate_and_are_pruned,
    ending_sessions_bumps_the_generation_and_revokes_every_family,
    disable_revokes_the_families_and_the_feed_hears_family_revocations,
);

/// A dummy hash: the store never looks inside it.
const HASH: &str = "$argon2id$fake";

fn new_account(username: &str, email: &str) -> NewAccount {
    NewAccount {
        username: username.to_string(),
        email: email.to_string(),
        password_hash: HASH.to_string(),
        role: Role::User,
    }
}

async fn open(url: &str) -> Arc<dyn AccountStore> {
    Arc::from(
        store::open(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}")),
    )
}

async fn total(store: &dyn AccountStore) -> i64 {
    all(store, None).await.total
}

async fn all(store: &dyn AccountStore, search: Option<&str>) -> gatehouse::store::AccountPage {
    let query = ListQuery {
        search: search.map(str::to_string),
        offset: 0,
        limit: 1000,
        include_disabled: true,
    };
    store.list(&query).await.expect("list")
}

async fn usernames(store: &dyn AccountStore, search: &str) -> Vec<String> {
    let page = all(store, Some(search)).await;
    assert_eq!(
        page.total,
        page.accounts.len() as i64,
        "total matches the filter"
    );
    page.accounts.into_iter().map(|a| a.username).collect()
}

async fn create_then_credentials_by_email_in_other_case(url: &str) {
    let store = open(url).await;
    let mut admin = new_account("Ada", "Ada@Example.com");
    admin.role = Role::Admin;
    let created = store.create(admin).await.expect("create");
    assert_eq!(created.username, "Ada");
    assert_eq!(created.email, "Ada@Example.com", "kept as typed");
    assert_eq!(created.role, Role::Admin);
    assert!(uuid::Uuid::parse_str(&created.id).is_ok(), "{}", created.id);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!((now_ms - created.created_at_ms).abs() < 60_000);

    let found = store.credentials("aDA@example.COM").await.expect("query");
    let found = found.expect("found in another letter case");
    assert_eq!(found.account, created);
    assert_eq!(found.password_hash, HASH);
    assert!(!found.account.disabled);
    assert_eq!(found.token_generation, 0);
    assert!(store
        .credentials("nobody@example.com")
        .await
        .unwrap()
        .is_none());
}

async fn duplicate_username_in_any_case_is_taken(url: &str) {
    let store = open(url).await;
    store
        .create(new_account("grace", "g1@example.com"))
        .await
        .unwrap();
    for username in ["grace", "GRACE", "Grace"] {
        let result = store.create(new_account(username, "g2@example.com")).await;
        assert!(
            matches!(result, Err(StoreError::Taken(TakenField::Username))),
            "{username}: {result:?}"
        );
    }
    assert_eq!(total(&*store).await, 1);
}

async fn duplicate_email_in_other_case_is_taken_and_nothing_is_written(url: &str) {
    let store = open(url).await;
    store
        .create(new_account("one", "Same@Example.com"))
        .await
        .unwrap();
    let result = store.create(new_account("two", "sAME@example.COM")).await;
    assert!(
        matches!(result, Err(StoreError::Taken(TakenField::Email))),
        "{result:?}"
    );
    assert_eq!(total(&*store).await, 1);
    assert!(store
        .credentials("same@example.com")
        .await
        .unwrap()
        .is_some());
}

async fn concurrent_creates_of_one_email_succeed_exactly_once(url: &str) {
    let store = open(url).await;
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let store = Arc::clone(&store);
            let email = if i % 2 == 0 {
                "race@example.com"
            } else {
                "RACE@example.com"
            };
            tokio::spawn(
                async move { store.create(new_account(&format!("racer{i}"), email)).await },
            )
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => created += 1,
            Err(StoreError::Taken(TakenField::Email)) => {}
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(total(&*store).await, 1);
}

async fn concurrent_distinct_creates_all_land(url: &str) {
    let store = open(url).await;
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let account = new_account(&format!("user{i}"), &format!("u{i}@example.com"));
                store.create(account).await
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for task in tasks {
        ids.insert(task.await.unwrap().expect("create").id);
    }
    assert_eq!(ids.len(), 200, "ids are unique");
    assert_eq!(total(&*store).await, 200);
}

async fn list_pages_oldest_first_with_the_total(url: &str) {
    let store = open(url).await;
    let mut created = Vec::new();
    for i in 0..7 {
        let account = new_account(&format!("p{i}"), &format!("p{i}@example.com"));
        created.push(store.create(account).await.unwrap());
    }
    let mut seen = Vec::new();
    for offset in (0..9).step_by(3) {
        let query = ListQuery {
            search: None,
            offset,
            limit: 3,
            include_disabled: true,
        };
        let page = store.list(&query).await.unwrap();
        assert_eq!(page.total, 7);
        seen.extend(page.accounts);
    }
    assert_eq!(seen, created, "every account once, oldest first");
    let past_the_end = ListQuery {
        search: None,
        offset: 100,
        limit: 3,
        include_disabled: true,
    };
    let page = store.list(&past_the_end).await.unwrap();
    assert!(page.accounts.is_empty());
    assert_eq!(page.total, 7);
}

async fn search_matches_username_or_email_in_any_case(url: &str) {
    let store = open(url).await;
    store
        .create(new_account("Alice", "alice@one.org"))
        .await
        .unwrap();
    store
        .create(new_account("bob", "BOB@Two.org"))
        .await
        .unwrap();
    store
        .create(new_account("carol", "carol@one.org"))
        .await
        .unwrap();
    assert_eq!(usernames(&*store, "ALI").await, ["Alice"]);
    assert_eq!(usernames(&*store, "two.ORG").await, ["bob"]);
    assert_eq!(usernames(&*store, "One.org").await, ["Alice", "carol"]);
    assert!(usernames(&*store, "zed").await.is_empty());
    let paged = ListQuery {
        search: Some("one.org".into()),
        offset: 1,
        limit: 1,
        include_disabled: true,
    };
    let page = store.list(&paged).await.unwrap();
    assert_eq!(page.total, 2, "the total counts the filter, not the page");
    assert_eq!(page.accounts[0].username, "carol");
}

async fn search_takes_wildcards_and_backslashes_literally(url: &str) {
    let store = open(url).await;
    for (username, email) in [
        ("a_b", "1@x.org"),
        ("axb", "2@x.org"),
        ("100%", "3@x.org"),
        ("1000", "4@x.org"),
        ("back\\slash", "5@x.org"),
        ("backxslash", "6@x.org"),
    ] {
        store.create(new_account(username, email)).await.unwrap();
    }
    assert_eq!(usernames(&*store, "_").await, ["a_b"]);
    assert_eq!(usernames(&*store, "a_").await, ["a_b"]);
    assert_eq!(usernames(&*store, "%").await, ["100%"]);
    assert_eq!(usernames(&*store, "0%").await, ["100%"]);
    assert_eq!(usernames(&*store, "\\").await, ["back\\slash"]);
    assert_eq!(usernames(&*store, "k\\s").await, ["back\\slash"]);
}

async fn sql_in_fields_and_search_is_only_data(url: &str) {
    let store = open(url).await;
    let nasty = [
        ("x'); DROP TABLE accounts; --", "o'neil@example.com"),
        ("\"; DELETE FROM accounts; --", "a\"b@example.com"),
        ("' OR '1'='1", "$1@example.com"),
    ];
    for (username, email) in nasty {
        let created = store.create(new_account(username, email)).await.unwrap();
        assert_eq!(created.username, username);
        let found = store.credentials(email).await.unwrap().expect("found");
        assert_eq!(found.account.username, username);
        assert_eq!(found.account.email, email);
    }
    assert_eq!(
        usernames(&*store, "'); DROP TABLE accounts; --").await,
        [nasty[0].0]
    );
    assert_eq!(usernames(&*store, "' OR '1'='1").await, [nasty[2].0]);
    assert!(usernames(&*store, "' OR 1=1 --").await.is_empty());
    assert!(store.credentials("' OR '1'='1").await.unwrap().is_none());
    assert_eq!(
        total(&*store).await,
        3,
        "the table is still there, with every row"
    );
}

async fn disable_bumps_the_generation_and_blocks_login(url: &str) {
    let store = open(url).await;
    let created = store
        .create(new_account("dee", "Dee@example.com"))
        .await
        .unwrap();
    let revocation = store.disable("DEE@EXAMPLE.COM").await.unwrap();
    let expected = Revocation::Account {
        id: created.id.clone(),
        generation: 1,
        disabled: true,
    };
    assert_eq!(revocation, Some(expected));
    let found = store.credentials("dee@example.com").await.unwrap().unwrap();
    assert!(found.account.disabled);
    assert_eq!(found.token_generation, 1);
    // Disabling again still revokes whatever was issued since.
    let again = store.disable("dee@example.com").await.unwrap();
    assert!(matches!(
        again,
        Some(Revocation::Account { generation: 2, .. })
    ));
}

async fn disable_of_an_unknown_email_is_none(url: &str) {
    let store = open(url).await;
    store
        .create(new_account("eve", "eve@example.com"))
        .await
        .unwrap();
    assert_eq!(store.disable("nobody@example.com").await.unwrap(), None);
    assert!(
        !store
            .credentials("eve@example.com")
            .await
            .unwrap()
            .unwrap()
            .account
            .disabled
    );
}

async fn revocations_hold_tokens_and_accounts_and_drop_expired_tokens(url: &str) {
    let store = open(url).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(store.revocations().await.unwrap().is_empty());
    store
        .create(new_account("active", "active@example.com"))
        .await
        .unwrap();
    let gone = store
        .create(new_account("gone", "gone@example.com"))
        .await
        .unwrap();
    store.disable("gone@example.com").await.unwrap();
    store.revoke_token("live-jti", now + 600).await.unwrap();
    store
        .revoke_token("live-jti", now + 600)
        .await
        .expect("revoking twice is fine");
    store.revoke_token("old-jti", now - 10).await.unwrap();

    let live = Revocation::Token {
        jti: "live-jti".into(),
        expires_at: now + 600,
    };
    let account = Revocation::Account {
        id: gone.id,
        generation: 1,
        disabled: true,
    };
    for _ in 0..2 {
        let mut revocations = store.revocations().await.unwrap();
        revocations.sort_by_key(|r| format!("{r:?}"));
        assert_eq!(revocations, [account.clone(), live.clone()]);
    }
}

async fn reopening_keeps_accounts_and_reruns_migrations(url: &str) {
    let first = open(url).await;
    let created = first
        .create(new_account("kept", "kept@example.com"))
        .await
        .unwrap();
    first.revoke_token("kept-jti", i64::MAX).await.unwrap();
    drop(first);

    let second = open(url).await;
    let found = second.credentials("kept@example.com").await.unwrap();
    assert_eq!(found.expect("survives a restart").account, created);
    assert_eq!(second.revocations().await.unwrap().len(), 1);
    let third = open(url).await;
    assert_eq!(
        total(&*third).await,
        1,
        "two processes may share one database"
    );
}

async fn feed_hears_revocations_from_another_replica(url: &str) {
    let listening = open(url).await;
    let writing = open(url).await;
    let Some(mut feed) = listening.feed().await.unwrap() else {
        assert_eq!(listening.kind(), "sqlite", "only SQLite is polled");
        return;
    };
    let created = writing
        .create(new_account("fed", "fed@example.com"))
        .await
        .unwrap();
    writing
        .revoke_token("feed-jti", 4_000_000_000)
        .await
        .unwrap();
    writing.disable("FED@example.com").await.unwrap();

    let within = Duration::from_secs(1);
    let first = tokio::time::timeout(within, feed.next())
        .await
        .expect("within 1 s");
    let expected = Revocation::Token {
        jti: "feed-jti".into(),
        expires_at: 4_000_000_000,
    };
    assert_eq!(first.unwrap(), Some(expected));
    let second = tokio::time::timeout(within, feed.next())
        .await
        .expect("within 1 s");
    let expected = Revocation::Account {
        id: created.id,
        generation: 1,
        disabled: true,
    };
    assert_eq!(second.unwrap(), Some(expected));
}

async fn ping_answers(url: &str) {
    let store = open(url).await;
    store.ping().await.expect("ping");
    assert!(["sqlite", "postgres"].contains(&store.kind()));
}

/// Audit events come back newest first by (time, id); `event` and `username` filter exactly;
/// the (time, id) of the last one seen pages on; a NUL in a filter finds nothing rather than
/// failing; pruning deletes by age only.
async fn audit_events_page_newest_first_filter_and_are_pruned_by_age(url: &str) {
    let store = open(url).await;
    let record = |n: i64, event: &str, username: Option<&str>| AuditRecord {
        // Ids sort as their times do (UUID v7 text); same-time events order by id.
        id: format!("0000{:04}-0000-7000-8000-{n:012}", n / 2),
        time_ms: 1_000 + n / 2,
        event: event.to_string(),
        username: username.map(str::to_string),
        client: (n % 3 != 0).then(|| format!("192.0.2.{n}")),
        detail: format!(r#"{{"n":{n}}}"#),
    };
    let all: Vec<AuditRecord> = (0..10)
        .map(|n| {
            let event = if n % 2 == 0 {
                "login_success"
            } else {
                "login_failure"
            };
            let username = ["ann", "bob"].get(usize::try_from(n % 3).unwrap()).copied();
            record(n, event, username)
        })
        .collect();
    store.insert_audit(&all[..4]).await.expect("insert");
    store.insert_audit(&all[4..]).await.expect("insert");
    store.insert_audit(&[]).await.expect("an empty batch");

    let query = |limit| AuditQuery {
        limit,
        ..AuditQuery::default()
    };
    let newest_first: Vec<AuditRecord> = all.iter().rev().cloned().collect();
    assert_eq!(store.audit_events(&query(100)).await.unwrap(), newest_first);

    let mut paged = Vec::new();
    let mut page = query(3);
    loop {
        let got = store.audit_events(&page).await.unwrap();
        assert!(got.len() <= 3);
        let Some(last) = got.last() else { break };
        page.before = Some((last.time_ms, last.id.clone()));
        paged.extend(got);
    }
    assert_eq!(paged, newest_first, "pages join up without gaps or repeats");

    let failures = AuditQuery {
        event: Some("login_failure".into()),
        username: Some("ann".into()),
        ..query(100)
    };
    let found = store.audit_events(&failures).await.unwrap();
    let ns: Vec<&str> = found.iter().map(|r| r.detail.as_str()).collect();
    assert_eq!(ns, [r#"{"n":9}"#, r#"{"n":3}"#]);
    let nul = AuditQuery {
        username: Some("a\0b".into()),
        ..query(100)
    };
    assert!(store.audit_events(&nul).await.unwrap().is_empty());

    assert_eq!(store.forget_audit_events(1_002).await.unwrap(), 4);
    let kept = store.audit_events(&query(100)).await.unwrap();
    assert_eq!(kept, newest_first[..6].to_vec());
}

/// Kills the connection the feed listens on (as a failover or an idle reaper would): the feed
/// says so, and then hears what is revoked after the caller's resync.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_feed_reports_a_lost_connection_then_hears_again() {
    use sqlx::Connection;
    let Some(url) = fresh_database().await else {
        return;
    };
    let store = open(&url).await;
    let mut feed = store.feed().await.unwrap().expect("PostgreSQL pushes");
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(killed, [true], "one listening connection");

    let within = Duration::from_secs(5);
    let lost = tokio::time::timeout(within, feed.next())
        .await
        .expect("noticed");
    assert_eq!(lost.unwrap(), None, "the caller is told to resync");
    store
        .revoke_token("after-jti", 4_000_000_000)
        .await
        .unwrap();
    let heard = tokio::time::timeout(within, feed.next())
        .await
        .expect("heard");
    assert!(matches!(heard.unwrap(), Some(Revocation::Token { jti, .. }) if jti == "after-jti"));
    drop_database(&url).await;
}

/// A notice the feed cannot read (another version, another sender) is skipped, not fatal.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_feed_skips_undecodable_notices() {
    use sqlx::Connection;
    let Some(url) = fresh_database().await else {
        return;
    };
    let store = open(&url).await;
    let mut feed = store.feed().await.unwrap().expect("PostgreSQL pushes");
    let mut other = sqlx::PgConnection::connect(&url).await.unwrap();
    for garbage in ["", "t", "t soon jti", "a 1 yes id", "\u{1F600}"] {
        sqlx::query("SELECT pg_notify('gatehouse_revocations', $1)")
            .bind(garbage)
            .execute(&mut other)
            .await
            .unwrap();
    }
    store.revoke_token("good-jti", 4_000_000_000).await.unwrap();
    let within = Duration::from_secs(1);
    let heard = tokio::time::timeout(within, feed.next())
        .await
        .expect("heard");
    assert!(matches!(heard.unwrap(), Some(Revocation::Token { jti, .. }) if jti == "good-jti"));
    drop_database(&url).await;
}

#[test]
fn with_database_replaces_only_the_name() {
    assert_eq!(
        with_database("postgres://app@127.0.0.1:5/postgres", "gh_1"),
        "postgres://app@127.0.0.1:5/gh_1"
    );
    assert_eq!(
        with_database("postgres://u:p@h/db?sslmode=disable", "gh_1"),
        "postgres://u:p@h/gh_1?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://h:5", "gh_1"),
        "postgres://h:5/gh_1"
    );
}

/// The login back-off's counter: one conditional upsert, so of many concurrent failures each
/// counts until the free ones are spent and then none; forgotten after the memory.
async fn failure_counts_count_atomically_and_hold_back_past_the_free_ones(url: &str) {
    let store = open(url).await;
    let rule = |now_ms, enforce| FailureRule {
        now_ms,
        forget_before_ms: now_ms - 60_000,
        enforce,
        free: 3,
        max_wait_ms: 10_000,
    };
    assert_eq!(store.failure_count("k").await.unwrap(), None);
    let mut racers = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let store = Arc::clone(&store);
        racers.spawn(async move { store.count_failure("k", &rule(1_000, true)).await.unwrap() });
    }
    let mut counted: Vec<i64> = racers.join_all().await.into_iter().flatten().collect();
    counted.sort_unstable();
    assert_eq!(counted, [1, 2, 3], "exactly the free three count");
    let held = store.failure_count("k").await.unwrap().unwrap();
    assert_eq!((held.failures, held.last_failure_ms), (3, 1_000));

    // 3 failures, free 3: the wait is 1 s from the last failure, then 2 s from the next.
    assert_eq!(
        store.count_failure("k", &rule(1_999, true)).await.unwrap(),
        None
    );
    assert_eq!(
        store.count_failure("k", &rule(2_000, true)).await.unwrap(),
        Some(4)
    );
    assert_eq!(
        store.count_failure("k", &rule(3_999, true)).await.unwrap(),
        None
    );
    assert_eq!(
        store.count_failure("k", &rule(4_000, true)).await.unwrap(),
        Some(5)
    );
    // Not enforced (a network with no failures on the account): counted regardless.
    assert_eq!(
        store.count_failure("k", &rule(4_001, false)).await.unwrap(),
        Some(6)
    );
    // Far past: the wait is capped at max_wait (10 s), and past the memory it starts again.
    assert_eq!(
        store.count_failure("k", &rule(14_001, true)).await.unwrap(),
        Some(7)
    );
    assert_eq!(
        store
            .count_failure("k", &rule(100_000, true))
            .await
            .unwrap(),
        Some(1)
    );

    store.take_back_failure("k", false).await.unwrap();
    assert_eq!(store.failure_count("k").await.unwrap().unwrap().failures, 0);
    store.take_back_failure("k", false).await.unwrap();
    assert_eq!(
        store.failure_count("k").await.unwrap().unwrap().failures,
        0,
        "never below 0"
    );
    store.take_back_failure("k", true).await.unwrap();
    assert_eq!(store.failure_count("k").await.unwrap(), None);

    store.count_failure("old", &rule(100, true)).await.unwrap();
    store.count_failure("new", &rule(200, true)).await.unwrap();
    assert_eq!(store.forget_failure_counts(150).await.unwrap(), 1);
    assert_eq!(store.failure_count("old").await.unwrap(), None);
    assert!(store.failure_count("new").await.unwrap().is_some());
}

// ---------------------------------------------------------------------------------------------
// Refresh families

/// Now, Unix milliseconds.
fn now_ms() -> i64 {
    gatehouse::clock::unix_millis()
}

/// A family of `account` lasting an hour, with a first refresh token `hash` (idle for an hour).
async fn family(store: &dyn AccountStore, id: &str, account: &str, hash: &str) {
    let now = now_ms();
    let family = NewFamily {
        id: id.into(),
        account_id: account.into(),
        now,
        expires_at: now + 3_600_000,
        tokens_until: now / 1000 + 7200,
    };
    let first = NewRefresh {
        hash: hash.into(),
        idle_until: now + 3_600_000,
        access_until: now / 1000 + 900,
    };
    store.start_family(&family, Some(&first)).await.unwrap();
}

fn next(hash: &str) -> NewRefresh {
    NewRefresh {
        hash: hash.into(),
        idle_until: now_ms() + 3_600_000,
        access_until: now_ms() / 1000 + 900,
    }
}

fn revoked_families(revocations: &[Revocation]) -> Vec<String> {
    let mut ids: Vec<String> = revocations
        .iter()
        .filter_map(|r| match r {
            Revocation::Family { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect();
    ids.sort();
    ids
}

async fn a_refresh_token_rotates_once_and_its_reuse_revokes_the_family(url: &str) {
    let store = open(url).await;
    family(&*store, "fam-1", "acc-1", "h1").await;
    let rotated = store
        .rotate_refresh("h1", &next("h2"), now_ms())
        .await
        .unwrap();
    assert!(
        matches!(&rotated, Rotation::Rotated { family_id, account_id, .. }
            if family_id == "fam-1" && account_id == "acc-1"),
        "{rotated:?}"
    );
    assert_eq!(
        store
            .rotate_refresh("nope", &next("h9"), now_ms())
            .await
            .unwrap(),
        Rotation::Invalid
    );
    assert!(revoked_families(&store.revocations().await.unwrap()).is_empty());

    // h1 again: reuse. The family is revoked and h2 no longer rotates.
    let reused = store
        .rotate_refresh("h1", &next("h3"), now_ms())
        .await
        .unwrap();
    assert!(
        matches!(&reused, Rotation::Reused(Some(Revocation::Family { id, .. })) if id == "fam-1"),
        "{reused:?}"
    );
    assert_eq!(
        store
            .rotate_refresh("h2", &next("h4"), now_ms())
            .await
            .unwrap(),
        Rotation::Invalid
    );
    assert_eq!(
        store
            .rotate_refresh("h1", &next("h5"), now_ms())
            .await
            .unwrap(),
        Rotation::Reused(None),
        "revoked once"
    );
    assert_eq!(
        revoked_families(&store.revocations().await.unwrap()),
        vec!["fam-1".to_string()]
    );
    // Logout of another family.
    family(&*store, "fam-2", "acc-1", "k1").await;
    assert!(store
        .revoke_family("fam-2", now_ms())
        .await
        .unwrap()
        .is_some());
    assert!(store
        .revoke_family("fam-2", now_ms())
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store
            .rotate_refresh("k1", &next("k2"), now_ms())
            .await
            .unwrap(),
        Rotation::Invalid
    );
}

async fn of_racing_rotations_of_one_token_exactly_one_wins(url: &str) {
    let store = open(url).await;
    family(&*store, "fam-race", "acc-1", "race").await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            store
                .rotate_refresh("race", &next(&format!("race-{i}")), now_ms())
                .await
                .unwrap()
        });
    }
    let mut rotated = 0;
    while let Some(outcome) = tasks.join_next().await {
        match outcome.unwrap() {
            Rotation::Rotated { .. } => rotated += 1,
            Rotation::Reused(_) => {}
            Rotation::Invalid => panic!("a racing rotation found nothing"),
        }
    }
    assert_eq!(rotated, 1);
}

/// The refresh tokens stored for `family`, read with a connection of the test's own.
async fn refresh_token_rows(url: &str, family: &str) -> i64 {
    use sqlx::Connection;
    let count = "SELECT COUNT(*) FROM refresh_tokens WHERE family_id = $1";
    if url.starts_with("postgres") {
        let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query_scalar(count)
            .bind(family)
            .fetch_one(&mut connection)
            .await
            .unwrap()
    } else {
        let mut connection = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query_scalar(count)
            .bind(family)
            .fetch_one(&mut connection)
            .await
            .unwrap()
    }
}

/// A rotation is one round trip that also reads the account the new access token describes;
/// of racing rotations only the winner's successor is written (the losers' statements match
/// nothing, on SQLite through `changes()`, on PostgreSQL through the row lock).
async fn a_rotation_reads_the_account_and_only_the_winner_stores_a_successor(url: &str) {
    let store = open(url).await;
    let account = store
        .create(new_account("rotor", "Rotor@Example.com"))
        .await
        .unwrap();
    family(&*store, "fam-rot", &account.id, "r1").await;
    let rotated = store
        .rotate_refresh("r1", &next("r2"), now_ms())
        .await
        .unwrap();
    let Rotation::Rotated {
        family_id,
        account_id,
        owner: Some(owner),
        ..
    } = rotated
    else {
        panic!("expected a rotation with its account: {rotated:?}");
    };
    assert_eq!(
        (family_id.as_str(), account_id.as_str()),
        ("fam-rot", account.id.as_str())
    );
    assert_eq!(owner.account, account);
    assert_eq!(owner.password_hash, HASH);
    assert_eq!(owner.token_generation, 0);

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            store
                .rotate_refresh("r2", &next(&format!("r2-{i}")), now_ms())
                .await
                .unwrap()
        });
    }
    let mut winners = 0;
    while let Some(outcome) = tasks.join_next().await {
        if let Rotation::Rotated { owner, .. } = outcome.unwrap() {
            assert_eq!(owner.map(|owner| owner.account), Some(account.clone()));
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(
        refresh_token_rows(url, "fam-rot").await,
        3,
        "r1, r2 and the one winner's successor"
    );

    // A family whose account is gone still rotates (the store does not decide), without owner.
    family(&*store, "fam-orphan", "no-such-account", "o-1").await;
    assert!(matches!(
        store
            .rotate_refresh("o-1", &next("o-2"), now_ms())
            .await
            .unwrap(),
        Rotation::Rotated { owner: None, .. }
    ));
}

async fn expired_refresh_tokens_do_not_rotate_and_are_pruned(url: &str) {
    let store = open(url).await;
    let now = now_ms();
    let idle = NewFamily {
        id: "fam-idle".into(),
        account_id: "acc-1".into(),
        now: now - 10_000,
        expires_at: now + 3_600_000,
        tokens_until: now / 1000 + 7200,
    };
    let stale = NewRefresh {
        hash: "stale".into(),
        idle_until: now - 1,
        access_until: now / 1000 + 900,
    };
    store.start_family(&idle, Some(&stale)).await.unwrap();
    let ended = NewFamily {
        id: "fam-ended".into(),
        account_id: "acc-1".into(),
        now: now - 10_000,
        expires_at: now - 1,
        tokens_until: now / 1000 - 1,
    };
    let fresh = NewRefresh {
        hash: "fresh".into(),
        idle_until: now + 3_600_000,
        access_until: now / 1000 + 900,
    };
    store.start_family(&ended, Some(&fresh)).await.unwrap();
    for hash in ["stale", "fresh"] {
        assert_eq!(
            store.rotate_refresh(hash, &next("x"), now).await.unwrap(),
            Rotation::Invalid,
            "{hash}"
        );
    }
    // Both tokens and the ended family go; the idle one's family lives on.
    assert_eq!(store.prune_refresh(now).await.unwrap(), 3);
    assert_eq!(store.prune_refresh(now).await.unwrap(), 0);
}

async fn ending_sessions_bumps_the_generation_and_revokes_every_family(url: &str) {
    let store = open(url).await;
    let account = store
        .create(new_account("ends", "ends@example.com"))
        .await
        .unwrap();
    family(&*store, "fam-a", &account.id, "a1").await;
    family(&*store, "fam-b", &account.id, "b1").await;
    family(&*store, "fam-other", "someone-else", "o1").await;
    let ended = store.end_sessions(&account.id, now_ms()).await.unwrap();
    assert_eq!(
        ended,
        Some(Revocation::Account {
            id: account.id.clone(),
            generation: 1,
            disabled: false,
        })
    );
    for hash in ["a1", "b1"] {
        assert_eq!(
            store
                .rotate_refresh(hash, &next("z"), now_ms())
                .await
                .unwrap(),
            Rotation::Invalid
        );
    }
    assert!(matches!(
        store
            .rotate_refresh("o1", &next("o2"), now_ms())
            .await
            .unwrap(),
        Rotation::Rotated { .. }
    ));
    assert_eq!(
        revoked_families(&store.revocations().await.unwrap()),
        vec!["fam-a".to_string(), "fam-b".to_string()]
    );
    assert_eq!(
        store.end_sessions("no-such-id", now_ms()).await.unwrap(),
        None
    );
    let found = store
        .account_credentials(&account.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.token_generation, 1);
}

async fn disable_revokes_the_families_and_the_feed_hears_family_revocations(url: &str) {
    let listening = open(url).await;
    let writing = open(url).await;
    let feed = listening.feed().await.unwrap();
    let account = writing
        .create(new_account("famfed", "famfed@example.com"))
        .await
        .unwrap();
    family(&*writing, "fam-fed", &account.id, "f1").await;
    writing.disable("famfed@example.com").await.unwrap();
    assert_eq!(
        writing
            .rotate_refresh("f1", &next("f2"), now_ms())
            .await
            .unwrap(),
        Rotation::Invalid
    );
    assert_eq!(
        revoked_families(&writing.revocations().await.unwrap()),
        vec!["fam-fed".to_string()]
    );
    let Some(mut feed) = feed else {
        assert_eq!(listening.kind(), "sqlite", "only SQLite is polled");
        return;
    };
    let within = Duration::from_secs(1);
    let mut heard = Vec::new();
    while heard.len() < 2 {
        let next = tokio::time::timeout(within, feed.next())
            .await
            .expect("within 1 s");
        heard.push(next.unwrap().expect("a revocation"));
    }
    assert!(
        heard
            .iter()
            .any(|r| matches!(r, Revocation::Family { id, .. } if id == "fam-fed")),
        "{heard:?}"
    );
}

// The signing-key part of the contract lives in its own file; declared after `contract!` so
// the macro reaches it.
#[path = "store_signing_keys.rs"]
mod signing_keys;
