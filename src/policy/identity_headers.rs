//! Headers that name a user, which no client may pass to a backend: Gatehouse's own
//! (`X-Forwarded-User`, `-Email`) and those other auth proxies set (`Remote-User`,
//! `X-Auth-Request-*`, …), so a backend written for one of them cannot be handed an identity by
//! a client. Each is also refused in its `_` spellings, which CGI-style servers fold onto the
//! `-` one (`Remote_User` becomes `HTTP_REMOTE_USER` like `Remote-User`).

use http::header::HeaderName;

use crate::config::IdentityHeader;

/// The configured names and prefixes, lowercased, with `_` spelled `-`; built once per snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityHeaders {
    exact: Box<[String]>,
    prefixes: Box<[String]>,
    /// Whether some name or prefix starts with this byte (`_` counted as `-`): every request
    /// header is asked about, and most are ruled out by this one lookup instead of a
    /// comparison with each configured name.
    first: [bool; 256],
}

impl IdentityHeaders {
    /// The matcher for `names` (`prefix-*` entries match every name starting with `prefix-`).
    pub fn new(names: &[IdentityHeader]) -> Self {
        let folded = |name: &str| name.replace('_', "-");
        let (prefixes, exact): (Vec<&IdentityHeader>, Vec<&IdentityHeader>) =
            names.iter().partition(|name| name.0.ends_with('*'));
        let exact: Box<[String]> = exact.iter().map(|name| folded(&name.0)).collect();
        let prefixes: Box<[String]> = prefixes
            .iter()
            .map(|name| folded(name.0.trim_end_matches('*')))
            .collect();
        let mut first = [false; 256];
        for name in exact.iter().chain(prefixes.iter()) {
            match name.as_bytes().first() {
                Some(&byte) => first[usize::from(byte)] = true,
                // A bare `*` names every header.
                None => first = [true; 256],
            }
        }
        IdentityHeaders {
            exact,
            prefixes,
            first,
        }
    }

    /// Whether `name`, read with `_` as `-`, is one of the identity headers.
    pub fn matches(&self, name: &HeaderName) -> bool {
        let name = name.as_str();
        let first = match name.as_bytes().first() {
            Some(b'_') => b'-',
            Some(&byte) => byte,
            None => return false,
        };
        if !self.first[usize::from(first)] {
            return false;
        }
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
    fn the_first_byte_filter_keeps_every_match() {
        // A name whose first byte is `_` folds to `-`; a bare `*` matches everything.
        let identity = headers(&["-remote-user", "x-gatehouse-*"]);
        assert!(identity.matches(&name("_Remote_User")));
        assert!(identity.matches(&name("-remote-user")));
        assert!(!identity.matches(&name("remote-user")));
        assert!(!identity.matches(&name("accept")));
        let everything = headers(&["*"]);
        for any in ["accept", "cookie", "_x", "x-gatehouse-role"] {
            assert!(everything.matches(&name(any)), "{any}");
        }
    }
}
