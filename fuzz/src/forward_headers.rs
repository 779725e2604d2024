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
//! Checked against a model of the forwarding rules (`docs/architecture.md`) and RFC 9110
//! §7.6.1, header for header: hop-by-hop fields and each field a `Connection` option names are
//! removed (`Host` and `X-Request-Id` excepted), client-sent identity headers and `_` spellings
//! of the headers Gatehouse sets are removed, as are the default `identity_headers`, everything
//! else passes unchanged and in order, and `X-Forwarded-For`/`-Proto`/`-Host`, `X-Real-IP`,
//! `Forwarded` and the identity are Gatehouse's (a trusted proxy's chains extended, anyone
//! else's replaced by the peer). The client
//! address is the rightmost `X-Forwarded-For` entry that is not a trusted proxy.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

use gatehouse::auth::{Claims, Identity};
use gatehouse::config::parse_str;
use gatehouse::forwarder::{add_identity, rewrite_request_headers};
use gatehouse::request::ClientInfo;
use gatehouse::service::IdentityHeaders;
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
const FOLDED_ONTO_OURS: [&str; 10] = [
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "x-request-id",
    "transfer-encoding",
    "content-length",
    "x-gatehouse-assertion",
];

/// The default `identity_headers`: removed in any case and `_` spelling; `x-gatehouse-` is a
/// prefix.
const IDENTITY: [&str; 12] = [
    "remote-user",
    "remote-email",
    "remote-groups",
    "remote-name",
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-groups",
    "x-auth-request-preferred-username",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
];
const IDENTITY_PREFIX: &str = "x-gatehouse-";

/// The identity headers of the default config, as the proxy builds them.
fn default_identity_headers() -> &'static IdentityHeaders {
    static HEADERS: OnceLock<IdentityHeaders> = OnceLock::new();
    HEADERS.get_or_init(|| {
        let settings = parse_str("services: []\n", "defaults.yaml").expect("the defaults parse");
        IdentityHeaders::new(&settings.identity_headers)
    })
}

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
    rewrite_request_headers(&mut parts, &client, default_identity_headers());
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
        family: None,
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
    client_ip_from(case, &case.headers)
}

/// The client as `headers` name it: the peer, or behind trusted proxies the rightmost entry of
/// `X-Forwarded-For` that is not one.
fn client_ip_from(case: &Case, headers: &HeaderMap) -> IpAddr {
    let mut client = case.peer.ip();
    if !trusted(case, client) {
        return client;
    }
    for entry in list_elements(headers, "x-forwarded-for").into_iter().rev() {
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
    let folded = name.replace('_', "-");
    let underscored_spelling_of_ours =
        name.contains('_') && FOLDED_ONTO_OURS.contains(&folded.as_str());
    let identity = IDENTITY.contains(&folded.as_str()) || folded.starts_with(IDENTITY_PREFIX);
    HOP_BY_HOP.contains(&name)
        || (named_by_connection && name != "host" && name != "x-request-id")
        || name == "x-forwarded-user"
        || name == "x-forwarded-email"
        // Removed on every service whatever `identity_headers` says (also under the prefix).
        || name == "x-gatehouse-assertion"
        || identity
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
    let peer_trusted = trusted(case, case.peer.ip());
    // A trusted proxy's chains are extended; anyone else's are replaced by the peer alone.
    let chain = if peer_trusted && from_client.contains_key("x-forwarded-for") {
        joined(&from_client, "x-forwarded-for", peer.as_bytes())
    } else {
        HeaderValue::from_str(&peer).expect("an address")
    };
    out.insert("x-forwarded-for", chain);
    let real_ip = client_ip_from(case, &from_client).to_string();
    out.insert(
        "x-real-ip",
        HeaderValue::from_str(&real_ip).expect("an address"),
    );
    let claimed = from_client
        .get("x-forwarded-proto")
        .map(HeaderValue::as_bytes);
    let proto = match claimed {
        Some(b"https") if peer_trusted => "https",
        Some(b"http") if peer_trusted => "http",
        _ => case.proto,
    };
    let node = match case.peer.ip() {
        IpAddr::V4(v4) => format!("for={v4}"),
        IpAddr::V6(v6) => format!("for=\"[{v6}]\""),
    };
    let mut element = format!("{node};proto={proto}").into_bytes();
    if let Some(host) = &host {
        element.extend_from_slice(b";host=\"");
        for &byte in host.as_bytes() {
            if matches!(byte, b'"' | b'\\') {
                element.push(b'\\');
            }
            element.push(byte);
        }
        element.push(b'"');
    }
    let forwarded = if peer_trusted && from_client.contains_key("forwarded") {
        joined(&from_client, "forwarded", &element)
    } else {
        HeaderValue::from_bytes(&element).expect("valid bytes")
    };
    out.insert("forwarded", forwarded);
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

/// Every value of `name` in `headers`, joined with `, `, then `last`.
fn joined(headers: &HeaderMap, name: &str, last: &[u8]) -> HeaderValue {
    let mut chain: Vec<u8> = Vec::new();
    for value in headers.get_all(name) {
        chain.extend_from_slice(value.as_bytes());
        chain.extend_from_slice(b", ");
    }
    chain.extend_from_slice(last);
    HeaderValue::from_bytes(&chain).expect("valid values joined")
}
