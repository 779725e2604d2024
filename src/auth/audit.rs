//! The audit trail of credential events: who logged in, failed to, signed in or out, and which
//! accounts were created or disabled, from which client.
//!
//! Recording never waits: [`Audit::record`] writes one JSON log line (target `gatehouse::audit`)
//! and puts the event on a bounded queue with `try_send`; a full queue drops the event and
//! counts it in `gatehouse_audit_events_dropped_total`. [`drain`], a task on the control
//! runtime, writes what the queue holds to the store in batches (one transaction each, at most
//! every [`FLUSH_EVERY`]). The command line, with no proxy running, writes its events straight
//! to the store with [`write_now`].
//!
//! What is never recorded: a password, a token, a hash, or an identifier typed for no account
//! (a failed login of an unknown email has no username and nothing of the email).

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::store::{AccountStore, AuditRecord, StoreError};

/// Events waiting to be written; beyond this they are dropped and counted.
pub const QUEUE_CAPACITY: usize = 10_000;

/// Most events written in one transaction.
pub const BATCH: usize = 500;

/// The pause between two writes, so a burst goes in as a few batches.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);

/// A credential event. Adding one is a variant here and its name in [`AuditEvent::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditEvent {
    /// `POST /login` issued a token.
    LoginSuccess,
    /// `POST /login` was refused (wrong credentials, disabled account, back-off).
    LoginFailure,
    /// The browser sign-in form set a session.
    SigninSuccess,
    /// The browser sign-in form was refused.
    SigninFailure,
    /// `POST /logout` or the browser sign-out revoked a token.
    Logout,
    /// `POST /account` or `gatehouse accounts create`.
    AccountCreated,
    /// `gatehouse accounts disable`.
    AccountDisabled,
    /// `POST /token` rotated a refresh token.
    Refresh,
    /// A spent refresh token was presented again: its family was ended.
    RefreshReuse,
    /// `POST /logout/all` ended every session of an account.
    LogoutAll,
    /// `POST /api_keys` or `gatehouse apikeys create` made a key (its id and name; never the
    /// key).
    ApiKeyCreated,
    /// `DELETE /api_keys/{id}` or `gatehouse apikeys revoke` revoked a key.
    ApiKeyRevoked,
    /// A starting replica created the store's first signing key.
    SigningKeyCreated,
    /// `gatehouse keys rotate` added a signing key.
    SigningKeyRotated,
}

impl AuditEvent {
    /// Every event, for validating a filter.
    pub const ALL: [AuditEvent; 14] = [
        AuditEvent::LoginSuccess,
        AuditEvent::LoginFailure,
        AuditEvent::SigninSuccess,
        AuditEvent::SigninFailure,
        AuditEvent::Logout,
        AuditEvent::AccountCreated,
        AuditEvent::AccountDisabled,
        AuditEvent::Refresh,
        AuditEvent::RefreshReuse,
        AuditEvent::LogoutAll,
        AuditEvent::ApiKeyCreated,
        AuditEvent::ApiKeyRevoked,
        AuditEvent::SigningKeyCreated,
        AuditEvent::SigningKeyRotated,
    ];

    /// The stored and shown name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditEvent::LoginSuccess => "login_success",
            AuditEvent::LoginFailure => "login_failure",
            AuditEvent::SigninSuccess => "signin_success",
            AuditEvent::SigninFailure => "signin_failure",
            AuditEvent::Logout => "logout",
            AuditEvent::AccountCreated => "account_created",
            AuditEvent::AccountDisabled => "account_disabled",
            AuditEvent::Refresh => "refresh",
            AuditEvent::RefreshReuse => "refresh_reuse",
            AuditEvent::LogoutAll => "logout_all",
            AuditEvent::ApiKeyCreated => "api_key_created",
            AuditEvent::ApiKeyRevoked => "api_key_revoked",
            AuditEvent::SigningKeyCreated => "signing_key_created",
            AuditEvent::SigningKeyRotated => "signing_key_rotated",
        }
    }

    /// The event of this name, if there is one.
    pub fn parse(name: &str) -> Option<AuditEvent> {
        AuditEvent::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

/// A new record for `event`, stamped now: the id is a UUID v7 and `time_ms` its timestamp, so
/// ordering by (time, id) is ordering by id. Also logged as one JSON line.
pub fn record_of(
    event: AuditEvent,
    username: Option<&str>,
    client: Option<IpAddr>,
    detail: serde_json::Value,
) -> AuditRecord {
    let id = uuid::Uuid::now_v7();
    let time_ms = id
        .get_timestamp()
        .map_or_else(crate::clock::unix_millis, |t| {
            let (secs, nanos) = t.to_unix();
            i64::try_from(secs).unwrap_or(i64::MAX) * 1000 + i64::from(nanos / 1_000_000)
        });
    let detail = if detail.is_object() {
        detail
    } else {
        serde_json::json!({})
    };
    let record = AuditRecord {
        id: id.to_string(),
        time_ms,
        event: event.as_str().to_string(),
        username: username.map(str::to_string),
        client: client.map(|ip| ip.to_string()),
        detail: detail.to_string(),
    };
    log(&record, &detail);
    record
}

/// One JSON line per event under `gatehouse::audit`, whatever the log format.
fn log(record: &AuditRecord, detail: &serde_json::Value) {
    let line = serde_json::json!({
        "id": record.id,
        "time_ms": record.time_ms,
        "event": record.event,
        "username": record.username,
        "client": record.client,
        "detail": detail,
    });
    tracing::info!(target: "gatehouse::audit", "{line}");
}

/// The sending side of the audit queue, held by [`super::Auth`].
#[derive(Debug, Clone)]
pub struct Audit {
    queue: mpsc::Sender<AuditRecord>,
    /// Events queued and not yet written (shared with the [`AuditQueue`]).
    pending: Arc<AtomicUsize>,
    metrics: Metrics,
}

/// The receiving side of the audit queue, for [`drain`].
#[derive(Debug)]
pub struct AuditQueue {
    receiver: mpsc::Receiver<AuditRecord>,
    pending: Arc<AtomicUsize>,
}

impl AuditQueue {
    /// The next queued record, if one is waiting (for tests).
    pub fn try_recv(&mut self) -> Option<AuditRecord> {
        self.receiver.try_recv().ok()
    }
}

impl Audit {
    /// A queue of `capacity` events and its receiving end, for [`drain`].
    pub fn new(capacity: usize, metrics: Metrics) -> (Audit, AuditQueue) {
        let (queue, receiver) = mpsc::channel(capacity.max(1));
        let pending = Arc::new(AtomicUsize::new(0));
        let audit = Audit {
            queue,
            pending: Arc::clone(&pending),
            metrics,
        };
        (audit, AuditQueue { receiver, pending })
    }

    /// Waits, at most `within`, until every queued event is in the store: called on shutdown,
    /// after the last request, so the final events are not lost with the process. Returns
    /// whether the queue emptied.
    pub async fn flush(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while self.pending.load(Ordering::Acquire) > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Logs the event and queues it for the store without waiting; a full (or closed) queue
    /// drops it and counts the drop. Returns whether it was queued.
    pub fn record(
        &self,
        event: AuditEvent,
        username: Option<&str>,
        client: Option<IpAddr>,
        detail: serde_json::Value,
    ) -> bool {
        let record = record_of(event, username, client, detail);
        // Counted before sending, so the writer never takes away what was not yet added.
        self.pending.fetch_add(1, Ordering::AcqRel);
        match self.queue.try_send(record) {
            Ok(()) => true,
            Err(_) => {
                self.pending.fetch_sub(1, Ordering::AcqRel);
                self.metrics.audit_dropped();
                false
            }
        }
    }
}

/// Writes queued events to `store` until every sender is gone: waits for one, takes up to
/// [`BATCH`] in one transaction, then pauses [`FLUSH_EVERY`]. A failed write is retried every
/// second while the queue keeps filling (and dropping, once full).
pub async fn drain(mut queue: AuditQueue, store: Arc<dyn AccountStore>, metrics: Metrics) {
    let mut batch = Vec::with_capacity(BATCH);
    while queue.receiver.recv_many(&mut batch, BATCH).await > 0 {
        while let Err(error) = write(&*store, &batch, &metrics).await {
            tracing::warn!(%error, events = batch.len(), "could not write audit events; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        queue.pending.fetch_sub(batch.len(), Ordering::AcqRel);
        batch.clear();
        tokio::time::sleep(FLUSH_EVERY).await;
    }
}

/// Writes `events` in one transaction and counts them by event.
async fn write(
    store: &dyn AccountStore,
    events: &[AuditRecord],
    metrics: &Metrics,
) -> Result<(), StoreError> {
    store.insert_audit(events).await?;
    for event in events {
        metrics.audit_written(&event.event);
    }
    Ok(())
}

/// Records one event straight into `store` (the command line: no proxy, no queue).
pub async fn write_now(
    store: &dyn AccountStore,
    event: AuditEvent,
    username: Option<&str>,
    detail: serde_json::Value,
) -> Result<(), StoreError> {
    store
        .insert_audit(&[record_of(event, username, None, detail)])
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_round_trip() {
        for event in AuditEvent::ALL {
            assert_eq!(AuditEvent::parse(event.as_str()), Some(event));
        }
        assert_eq!(AuditEvent::parse("login"), None);
        assert_eq!(AuditEvent::parse("LOGIN_SUCCESS"), None);
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let metrics = Metrics::new();
        let (audit, mut queue) = Audit::new(2, metrics.clone());
        let ip = Some("192.0.2.7".parse().unwrap());
        let recorded: Vec<bool> = (0..5)
            .map(|_| audit.record(AuditEvent::Logout, Some("ann"), ip, serde_json::json!({})))
            .collect();
        assert_eq!(recorded, [true, true, false, false, false]);
        let text = String::from_utf8(metrics.encode()).unwrap();
        assert!(
            text.contains("gatehouse_audit_events_dropped_total 3"),
            "{text}"
        );
        let first = queue.try_recv().expect("queued");
        assert_eq!(first.event, "logout");
        assert_eq!(first.username.as_deref(), Some("ann"));
        assert_eq!(first.client.as_deref(), Some("192.0.2.7"));
        // Room again: recording resumes.
        assert!(audit.record(AuditEvent::Logout, None, None, serde_json::json!({})));
    }

    #[test]
    fn ids_are_time_ordered_and_carry_the_time() {
        let a = record_of(AuditEvent::LoginSuccess, None, None, serde_json::json!({}));
        let b = record_of(AuditEvent::LoginSuccess, None, None, serde_json::json!({}));
        assert!((a.time_ms, &a.id) < (b.time_ms, &b.id), "{a:?} {b:?}");
        let now = crate::clock::unix_millis();
        assert!((now - a.time_ms).abs() < 5_000, "{} vs {now}", a.time_ms);
        assert_eq!(a.detail, "{}");
    }

    #[test]
    fn a_detail_that_is_not_an_object_is_stored_empty() {
        let r = record_of(AuditEvent::Logout, None, None, serde_json::json!("x"));
        assert_eq!(r.detail, "{}");
    }
}
