//! The `AccountStore` contract for signing keys (`signing_keys`, `add_signing_key`), on SQLite
//! and PostgreSQL alike, and the keyring's first-key race run against each store.

use std::sync::Arc;
use std::time::Duration;

use gatehouse::auth::keyring::{self, Keyring, KeyringError};
use gatehouse::store::{AccountStore, StoredKey};

use super::{drop_database, fresh_database, fresh_sqlite, open};

contract!(
    signing_keys_read_back_in_seq_order_and_a_taken_seq_adds_nothing,
    replicas_starting_together_agree_on_one_first_key,
    a_rotation_signs_after_the_delay_and_refuses_a_wrong_secret,
);

const SECRET: &[u8] = b"store-contract-key-secret-0123456789";

fn row(kid: &str, seq: i64, signs_from_ms: i64) -> StoredKey {
    StoredKey {
        kid: kid.to_string(),
        seq,
        created_at_ms: 1_000 + seq,
        signs_from_ms,
        public_key: format!("pk-{kid}"),
        sealed: format!("v1.sealed-{kid}"),
    }
}

async fn signing_keys_read_back_in_seq_order_and_a_taken_seq_adds_nothing(url: &str) {
    let store = open(url).await;
    assert!(store.signing_keys().await.unwrap().is_empty());
    assert!(store.add_signing_key(&row("b", 2, 5_000)).await.unwrap());
    assert!(store.add_signing_key(&row("a", 1, 2_000)).await.unwrap());
    // Another writer took seq 2 first: nothing is written, no error.
    assert!(!store.add_signing_key(&row("c", 2, 9_000)).await.unwrap());
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(keys, vec![row("a", 1, 2_000), row("b", 2, 5_000)]);
}

async fn replicas_starting_together_agree_on_one_first_key(url: &str) {
    let stores: Vec<Arc<dyn AccountStore>> = vec![open(url).await, open(url).await];
    let keep = keyring::keep_published(Duration::from_secs(300), Duration::from_secs(60));
    let mut starts = tokio::task::JoinSet::new();
    for _ in 0..4 {
        for store in &stores {
            let store = Arc::clone(store);
            starts.spawn(async move {
                let (keyring, created) =
                    Keyring::start(&*store, SECRET, keep, Duration::from_secs(60))
                        .await
                        .unwrap();
                (keyring.signer(i64::MAX).kid.clone(), created.is_some())
            });
        }
    }
    let started = starts.join_all().await;
    let kids: std::collections::HashSet<_> = started.iter().map(|(kid, _)| kid.clone()).collect();
    assert_eq!(
        kids.len(),
        1,
        "every replica signs with the same key: {started:?}"
    );
    assert_eq!(started.iter().filter(|(_, created)| *created).count(), 1);
    assert_eq!(stores[0].signing_keys().await.unwrap().len(), 1);
}

async fn a_rotation_signs_after_the_delay_and_refuses_a_wrong_secret(url: &str) {
    let store = open(url).await;
    let delay = Duration::from_secs(60);
    let keep = keyring::keep_published(Duration::from_secs(300), delay);
    let (ring, _) = Keyring::start(&*store, SECRET, keep, delay).await.unwrap();
    let first = ring.signer(gatehouse::clock::unix_millis()).kid.clone();

    let wrong = keyring::rotate(&*store, b"a-different-secret-of-enough-bytes!!", delay).await;
    assert!(matches!(wrong, Err(KeyringError::WrongSecret(ref kid)) if *kid == first));
    assert_eq!(
        store.signing_keys().await.unwrap().len(),
        1,
        "nothing added"
    );

    let added = keyring::rotate(&*store, SECRET, delay).await.unwrap();
    assert_eq!(added.seq, 2);
    assert!(added.signs_from_ms - added.created_at_ms >= 60_000);
    ring.refresh(&*store).await.unwrap();
    let now = gatehouse::clock::unix_millis();
    assert_eq!(ring.signer(now).kid, first, "not before the delay");
    assert_eq!(ring.signer(added.signs_from_ms).kid, added.kid, "after it");
    let published: Vec<_> = ring
        .jwks()
        .keys
        .into_iter()
        .filter_map(|jwk| jwk.common.key_id)
        .collect();
    assert_eq!(published, vec![first.clone(), added.kid.clone()]);
    // A second secret never opens, never creates: the keyring refuses to start with it.
    let refused = Keyring::start(
        &*store,
        b"a-different-secret-of-enough-bytes!!",
        keep,
        delay,
    )
    .await;
    assert!(matches!(refused, Err(KeyringError::WrongSecret(_))));
    assert_eq!(store.signing_keys().await.unwrap().len(), 2);
}
