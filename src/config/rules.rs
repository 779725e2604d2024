//! One named function per validation rule; the value types and `load` call them.
//!
//! Each returns the message a user sees after `PATH:LINE:COLUMN:`, so it names the fix.

use std::time::Duration;

/// Largest weight a backend may have; keeps the weighted schedule small (see `balancer`).
pub(crate) const MAX_WEIGHT: u32 = 100;

/// Parses `250ms`, `5s`, `15m`, `1h`, `90d`: a whole number followed by a unit, greater than
/// zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || {
        format!(
            "invalid duration `{text}`: write a whole number and a unit: 250ms, 5s, 15m, 1h or 90d"
        )
    };
    let (amount, unit) = amount_and_unit(text).ok_or_else(bad)?;
    let duration = match unit {
        "ms" => Duration::from_millis(amount),
        "s" => Duration::from_secs(amount),
        "m" => Duration::from_secs(amount.saturating_mul(60)),
        "h" => Duration::from_secs(amount.saturating_mul(3600)),
        "d" => Duration::from_secs(amount.saturating_mul(86_400)),
        _ => return Err(bad()),
    };
    if duration.is_zero() {
        return Err(format!(
            "invalid duration `{text}`: must be greater than zero"
        ));
    }
    Ok(duration)
}

/// `15m` → `(15, "m")`: the leading whole number and the rest; `None` without digits.
fn amount_and_unit(text: &str) -> Option<(u64, &str)> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    Some((digits.parse().ok()?, unit))
}

/// Parses `512`, `64KiB`, `10MiB`, `1GiB` (also `KB`/`MB`/`GB` as the same binary units), at
/// least one byte.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let bad = || {
        format!("invalid size `{text}`: write a whole number and a unit: 512, 64KiB, 10MiB or 1GiB")
    };
    let (amount, unit) = amount_and_unit(text).ok_or_else(bad)?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "KB" | "K" => 1 << 10,
        "MiB" | "MB" | "M" => 1 << 20,
        "GiB" | "GB" | "G" => 1 << 30,
        _ => return Err(bad()),
    };
    match amount.checked_mul(scale) {
        Some(0) => Err(format!("invalid size `{text}`: must be at least one byte")),
        Some(bytes) => Ok(bytes),
        None => Err(format!("invalid size `{text}`: too large")),
    }
}

/// Largest `request_buffering`: each request being read ahead holds up to this much memory.
pub(crate) const MAX_BUFFER_BYTES: u64 = 16 << 20;

/// A buffer size: `0` (none) or a size from one byte to [`MAX_BUFFER_BYTES`].
pub(crate) fn parse_buffer_size(text: &str) -> Result<Option<u64>, String> {
    if text.trim() == "0" {
        return Ok(None);
    }
    match parse_size(text)? {
        bytes if bytes > MAX_BUFFER_BYTES => Err(format!(
            "invalid buffer size `{}`: at most 16MiB (it is held in memory for each request)",
            text.trim()
        )),
        bytes => Ok(Some(bytes)),
    }
}

/// A whole number within `min..=max`.
pub(crate) fn check_range(value: u64, min: u32, max: u32) -> Result<u32, String> {
    match u32::try_from(value) {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(format!(
            "{value} is out of range: write a whole number from {min} to {max}"
        )),
    }
}

/// `10.0.0.0/8`, `fd00::/8`, or a single address (a /32 or /128). Host bits set below the
/// prefix (`10.0.0.1/8`) are refused: they usually mean a typo in the prefix length.
pub(crate) fn check_proxy_net(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<std::net::IpAddr>() {
        return Ok(ipnet::IpNet::from(ip));
    }
    let net: ipnet::IpNet = text.parse().map_err(|_| {
        format!("invalid proxy address `{text}`: write a range like 10.0.0.0/8 or an address")
    })?;
    if net.trunc() != net {
        return Err(format!(
            "proxy range `{text}` has host bits set: did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

/// A header name a client may never send to a backend: a field name (RFC 9110 token
/// characters), compared case-insensitively, or a prefix ending in `*` (`x-gatehouse-*`).
pub(crate) fn check_identity_header(text: &str) -> Result<String, String> {
    let name = text.trim().to_ascii_lowercase();
    let stem = name.strip_suffix('*').unwrap_or(&name);
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'+-.^_`|~".contains(c);
    if stem.is_empty() || !stem.chars().all(token) {
        return Err(format!(
            "invalid identity header `{text}`: write a header name like remote-user, or a prefix like x-gatehouse-*"
        ));
    }
    if matches!(
        stem,
        "host" | "content-length" | "transfer-encoding" | "x-request-id"
    ) {
        return Err(format!(
            "`{text}` cannot be an identity header: requests need it"
        ));
    }
    Ok(name)
}

/// A backend URL must be `http://host[:port]` with nothing after the authority; the port, when
/// written, must be a real one (the URI parser would otherwise accept `:99999` and the connector
/// silently fall back to port 80).
pub(crate) fn check_backend_url(text: &str) -> Result<http::Uri, String> {
    if text.contains('#') {
        return Err(format!("backend url `{text}` must not have a fragment"));
    }
    let uri: http::Uri = text
        .parse()
        .map_err(|e| format!("invalid backend url `{text}`: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            return Err(format!(
                "unsupported backend url scheme `{other}` in `{text}`: only http:// is supported"
            ))
        }
        None => {
            return Err(format!(
                "backend url `{text}` needs a scheme: write http://{text}"
            ))
        }
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("backend url `{text}` has no host"))?;
    if authority.host().is_empty() || authority.as_str().contains('@') {
        return Err(format!(
            "backend url `{text}` must be http://host:port without credentials"
        ));
    }
    check_backend_host(authority.host()).map_err(|e| format!("backend url `{text}`: {e}"))?;
    check_port(&authority.as_str()[authority.host().len()..])
        .map_err(|e| format!("backend url `{text}`: {e}"))?;
    if uri.path() != "/" || uri.query().is_some() {
        return Err(format!(
            "backend url `{text}` must not have a path or query: requests keep their own path"
        ));
    }
    Ok(uri)
}

fn check_backend_host(host: &str) -> Result<(), String> {
    if host.starts_with('[') {
        let inner = host.trim_start_matches('[').trim_end_matches(']');
        return inner
            .parse::<std::net::Ipv6Addr>()
            .map(drop)
            .map_err(|_| format!("invalid IPv6 address `{host}`"));
    }
    check_host(host).map(drop)
}

/// `rest` is what follows the host in the authority: empty (port 80) or `:PORT`, 1 to 65535.
fn check_port(rest: &str) -> Result<(), String> {
    let Some(port) = rest.strip_prefix(':') else {
        return Ok(());
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 && !port.starts_with('+') => Ok(()),
        _ => Err(format!("invalid port `{port}`: must be 1 to 65535")),
    }
}

/// A host a service claims: a DNS name or IPv4 address, matched case-insensitively, no port.
pub(crate) fn check_host(text: &str) -> Result<String, String> {
    let host = text.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() || host.len() > 253 {
        return Err(format!(
            "invalid host `{text}`: must be 1 to 253 characters"
        ));
    }
    if host.contains(':') {
        return Err(format!(
            "invalid host `{text}`: hosts match without a port, remove `:{}`",
            host.rsplit(':').next().unwrap_or_default()
        ));
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if !host.split('.').all(label_ok) {
        return Err(format!(
            "invalid host `{text}`: use letters, digits, `-` and `.` (e.g. service1.my-company.com)"
        ));
    }
    Ok(host)
}

/// The session cookie's domain: a DNS name of two labels or more (browsers refuse a `Domain`
/// that is an IP address or a lone label), lowercase, without a leading dot.
pub(crate) fn check_cookie_domain(text: &str) -> Result<String, String> {
    if text.starts_with('.') {
        return Err(format!(
            "invalid cookie domain `{text}`: write it without the leading dot (it covers every host under it)"
        ));
    }
    let domain = check_host(text)?;
    let numeric = domain
        .split('.')
        .all(|l| l.bytes().all(|b| b.is_ascii_digit()));
    if !domain.contains('.') || numeric {
        return Err(format!(
            "invalid cookie domain `{text}`: must be a DNS name of two labels or more, like my-company.com"
        ));
    }
    Ok(domain)
}

/// The session cookie's name: an RFC 6265 token (letters, digits and ``!#$%&'*+-.^_`|~``) of at
/// most 64 characters; not `gatehouse_csrf` (the sign-in form's own cookie), and no `__Host-` or
/// `__Secure-` prefix (their rules would silently drop the cookie on plain HTTP or with a domain).
pub(crate) fn check_cookie_name(text: &str) -> Result<(), String> {
    let token = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if text.is_empty() || text.len() > 64 || !token {
        return Err(format!(
            "invalid cookie name `{text}`: use 1 to 64 letters, digits and !#$%&'*+-.^_`|~"
        ));
    }
    if text.eq_ignore_ascii_case("gatehouse_csrf") {
        return Err("the cookie name `gatehouse_csrf` is the sign-in form's own".to_string());
    }
    let lower = text.to_ascii_lowercase();
    if lower.starts_with("__host-") || lower.starts_with("__secure-") {
        return Err(format!(
            "invalid cookie name `{text}`: the __Host- and __Secure- prefixes are not supported"
        ));
    }
    Ok(())
}

/// A service name becomes a metrics label, so it is short and plain; `control` is the control plane's.
pub(crate) fn check_service_name(text: &str) -> Result<String, String> {
    let plain = text
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if text.is_empty() || text.len() > 64 || !plain {
        return Err(format!(
            "invalid service name `{text}`: use 1 to 64 of a-z, 0-9, `_` and `-`"
        ));
    }
    if text == "control" {
        return Err("the service name `control` is reserved for the control plane".to_string());
    }
    Ok(text.to_string())
}

/// Weights are relative shares between 1 and [`MAX_WEIGHT`].
pub(crate) fn check_weight(weight: u64) -> Result<u32, String> {
    match u32::try_from(weight) {
        Ok(w) if (1..=MAX_WEIGHT).contains(&w) => Ok(w),
        _ => Err(format!(
            "invalid weight {weight}: must be between 1 and {MAX_WEIGHT}"
        )),
    }
}

/// Worker threads beyond this only add context switches.
pub(crate) const MAX_WORKERS: u64 = 1024;

/// A worker count is 1 to [`MAX_WORKERS`].
pub(crate) fn check_workers(count: u64) -> Result<usize, String> {
    if (1..=MAX_WORKERS).contains(&count) {
        return Ok(count as usize);
    }
    Err(format!(
        "invalid workers {count}: must be auto or 1 to {MAX_WORKERS}"
    ))
}

/// A list that must hold at least one item (`what` names it in the message).
pub(crate) fn check_not_empty<T>(items: &[T], what: &str) -> Result<(), String> {
    if items.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    Ok(())
}

/// Each host belongs to exactly one service, or routing would be ambiguous.
pub(crate) fn check_unique_host(
    seen: &mut std::collections::HashSet<String>,
    host: &str,
) -> Result<(), String> {
    if !seen.insert(host.to_string()) {
        return Err(format!(
            "duplicate host `{host}`: each host may be claimed by only one service"
        ));
    }
    Ok(())
}

/// Service names label metrics and logs, so two services cannot share one.
pub(crate) fn check_unique_service_name(
    seen: &mut std::collections::HashSet<String>,
    name: &str,
) -> Result<(), String> {
    if !seen.insert(name.to_string()) {
        return Err(format!("duplicate service name `{name}`"));
    }
    Ok(())
}

/// The database URL must name a store Gatehouse speaks.
pub(crate) fn check_database_url(text: &str) -> Result<(), String> {
    let known = ["sqlite:", "postgres://", "postgresql://"];
    if !known.iter().any(|prefix| text.starts_with(prefix)) {
        return Err(format!(
            "unsupported database url `{}`: use sqlite://PATH or postgres://USER@HOST:PORT/DB",
            text.split('@').next_back().unwrap_or_default()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn a_buffer_size_is_zero_for_none_or_a_size_up_to_16_mib() {
        assert_eq!(parse_buffer_size("0"), Ok(None));
        assert_eq!(parse_buffer_size("64KiB"), Ok(Some(64 * 1024)));
        assert_eq!(parse_buffer_size("16MiB"), Ok(Some(16 << 20)));
        assert!(parse_buffer_size("17MiB")
            .unwrap_err()
            .contains("at most 16MiB"));
        assert!(parse_buffer_size("lots")
            .unwrap_err()
            .contains("invalid size"));
    }

    #[test]
    fn proxy_ranges_take_cidrs_and_single_addresses() {
        assert_eq!(
            check_proxy_net("10.0.0.0/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            check_proxy_net("127.0.0.1").unwrap().to_string(),
            "127.0.0.1/32"
        );
        assert_eq!(check_proxy_net("fd00::/8").unwrap().to_string(), "fd00::/8");
        assert!(check_proxy_net("10.0.0.1/8")
            .unwrap_err()
            .contains("did you mean 10.0.0.0/8"));
        assert!(check_proxy_net("ten/8")
            .unwrap_err()
            .contains("invalid proxy address"));
    }

    #[test]
    fn a_cookie_domain_is_a_lowercase_dns_name_of_two_labels_or_more() {
        assert_eq!(
            check_cookie_domain("My-Company.com").as_deref(),
            Ok("my-company.com")
        );
        assert_eq!(check_cookie_domain("a.b.c").as_deref(), Ok("a.b.c"));
        for bad in [
            "localhost",
            "10.0.0.1",
            ".my-company.com",
            "my company.com",
            "x.com:80",
        ] {
            assert!(check_cookie_domain(bad).is_err(), "{bad}");
        }
        assert!(check_cookie_domain(".my-company.com")
            .unwrap_err()
            .contains("without the leading dot"));
    }

    #[test]
    fn a_cookie_name_is_a_token_other_than_the_csrf_cookie() {
        for good in ["gatehouse_session", "sid", "a.b-c~d"] {
            assert_eq!(check_cookie_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "a b",
            "a;b",
            "a=b",
            "caf\u{e9}",
            "gatehouse_csrf",
            "__Host-s",
            "__secure-s",
        ] {
            assert!(check_cookie_name(bad).is_err(), "{bad}");
        }
        assert!(check_cookie_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn parses_durations_in_each_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("90d"), Ok(Duration::from_secs(90 * 86_400)));
    }

    #[test]
    fn rejects_bad_duration() {
        for bad in ["5", "s", "5 sec", "-1s", "1.5s", "10w", "10D", ""] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains("invalid duration"), "{bad}: {err}");
        }
        assert!(parse_duration("0s")
            .unwrap_err()
            .contains("greater than zero"));
    }

    #[test]
    fn accepts_http_backend_url() {
        let uri = check_backend_url("http://127.0.0.1:9001").unwrap();
        assert_eq!(uri.authority().unwrap().as_str(), "127.0.0.1:9001");
    }

    #[test]
    fn rejects_bad_backend_url_and_scheme() {
        assert!(check_backend_url("ftp://x:1")
            .unwrap_err()
            .contains("scheme `ftp`"));
        assert!(check_backend_url("127.0.0.1:9001")
            .unwrap_err()
            .contains("needs a scheme"));
        assert!(check_backend_url("http://")
            .unwrap_err()
            .contains("invalid backend url"));
        assert!(check_backend_url("http://x:1/api")
            .unwrap_err()
            .contains("path"));
        assert!(check_backend_url("http://u:p@x:1")
            .unwrap_err()
            .contains("credentials"));
        assert!(check_backend_url("http://a b")
            .unwrap_err()
            .contains("invalid backend url"));
    }

    #[test]
    fn host_is_lowercased_and_trailing_dot_dropped() {
        assert_eq!(
            check_host("Service1.My-Company.COM."),
            Ok("service1.my-company.com".into())
        );
        assert_eq!(check_host("127.0.0.1"), Ok("127.0.0.1".into()));
    }

    #[test]
    fn rejects_host_with_port_or_bad_characters() {
        assert!(check_host("a.com:8080")
            .unwrap_err()
            .contains("without a port"));
        assert!(check_host("a_b.com").unwrap_err().contains("invalid host"));
        assert!(check_host("a..com").unwrap_err().contains("invalid host"));
        assert!(check_host("").unwrap_err().contains("1 to 253"));
    }

    #[test]
    fn rejects_bad_or_reserved_service_name() {
        assert!(check_service_name("Service 1")
            .unwrap_err()
            .contains("invalid service name"));
        assert!(check_service_name("control")
            .unwrap_err()
            .contains("reserved"));
        assert_eq!(check_service_name("service_1"), Ok("service_1".into()));
    }

    #[test]
    fn rejects_weight_out_of_range() {
        assert!(check_weight(0).is_err());
        assert!(check_weight(101).is_err());
        assert_eq!(check_weight(3), Ok(3));
    }

    #[test]
    fn rejects_worker_count_out_of_range() {
        assert!(check_workers(0).unwrap_err().contains("auto or 1 to 1024"));
        assert!(check_workers(5000).is_err());
        assert_eq!(check_workers(4), Ok(4));
    }

    #[test]
    fn rejects_empty_backend_list() {
        let err = check_not_empty::<u8>(&[], "backends").unwrap_err();
        assert_eq!(err, "backends must not be empty");
    }

    #[test]
    fn rejects_duplicate_host_across_services() {
        let mut seen = HashSet::new();
        check_unique_host(&mut seen, "a.com").unwrap();
        assert!(check_unique_host(&mut seen, "a.com")
            .unwrap_err()
            .contains("duplicate host"));
    }

    #[test]
    fn rejects_duplicate_service_name() {
        let mut seen = HashSet::new();
        check_unique_service_name(&mut seen, "s").unwrap();
        assert!(check_unique_service_name(&mut seen, "s").is_err());
    }

    #[test]
    fn rejects_unknown_database_and_hides_credentials() {
        let err = check_database_url("mysql://root:hunter2@db/x").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(check_database_url("sqlite://data/g.db").is_ok());
        assert!(check_database_url("postgres://app@127.0.0.1:5432/g").is_ok());
    }
}
