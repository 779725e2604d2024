//! Headers that name a user, which no client may pass to a backend: Gatehouse's own
//! (`X-Forwarded-User`, `-Email`) and those other auth proxies set (`Remote-User`,
//! `X-Auth-Request-*`, …), so a backend written for one of them cannot be handed an identity by
//! a client. Each is also refused in its `_` spellings, which CGI-style servers fold onto the
//! `-` one (`Remote_User` becomes `HTTP_REMOTE_USER` like `Remote-User`).

use http::header::{HeaderMap, HeaderName};

use crate::config::IdentityHeader;

/// The configured names and prefixes, lowercased, with `_` spelled `-`; built once per snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityHeaders {
    exact: Box<[String]>,
    prefixes: Box<[String]>,
}

impl IdentityHeaders {
    /// The matcher for `names` (`prefix-*` entries match every name starting with `prefix-`).
    pub fn new(names: &[IdentityHeader]) -> Self {
        let folded = |name: &str| name.replace('_', "-");
        let (prefixes, exact): (Vec<&IdentityHeader>, Vec<&IdentityHeader>) =
            names.iter().partition(|name| name.0.ends_with('*'));
        IdentityHeaders {
            exact: exact.iter().map(|name| folded(&name.0)).collect(),
            prefixes: prefixes
                .iter()
                .map(|name| folded(name.0.trim_end_matches('*')))
                .collect(),
        }
    }

    /// Whether `name`, read with `_` as `-`, is one of the identity headers.
    pub fn matches(&self, name: &HeaderName) -> bool {
        let name = name.as_str();
        if name.contains('_') {
            return self.matches_folded(&name.replace('_', "-"));
        }
        self.matches_folded(name)
    }

    fn matches_folded(&self, name: &str) -> bool {
        self.exact.iter().any(|exact| exact == name)
            || self
                .prefixes
                .iter()
                .any(|prefix| name.starts_with(prefix.as_str()))
    }

    /// Removes every identity header from `headers`. One pass finds them; most requests have
    /// none, so nothing is allocated then.
    pub fn strip(&self, headers: &mut HeaderMap) {
        let found: Vec<HeaderName> = headers
            .keys()
            .filter(|name| self.matches(name))
            .cloned()
            .collect();
        for name in found {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(names: &[&str]) -> IdentityHeaders {
        let names: Vec<IdentityHeader> = names
            .iter()
            .map(|n| IdentityHeader(n.to_string()))
            .collect();
        IdentityHeaders::new(&names)
    }

    fn name(text: &str) -> HeaderName {
        HeaderName::from_bytes(text.as_bytes()).unwrap()
    }

    #[test]
    fn names_match_in_any_case_and_underscore_spelling() {
        let identity = headers(&["remote-user", "x-gatehouse-*"]);
        for spoofed in [
            "Remote-User",
            "remote_user",
            "REMOTE_USER",
            "x-gatehouse-role",
            "X_Gatehouse_Anything",
        ] {
            assert!(identity.matches(&name(spoofed)), "{spoofed}");
        }
        for kept in ["remote-address", "x-gatehouse", "user", "x-remote-user"] {
            assert!(!identity.matches(&name(kept)), "{kept}");
        }
    }

    #[test]
    fn strip_removes_every_value_of_every_match() {
        let identity = headers(&["remote-user", "x-auth-request-*"]);
        let mut map = HeaderMap::new();
        map.append("remote-user", "a".parse().unwrap());
        map.append("remote-user", "b".parse().unwrap());
        map.append("x-auth-request-email", "c".parse().unwrap());
        map.append("accept", "*/*".parse().unwrap());
        identity.strip(&mut map);
        assert_eq!(map.len(), 1);
        assert!(map.contains_key("accept"));
    }
}
