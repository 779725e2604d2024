//! `gatehouse accounts …`: account administration straight against the store, for operators
//! and scripts (no running proxy needed; replicas learn of a disable through the store).
//! `create` and `disable` write their audit events (`account_created`, `account_disabled`)
//! straight to the store, with no client and `{"source":"cli"}`.

use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinSet;

use crate::auth::audit::{self, AuditEvent};
use crate::auth::Passwords;
use crate::store::{AccountStore, ListQuery, NewAccount, Revocation, Role, StoreError};

/// An administration command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
}

/// Creates one account; prints its id.
pub async fn create(
    store: &dyn AccountStore,
    email: &str,
    username: &str,
    password: String,
    admin: bool,
) -> Result<(), AdminError> {
    check_fields(username, email, &password)?;
    let passwords = Arc::new(Passwords::new(1));
    let password_hash = passwords
        .hash(password)
        .await
        .map_err(|e| AdminError::Invalid(e.to_string()))?;
    let role = if admin { Role::Admin } else { Role::User };
    let account = store
        .create(NewAccount {
            username: username.to_string(),
            email: email.to_string(),
            password_hash,
            role,
        })
        .await?;
    let detail = serde_json::json!({ "source": "cli", "role": role.as_str() });
    audit::write_now(
        store,
        AuditEvent::AccountCreated,
        Some(&account.username),
        detail,
    )
    .await?;
    println!(
        "created {} account {} <{}> id {}",
        role.as_str(),
        account.username,
        account.email,
        account.id
    );
    Ok(())
}

/// Prints every account matching `search`, tab-separated, oldest first.
pub async fn list(store: &dyn AccountStore, search: Option<String>) -> Result<(), AdminError> {
    const PAGE: i64 = 500;
    println!("id\tusername\temail\trole\tcreated_at_ms\tdisabled");
    let mut offset = 0;
    loop {
        let query = ListQuery {
            search: search.clone(),
            offset,
            limit: PAGE,
            include_disabled: true,
        };
        let page = store.list(&query).await?;
        for a in &page.accounts {
            let role = a.role.as_str();
            println!(
                "{}\t{}\t{}\t{role}\t{}\t{}",
                a.id, a.username, a.email, a.created_at_ms, a.disabled
            );
        }
        offset += PAGE;
        if offset >= page.total || page.accounts.is_empty() {
            eprintln!("{} accounts", page.total);
            return Ok(());
        }
    }
}

/// Disables the account and revokes its tokens on every replica.
pub async fn disable(store: &dyn AccountStore, email: &str) -> Result<(), AdminError> {
    match store.disable(email).await? {
        Some(Revocation::Account { id, generation, .. }) => {
            let account = store.credentials(email).await?;
            let username = account.map(|c| c.account.username);
            let detail = serde_json::json!({ "source": "cli" });
            audit::write_now(
                store,
                AuditEvent::AccountDisabled,
                username.as_deref(),
                detail,
            )
            .await?;
            println!("disabled {email} (id {id}); tokens before generation {generation} revoked");
            Ok(())
        }
        _ => Err(AdminError::Invalid(format!(
            "no account has the email {email}"
        ))),
    }
}

/// Creates `count` test accounts `seed-TAG-N` / `seed-TAG-N@example.com`, all with `password`,
/// hashing on every core at once.
pub async fn seed(
    store: Arc<dyn AccountStore>,
    count: usize,
    password: String,
) -> Result<(), AdminError> {
    check_fields("seed-x", "seed@example.com", &password)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let passwords = Arc::new(Passwords::new(cores));
    let tag = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    let mut created = 0usize;
    for n in 1..=count {
        // Enough in flight to keep every core hashing, few enough to bound memory.
        while tasks.len() >= cores * 4 {
            created += joined(tasks.join_next().await)?;
        }
        let (store, passwords, password) =
            (Arc::clone(&store), Arc::clone(&passwords), password.clone());
        let username = format!("seed-{tag}-{n}");
        tasks.spawn(async move {
            let password_hash = passwords
                .hash(password)
                .await
                .map_err(|e| AdminError::Invalid(e.to_string()))?;
            let email = format!("{username}@example.com");
            store
                .create(NewAccount {
                    username,
                    email,
                    password_hash,
                    role: Role::User,
                })
                .await?;
            Ok::<_, AdminError>(())
        });
    }
    while let Some(result) = tasks.join_next().await {
        created += joined(Some(result))?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "seeded {created} accounts seed-{tag}-1 … seed-{tag}-{count} (@example.com) in {secs:.1} s"
    );
    Ok(())
}

fn joined(
    result: Option<Result<Result<(), AdminError>, tokio::task::JoinError>>,
) -> Result<usize, AdminError> {
    match result {
        Some(Ok(Ok(()))) => Ok(1),
        Some(Ok(Err(error))) => Err(error),
        Some(Err(error)) => Err(AdminError::Invalid(format!("seeding task failed: {error}"))),
        None => Ok(0),
    }
}

/// The same field rules as `POST /account`.
fn check_fields(username: &str, email: &str, password: &str) -> Result<(), AdminError> {
    let rules = [
        crate::control::validate_username(username),
        crate::control::validate_email(email),
        crate::control::validate_password(password),
    ];
    for rule in rules {
        rule.map_err(|error| AdminError::Invalid(error.to_string()))?;
    }
    Ok(())
}
