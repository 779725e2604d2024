//! `POST /account` (register) and `GET /accounts` (the list behind the accounts page).

use std::net::IpAddr;
use std::sync::Arc;

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::{json_body, validate};
use crate::auth::{AuditEvent, Auth};
use crate::clock::rfc3339;
use crate::config::{AccountsPageAccess, Registration as RegistrationAccess};
use crate::error::{json_response, Invalid, ProxyBody, ProxyError};
use crate::policy::BodyPace;
use crate::request::{ClientInfo, ClientNetwork};
use crate::store::{Account, ListQuery, NewAccount, Role, StoreError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Registration {
    username: String,
    email: String,
    password: String,
}

/// An account as the API shows it: never the hash, never the role's internals.
#[derive(Serialize)]
struct AccountView<'a> {
    id: &'a str,
    username: &'a str,
    email: &'a str,
    created_at: String,
    /// Shown only when true, which only an admin asking for disabled accounts sees; every
    /// other answer keeps the documented four fields.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    disabled: bool,
}

impl<'a> From<&'a Account> for AccountView<'a> {
    fn from(account: &'a Account) -> Self {
        AccountView {
            id: &account.id,
            username: &account.username,
            email: &account.email,
            created_at: rfc3339(account.created_at_ms),
            disabled: account.disabled,
        }
    }
}

/// `POST /account`: check `auth.registration`, validate, throttle per client, hash, insert;
/// `201` with the account. A body arriving slower than `pace`
/// allows is answered 408.
pub(super) async fn register(
    auth: &Arc<Auth>,
    request: Request<Incoming>,
    client: &ClientInfo,
    pace: BodyPace,
) -> Result<Response<ProxyBody>, ProxyError> {
    // Decided before the body is read: a refused caller costs no parsing or hashing.
    match auth.registration {
        RegistrationAccess::Open => {}
        RegistrationAccess::Closed => return Err(ProxyError::RegistrationClosed),
        RegistrationAccess::Admin => {
            let ip = client.ip(request.headers());
            let identity = auth.authenticate(request.headers(), ip)?;
            if identity.claims.role != Role::Admin {
                return Err(ProxyError::Forbidden("account registration".into()));
            }
        }
    }
    let ip = client.ip(request.headers());
    let network = ClientNetwork::from(ip);
    let registration: Registration = json_body::read_json(request, pace).await?;
    validate::username(&registration.username)?;
    validate::email(&registration.email)?;
    validate::password(&registration.password)?;
    auth.throttle
        .register(network)
        .map_err(|t| ProxyError::RateLimited(t.retry_after_secs))?;
    let account = create(auth, registration, Role::User).await?;
    auth.audit.record(
        AuditEvent::AccountCreated,
        Some(&account.username),
        Some(ip),
        serde_json::json!({ "source": "api", "role": account.role.as_str() }),
    );
    let mut response = json_response(
        StatusCode::CREATED,
        &serde_json::to_value(AccountView::from(&account)).unwrap_or_default(),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

async fn create(
    auth: &Arc<Auth>,
    registration: Registration,
    role: Role,
) -> Result<Account, ProxyError> {
    let worker = Arc::clone(auth);
    let outcome = auth
        .run(async move {
            let password_hash = worker
                .passwords
                .hash(registration.password)
                .await
                .map_err(|error| StoreError::Unavailable(error.to_string()))?;
            let new = NewAccount {
                username: registration.username,
                email: registration.email,
                password_hash,
                role,
            };
            worker.store.create(new).await
        })
        .await;
    match outcome.and_then(|created| created) {
        Ok(account) => Ok(account),
        Err(StoreError::Taken(field)) => Err(ProxyError::Taken(field)),
        Err(error) => {
            tracing::error!(%error, "registration failed");
            Err(ProxyError::StoreUnavailable)
        }
    }
}

/// `GET /accounts?page=&per_page=&q=&disabled=include`: one page of accounts, as
/// `auth.accounts_page` allows. Disabled accounts are listed only when an admin asks for them.
pub(super) async fn list(
    auth: &Arc<Auth>,
    request: &Request<Incoming>,
    client: &ClientInfo,
) -> Result<Response<ProxyBody>, ProxyError> {
    let paging = Paging::parse(request.uri().query().unwrap_or(""))?;
    let caller = allow_listing(auth, request, client.ip(request.headers()))?;
    if paging.include_disabled && caller != Some(Role::Admin) {
        return Err(ProxyError::Forbidden("disabled accounts".into()));
    }
    let query = ListQuery {
        search: paging.search.clone(),
        offset: (paging.page - 1).saturating_mul(paging.per_page),
        limit: paging.per_page,
        include_disabled: paging.include_disabled,
    };
    let store = Arc::clone(&auth.store);
    let page = auth
        .run(async move { store.list(&query).await })
        .await
        .and_then(|listed| listed)
        .map_err(|error| {
            tracing::error!(%error, "listing accounts failed");
            ProxyError::StoreUnavailable
        })?;
    let accounts: Vec<AccountView> = page.accounts.iter().map(AccountView::from).collect();
    let mut response = json_response(
        StatusCode::OK,
        &serde_json::json!({
            "accounts": accounts,
            "total": page.total,
            "page": paging.page,
            "per_page": paging.per_page,
        }),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `public`: anyone; `authenticated`: a valid token; `admin`: a valid admin token (403 else).
/// Returns the caller's role when a valid token came with the request.
pub(super) fn allow_listing<B>(
    auth: &Auth,
    request: &Request<B>,
    client: IpAddr,
) -> Result<Option<Role>, ProxyError> {
    if auth.accounts_page == AccountsPageAccess::Public {
        // Anyone may list; a valid admin token still unlocks the admin view.
        if !request.headers().contains_key(header::AUTHORIZATION) {
            return Ok(None);
        }
        return Ok(auth
            .authenticate(request.headers(), client)
            .ok()
            .map(|i| i.claims.role));
    }
    let role = auth.authenticate(request.headers(), client)?.claims.role;
    if auth.accounts_page == AccountsPageAccess::Admin && role != Role::Admin {
        return Err(ProxyError::Forbidden("the account list".into()));
    }
    Ok(Some(role))
}

/// The list's query string: `page` from 1, `per_page` clamped to 1–100 (default 20), `q`.
#[derive(Debug, PartialEq, Eq)]
struct Paging {
    page: i64,
    per_page: i64,
    search: Option<String>,
    include_disabled: bool,
}

impl Paging {
    const DEFAULT_PER_PAGE: i64 = 20;
    const MAX_PER_PAGE: i64 = 100;
    const MAX_SEARCH_BYTES: usize = 254;

    fn parse(query: &str) -> Result<Self, ProxyError> {
        let mut paging = Paging {
            page: 1,
            per_page: Self::DEFAULT_PER_PAGE,
            search: None,
            include_disabled: false,
        };
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "page" => paging.page = number("page", &value)?.max(1),
                "per_page" => {
                    paging.per_page = number("per_page", &value)?.clamp(1, Self::MAX_PER_PAGE)
                }
                "q" => {
                    let term = value.trim();
                    if term.len() > Self::MAX_SEARCH_BYTES {
                        return Err(ProxyError::InvalidField(
                            Invalid::Query,
                            format!("q must be at most {} bytes", Self::MAX_SEARCH_BYTES),
                        ));
                    }
                    // No account holds one (validation refuses them), and the stores disagree
                    // on NUL: SQLite's LIKE stops at it (`%\0%` matches everything),
                    // PostgreSQL refuses it with an error.
                    if term.chars().any(char::is_control) {
                        return Err(ProxyError::InvalidField(
                            Invalid::Query,
                            "q must not contain control characters".into(),
                        ));
                    }
                    paging.search = (!term.is_empty()).then(|| term.to_string());
                }
                "disabled" => {
                    paging.include_disabled = match value.as_ref() {
                        "include" => true,
                        "exclude" => false,
                        _ => {
                            return Err(ProxyError::InvalidField(
                                Invalid::Query,
                                "disabled must be include or exclude".into(),
                            ))
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(paging)
    }
}

pub(super) fn number(name: &str, value: &str) -> Result<i64, ProxyError> {
    value.trim().parse::<i64>().map_err(|_| {
        ProxyError::InvalidField(Invalid::Query, format!("{name} must be a whole number"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_defaults_to_the_first_page_of_twenty() {
        let paging = Paging::parse("").unwrap();
        assert_eq!((paging.page, paging.per_page, paging.search), (1, 20, None));
    }

    #[test]
    fn per_page_is_clamped_and_page_starts_at_one() {
        let paging = Paging::parse("page=0&per_page=1000").unwrap();
        assert_eq!((paging.page, paging.per_page), (1, 100));
        assert_eq!(Paging::parse("per_page=0").unwrap().per_page, 1);
        assert_eq!(Paging::parse("per_page=-5").unwrap().per_page, 1);
    }

    #[test]
    fn search_terms_are_decoded_and_trimmed() {
        let paging = Paging::parse("q=%20Al%25ice+").unwrap();
        assert_eq!(paging.search.as_deref(), Some("Al%ice"));
        assert_eq!(Paging::parse("q=").unwrap().search, None);
    }

    #[test]
    fn non_numeric_paging_is_a_clear_400() {
        let error = Paging::parse("page=two").unwrap_err();
        assert_eq!(
            (error.status().as_u16(), error.code()),
            (400, "invalid_query")
        );
        assert!(Paging::parse(&format!("q={}", "x".repeat(255))).is_err());
    }

    #[test]
    fn control_characters_in_the_search_are_a_clear_400() {
        for query in ["q=%00", "q=a%00b", "q=a%0Ab", "q=%1B"] {
            let error = Paging::parse(query).unwrap_err();
            assert_eq!(
                (error.status().as_u16(), error.code()),
                (400, "invalid_query"),
                "{query}"
            );
        }
        assert!(Paging::parse("q=%20alice%0A").is_ok(), "trimmed first");
    }
}
