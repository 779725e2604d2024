//! `gatehouse accounts check-emails [--apply]`: finds accounts stored under older email rules.
//!
//! Emails are now stored NFKC-normalised and unique by an NFKC + lower-case key, where they were
//! once stored as typed and keyed by lower case alone. A row whose key changes cannot be found
//! by login until it is rewritten; two rows whose new keys are equal are one address spelled
//! two ways, and an operator must decide which account keeps it (e.g. disable the other and
//! give it a new address). This command reports both, and rows holding characters registration
//! now refuses; `--apply` rewrites the rows whose new key is theirs alone.

use std::collections::HashMap;

use super::accounts::AdminError;
use crate::store::{identifier, AccountStore, StoreError, StoredEmail};

/// What the check found (after `--apply`, what is still left for the operator).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EmailCheck {
    /// Rows whose email or key differ from today's rules (rewritten with `--apply`).
    pub changed: usize,
    /// Rows sharing a new key with another row: never rewritten.
    pub colliding: usize,
    /// Rows holding a character registration refuses: reported, never rewritten.
    pub refused: usize,
}

impl EmailCheck {
    /// Whether anything still needs the operator.
    pub fn needs_attention(&self, applied: bool) -> bool {
        self.colliding > 0 || self.refused > 0 || (!applied && self.changed > 0)
    }
}

/// Checks every account, printing one line per finding; with `apply`, rewrites changed rows
/// that collide with nothing.
pub async fn check_emails(store: &dyn AccountStore, apply: bool) -> Result<EmailCheck, AdminError> {
    let rows = store.stored_emails().await?;
    let mut by_key: HashMap<String, Vec<&StoredEmail>> = HashMap::new();
    for row in &rows {
        by_key
            .entry(identifier::key(&row.email))
            .or_default()
            .push(row);
    }
    let mut found = EmailCheck::default();
    for row in &rows {
        if let Some(bad) = identifier::refused_char(&row.email) {
            found.refused += 1;
            println!(
                "refused\t{}\t{}\t{:?}\tholds U+{:04X}",
                row.id,
                row.username,
                row.email,
                u32::from(bad)
            );
        }
    }
    let mut keys: Vec<_> = by_key.iter().filter(|(_, rows)| rows.len() > 1).collect();
    keys.sort_by(|a, b| a.0.cmp(b.0));
    for (key, rows) in keys {
        found.colliding += rows.len();
        let who: Vec<String> = rows
            .iter()
            .map(|r| format!("{} {} {:?}", r.id, r.username, r.email))
            .collect();
        println!("collision\t{key:?}\t{}", who.join("\t"));
    }
    for row in &rows {
        let email = identifier::normalize(&row.email);
        let key = identifier::key(&row.email);
        if email == row.email && key == row.email_key {
            continue;
        }
        let alone = by_key.get(&key).is_some_and(|rows| rows.len() == 1);
        let eligible = alone && identifier::refused_char(&row.email).is_none();
        if apply && eligible {
            match store.set_email(&row.id, &email, &key).await {
                Ok(_) => {
                    println!(
                        "rewritten\t{}\t{}\t{:?} -> {email:?}\tkey {:?} -> {key:?}",
                        row.id, row.username, row.email, row.email_key
                    );
                    continue;
                }
                // Registered since the rows were read.
                Err(StoreError::Taken(_)) => found.colliding += 1,
                Err(error) => return Err(error.into()),
            }
        }
        found.changed += 1;
        println!(
            "change\t{}\t{}\t{:?} -> {email:?}\tkey {:?} -> {key:?}",
            row.id, row.username, row.email, row.email_key
        );
    }
    eprintln!(
        "{} accounts checked: {} to rewrite{}, {} colliding, {} with refused characters",
        rows.len(),
        found.changed,
        if apply {
            " (left: they collide or hold refused characters)"
        } else {
            ""
        },
        found.colliding,
        found.refused
    );
    Ok(found)
}
