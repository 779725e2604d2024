//! `forward_headers`: a client's request headers → `ClientInfo::ip` / `scheme` (who the client
//! is, `X-Forwarded-For` behind trusted proxies) and the rewrite before forwarding
//! (`forwarder::rewrite_request_headers`, then `forwarder::add_identity`).
//!
//! Input, one item a line; the settings, a `--` line, then the headers as `name: value`:
//! ```text
//! peer 10.0.0.5            the TCP peer (default 192.0.2.10)
//! trusted 10.0.0.0/8       a trusted proxy range (repeatable)
//! proto https              how the client connected (default http)
//! uri http://a.com/x       the request target (default /)
//! identity alice a@b.c     an authenticated user
//! keep-authorization       the service forwards Authorization
//! --
//! Connection: close, X-Foo
//! X-Forwarded-For: 1.2.3.4
//! ```
//! Lines that do not parse are skipped, so every mutation still reaches the code.
//!
//! Checked against a model of the forwarding rules (`docs/architecture.md`) and RFC 9110 §7.6.1, header for header: hop-by-hop
//! fields and each field a `Connection` option names are removed (`Host` and `X-Request-Id`
//! excepted), client-sent identity headers and `_` spellings of the headers Gatehouse sets are
//! removed, everything else passes unchanged and in order, and `X-Forwarded-For`/`-Proto`/`-Host`
//! and the identity are Gatehouse's. The client
//! address is the rightmost `X-Forwarded-For` entry that is not a trusted proxy.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use gatehouse::auth::{Claims, Identity};
use gatehouse::forwarder::{add_identity, rewrite_request_headers};
use gatehouse::request::ClientInfo;
use gatehouse::store::Role;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Uri};
use ipnet::IpNet;

const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "http2-settings",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers a CGI-style backend would fold a client's `_` spelling onto (`X_Forwarded_For` →
/// `HTTP_X_FORWARDED_FOR`): such spellings never reach the backend.
const FOLDED_ONTO_OURS: [&str; 8] = [
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
    "transfer-encoding",
    "content-length",
];

/// One request as the input describes it.
struct Case {
    peer: SocketAddr,
    trusted: Vec<IpNet>,
    proto: &'static str,
    uri: Uri,
    identity: Option<Identity>,
    keep_authorization: bool,
    headers: HeaderMap,
}

/// Rewrites the headers `data` describes and compares the result with the model.
pub fn forward_headers(data: &[u8]) {
    let case = parse(data);
    let client = ClientInfo::new(case.peer, case.proto, Arc::from(case.trusted.as_slice()));
    assert_eq!(
        client.ip(&case.headers),
        expected_client_ip(&case),
        "client address"
    );
    let mut parts = Request::builder()
        .uri(case.uri.clone())
        .body(())
        .expect("a parsed URI")
        .into_parts()
        .0;
    parts.headers = case.headers.clone();
    rewrite_request_headers(&mut parts, &client);
    if let Some(identity) = &case.identity {
        add_identity(
            &mut parts.headers,
            &identity.caller,
            case.keep_authorization,
        );
    }
    let expected = expected_headers(&case);
    assert_eq!(
        parts.headers, expected,
        "forwarded headers differ from the model (left: rewritten, right: expected)"
    );
}

fn parse(data: &[u8]) -> Case {
    let mut case = Case {
        peer: SocketAddr::from(([192, 0, 2, 10], 40_000)),
        trusted: Vec::new(),
        proto: "http",
        uri: Uri::from_static("/"),
        identity: None,
        keep_authorization: false,
        headers: HeaderMap::new(),
    };
    let mut lines = data.split(|&b| b == b'\n');
    for line in lines.by_ref() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line == b"--" {
            break;
        }
        setting(&mut case, line);
    }
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        // As an HTTP/1.1 parser hands them over: surrounding whitespace is not part of the value.
        let value = value.trim_ascii();
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            case.headers.append(name, value);
        }
    }
    case
}

fn setting(case: &mut Case, line: &[u8]) {
    let Ok(line) = std::str::from_utf8(line) else {
        return;
    };
    let (key, value) = line.split_once(' ').unwrap_or((line, ""));
    match key {
        "peer" => {
            if let Ok(ip) = value.parse::<IpAddr>() {
                case.peer = SocketAddr::new(ip, 40_000);
            }
        }
        "trusted" => case.trusted.extend(value.parse::<IpNet>().ok()),
        "proto" => case.proto = if value == "https" { "https" } else { "http" },
        "uri" => {
            if let Ok(uri) = value.parse() {
                case.uri = uri;
            }
        }
        "identity" => {
            let (username, email) = value.split_once(' ').unwrap_or((value, ""));
            // A token whose names cannot be header values never verifies (`Identity::new`).
            case.identity = Identity::new(claims(username, email));
        }
        "keep-authorization" => case.keep_authorization = true,
        _ => {}
    }
}

fn claims(username: &str, email: &str) -> Claims {
    Claims {
        sub: "fuzz-account".into(),
        username: username.into(),
        email: email.into(),
        role: Role::User,
        iss: "gatehouse".into(),
        iat: 0,
        nbf: 0,
        exp: u64::MAX / 2,
        jti: "fuzz".into(),
        generation: 0,
    }
}

fn trusted(case: &Case, ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    case.trusted.iter().any(|net| net.contains(&ip))
}

/// The elements of a comma-separated list header, across all its lines, without the optional
/// whitespace around them (RFC 9110 §5.6.1). Works on bytes: one odd byte in one element must
/// not hide the others.
fn list_elements<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a [u8]> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .collect()
}

fn expected_client_ip(case: &Case) -> IpAddr {
    let mut client = case.peer.ip();
    if !trusted(case, client) {
        return client;
    }
    for entry in list_elements(&case.headers, "x-forwarded-for")
        .into_iter()
        .rev()
    {
        match std::str::from_utf8(entry)
            .ok()
            .and_then(|e| e.parse::<IpAddr>().ok())
        {
            Some(ip) if trusted(case, ip) => client = ip,
            Some(ip) => return ip,
            None => break,
        }
    }
    client
}

fn removed(case: &Case, name: &HeaderName) -> bool {
    let name = name.as_str();
    let named_by_connection = list_elements(&case.headers, "connection")
        .into_iter()
        .filter_map(|option| HeaderName::from_bytes(option).ok())
        .any(|option| option == name);
    let underscored_spelling_of_ours =
        name.contains('_') && FOLDED_ONTO_OURS.contains(&name.replace('_', "-").as_str());
    HOP_BY_HOP.contains(&name)
        || (named_by_connection && name != "host" && name != "x-request-id")
        || name == "x-forwarded-user"
        || name == "x-forwarded-email"
        || underscored_spelling_of_ours
}

fn expected_headers(case: &Case) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in case.headers.keys() {
        if !removed(case, name) {
            for value in case.headers.get_all(name) {
                out.append(name.clone(), value.clone());
            }
        }
    }
    let from_client = out.clone();
    if let Some(authority) = case.uri.authority() {
        if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
            out.insert(header::HOST, host);
        }
    }
    let host = out.get(header::HOST).cloned();
    let peer = case.peer.ip().to_string();
    let chain = if from_client.contains_key("x-forwarded-for") {
        let mut chain: Vec<u8> = Vec::new();
        for value in from_client.get_all("x-forwarded-for") {
            chain.extend_from_slice(value.as_bytes());
            chain.extend_from_slice(b", ");
        }
        chain.extend_from_slice(peer.as_bytes());
        HeaderValue::from_bytes(&chain).expect("valid values joined")
    } else {
        HeaderValue::from_str(&peer).expect("an address")
    };
    out.insert("x-forwarded-for", chain);
    let claimed = from_client
        .get("x-forwarded-proto")
        .map(HeaderValue::as_bytes);
    let proto = match claimed {
        Some(b"https") if trusted(case, case.peer.ip()) => "https",
        Some(b"http") if trusted(case, case.peer.ip()) => "http",
        _ => case.proto,
    };
    out.insert("x-forwarded-proto", HeaderValue::from_static(proto));
    match host {
        Some(host) => out.insert("x-forwarded-host", host),
        None => out.remove("x-forwarded-host"),
    };
    if let Some(identity) = &case.identity {
        out.insert("x-forwarded-user", identity.caller.user.clone());
        out.insert("x-forwarded-email", identity.caller.email.clone());
        if !case.keep_authorization {
            out.remove(header::AUTHORIZATION);
        }
    }
    out
}
