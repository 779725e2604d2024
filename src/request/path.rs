//! The normalised request path that access rules are decided on and that is forwarded, so the
//! rule and the backend always see the same path (RFC 3986 §6.2.2).
//!
//! - Percent-encoded unreserved characters are decoded (`%61dmin` is `admin`, `%2e` is `.`),
//!   and the hex digits of the remaining encodings upper-cased.
//! - Repeated slashes become one (as nginx's `merge_slashes` does), then `.` and `..`
//!   segments are removed (§5.2.4; `..` never climbs above the root).
//! - Refused, because servers disagree on what they mean: an encoded slash or backslash
//!   (`%2F`, `%5C`), a backslash, NUL (`%00`), a malformed `%` escape, and a dot segment with
//!   a path parameter (`..;`, which servlet containers read as `..`).

use std::borrow::Cow;

/// Why a path cannot be normalised safely (answered 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// `%2F` or `%5C`: one server splits segments on it, another does not.
    #[error("the path holds an encoded slash or backslash")]
    EncodedSeparator,
    /// A literal `\`, which some servers read as `/`.
    #[error("the path holds a backslash")]
    Backslash,
    /// NUL, raw or encoded.
    #[error("the path holds a NUL byte")]
    Nul,
    /// `%` not followed by two hex digits.
    #[error("the path holds a malformed percent escape")]
    BadEscape,
    /// `.;…` or `..;…`.
    #[error("the path holds a dot segment with a parameter")]
    DotWithParameter,
}

/// The normalised form of the absolute path `path` (no query), borrowed when it already is.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    if is_plain(path) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path)?;
    let mut segments: Vec<&str> = Vec::new();
    let body = decoded.strip_prefix('/').unwrap_or(&decoded);
    let mut pieces = body.split('/').peekable();
    let mut trailing_slash = false;
    while let Some(segment) = pieces.next() {
        let last = pieces.peek().is_none();
        let before_parameter = segment.split(';').next().unwrap_or("");
        if segment.contains(';') && matches!(before_parameter, "." | "..") {
            return Err(PathError::DotWithParameter);
        }
        match segment {
            "" => trailing_slash = last && !segments.is_empty(),
            "." => trailing_slash = last,
            ".." => {
                segments.pop();
                trailing_slash = last;
            }
            _ => {
                segments.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// A path with nothing to change: no escapes, backslashes, NULs, empty or dot segments.
fn is_plain(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.first() == Some(&b'/')
        && !bytes.iter().any(|&b| matches!(b, b'%' | b'\\' | 0))
        && !path.contains("//")
        && !path.contains("/.")
}

/// Decodes escapes of unreserved characters, upper-cases the rest, refuses the ambiguous.
fn decode_unreserved(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.contains(&0) {
        return Err(PathError::Nul);
    }
    if bytes.contains(&b'\\') {
        return Err(PathError::Backslash);
    }
    if !bytes.contains(&b'%') {
        return Ok(Cow::Borrowed(path));
    }
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let hex = rest.get(at + 1..at + 3).ok_or(PathError::BadEscape)?;
        let byte = u8::from_str_radix(hex, 16).map_err(|_| PathError::BadEscape)?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PathError::BadEscape);
        }
        match byte {
            0 => return Err(PathError::Nul),
            b'/' | b'\\' => return Err(PathError::EncodedSeparator),
            b if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') => {
                out.push(char::from(b));
            }
            _ => {
                out.push('%');
                out.push_str(&hex.to_ascii_uppercase());
            }
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(path: &str) -> Result<String, PathError> {
        normalize_path(path).map(Cow::into_owned)
    }

    #[test]
    fn plain_paths_are_borrowed_unchanged() {
        for path in ["/", "/admin", "/admin/users/", "/a.b/c~d", "/a;b=c"] {
            assert!(matches!(normalize_path(path), Ok(Cow::Borrowed(p)) if p == path));
        }
    }

    #[test]
    fn dot_segments_and_repeated_slashes_are_removed() {
        assert_eq!(norm("/public/../admin").unwrap(), "/admin");
        assert_eq!(norm("/./admin/./x").unwrap(), "/admin/x");
        assert_eq!(norm("/../../admin").unwrap(), "/admin");
        assert_eq!(norm("//admin//x").unwrap(), "/admin/x");
        assert_eq!(norm("/admin/x/..").unwrap(), "/admin/");
        assert_eq!(norm("/admin/.").unwrap(), "/admin/");
        assert_eq!(norm("/..").unwrap(), "/");
        assert_eq!(norm("/a/b/../../..").unwrap(), "/");
        assert_eq!(norm("/x//").unwrap(), "/x/");
        assert_eq!(norm("/.hidden/file").unwrap(), "/.hidden/file");
    }

    #[test]
    fn encoded_dots_and_unreserved_letters_are_decoded() {
        assert_eq!(norm("/public/%2e%2e/admin").unwrap(), "/admin");
        assert_eq!(norm("/public/%2E./admin").unwrap(), "/admin");
        assert_eq!(norm("/%61dmin").unwrap(), "/admin");
        assert_eq!(norm("/a%7eb%2Dc").unwrap(), "/a~b-c");
        assert_eq!(
            norm("/q%3fx%20y").unwrap(),
            "/q%3Fx%20y",
            "reserved stay encoded"
        );
        assert_eq!(norm("/caf%c3%a9").unwrap(), "/caf%C3%A9");
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        assert_eq!(
            norm("/public%2F..%2Fadmin"),
            Err(PathError::EncodedSeparator)
        );
        assert_eq!(norm("/a%5cb"), Err(PathError::EncodedSeparator));
        assert_eq!(norm("/public\\..\\admin"), Err(PathError::Backslash));
        assert_eq!(norm("/a%00b"), Err(PathError::Nul));
        assert_eq!(norm("/a\0b"), Err(PathError::Nul));
        assert_eq!(norm("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(norm("/a%2"), Err(PathError::BadEscape));
        assert_eq!(norm("/a%+1"), Err(PathError::BadEscape));
        assert_eq!(norm("/public/..;/admin"), Err(PathError::DotWithParameter));
        assert_eq!(norm("/public/.;x/admin"), Err(PathError::DotWithParameter));
        assert_eq!(
            norm("/public/%2e%2e;/admin"),
            Err(PathError::DotWithParameter)
        );
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for path in [
            "/public/%2e%2e/admin",
            "//a/./b/../c/",
            "/%61%62%2f",
            "/q%3fx",
        ] {
            if let Ok(once) = norm(path) {
                assert_eq!(norm(&once).unwrap(), once, "{path}");
            }
        }
    }
}
