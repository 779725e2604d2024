//! The login back-off (README "Login throttling"): failures count per account + client network
//! and per account, in the account store. One network cannot lock an account out elsewhere; a
//! guesser spread over many networks meets the account's back-off while a network with no
//! failures still signs in; an IPv6 /64 is one network; concurrent guesses cannot outrun the
//! count; a correct password clears its network's count; and two replicas on one store refuse
//! the same attempt (SQLite and PostgreSQL).

use crate::common;

use std::net::{IpAddr, Ipv4Addr};

use common::accounts::{concurrently, CONTROL};
use common::binary::Gatehouse;
use common::postgres::{drop_database, fresh_database, fresh_sqlite};
use common::{assert_json_error, assert_rate_limited, full, Client, ConfigYaml, Proxy, Reply};

const PASSWORD: &str = "correct horse battery";
const WRONG: &str = "not the password";

fn from(proxy_addr: std::net::SocketAddr, last: u8) -> Client {
    Client::http1_from(proxy_addr, IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
}

/// A config with the login back-off set and the per-network rate left off.
fn backoff(network: &str, account: &str) -> ConfigYaml {
    ConfigYaml::new()
        .auth_limit("network_failures", network)
        .auth_limit("account_failures", account)
        .auth_limit("max_backoff", "1h")
}

fn refused(reply: &Reply) -> u64 {
    assert_rate_limited(reply)
}

fn wrong(reply: &Reply) {
    assert_json_error(reply, 401, "invalid_credentials");
}

/// Repeats a failing attempt until it is held back with at least 2 s left to wait, so the
/// assertions that follow have a second of margin however slow this machine is: the first
/// wait past the free failures is only 1 s from the last failure, which a slow argon2 run can
/// outlast, but each failure let through doubles it. Every answer before is a plain 401.
async fn held_back<F, Fut>(attempt: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    for _ in 0..8 {
        let reply = attempt().await;
        if reply.status != 429 {
            wrong(&reply);
            continue;
        }
        let wait = refused(&reply);
        if wait >= 2 {
            return;
        }
        // Refusals do not count: let the short wait pass so the next failure doubles it.
        tokio::time::sleep(std::time::Duration::from_millis(wait * 1000 + 100)).await;
    }
    panic!("never held back with 2 s or more to wait");
}

/// The review's finding: ten wrong passwords for bob from one address locked bob out from
/// every address. Now only that address waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_from_one_network_never_lock_the_account_out_elsewhere() {
    let config = ConfigYaml::new()
        .auth_limit("login_per_minute", "10")
        .auth_limit("network_failures", "5")
        .auth_limit("account_failures", "20");
    let proxy = Proxy::start(&config).await;
    let attacker = from(proxy.addr, 2);
    assert_eq!(
        attacker
            .register("bob", "bob@example.com", PASSWORD)
            .await
            .status,
        201
    );

    for _ in 0..5 {
        wrong(&attacker.login("bob@example.com", WRONG).await);
    }
    held_back(|| attacker.login("BOB@example.com", WRONG)).await;
    refused(&attacker.login("bob@example.com", WRONG).await);
    // Even the right password waits on the guessing network, and says nothing more.
    refused(&attacker.login("bob@example.com", PASSWORD).await);
    // Bob, anywhere else, signs in.
    let bob = from(proxy.addr, 3);
    let signed_in = bob.login("bob@example.com", PASSWORD).await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.text());

    // An email no account has is held back exactly alike (nothing to learn from a 429).
    let prober = from(proxy.addr, 4);
    for _ in 0..5 {
        wrong(&prober.login("ghost@example.com", WRONG).await);
    }
    held_back(|| prober.login("ghost@example.com", WRONG)).await;
    refused(&prober.login("ghost@example.com", PASSWORD).await);
}

/// Spread over networks, guesses meet the account's back-off; a network with no failures on
/// the account still gets its one try, so the owner's right password goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_distributed_guesser_meets_the_account_back_off_but_a_clean_network_signs_in() {
    let proxy = Proxy::start(&backoff("3", "4")).await;
    assert_eq!(
        from(proxy.addr, 2)
            .register("cara", "cara@example.com", PASSWORD)
            .await
            .status,
        201
    );
    // Two networks, two failures each: the account is at its 4 free failures.
    for last in [2, 3] {
        for _ in 0..2 {
            wrong(
                &from(proxy.addr, last)
                    .login("cara@example.com", WRONG)
                    .await,
            );
        }
    }
    // Fresh networks each get one try, and each failed try doubles the account's wait.
    for last in 10..15 {
        wrong(
            &from(proxy.addr, last)
                .login("cara@example.com", WRONG)
                .await,
        );
    }
    // 9 failures, 5 past the free 4: 32 s. A network that failed waits, with any password.
    let wait = refused(
        &from(proxy.addr, 2)
            .login("cara@example.com", PASSWORD)
            .await,
    );
    assert!((20..=32).contains(&wait), "Retry-After {wait}");
    refused(&from(proxy.addr, 10).login("cara@example.com", WRONG).await);
    // The owner, from a network with no failures, signs in.
    let owner = from(proxy.addr, 20)
        .login("cara@example.com", PASSWORD)
        .await;
    assert_eq!(owner.status, 200, "{}", owner.text());
}

/// Behind a trusted proxy, IPv6 clients count by /64: another address in the same /64 is the
/// same network, the next /64 is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_64_is_one_network() {
    let config = backoff("2", "100").trusted_proxies(&["127.0.0.0/8"]);
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();
    assert_eq!(
        client
            .register("dora", "dora@example.com", PASSWORD)
            .await
            .status,
        201
    );
    let login_as = |address: &str, password: &str| {
        let body = serde_json::json!({"email": "dora@example.com", "password": password});
        http::Request::post("/login")
            .header("host", CONTROL)
            .header("content-type", "application/json")
            .header("x-forwarded-for", address)
            .body(full(body.to_string()))
            .unwrap()
    };
    wrong(&client.send(login_as("2001:db8:0:1::1", WRONG)).await);
    wrong(&client.send(login_as("2001:db8:0:1::2", WRONG)).await);
    held_back(|| client.send(login_as("2001:db8:0:1::3", WRONG))).await;
    refused(
        &client
            .send(login_as("2001:db8:0:1:ffff:ffff:ffff:ffff", PASSWORD))
            .await,
    );
    let next = client.send(login_as("2001:db8:0:2::1", PASSWORD)).await;
    assert_eq!(next.status, 200, "{}", next.text());
}

/// Twenty guesses at once from one network: exactly the free three are checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_cannot_outrun_the_count() {
    let proxy = Proxy::start(&backoff("3", "1000")).await;
    let addr = proxy.addr;
    assert_eq!(
        from(addr, 2)
            .register("eli", "eli@example.com", PASSWORD)
            .await
            .status,
        201
    );
    let statuses = concurrently(20, 20, |_| async move {
        from(addr, 2).login("eli@example.com", WRONG).await.status
    })
    .await;
    let checked = statuses.iter().filter(|&&s| s == 401).count();
    let held = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!((checked, held), (3, 17), "{statuses:?}");
}

/// A correct password takes its own count back and clears its network's failures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_password_clears_its_networks_failures() {
    let proxy = Proxy::start(&backoff("3", "1000")).await;
    let client = from(proxy.addr, 2);
    assert_eq!(
        client
            .register("fay", "fay@example.com", PASSWORD)
            .await
            .status,
        201
    );
    wrong(&client.login("fay@example.com", WRONG).await);
    wrong(&client.login("fay@example.com", WRONG).await);
    assert_eq!(client.login("fay@example.com", PASSWORD).await.status, 200);
    for _ in 0..3 {
        wrong(&client.login("fay@example.com", WRONG).await);
    }
    held_back(|| client.login("fay@example.com", WRONG)).await;
    refused(&client.login("fay@example.com", PASSWORD).await);
}

/// Two replicas (processes) on one store: failures counted through one hold on the other.
async fn replicas_share_the_count(database_url: &str) {
    let env = [("DATABASE_URL", database_url)];
    let start = || {
        Gatehouse::start_with_env(&["serve"], &env, |listen| {
            backoff("2", "1000").listen(listen).render()
        })
    };
    let (a, b) = (start().await, start().await);
    assert_eq!(
        from(a.addr, 2)
            .register("gus", "gus@example.com", PASSWORD)
            .await
            .status,
        201
    );
    wrong(&from(a.addr, 2).login("gus@example.com", WRONG).await);
    wrong(&from(b.addr, 2).login("gus@example.com", WRONG).await);
    // Counted on either replica, held back on both.
    let on_b = from(b.addr, 2);
    held_back(|| on_b.login("gus@example.com", WRONG)).await;
    refused(&from(a.addr, 2).login("gus@example.com", PASSWORD).await);
    refused(&from(b.addr, 2).login("gus@example.com", PASSWORD).await);
    let elsewhere = from(b.addr, 3).login("gus@example.com", PASSWORD).await;
    assert_eq!(elsewhere.status, 200, "{}", elsewhere.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_count_on_sqlite() {
    let (_dir, url) = fresh_sqlite();
    replicas_share_the_count(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_count_on_postgres() {
    let Some(url) = fresh_database().await else {
        return;
    };
    replicas_share_the_count(&url).await;
    drop_database(&url).await;
}
