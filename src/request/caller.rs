//! Who an authenticated caller is, as a plain value the forwarder can pass on without knowing
//! anything about tokens or accounts.

use http::HeaderValue;

/// The identity headers a backend receives for an authenticated caller, rendered once when the
/// caller's credential was verified.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `X-Forwarded-User` (the username).
    pub user: HeaderValue,
    /// `X-Forwarded-Email`.
    pub email: HeaderValue,
}

impl Caller {
    /// Renders `username` and `email` as header values; `None` if either cannot be one.
    pub fn new(username: &str, email: &str) -> Option<Self> {
        // Emails may carry UTF-8, which header values allow as opaque bytes (obs-text).
        Some(Caller {
            user: HeaderValue::from_bytes(username.as_bytes()).ok()?,
            email: HeaderValue::from_bytes(email.as_bytes()).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_with_a_line_break_is_no_caller() {
        assert!(Caller::new("alice\r\nx-admin: 1", "a@example.com").is_none());
        let caller = Caller::new("alice", "ä@example.com").unwrap();
        assert_eq!(caller.user, "alice");
        assert_eq!(caller.email.as_bytes(), "ä@example.com".as_bytes());
    }
}
