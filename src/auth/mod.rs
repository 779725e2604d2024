//! Authentication: tokens, passwords, revocation and throttling, and the [`Auth`] state that
//! ties them to the account store.
//!
//! - `jwt`: token issue and verification with the algorithm pinned.
//! - `cache`: verified tokens until they expire, so a signature is checked once per token.
//! - `refused`: tokens verification refused, by keyed hash, so a bad token sent again is not
//!   checked again.
//! - `verifications`: per-client-network buckets of signature checks, so a flood of distinct
//!   forged tokens cannot take a core.
//! - `password`: argon2id on the blocking pool behind a semaphore.
//! - `revocation`: in-memory deny-lists kept fresh from the store (no database call per request).
//! - `throttle`: token buckets for login and registration per client network.
//! - `lockout`: the login back-off from failures the store counts for every replica.
//! - `login`: the credentials check `POST /login` and the sign-in form share; token revocation.
//! - `audit`: the audit trail of credential events, queued and written in batches.
//! - `refresh`: refresh-token families: login, `POST /token` rotation, reuse detection, logout.
//! - `runtime`: the thread that owns database connections and password hashing.
//! - `api_keys`: API keys: their shape, name and lifetime rules, creation.
//! - `api_key_cache`: API keys on the request path: in memory, bounded lookups, last-used.
//! - `sealing`: encryption at rest of the signing keys' private halves.
//! - `keyring`: the Ed25519 signing keys shared through the store: rotation, JWKS, refresh.
//! - `assertion`: `X-Gatehouse-Assertion` for backends, signed once per caller and service.

pub mod api_key_cache;
pub mod api_keys;
pub mod audit;
pub mod cache;
pub mod jwt;
pub mod lockout;
pub mod login;
pub mod password;
pub mod refresh;
pub mod refused;
pub mod revocation;
mod runtime;
pub mod throttle;
pub mod verifications;

#[cfg(test)]
mod forged_tests;

pub mod assertion;
pub mod keyring;
pub mod sealing;

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use http::{header, HeaderMap};

use crate::config::{
    AccountsPageAccess, AuthSettings, RefreshSettings, Registration, SessionSettings,
};
use crate::metrics::{AuthFailure, LoginResult, Metrics, Verification};
use crate::request::{cookie, ClientNetwork};
use crate::store::{self, AccountStore, StoreError};

pub use api_key_cache::ApiKeyCache;
pub use audit::{Audit, AuditEvent};
pub use cache::{Identity, TokenCache};
pub use jwt::{Claims, KeyError, Refusal, TokenError, TokenKeys};
pub use lockout::{Attempt, Lockout};
pub use login::{LoginRefused, LoginSource};
pub use password::Passwords;
pub use refresh::{Issued, RefreshRefused};
pub use refused::RefusedTokens;
pub use revocation::Revocations;
pub use runtime::ControlRuntime;
pub use throttle::{Throttle, Throttled};

pub use assertion::Assertions;
pub use keyring::{Keyring, KeyringError};

/// Why a request carries no usable identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` token (nor session cookie, where one counts) at all.
    #[error("authentication required")]
    Missing,
    /// A token that failed verification or was revoked.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// An API key not held in memory could not be looked up: the store is unavailable.
    #[error("the account store is unavailable")]
    StoreUnavailable,
    /// A token not seen before was left unchecked: the client network has used up its
    /// verifications for now.
    #[error("too many new tokens from this client network; retry in {} s", .0.retry_after_secs)]
    Throttled(Throttled),
}

/// Everything authentication needs, shared by all workers.
#[derive(Debug)]
pub struct Auth {
    /// Signing and verification keys.
    pub keys: TokenKeys,
    /// Tokens already verified.
    verified: TokenCache,
    /// Tokens recently refused, by hash.
    refused: RefusedTokens,
    /// Revoked tokens and accounts, kept fresh in the background.
    pub revocations: Arc<Revocations>,
    /// Password hashing off the async threads.
    pub passwords: Arc<Passwords>,
    /// Login and registration buckets.
    pub throttle: Arc<Throttle>,
    /// The failed-login back-off.
    pub lockout: Lockout,
    /// Where accounts live.
    pub store: Arc<dyn AccountStore>,
    /// Who may list accounts.
    pub accounts_page: AccountsPageAccess,
    /// Who may register accounts over HTTP.
    pub registration: Registration,
    /// The browser session cookie (`/.gatehouse/signin`).
    pub session: SessionSettings,
    /// The audit trail's queue to the store.
    pub audit: Audit,
    /// Refresh-token lifetimes.
    pub refresh: RefreshSettings,
    runtime: ControlRuntime,
    metrics: Metrics,
    /// API keys this replica has seen, and the bound on looking up the others.
    pub api_keys: Arc<ApiKeyCache>,
    /// The store's signing keys, when a secret is configured or they are needed.
    pub keyring: Option<Arc<Keyring>>,
    /// `X-Gatehouse-Assertion` signing, when the keyring exists.
    pub assertions: Option<Assertions>,
}

/// What [`Auth::authenticate_proxied`] found: an answer now (a token, or an API key held in
/// memory), or a store lookup of an API key to wait for, boxed so that a request that never
/// waits carries none of its state.
pub enum Proxied<'a> {
    /// Decided without waiting.
    Done(Result<Arc<Identity>, AuthError>),
    /// An API key not held in memory: the answer once the store has been asked.
    Pending(Pin<Box<dyn Future<Output = Result<Arc<Identity>, AuthError>> + Send + 'a>>),
}

/// Gatehouse cannot start its authentication side.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("cannot open the account store {url}: {error}")]
    Store { url: String, error: StoreError },
    #[error("cannot start the control runtime: {0}")]
    Runtime(#[from] std::io::Error),
    #[error(transparent)]
    Keyring(#[from] KeyringError),
}

impl Auth {
    /// Loads the keys, opens and migrates the store at `database_url`, and starts following
    /// revocations. Refused tokens and logins are counted in `metrics`.
    pub async fn start(
        settings: &AuthSettings,
        database_url: &str,
        metrics: Metrics,
    ) -> Result<Self, StartError> {
        Self::start_for(settings, database_url, metrics, None).await
    }

    /// [`Auth::start`] for a config where `assertion_service` (if any) has `assertion: true`,
    /// so the store's signing keys and their secret are required.
    pub async fn start_for(
        settings: &AuthSettings,
        database_url: &str,
        metrics: Metrics,
        assertion_service: Option<&str>,
    ) -> Result<Self, StartError> {
        let needs_keys = keys_needed_by(settings, assertion_service);
        let key_secret = keyring::key_secret(&settings.keys)?;
        if let (Some(user), None) = (&needs_keys, &key_secret) {
            return Err(KeyringError::MissingSecret(user.clone()).into());
        }
        let fixed_keys = if keyring::uses_store_keys_for_tokens(settings) {
            if settings.jwt.previous_secret_override().is_some() {
                return Err(KeyError::PreviousWithEddsa.into());
            }
            None
        } else {
            Some(TokenKeys::from_settings(
                &settings.jwt,
                settings.jwt.secret_override(),
            )?)
        };
        let runtime = ControlRuntime::start()?;
        let url = database_url.to_string();
        let store: Arc<dyn AccountStore> = runtime
            .run(async move { store::open(&url).await })
            .await
            .and_then(|opened| opened.map_err(|error| error.to_string()))
            .map(Arc::from)
            .map_err(|error| StartError::Store {
                url: store::redact(database_url),
                error: StoreError::Unavailable(error),
            })?;
        let revocations = Arc::new(Revocations::new());
        runtime.spawn(revocation::follow(
            Arc::clone(&store),
            Arc::clone(&revocations),
        ));
        let throttle = Arc::new(Throttle::new(&settings.limits));
        let lockout = Lockout::new(&settings.limits);
        runtime.spawn(forget_idle_buckets(
            Arc::clone(&throttle),
            Arc::clone(&store),
            lockout.memory(),
            settings.audit.retention,
        ));
        let (audit, queue) = Audit::new(audit::QUEUE_CAPACITY, metrics.clone());
        runtime.spawn(audit::drain(queue, Arc::clone(&store), metrics.clone()));
        let api_keys = Arc::new(ApiKeyCache::new(&settings.jwt.issuer, metrics.clone()));
        runtime.spawn(api_key_cache::flush(
            Arc::clone(&api_keys),
            Arc::clone(&store),
            Arc::clone(&revocations),
        ));
        let keyring = match key_secret {
            Some(secret) => {
                let keyring = start_keyring(settings, &runtime, &store, secret, &audit).await?;
                Some(keyring)
            }
            None => None,
        };
        let keys = match (fixed_keys, &keyring) {
            (Some(keys), _) => keys,
            (None, Some(keyring)) => {
                TokenKeys::from_keyring(Arc::clone(keyring), &settings.jwt.issuer, settings.jwt.ttl)
            }
            // Refused above: store-key tokens need the secret.
            (None, None) => {
                return Err(KeyringError::MissingSecret(
                    "auth.jwt.algorithm EdDSA without key_file".to_string(),
                )
                .into())
            }
        };
        let assertions = keyring.as_ref().map(|keyring| {
            Assertions::new(
                Arc::clone(keyring),
                &settings.jwt.issuer,
                settings.keys.assertion_ttl,
            )
        });
        let auth = Auth {
            keys,
            verified: TokenCache::default(),
            refused: RefusedTokens::default(),
            revocations,
            passwords: Arc::new(Passwords::new(runtime.cores())),
            throttle,
            lockout,
            store,
            accounts_page: settings.accounts_page,
            registration: settings.registration,
            session: settings.session.clone(),
            audit,
            refresh: settings.refresh.clone(),
            runtime,
            metrics,
            api_keys,
            keyring,
            assertions,
        };
        tracing::info!(store = auth.store.kind(), "account store ready");
        Ok(auth)
    }

    /// The identity of the request's bearer token, verified and not revoked. CPU only: the
    /// signature is checked once per token (then cached until `exp`), revocation every time.
    /// A token refused recently is refused again unchecked; one not seen before takes a
    /// verification from the bucket of `client`'s network ([`AuthError::Throttled`] when it is
    /// empty). A refusal is counted by reason.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        client: IpAddr,
    ) -> Result<Arc<Identity>, AuthError> {
        self.counted(self.verify_token(bearer_token(headers), client))
    }

    /// The identity of a proxied request: its bearer token when it has one, else its session
    /// cookie (`auth.session.cookie_name`); neither is [`AuthError::Missing`]. Checked and
    /// counted as [`Auth::authenticate`] does.
    pub fn authenticate_request(
        &self,
        headers: &HeaderMap,
        client: IpAddr,
    ) -> Result<Arc<Identity>, AuthError> {
        let token = bearer_token(headers).or_else(|| self.session_token(headers));
        self.counted(self.verify_token(token, client))
    }

    /// The identity of a proxied request, as [`Auth::authenticate_request`] finds it, but for
    /// a bearer `gh_…` API key, which authenticates as its account. A key held in memory costs
    /// no store call and is answered at once, like a token; another is looked up on the control
    /// runtime within the bounds of `api_key_cache` (beyond them, 401 unasked), and only then
    /// is there anything to wait for ([`Proxied::Pending`]). Only proxied requests take API
    /// keys: the control plane's endpoints (logout, API keys, …) want an access token, so a
    /// leaked key cannot mint more keys.
    pub fn authenticate_proxied(&self, headers: &HeaderMap, client: IpAddr) -> Proxied<'_> {
        let token = match bearer_token(headers) {
            Some(token) if api_keys::is_api_key(token) => token,
            _ => return Proxied::Done(self.authenticate_request(headers, client)),
        };
        let now = crate::clock::unix_millis();
        match self.api_keys.step(token, now, &self.revocations) {
            Ok(api_key_cache::Step::Known(identity)) => Proxied::Done(self.counted(Ok(identity))),
            Err(refused) => Proxied::Done(self.counted(Err(refused))),
            Ok(first) => {
                let token = token.to_owned();
                Proxied::Pending(Box::pin(async move {
                    let identity = self.api_key_identity(&token, first).await;
                    self.counted(identity)
                }))
            }
        }
    }

    /// Follows `step` (a lookup to make or another request's to wait for) to an answer.
    async fn api_key_identity(
        &self,
        token: &str,
        mut step: api_key_cache::Step<'_>,
    ) -> Result<Arc<Identity>, AuthError> {
        // Waiting on another request's lookup ends when that lookup does (within the lookup
        // timeout); a few rounds cover a lookup that failed and was started again.
        for _ in 0..3 {
            match step {
                api_key_cache::Step::Known(identity) => return Ok(identity),
                api_key_cache::Step::LookUp(lookup) => return self.look_up(lookup).await,
                api_key_cache::Step::Wait(mut answer) => {
                    let _ = answer.changed().await;
                }
            }
            let now = crate::clock::unix_millis();
            step = self.api_keys.step(token, now, &self.revocations)?;
        }
        Err(AuthError::StoreUnavailable)
    }

    /// Asks the store about a key not held in memory, on the control runtime.
    async fn look_up(&self, lookup: api_key_cache::Lookup<'_>) -> Result<Arc<Identity>, AuthError> {
        let digest = lookup.digest;
        let store = Arc::clone(&self.store);
        let hash = api_keys::hex(&digest);
        let answer = self
            .run(async move {
                // A store that hangs must not hold the proxied request (and a bucket token's
                // worth of capacity) for ever: past the limit the request gets 503.
                tokio::time::timeout(api_key_cache::LOOKUP_TIMEOUT, store.api_key_by_hash(&hash))
                    .await
                    .unwrap_or_else(|_| Err(StoreError::Unavailable("lookup timed out".into())))
            })
            .await
            .and_then(|found| found);
        match answer {
            Ok(owner) => {
                let now = crate::clock::unix_millis();
                self.api_keys.found(digest, owner, now, &self.revocations)
            }
            Err(error) => {
                tracing::warn!(%error, "could not look up an API key");
                self.api_keys.failed();
                Err(AuthError::StoreUnavailable)
            }
        }
    }

    /// The identity of the request's session cookie alone, if it is valid. Not counted as a
    /// refusal when it is not: the sign-in page asks this of every visitor.
    pub fn session_identity(&self, headers: &HeaderMap, client: IpAddr) -> Option<Arc<Identity>> {
        self.verify_token(self.session_token(headers), client).ok()
    }

    /// The session cookie's value, if the request carries one.
    pub fn session_token<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        cookie(headers, &self.session.cookie_name.0).filter(|token| !token.is_empty())
    }

    fn counted(
        &self,
        result: Result<Arc<Identity>, AuthError>,
    ) -> Result<Arc<Identity>, AuthError> {
        result.inspect_err(|error| {
            self.metrics.auth_failure(match error {
                AuthError::Missing => AuthFailure::Missing,
                AuthError::Token(TokenError::Invalid) => AuthFailure::Invalid,
                AuthError::Token(TokenError::Expired) => AuthFailure::Expired,
                AuthError::Token(TokenError::Revoked) => AuthFailure::Revoked,
                AuthError::Throttled(_) => AuthFailure::RateLimited,
                // Not the caller's fault; counted in gatehouse_api_key_lookups_total.
                AuthError::StoreUnavailable => return,
            })
        })
    }

    /// Counts a login attempt's result.
    pub fn count_login(&self, result: LoginResult) {
        self.metrics.login(result);
    }

    fn verify_token(
        &self,
        token: Option<&str>,
        client: IpAddr,
    ) -> Result<Arc<Identity>, AuthError> {
        let token = token.ok_or(AuthError::Missing)?;
        let now = crate::clock::unix_secs();
        let identity = match self.verified.get(token, now) {
            Some(identity) => identity,
            None => self.verify_new(token, client, now)?,
        };
        self.revocations.check(&identity.claims)?;
        Ok(identity)
    }

    /// A token not in the verified-token cache: refused again if it was refused recently,
    /// refused unchecked if `client`'s network has no verification left, else verified (and
    /// remembered either way). Nothing here is on the path of a token already verified.
    fn verify_new(
        &self,
        token: &str,
        client: IpAddr,
        now: u64,
    ) -> Result<Arc<Identity>, AuthError> {
        let metrics = &self.metrics;
        // Refused before hashing: hashing it would cost more than refusing it.
        if token.len() > jwt::MAX_TOKEN_BYTES {
            metrics.token_verification(Verification::Invalid);
            return Err(TokenError::Invalid.into());
        }
        let hash = self.refused.hash(token);
        if let Some(error) = self.refused.get(hash, now) {
            metrics.token_verification(Verification::CachedInvalid);
            return Err(error.into());
        }
        if let Err(throttled) = self.throttle.verification(ClientNetwork::from(client)) {
            metrics.token_verification(Verification::Throttled);
            return Err(AuthError::Throttled(throttled));
        }
        let checked = self.keys.check(token).and_then(|claims| {
            Identity::new(claims).ok_or(Refusal {
                error: TokenError::Invalid,
                lasting: true,
            })
        });
        match checked {
            Ok(identity) => {
                metrics.token_verification(Verification::Valid);
                let identity = Arc::new(identity);
                if identity.claims.exp > now {
                    self.verified.insert(token, Arc::clone(&identity), now);
                }
                Ok(identity)
            }
            Err(refusal) => {
                metrics.token_verification(Verification::Invalid);
                self.refused.remember(hash, refusal, now);
                Err(refusal.error.into())
            }
        }
    }

    /// Runs store and hashing work on the control runtime, away from the proxy's workers;
    /// `Err` only if that runtime is shutting down.
    pub async fn run<F>(&self, work: F) -> Result<F::Output, StoreError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime
            .run(work)
            .await
            .map_err(StoreError::Unavailable)
    }
}

/// What needs the store's signing keys in this config, for the error when no secret is given.
fn keys_needed_by(settings: &AuthSettings, assertion_service: Option<&str>) -> Option<String> {
    match assertion_service {
        Some(service) => Some(format!("service {service} (assertion: true)")),
        None if keyring::uses_store_keys_for_tokens(settings) => {
            Some("auth.jwt.algorithm EdDSA without key_file".to_string())
        }
        None => None,
    }
}

/// Opens (or creates) the store's signing keys on the control runtime, audits a first key, and
/// starts re-reading the table there.
async fn start_keyring(
    settings: &AuthSettings,
    runtime: &ControlRuntime,
    store: &Arc<dyn AccountStore>,
    secret: Vec<u8>,
    audit: &Audit,
) -> Result<Arc<Keyring>, StartError> {
    let delay = settings.keys.publish_delay;
    let keep_ms = keyring::keep_published_for(settings);
    let opening = Arc::clone(store);
    let (keyring, created) = runtime
        .run(async move { Keyring::start(&*opening, &secret, keep_ms, delay).await })
        .await
        .map_err(|error| KeyringError::Store(StoreError::Unavailable(error)))??;
    if let Some(kid) = created {
        tracing::info!(%kid, "created the first signing key");
        audit.record(
            AuditEvent::SigningKeyCreated,
            None,
            None,
            serde_json::json!({ "kid": kid }),
        );
    }
    let keyring = Arc::new(keyring);
    runtime.spawn(keyring::follow(Arc::clone(&keyring), Arc::clone(store)));
    Ok(keyring)
}

/// Every minute, drops throttle buckets that have refilled, failure counters older than
/// `memory`, audit events older than `retention`, refresh tokens and families that can no
/// longer be used, and API keys revoked or expired `API_KEY_RETENTION_MS` ago, bounding all
/// five (every replica does it; deleting twice is harmless).
async fn forget_idle_buckets(
    throttle: Arc<Throttle>,
    store: Arc<dyn AccountStore>,
    memory: std::time::Duration,
    retention: std::time::Duration,
) {
    let mut every_minute = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        every_minute.tick().await;
        throttle.forget_idle();
        let memory_ms = i64::try_from(memory.as_millis()).unwrap_or(i64::MAX);
        let before = crate::clock::unix_millis().saturating_sub(memory_ms);
        if let Err(error) = store.forget_failure_counts(before).await {
            tracing::warn!(%error, "could not prune login failure counters");
        }
        let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let before = crate::clock::unix_millis().saturating_sub(retention_ms);
        if let Err(error) = store.forget_audit_events(before).await {
            tracing::warn!(%error, "could not prune old audit events");
        }
        if let Err(error) = store.prune_refresh(crate::clock::unix_millis()).await {
            tracing::warn!(%error, "could not prune refresh tokens");
        }
        let before = crate::clock::unix_millis().saturating_sub(store::API_KEY_RETENTION_MS);
        if let Err(error) = store.prune_api_keys(before).await {
            tracing::warn!(%error, "could not prune revoked and expired API keys");
        }
    }
}

/// The token of an `Authorization: Bearer …` header (scheme case-insensitive, RFC 7235).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn bearer_tokens_are_found_in_any_scheme_case() {
        assert_eq!(bearer_token(&with_authorization("Bearer abc")), Some("abc"));
        assert_eq!(
            bearer_token(&with_authorization("bearer  abc ")),
            Some("abc")
        );
    }

    #[test]
    fn other_schemes_and_empty_tokens_are_no_token() {
        assert_eq!(bearer_token(&with_authorization("Basic abc")), None);
        assert_eq!(bearer_token(&with_authorization("Bearer ")), None);
        assert_eq!(bearer_token(&with_authorization("Bearer")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }
}
