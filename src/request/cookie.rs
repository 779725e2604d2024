//! The `Cookie` request header (RFC 6265 §4.2: `name=value` pairs separated by `; `, over
//! HTTP/2 possibly split into several `Cookie` fields): find one cookie's value, or take one
//! cookie out before the request goes on. Names match exactly (case-sensitive), so a cookie
//! whose name merely starts with the one sought is never taken for it.

use http::header::{self, HeaderMap, HeaderValue};

/// Every `name=value` pair of the request's `Cookie` fields, in order, as bytes.
fn pairs(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b';'))
        .map(<[u8]>::trim_ascii)
        .filter(|pair| !pair.is_empty())
}

/// The name of a pair (`a` of `a=1`; a pair without `=` is all name).
fn name_of(pair: &[u8]) -> &[u8] {
    let end = pair.iter().position(|&b| b == b'=').unwrap_or(pair.len());
    pair[..end].trim_ascii()
}

/// The value of the first cookie called `name`, without surrounding double quotes; `None` when
/// there is none, or it is not ASCII.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let pair = pairs(headers).find(|pair| name_of(pair) == name.as_bytes())?;
    let equals = pair.iter().position(|&b| b == b'=')?;
    let value = pair[equals + 1..].trim_ascii();
    let value = value
        .strip_prefix(b"\"")
        .and_then(|v| v.strip_suffix(b"\""))
        .unwrap_or(value);
    std::str::from_utf8(value).ok().filter(|v| v.is_ascii())
}

/// Removes every cookie called `name`. The others stay, in order, joined into one `Cookie`
/// field (what an HTTP/1.1 backend expects, RFC 9113 §8.2.3); with none left the field goes.
/// Headers without such a cookie are left exactly as they were.
pub fn remove_cookie(headers: &mut HeaderMap, name: &str) {
    if !pairs(headers).any(|pair| name_of(pair) == name.as_bytes()) {
        return;
    }
    let mut kept = Vec::new();
    for pair in pairs(headers).filter(|pair| name_of(pair) != name.as_bytes()) {
        if !kept.is_empty() {
            kept.extend_from_slice(b"; ");
        }
        kept.extend_from_slice(pair);
    }
    headers.remove(header::COOKIE);
    if !kept.is_empty() {
        // Built from parts of valid values joined by `; `, so it is valid too.
        if let Ok(value) = HeaderValue::from_bytes(&kept) {
            headers.insert(header::COOKIE, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookies(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::COOKIE, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn a_cookie_is_found_by_its_exact_name_in_any_field() {
        let headers = with_cookies(&[
            "a=1; gatehouse_session_x=2",
            "gatehouse_session=\"tok\"; b=3",
        ]);
        assert_eq!(cookie(&headers, "gatehouse_session"), Some("tok"));
        assert_eq!(cookie(&headers, "gatehouse_session_x"), Some("2"));
        assert_eq!(cookie(&headers, "b"), Some("3"));
        assert_eq!(cookie(&headers, "Gatehouse_session"), None);
        assert_eq!(cookie(&headers, "gatehouse"), None);
        assert_eq!(cookie(&HeaderMap::new(), "a"), None);
    }

    #[test]
    fn removing_a_cookie_keeps_the_others_in_order_in_one_field() {
        let mut headers = with_cookies(&[
            "a=1; gatehouse_session=tok; gatehouse_sessionx=2",
            "gatehouse_session=again;b=3",
        ]);
        remove_cookie(&mut headers, "gatehouse_session");
        let all: Vec<_> = headers.get_all(header::COOKIE).iter().collect();
        assert_eq!(all, ["a=1; gatehouse_sessionx=2; b=3"]);
    }

    #[test]
    fn removing_the_only_cookie_drops_the_field() {
        let mut headers = with_cookies(&["gatehouse_session=tok"]);
        remove_cookie(&mut headers, "gatehouse_session");
        assert!(!headers.contains_key(header::COOKIE));
    }

    #[test]
    fn fields_without_the_cookie_are_untouched() {
        let mut headers = with_cookies(&["a=1;b=2", "c=3"]);
        remove_cookie(&mut headers, "gatehouse_session");
        let all: Vec<_> = headers.get_all(header::COOKIE).iter().collect();
        assert_eq!(all, ["a=1;b=2", "c=3"]);
    }
}
