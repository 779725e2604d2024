//! Signing in with a browser, on every host a service claims: `/.gatehouse/signin` (the form,
//! and its post), `/.gatehouse/signout` and `/.gatehouse/me`. Paths under `/.gatehouse/` are
//! answered here and never forwarded.
//!
//! The session cookie holds a signed access token (`Auth::start_session`: the account's claims,
//! `auth.session.ttl` long), so a proxied request with it is checked like a bearer token, in
//! memory, and ends with the same deny-list (sign-out) and account generation (a disabled
//! account). The form's post shares the login path (`Auth::check_login`: rate, back-off,
//! argon2id, metrics) with `POST /login`.
//!
//! - `page`: the HTML form, escaped, with its CSP.
//! - `redirect`: where `rd` may lead (this host, or a claimed host under the cookie domain).
//! - `csrf`: `Origin` / `Sec-Fetch-Site` and the double-submit token.
//! - `cookie`: the `Set-Cookie` values.

mod cookie;
mod csrf;
mod page;
mod redirect;

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::auth::{AuditEvent, Auth, LoginRefused, LoginSource};
use crate::control::read_small_body;
use crate::error::{full_body, json_response, ProxyBody, ProxyError};
use crate::request::{normalize_path, request_host, ClientInfo};
use crate::state::AppState;
use page::View;

/// Every path under this is Gatehouse's own on a service's host.
const PREFIX: &str = "/.gatehouse/";
const SIGNIN: &str = "/.gatehouse/signin";
const SIGNOUT: &str = "/.gatehouse/signout";
const ME: &str = "/.gatehouse/me";

/// Whether Gatehouse answers `path` itself on a service's host instead of forwarding it:
/// judged on the normalised path, so `/%2Egatehouse/…` or `/x/../.gatehouse/…` is not
/// forwarded either (such spellings are answered 404 here).
pub(crate) fn owns(path: &str) -> bool {
    normalize_path(path)
        .is_ok_and(|path| path.starts_with(PREFIX) || path == PREFIX.trim_end_matches('/'))
}

/// Answers a request for a path under `/.gatehouse/` on a service's host.
pub(crate) async fn handle(
    request: Request<Incoming>,
    state: &AppState,
    client: &ClientInfo,
) -> Result<Response<ProxyBody>, ProxyError> {
    let path = request.uri().path();
    let (allowed, allow): (&[Method], _) = match path {
        SIGNIN => (
            &[Method::GET, Method::HEAD, Method::POST],
            "GET, HEAD, POST",
        ),
        SIGNOUT => (&[Method::POST], "POST"),
        ME => (&[Method::GET, Method::HEAD], "GET, HEAD"),
        _ => return Err(ProxyError::NotFound(path.to_string())),
    };
    if !allowed.contains(request.method()) {
        let mut response = ProxyError::MethodNotAllowed.into_response();
        let allow = HeaderValue::from_static(allow);
        response.headers_mut().insert(header::ALLOW, allow);
        return Ok(response);
    }
    let post = request.method() == Method::POST;
    match path {
        SIGNIN if post => sign_in(request, state, client).await,
        SIGNIN => show(&request, state, client),
        SIGNOUT => sign_out(request, state, client).await,
        _ => me(&state.auth, request.headers(), client.ip(request.headers())),
    }
}

/// For an anonymous browser navigation (a `GET` or `HEAD` that accepts `text/html`, not sent
/// by script, without an `Authorization` header) to an `auth: required` service: a 302 to the
/// sign-in form, with the path and query to come back to as `rd`. API clients, scripts and
/// every other method keep the 401.
pub(crate) fn redirect_for<B>(request: &Request<B>) -> Option<Response<ProxyBody>> {
    let headers = request.headers();
    let navigation = matches!(*request.method(), Method::GET | Method::HEAD)
        && !headers.contains_key(header::AUTHORIZATION)
        && accepts_html(headers)
        && !by_script(headers);
    if !navigation {
        return None;
    }
    let back = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let rd: String = form_urlencoded::byte_serialize(back.as_bytes()).collect();
    let location = HeaderValue::try_from(format!("{SIGNIN}?rd={rd}")).ok()?;
    Some(see_other(StatusCode::FOUND, location))
}

/// Whether `Accept` names `text/html` (not with `q=0`).
fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .is_some_and(|q| q.parse::<f32>().is_ok_and(|q| q <= 0.0))
            });
            media.eq_ignore_ascii_case("text/html") && !refused
        })
}

/// `fetch` and `XMLHttpRequest` say so: `Sec-Fetch-Mode` other than `navigate`, or the
/// libraries' `X-Requested-With`.
fn by_script(headers: &HeaderMap) -> bool {
    let mode = headers.get("sec-fetch-mode");
    mode.is_some_and(|m| !m.as_bytes().eq_ignore_ascii_case(b"navigate"))
        || headers.contains_key("x-requested-with")
}

/// What a request tells about where it was sent.
struct Site {
    /// `http` or `https`, as the browser sees it.
    scheme: &'static str,
    /// The `Host` as sent (or the URI authority).
    host: String,
}

impl Site {
    fn of<B>(request: &Request<B>, client: &ClientInfo) -> Self {
        Site {
            scheme: client.scheme(request.headers()),
            host: request_host(request).unwrap_or_default().to_string(),
        }
    }

    fn origin(&self) -> String {
        csrf::own_origin(self.scheme, &self.host)
    }

    fn cookie_scope(&self, auth: &Auth) -> cookie::Scope {
        let domain = auth.session.cookie_domain.as_ref().map(|d| d.0.as_str());
        cookie::Scope::new(self.scheme, &self.host, domain)
    }
}

/// `rd` made safe (`redirect::safe`) against the services of the current snapshot.
fn safe_rd(rd: Option<&str>, state: &AppState) -> String {
    let routes = state.routes.load();
    let domain = state
        .auth
        .session
        .cookie_domain
        .as_ref()
        .map(|d| d.0.as_str());
    redirect::safe(
        rd.unwrap_or("/"),
        |host| routes.lookup(host).is_some(),
        domain,
    )
}

/// The first value of `name` in a query string or form body.
fn field(pairs: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(pairs)
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// The CSRF token to put in the form: the browser's, or a fresh one to set (`Some` second).
fn csrf_token(headers: &HeaderMap) -> Result<(String, bool), ProxyError> {
    match csrf::from_cookie(headers) {
        Some(token) => Ok((token.to_string(), false)),
        None => csrf::new_token()
            .map(|token| (token, true))
            .ok_or_else(|| ProxyError::Internal("no random bytes for a CSRF token".into())),
    }
}

/// The page, with the CSRF cookie when the token is new.
fn page_with_token(
    status: StatusCode,
    view: &View<'_>,
    rd: &str,
    headers: &HeaderMap,
    site: &Site,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (token, fresh) = csrf_token(headers)?;
    let mut response = page::render(status, view, rd, &token);
    if fresh {
        let set = cookie::csrf(&token, site.scheme == "https");
        response.headers_mut().append(header::SET_COOKIE, set);
    }
    Ok(response)
}

/// `GET /.gatehouse/signin?rd=…`: the form, or "signed in as …" for a valid session.
fn show(
    request: &Request<Incoming>,
    state: &AppState,
    client: &ClientInfo,
) -> Result<Response<ProxyBody>, ProxyError> {
    let query = request.uri().query().unwrap_or_default();
    let rd = safe_rd(field(query.as_bytes(), "rd").as_deref(), state);
    let headers = request.headers();
    let site = Site::of(request, client);
    match state.auth.session_identity(headers, client.ip(headers)) {
        Some(identity) => {
            let claims = &identity.claims;
            let view = View::SignedIn {
                username: &claims.username,
                email: &claims.email,
            };
            page_with_token(StatusCode::OK, &view, &rd, headers, &site)
        }
        None => {
            let view = View::Form {
                email: "",
                message: None,
            };
            page_with_token(StatusCode::OK, &view, &rd, headers, &site)
        }
    }
}

/// A refused post: the form again, with a fresh token when the browser had none.
fn refused_form(
    status: StatusCode,
    message: &str,
    email: &str,
    rd: &str,
    headers: &HeaderMap,
    site: &Site,
) -> Result<Response<ProxyBody>, ProxyError> {
    let view = View::Form {
        email,
        message: Some(message),
    };
    page_with_token(status, &view, rd, headers, site)
}

const CROSS_SITE: &str = "This sign-in did not come from this page. Please try again.";

/// A post's origin and form: 403 (`Err(page)`) unless it comes from this origin with a CSRF
/// token equal to the cookie's; 415 unless it is a form; 413 and 408 as for any control-plane
/// body.
async fn read_form(
    request: Request<Incoming>,
    state: &AppState,
    site: &Site,
) -> Result<Result<(HeaderMap, Bytes), Response<ProxyBody>>, ProxyError> {
    let headers = request.headers().clone();
    if csrf::cross_site(&headers, &site.origin()) {
        return refused_form(StatusCode::FORBIDDEN, CROSS_SITE, "", "/", &headers, site).map(Err);
    }
    if !is_form(&headers) {
        return Err(ProxyError::UnsupportedMediaType);
    }
    let pace = state.routes.load().body_pace();
    let body = read_small_body(request, pace).await?;
    let field_token = field(&body, "csrf");
    if !csrf::tokens_match(csrf::from_cookie(&headers), field_token.as_deref()) {
        let rd = safe_rd(field(&body, "rd").as_deref(), state);
        return refused_form(StatusCode::FORBIDDEN, CROSS_SITE, "", &rd, &headers, site).map(Err);
    }
    Ok(Ok((headers, body)))
}

/// `Content-Type: application/x-www-form-urlencoded` (any parameters).
fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| {
            media
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// `POST /.gatehouse/signin`: checks the origin and CSRF token, then the credentials as
/// `POST /login` does; a match gets the session cookie and a 303 to `rd`.
async fn sign_in(
    request: Request<Incoming>,
    state: &AppState,
    client: &ClientInfo,
) -> Result<Response<ProxyBody>, ProxyError> {
    let site = Site::of(&request, client);
    let ip = client.ip(request.headers());
    let (headers, body) = match read_form(request, state, &site).await? {
        Ok(form) => form,
        Err(refused) => return Ok(refused),
    };
    let rd = safe_rd(field(&body, "rd").as_deref(), state);
    let email = field(&body, "email").unwrap_or_default();
    let password = field(&body, "password").unwrap_or_default();
    let auth = &state.auth;
    let credentials = match auth
        .check_login(ip, LoginSource::Signin, email.clone(), password)
        .await
    {
        Ok(credentials) => credentials,
        Err(LoginRefused::InvalidCredentials) => {
            let message = "The email or password is not right.";
            let status = StatusCode::UNAUTHORIZED;
            return refused_form(status, message, &email, &rd, &headers, &site);
        }
        Err(LoginRefused::Throttled(throttled)) => {
            let wait = throttled.retry_after_secs;
            let message = format!("Too many sign-in attempts. Try again in {wait} s.");
            let status = StatusCode::TOO_MANY_REQUESTS;
            let mut page = refused_form(status, &message, &email, &rd, &headers, &site)?;
            page.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait));
            return Ok(page);
        }
        Err(LoginRefused::StoreUnavailable) => {
            let message = "Signing in is not possible right now. Try again shortly.";
            let status = StatusCode::SERVICE_UNAVAILABLE;
            return refused_form(status, message, &email, &rd, &headers, &site);
        }
    };
    let token = match auth.start_session(&credentials).await {
        Ok(token) => token,
        Err(error) => {
            tracing::error!(%error, "sign-in could not start a session in the account store");
            let message = "Signing in is not possible right now. Try again shortly.";
            let status = StatusCode::SERVICE_UNAVAILABLE;
            return refused_form(status, message, &email, &rd, &headers, &site);
        }
    };
    let location = HeaderValue::try_from(rd).map_err(|e| ProxyError::Internal(e.to_string()))?;
    let mut response = see_other(StatusCode::SEE_OTHER, location);
    let name = &auth.session.cookie_name.0;
    let ttl = auth.session.ttl.as_secs();
    let set = cookie::session(name, &token, ttl, &site.cookie_scope(auth));
    response.headers_mut().append(header::SET_COOKIE, set);
    Ok(response)
}

/// `POST /.gatehouse/signout`: same origin and CSRF checks as signing in; the session's token
/// is revoked (every replica within a second), the cookie cleared, then back to the form.
async fn sign_out(
    request: Request<Incoming>,
    state: &AppState,
    client: &ClientInfo,
) -> Result<Response<ProxyBody>, ProxyError> {
    let site = Site::of(&request, client);
    let ip = client.ip(request.headers());
    let (headers, _) = match read_form(request, state, &site).await? {
        Ok(form) => form,
        Err(refused) => return Ok(refused),
    };
    let auth = &state.auth;
    let name = &auth.session.cookie_name.0;
    let cleared = cookie::session(name, "", 0, &site.cookie_scope(auth));
    if let Some(identity) = auth.session_identity(&headers, ip) {
        // This replica refuses it already; a 503 says others may not have heard.
        if let Err(error) = auth.revoke(&identity.claims).await {
            tracing::error!(%error, "sign-out could not reach the account store");
            let mut response = ProxyError::StoreUnavailable.into_response();
            response.headers_mut().append(header::SET_COOKIE, cleared);
            return Ok(response);
        }
        auth.audit.record(
            AuditEvent::Logout,
            Some(&identity.claims.username),
            Some(ip),
            serde_json::json!({ "source": "signin" }),
        );
    }
    let mut response = see_other(StatusCode::SEE_OTHER, HeaderValue::from_static(SIGNIN));
    response.headers_mut().append(header::SET_COOKIE, cleared);
    Ok(response)
}

/// `GET /.gatehouse/me`: who the session cookie (or a bearer token) is.
fn me(auth: &Auth, headers: &HeaderMap, client: IpAddr) -> Result<Response<ProxyBody>, ProxyError> {
    let identity: Arc<_> = auth.authenticate_request(headers, client)?;
    let claims = &identity.claims;
    let mut response = json_response(
        StatusCode::OK,
        &serde_json::json!({
            "username": claims.username,
            "email": claims.email,
            "role": claims.role,
        }),
    );
    no_store(response.headers_mut());
    Ok(response)
}

/// An empty redirect that no cache keeps.
fn see_other(status: StatusCode, location: HeaderValue) -> Response<ProxyBody> {
    let mut response = Response::new(full_body(Bytes::new()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::LOCATION, location);
    no_store(response.headers_mut());
    response
}

fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(headers: &[(&str, &str)]) -> Request<()> {
        let mut request = Request::get("/dashboard?x=1&y=a%20b");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap()
    }

    const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

    #[test]
    fn a_browser_navigation_is_sent_to_the_form_with_its_path_and_query() {
        let response = redirect_for(&get(&[("accept", BROWSER)])).expect("a redirect");
        assert_eq!(response.status(), 302);
        assert_eq!(
            response.headers()["location"],
            "/.gatehouse/signin?rd=%2Fdashboard%3Fx%3D1%26y%3Da%2520b"
        );
        assert_eq!(response.headers()["cache-control"], "no-store");
        let navigate = get(&[("accept", BROWSER), ("sec-fetch-mode", "navigate")]);
        assert!(redirect_for(&navigate).is_some());
    }

    #[test]
    fn scripts_api_clients_and_other_methods_are_not_redirected() {
        for headers in [
            &[("accept", "application/json")][..],
            &[("accept", "*/*")],
            &[],
            &[("accept", "text/html;q=0")],
            &[("accept", BROWSER), ("sec-fetch-mode", "cors")],
            &[("accept", BROWSER), ("x-requested-with", "XMLHttpRequest")],
            &[("accept", BROWSER), ("authorization", "Bearer x")],
        ] {
            assert!(redirect_for(&get(headers)).is_none(), "{headers:?}");
        }
        let post = Request::post("/x")
            .header("accept", BROWSER)
            .body(())
            .unwrap();
        assert!(redirect_for(&post).is_none());
    }

    #[test]
    fn only_form_bodies_are_forms() {
        let form = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
            is_form(&headers)
        };
        assert!(form("application/x-www-form-urlencoded"));
        assert!(form("Application/X-WWW-Form-Urlencoded; charset=UTF-8"));
        assert!(!form("application/json"));
        assert!(!form("multipart/form-data; boundary=x"));
        assert!(!is_form(&HeaderMap::new()));
    }

    #[test]
    fn form_fields_are_decoded_and_the_first_one_counts() {
        let body = b"email=a%40b.test&password=p+w%26&rd=%2Fx%3Fy%3D1&email=second";
        assert_eq!(field(body, "email").as_deref(), Some("a@b.test"));
        assert_eq!(field(body, "password").as_deref(), Some("p w&"));
        assert_eq!(field(body, "rd").as_deref(), Some("/x?y=1"));
        assert_eq!(field(body, "csrf"), None);
    }
}
