//! Emails as identifiers: look-alike spellings (the Kelvin sign, full-width letters, decomposed
//! accents) are one address, stored and sent to backends in NFKC form; invisible, bidi-control
//! and space characters are refused naming the field; and `gatehouse accounts check-emails`
//! finds and rewrites rows stored under the older lower-case-only rule, on SQLite and PostgreSQL.

use crate::common;

use std::process::Stdio;

use common::accounts::gatehouse_accounts;
use common::binary::GATEHOUSE;
use common::postgres::{drop_database, fresh_database, fresh_sqlite};
use common::{assert_json_error, backends, ConfigYaml, Proxy, ServiceYaml};
use gatehouse::store;

const APP: &str = "app.test";
const PASSWORD: &str = "correct horse battery";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn look_alike_emails_are_one_address_and_reach_backends_normalised() {
    let backend = backends(1).await[0];
    let config = ConfigYaml::new().service(ServiceYaml::new("app", APP).backend(backend));
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();

    assert_eq!(
        client
            .register("kate", "kate@example.com", PASSWORD)
            .await
            .status,
        201
    );
    for look_alike in [
        "\u{212A}ate@example.com", // KELVIN SIGN
        "KATE@EXAMPLE.COM",
        "ｋａｔｅ@ｅｘａｍｐｌｅ.ｃｏｍ", // full-width
    ] {
        let reply = client.register("kate2", look_alike, PASSWORD).await;
        assert_json_error(&reply, 409, "email_taken");
    }
    // Kate signs in with any spelling of her address.
    assert_eq!(
        client
            .login("\u{212A}ATE@example.com", PASSWORD)
            .await
            .status,
        200
    );

    let created = client.register("bob", "ｂｏｂ@Example.com", PASSWORD).await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.json()["email"], "bob@Example.com");
    let composed = client
        .register("jose", "Jose\u{0301}@example.com", PASSWORD)
        .await;
    assert_eq!(composed.json()["email"], "Jos\u{00E9}@example.com");
    assert_json_error(
        &client
            .register("jose2", "jos\u{00E9}@example.com", PASSWORD)
            .await,
        409,
        "email_taken",
    );

    let token = client.token("BOB@example.com", PASSWORD).await;
    let proxied = client.with_token("GET", APP, "/", &token).await;
    assert_eq!(proxied.status, 200);
    assert_eq!(
        proxied.echoed_header("x-forwarded-email").as_deref(),
        Some("bob@Example.com")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invisible_bidi_and_space_characters_in_an_email_are_a_400_naming_the_field() {
    let config = ConfigYaml::new();
    let proxy = Proxy::start(&config).await;
    let client = proxy.client();
    for (email, code) in [
        ("ka\u{200B}te@example.com", "U+200B"), // zero-width space
        ("ka\u{200D}te@example.com", "U+200D"), // zero-width joiner
        ("\u{FEFF}kate@example.com", "U+FEFF"), // byte-order mark
        ("ka\u{00AD}te@example.com", "U+00AD"), // soft hyphen
        ("ka\u{202E}te@example.com", "U+202E"), // right-to-left override
        ("ka\u{2067}te@example.com", "U+2067"), // right-to-left isolate
        ("kate@exa\u{00A0}mple.com", "U+00A0"), // no-break space
        ("ka\u{0085}te@example.com", "U+0085"), // next line (C1 control)
    ] {
        let reply = client.register("kate", email, PASSWORD).await;
        assert_json_error(&reply, 400, "invalid_email");
        let message = reply.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            message.starts_with("email ") && message.contains(code),
            "{email:?}: {message}"
        );
    }
    // Nothing was stored: the plain address is still free.
    assert_eq!(
        client
            .register("kate", "kate@example.com", PASSWORD)
            .await
            .status,
        201
    );
    let created = std::process::Command::new(GATEHOUSE)
        .args(["accounts", "create", "--email", "ev\u{200B}e@example.com"])
        .args(["--username", "eve", "--password-stdin"])
        .env("DATABASE_URL", config.database_url())
        .stdin(Stdio::null())
        .output()
        .expect("run gatehouse accounts create");
    assert!(!created.status.success(), "the CLI applies the same rule");
    assert!(String::from_utf8_lossy(&created.stderr).contains("U+200B"));
}

/// Runs `gatehouse accounts check-emails ARGS`: (exit success, stdout).
fn check_emails(database_url: &str, args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(GATEHOUSE)
        .args(["accounts", "check-emails"])
        .args(args)
        .env("DATABASE_URL", database_url)
        .output()
        .expect("run gatehouse accounts check-emails");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// Rows as the lower-case-only rule stored them (email as typed, key lower-cased) are found,
/// reported, and rewritten unless their new key collides or they hold a refused character.
async fn check_emails_reports_and_rewrites_rows_stored_under_old_rules(url: &str) {
    for (username, email) in [
        ("wide", "wide@example.com"),
        ("kate", "Kate@example.com"),
        ("kate2", "kate2@example.com"),
        ("hidden", "hidden@example.com"),
    ] {
        gatehouse_accounts(
            url,
            &[
                "create",
                "--email",
                email,
                "--username",
                username,
                "--password-stdin",
            ],
            &format!("{PASSWORD}\n"),
        )
        .await;
    }
    let (clean, listing) = check_emails(url, &[]);
    assert!(clean, "fresh rows need nothing: {listing}");
    assert_eq!(listing, "");

    // Rewrite three rows the way the old rule would have stored them.
    let store = store::open(url).await.expect("open the store");
    let rows = store.stored_emails().await.unwrap();
    let id = |name: &str| rows.iter().find(|r| r.username == name).unwrap().id.clone();
    let legacy = [
        ("wide", "ｗｉｄｅ@example.com"),
        ("kate2", "ｋａｔｅ@example.com"),
        ("hidden", "hid\u{200B}den@example.com"),
    ];
    for (name, email) in legacy {
        assert!(store
            .set_email(&id(name), email, &email.to_lowercase())
            .await
            .unwrap());
    }
    // Under the new key, the full-width spelling cannot sign in yet.
    let before = store.credentials("wide@example.com").await.unwrap();
    assert!(
        before.is_none(),
        "a row with an old key is invisible to login"
    );

    let (clean, report) = check_emails(url, &[]);
    assert!(!clean, "{report}");
    assert!(
        report.contains(&format!("change\t{}\twide\t", id("wide"))),
        "{report}"
    );
    assert!(
        report.contains("collision\t\"kate@example.com\""),
        "{report}"
    );
    assert!(
        report.contains(&format!("refused\t{}\thidden\t", id("hidden"))),
        "{report}"
    );
    assert!(
        !report.contains("rewritten"),
        "a report changes nothing: {report}"
    );
    assert_eq!(store.stored_emails().await.unwrap().len(), 4);

    let (clean, applied) = check_emails(url, &["--apply"]);
    assert!(
        !clean,
        "the collision and the refused row are left: {applied}"
    );
    assert!(
        applied.contains(&format!("rewritten\t{}\twide\t", id("wide"))),
        "{applied}"
    );
    assert!(
        !applied.contains(&format!("rewritten\t{}", id("kate2"))),
        "{applied}"
    );
    assert!(
        !applied.contains(&format!("rewritten\t{}", id("hidden"))),
        "{applied}"
    );
    let after = store.stored_emails().await.unwrap();
    let find = |name: &str| after.iter().find(|r| r.username == name).unwrap().clone();
    assert_eq!(
        (find("wide").email.as_str(), find("wide").email_key.as_str()),
        ("wide@example.com", "wide@example.com")
    );
    assert_eq!(
        find("kate2").email,
        "ｋａｔｅ@example.com",
        "collisions are left alone"
    );
    assert_eq!(find("hidden").email, "hid\u{200B}den@example.com");
    let found = store.credentials("ＷＩＤＥ@example.com").await.unwrap();
    assert_eq!(
        found.expect("found after the rewrite").account.username,
        "wide"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_emails_on_sqlite() {
    let (_dir, url) = fresh_sqlite();
    check_emails_reports_and_rewrites_rows_stored_under_old_rules(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_emails_on_postgres() {
    let Some(url) = fresh_database().await else {
        return;
    };
    check_emails_reports_and_rewrites_rows_stored_under_old_rules(&url).await;
    drop_database(&url).await;
}
