//! The `Set-Cookie` values of the sign-in: the session cookie (a signed access token) and the
//! form's CSRF cookie.

use http::HeaderValue;

/// Where the session cookie goes: `Secure` when the browser reached Gatehouse over HTTPS (or a
/// trusted proxy says it did), `Domain` when the request's host is the configured domain or
/// under it (otherwise the browser would refuse the cookie; it then stays host-only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Scope {
    pub secure: bool,
    pub domain: Option<String>,
}

impl Scope {
    /// The scope for a request to `host` (as sent: any case, maybe a port) over `scheme`.
    pub fn new(scheme: &str, host: &str, cookie_domain: Option<&str>) -> Self {
        let host = strip_port(host);
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        let domain = cookie_domain
            .filter(|d| host == *d || host.ends_with(&format!(".{d}")))
            .map(str::to_string);
        Scope {
            secure: scheme == "https",
            domain,
        }
    }
}

fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

/// `name=token` for `max_age` seconds (0: delete it), HttpOnly, SameSite=Lax, Path=/.
pub(super) fn session(name: &str, token: &str, max_age: u64, scope: &Scope) -> HeaderValue {
    let mut value = format!("{name}={token}; Max-Age={max_age}; Path=/");
    if let Some(domain) = &scope.domain {
        value.push_str(&format!("; Domain={domain}"));
    }
    if scope.secure {
        value.push_str("; Secure");
    }
    value.push_str("; HttpOnly; SameSite=Lax");
    header_value(value)
}

/// The CSRF cookie: this host only, the sign-in paths only, never sent cross-site.
pub(super) fn csrf(token: &str, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    header_value(format!(
        "{}={token}; Path=/.gatehouse/{secure}; HttpOnly; SameSite=Strict",
        super::csrf::COOKIE
    ))
}

fn header_value(value: String) -> HeaderValue {
    // Names, domains and tokens are checked token characters; an impossible failure sets no
    // cookie rather than a wrong one.
    HeaderValue::try_from(value)
        .unwrap_or(HeaderValue::from_static("gatehouse_invalid=; Max-Age=0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_has_every_attribute() {
        let plain = Scope::new("http", "s1.test:8080", None);
        assert_eq!(
            session("gatehouse_session", "t.o.k", 43200, &plain),
            "gatehouse_session=t.o.k; Max-Age=43200; Path=/; HttpOnly; SameSite=Lax"
        );
        let scoped = Scope::new(
            "https",
            "Service1.My-Company.com:8443",
            Some("my-company.com"),
        );
        assert_eq!(
            session("sid", "", 0, &scoped),
            "sid=; Max-Age=0; Path=/; Domain=my-company.com; Secure; HttpOnly; SameSite=Lax"
        );
    }

    #[test]
    fn the_domain_is_set_only_for_hosts_under_it() {
        let domain = Some("my-company.com");
        for (host, expected) in [
            ("my-company.com", true),
            ("a.my-company.com", true),
            ("a.b.my-company.com:80", true),
            ("a.my-company.com.", true),
            ("evilmy-company.com", false),
            ("my-company.com.evil.test", false),
            ("127.0.0.1:8080", false),
        ] {
            let scope = Scope::new("http", host, domain);
            assert_eq!(scope.domain.is_some(), expected, "{host}");
        }
        assert_eq!(Scope::new("http", "a.my-company.com", None).domain, None);
    }

    #[test]
    fn the_csrf_cookie_is_strict_and_scoped_to_the_sign_in_paths() {
        assert_eq!(
            csrf("abc", false),
            "gatehouse_csrf=abc; Path=/.gatehouse/; HttpOnly; SameSite=Strict"
        );
        assert_eq!(
            csrf("abc", true),
            "gatehouse_csrf=abc; Path=/.gatehouse/; Secure; HttpOnly; SameSite=Strict"
        );
    }
}
