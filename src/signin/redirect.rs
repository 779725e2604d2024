//! Where a sign-in may lead (`rd`): never off to another site. Pure, so every vector is a unit
//! test.
//!
//! Accepted, anything else becomes `/`:
//! - a path on this host: exactly one leading `/` (not `//`, not `/\`);
//! - an absolute `http://` or `https://` URL whose host a service claims and that is the
//!   session's `cookie_domain` or under it (only when one is set): no userinfo, a port of digits.
//!
//! Refused everywhere: a backslash, a control character or a space, raw or after one more
//! percent-decoding (`/%2F/evil` and `/%5Cevil` are read as `//evil` and `/\evil` by some
//! servers and browsers), and an encoded `@`, `/`, `\` or `%` in an authority. Bytes beyond
//! ASCII are percent-encoded in the result, so it is always a plain `Location` value.

/// The place to send the browser for `rd`: `rd` itself (bytes beyond ASCII percent-encoded)
/// when it is a safe target, else `/`. `claimed` says whether a service claims a host.
pub(super) fn safe(
    rd: &str,
    claimed: impl Fn(&str) -> bool,
    cookie_domain: Option<&str>,
) -> String {
    check(rd, claimed, cookie_domain).unwrap_or_else(|| "/".to_string())
}

/// The `scheme://host[:port]` of a target [`safe`] returned, if it is absolute.
pub(super) fn origin_of(target: &str) -> Option<&str> {
    let rest = target
        .strip_prefix("https://")
        .or_else(|| target.strip_prefix("http://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&target[..target.len() - rest.len() + end])
}

fn check(rd: &str, claimed: impl Fn(&str) -> bool, cookie_domain: Option<&str>) -> Option<String> {
    if !plain(rd.as_bytes()) || !plain(&percent_decode(rd.as_bytes())) {
        return None;
    }
    if rd.starts_with('/') {
        return is_local_path(rd).then(|| encode_beyond_ascii(rd));
    }
    let domain = cookie_domain?;
    let (scheme, rest) = split_scheme(rd)?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    // Userinfo (`a@evil`), an encoded anything, an IPv6 literal: none is a host we claim.
    if authority
        .bytes()
        .any(|b| matches!(b, b'@' | b'%' | b'[' | b']'))
    {
        return None;
    }
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    if let Some(port) = port {
        let digits =
            !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
        if !digits || !port.parse::<u16>().is_ok_and(|p| p > 0) {
            return None;
        }
    }
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let dns = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    let under = host == domain || host.ends_with(&format!(".{domain}"));
    if !dns || !under || !claimed(&host) {
        return None;
    }
    // After the authority comes a path (one leading `/`, as above), a query or nothing.
    let tail = match tail.as_bytes().first() {
        None => "/".to_string(),
        Some(b'/') if is_local_path(tail) => tail.to_string(),
        Some(b'?') => format!("/{tail}"),
        _ => return None,
    };
    let port = port.map_or(String::new(), |p| format!(":{p}"));
    Some(encode_beyond_ascii(&format!(
        "{scheme}://{host}{port}{tail}"
    )))
}

/// No control character (C0, DEL), no space and no backslash.
fn plain(bytes: &[u8]) -> bool {
    !bytes
        .iter()
        .any(|&b| b.is_ascii_control() || b == b' ' || b == b'\\')
}

/// A path of this host: one `/`, then not a second `/` or a `\` (`plain` refused the latter).
fn is_local_path(path: &str) -> bool {
    let decoded = percent_decode(path.as_bytes());
    path.starts_with('/')
        && !path.starts_with("//")
        && !decoded.starts_with(b"//")
        && !decoded.starts_with(b"/\\")
}

/// `("https", rest)` for `https://rest` (`http` likewise, any case); `None` for other schemes
/// and for `https:rest` or `https:/rest`, which browsers may still read as that host.
fn split_scheme(rd: &str) -> Option<(&'static str, &str)> {
    let (scheme, rest) = rd.split_once("://")?;
    let scheme = if scheme.eq_ignore_ascii_case("https") {
        "https"
    } else if scheme.eq_ignore_ascii_case("http") {
        "http"
    } else {
        return None;
    };
    (!rest.starts_with('/')).then_some((scheme, rest))
}

/// `%XX` decoded once; a `%` not followed by two hex digits stays as it is.
fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(high << 4 | low);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// `text` with every byte beyond ASCII percent-encoded.
fn encode_beyond_ascii(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii() {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLAIMED: [&str; 3] = [
        "service1.my-company.com",
        "service2.my-company.com",
        "other.test",
    ];

    fn with_domain(rd: &str) -> String {
        safe(rd, |h| CLAIMED.contains(&h), Some("my-company.com"))
    }

    fn without_domain(rd: &str) -> String {
        safe(rd, |h| CLAIMED.contains(&h), None)
    }

    #[test]
    fn paths_on_this_host_are_kept() {
        for rd in [
            "/",
            "/dashboard?x=1",
            "/a/b/c?next=//evil.com&y=\\",
            "/a//b",
            "/search?q=%2F%2Fx",
            "/%E2%9C%93",
            "/x#frag",
        ] {
            // A backslash later on is still refused (see below); the rest pass untouched.
            let expected = if rd.contains('\\') { "/" } else { rd };
            assert_eq!(with_domain(rd), expected, "{rd}");
            assert_eq!(without_domain(rd), expected, "{rd}");
        }
        assert_eq!(with_domain("/café"), "/caf%C3%A9");
    }

    #[test]
    fn every_open_redirect_vector_lands_on_the_root() {
        let vectors = [
            "",
            "//evil.com",
            "///evil.com",
            "/\\evil.com",
            "\\\\evil.com",
            "\\/evil.com",
            "/\\/evil.com",
            "/%2F/evil.com",
            "/%2f/evil.com",
            "%2F%2Fevil.com",
            "/%5Cevil.com",
            "/%5cevil.com",
            "/%09/evil.com",
            "/\t/evil.com",
            "/\r\n/evil.com",
            "/ /evil.com",
            "/x%0D%0ASet-Cookie:a=b",
            "/x\0",
            "https://evil.com",
            "http://evil.com/",
            "HTTPS://EVIL.COM",
            "https:evil.com",
            "https:/evil.com",
            "https:///evil.com",
            "https:\\\\evil.com",
            "//service1.my-company.com",
            "javascript:alert(1)",
            "JavaScript:alert(document.cookie)",
            "data:text/html,<script>alert(1)</script>",
            "vbscript:x",
            "ftp://service1.my-company.com/",
            "evil.com",
            "service1.my-company.com/x",
            "https://my-company.com.evil.com",
            "https://my-company.com.evil.com/",
            "https://service1.my-company.com.evil.com/",
            "https://evilmy-company.com",
            "https://evil-my-company.com/",
            "https://my-company.com@evil.com",
            "https://service1.my-company.com@evil.com/",
            "https://service1.my-company.com:443@evil.com/",
            "https://user:pass@service1.my-company.com/",
            "https://evil.com\\@service1.my-company.com/",
            "https://evil.com#@service1.my-company.com/",
            "https://evil.com?@service1.my-company.com/",
            "https://service1.my-company.com%40evil.com/",
            "https://service1.my-company.com%2F@evil.com/",
            "https://service1.my-company.com%2eevil.com/",
            "https%3A%2F%2Fevil.com",
            "https://service1.my-company.com//evil.com",
            "https://service1.my-company.com/%2F/evil.com",
            "https://service1.my-company.com:/",
            "https://service1.my-company.com:99999/",
            "https://service1.my-company.com:0/",
            "https://service1.my-company.com:+80/",
            "https://service1.my-company.com:80x/",
            "https://unclaimed.my-company.com/",
            "https://my-company.com/",
            "https://other.test/",
            "https://[::1]/",
            "https://127.0.0.1/",
            "https://service1.my-company.com\t/",
            "https://ѕervice1.my-company.com/",
        ];
        for rd in vectors {
            assert_eq!(with_domain(rd), "/", "{rd:?}");
            assert_eq!(without_domain(rd), "/", "{rd:?}");
        }
    }

    #[test]
    fn claimed_hosts_under_the_cookie_domain_are_kept_as_absolute_urls() {
        for (rd, expected) in [
            (
                "https://service2.my-company.com/x?y=1",
                "https://service2.my-company.com/x?y=1",
            ),
            (
                "http://service2.my-company.com:8080/",
                "http://service2.my-company.com:8080/",
            ),
            (
                "HTTPS://Service2.MY-COMPANY.com.",
                "https://service2.my-company.com/",
            ),
            (
                "https://service1.my-company.com?a=b",
                "https://service1.my-company.com/?a=b",
            ),
        ] {
            assert_eq!(with_domain(rd), expected, "{rd}");
            // Without a cookie domain, no absolute target at all.
            assert_eq!(without_domain(rd), "/", "{rd}");
        }
    }

    #[test]
    fn the_origin_of_an_absolute_target_is_its_scheme_host_and_port() {
        assert_eq!(
            origin_of("https://service2.my-company.com:8443/x?y"),
            Some("https://service2.my-company.com:8443")
        );
        assert_eq!(
            origin_of("http://service2.my-company.com?x"),
            Some("http://service2.my-company.com")
        );
        assert_eq!(origin_of("/x"), None);
    }

    #[test]
    fn percent_decoding_is_once_and_leaves_stray_percents() {
        assert_eq!(percent_decode(b"%2F%2f%5C"), b"//\\");
        assert_eq!(percent_decode(b"%252F"), b"%2F");
        assert_eq!(percent_decode(b"100%"), b"100%");
        assert_eq!(percent_decode(b"%4"), b"%4");
        assert_eq!(percent_decode(b"%zz"), b"%zz");
    }
}
