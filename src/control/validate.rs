//! Field rules for registration (the README's "Accounts and tokens"), one function per field.

use crate::error::{Invalid, ProxyError};
use crate::store::identifier;

/// 3–32 characters of `[A-Za-z0-9_.-]`.
pub(crate) fn username(value: &str) -> Result<(), ProxyError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if (3..=32).contains(&value.len()) && value.chars().all(allowed) {
        Ok(())
    } else {
        Err(ProxyError::InvalidField(
            Invalid::Username,
            "username must be 3 to 32 characters of letters, digits, '_', '.' or '-'".into(),
        ))
    }
}

/// A plausible address once NFKC-normalised (as it is stored): at most 254 bytes, one `@`
/// with text before it, and a domain of non-empty dot-separated labels (at least two). No
/// control, invisible, bidi-control, private-use or unassigned characters and no spaces, as
/// typed or once normalised: those would let two addresses look alike.
pub(crate) fn email(value: &str) -> Result<(), ProxyError> {
    if let Some(bad) = identifier::refused_char(value) {
        return Err(ProxyError::InvalidField(
            Invalid::Email,
            format!(
                "email must not contain spaces or control, invisible or bidirectional-control \
                 characters (found U+{:04X})",
                u32::from(bad)
            ),
        ));
    }
    let value = &identifier::normalize(value);
    let plausible = value.len() <= 254
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
        && match value.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && domain.split('.').all(|label| !label.is_empty())
            }
            None => false,
        };
    if plausible {
        Ok(())
    } else {
        Err(ProxyError::InvalidField(
            Invalid::Email,
            "email must be an address like name@example.com (at most 254 bytes)".into(),
        ))
    }
}

/// 8–1024 bytes of any text.
pub(crate) fn password(value: &str) -> Result<(), ProxyError> {
    if (8..=1024).contains(&value.len()) {
        Ok(())
    } else {
        Err(ProxyError::InvalidField(
            Invalid::Password,
            "password must be 8 to 1024 bytes long".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_the_character_set_and_length() {
        for good in ["abc", "a.b-c_d", &"x".repeat(32), "Alice99"] {
            assert!(username(good).is_ok(), "{good}");
        }
        for bad in ["ab", &"x".repeat(33), "al ice", "ålice", "a/b", "a@b", ""] {
            assert!(username(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails_must_be_plausible() {
        for good in ["a@b.co", "first.last+tag@mail.example.org", "ü@exämple.de"] {
            assert!(email(good).is_ok(), "{good}");
        }
        let long = format!("{}@example.com", "a".repeat(243));
        for bad in [
            "plain",
            "@example.com",
            "a@localhost",
            "a@@b.com",
            "a@b@c.com",
            "a@.com",
            "a@b.",
            "a@b..com",
            "a b@c.com",
            "a@b.com\n",
            long.as_str(),
        ] {
            assert!(email(bad).is_err(), "{bad:?}");
        }
        assert!(email(&format!("{}@example.com", "a".repeat(242))).is_ok());
    }

    #[test]
    fn emails_with_invisible_or_bidi_characters_name_the_field_and_the_character() {
        for (value, code) in [
            ("ka\u{200B}te@example.com", "U+200B"),
            ("\u{FEFF}kate@example.com", "U+FEFF"),
            ("ka\u{00AD}te@example.com", "U+00AD"),
            ("ka\u{202E}te@example.com", "U+202E"),
        ] {
            let error = email(value).unwrap_err();
            assert_eq!(error.code(), "invalid_email", "{value:?}");
            assert!(error.to_string().contains(code), "{error}");
        }
    }

    #[test]
    fn emails_are_judged_as_normalised() {
        assert!(
            email("\u{212A}ate@example.com").is_ok(),
            "becomes Kate@example.com"
        );
        assert!(
            email("a\u{FF20}b@example.com").is_err(),
            "a full-width @ makes two"
        );
        // One 3-byte ligature becomes 18 Arabic letters.
        let ligatures = format!("{}@example.com", "\u{FDFA}".repeat(10));
        assert!(
            ligatures.len() <= 254 && email(&ligatures).is_err(),
            "grows past 254"
        );
    }

    #[test]
    fn passwords_are_counted_in_bytes() {
        assert!(password("12345678").is_ok());
        assert!(password("1234567").is_err());
        assert!(password("éééé").is_ok(), "4 characters but 8 bytes");
        assert!(password("ééé1").is_err(), "4 characters but 7 bytes");
        assert!(password(&"p".repeat(1024)).is_ok());
        assert!(password(&"p".repeat(1025)).is_err());
    }
}
