//! Header rewrite between client and backend (RFC 9110 §7.6.1; what a backend receives is listed
//! in `docs/architecture.md`, "The request path").

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::policy::IdentityHeaders;
use crate::request::{ip_header_value, remove_cookie, Caller, ClientInfo, X_REQUEST_ID};

const HOPS: usize = 9;

/// Headers that describe one hop's connection and never travel past a proxy.
const HOP_BY_HOP: [HeaderName; HOPS] = [
    header::CONNECTION,
    // Connection-specific in HTTP/2's upgrade (RFC 7540 §3.2.1); never forwarded.
    HeaderName::from_static("http2-settings"),
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Identity headers only Gatehouse may set; a client's copy is always dropped.
pub(crate) const X_FORWARDED_USER: HeaderName = HeaderName::from_static("x-forwarded-user");
pub(crate) const X_FORWARDED_EMAIL: HeaderName = HeaderName::from_static("x-forwarded-email");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
/// The signed caller of `assertion: true` services; a client's copy is dropped on every service,
/// whatever `identity_headers` says.
pub(crate) const X_GATEHOUSE_ASSERTION: HeaderName =
    HeaderName::from_static("x-gatehouse-assertion");

/// Removes hop-by-hop headers, `Upgrade`, and every header the `Connection` header names.
///
/// `Host` survives even when named: the backend needs it and dropping it would let a client
/// make the upstream request fall back to the backend's own authority. So does `X-Request-Id`:
/// the handler may have set it already, and every backend is promised one.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the (few) headers finds the hop-by-hop ones present, so only those cost a
    // hash lookup to remove: most requests have none, most responses only `Connection`.
    let mut present = [false; HOPS + 1];
    let mut any = false;
    for name in headers.keys() {
        if let Some(slot) = hop_slot(name) {
            present[slot] = true;
            any = true;
        }
    }
    if any {
        remove_hops(headers, &present);
    }
}

/// A request's headers for the backend: what [`strip_hop_by_hop`] and then [`strip_identity`]
/// remove, found in one pass over the headers instead of one per rule, so that only the
/// headers present cost a hash lookup to remove.
pub(crate) fn strip_request(headers: &mut HeaderMap, identity: &IdentityHeaders) {
    let mut present = [false; HOPS + 1];
    let mut any_hop = false;
    let mut spoofed: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        if let Some(slot) = hop_slot(name) {
            present[slot] = true;
            any_hop = true;
        } else if is_spoofed(name, identity) {
            spoofed.push(name.clone());
        }
    }
    if any_hop {
        remove_hops(headers, &present);
    }
    for name in spoofed {
        headers.remove(name);
    }
}

/// Where `name` is in [`HOP_BY_HOP`], or `HOPS` for `Upgrade`.
fn hop_slot(name: &HeaderName) -> Option<usize> {
    if name == header::UPGRADE {
        Some(HOPS)
    } else {
        HOP_BY_HOP.iter().position(|hop| hop == name)
    }
}

/// Removes the hop-by-hop headers marked `present` (by [`hop_slot`]) and the ones their
/// `Connection` names.
fn remove_hops(headers: &mut HeaderMap, present: &[bool; HOPS + 1]) {
    if present[0] {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            // Split as bytes: one element with a non-ASCII byte must not hide the valid names
            // beside it (RFC 9110 §7.6.1: each connection option is removed).
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            // The hop-by-hop names (e.g. `keep-alive`) go below anyway; only others cost a
            // parse and a lookup.
            .filter(|token| {
                !HOP_BY_HOP
                    .iter()
                    .any(|hop| token.eq_ignore_ascii_case(hop.as_str().as_bytes()))
            })
            .filter_map(|token| HeaderName::from_bytes(token).ok())
            .filter(|name| name != header::HOST && name != X_REQUEST_ID)
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for (slot, name) in HOP_BY_HOP.iter().enumerate() {
        if present[slot] {
            headers.remove(name);
        }
    }
    if present[HOPS] {
        headers.remove(header::UPGRADE);
    }
}

/// Headers Gatehouse sets, or frames requests by, under the name a CGI-style backend folds
/// `_` spellings onto: `X_Forwarded_For` and `X-Forwarded-For` are both
/// `HTTP_X_FORWARDED_FOR` there, so a client's underscored copy would stand beside, or
/// replace, Gatehouse's own. Names without a `-` have no such spelling.
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

/// Drops client-sent identity headers (Gatehouse's own, and the configured `identity` ones in
/// any spelling), and `_` spellings of every header in [`FOLDED_ONTO_OURS`] (nginx drops all
/// underscored names by default; other underscored names pass here). The proxy does this in
/// [`strip_request`]'s pass; this is the rule alone, for the tests.
#[cfg(test)]
pub(crate) fn strip_identity(headers: &mut HeaderMap, identity: &IdentityHeaders) {
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_spoofed(name, identity))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
}

/// Whether a client's `name` would hand the backend an identity, or stand in for a header
/// Gatehouse sets or frames requests by (see [`strip_identity`]).
fn is_spoofed(name: &HeaderName, identity: &IdentityHeaders) -> bool {
    name == X_FORWARDED_USER
        || name == X_FORWARDED_EMAIL
        || name == X_GATEHOUSE_ASSERTION
        || identity.matches(name)
        || (name.as_str().contains('_')
            && FOLDED_ONTO_OURS.contains(&name.as_str().replace('_', "-").as_str()))
}

/// Takes the session cookie (`auth.session.cookie_name`) out of the `Cookie` header: it is a
/// bearer credential for every service under the cookie's domain, so no backend may see it.
/// Other cookies pass in order, and a cookie whose name only starts with it is another cookie;
/// with none left the header is dropped.
pub(crate) fn strip_session_cookie(headers: &mut HeaderMap, name: &str) {
    if !name.is_empty() && headers.contains_key(header::COOKIE) {
        remove_cookie(headers, name);
    }
}

/// Tells the backend who the authenticated user is, and keeps the token from it unless the
/// service asks for it. Runs after [`strip_identity`], so only Gatehouse's values arrive.
pub fn add_identity(headers: &mut HeaderMap, caller: &Caller, keep_authorization: bool) {
    headers.insert(X_FORWARDED_USER, caller.user.clone());
    headers.insert(X_FORWARDED_EMAIL, caller.email.clone());
    if !keep_authorization {
        headers.remove(header::AUTHORIZATION);
    }
}

/// Sets the forwarding headers from one decision about who the client is.
///
/// From a trusted proxy, its `X-Forwarded-For` and `Forwarded` chains are kept and the peer
/// appended, and `X-Real-IP` is the client that chain names. From anyone else the client's own
/// values are dropped: `X-Forwarded-For` and `X-Real-IP` are exactly the peer, `Forwarded` is
/// one element of Gatehouse's. `X-Forwarded-Proto`, `-Host` and the `Forwarded` element's
/// `proto` and `host` follow `proto` and `host`.
pub(crate) fn add_forwarded(
    headers: &mut HeaderMap,
    client: &ClientInfo,
    proto: &'static str,
    host: Option<&HeaderValue>,
) {
    let trusted = client.peer_trusted();
    let real_ip = if trusted {
        ip_header_value(client.ip(headers))
    } else {
        client.peer_ip.clone()
    };
    let chain = if trusted && headers.contains_key(&X_FORWARDED_FOR) {
        joined(headers, &X_FORWARDED_FOR, client.peer_ip.as_bytes())
    } else {
        client.peer_ip.clone()
    };
    let element = forwarded_element(&client.peer_node, proto, host);
    let forwarded = if trusted && headers.contains_key(header::FORWARDED) {
        joined(headers, &header::FORWARDED, &element)
    } else {
        owned_value(element)
    };
    headers.insert(X_FORWARDED_FOR, chain);
    headers.insert(X_REAL_IP, real_ip);
    headers.insert(header::FORWARDED, forwarded);
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    match host {
        Some(host) => headers.insert(X_FORWARDED_HOST, host.clone()),
        None => headers.remove(X_FORWARDED_HOST),
    };
}

/// Every value of `name`, joined with `, `, then `last`.
fn joined(headers: &HeaderMap, name: &HeaderName, last: &[u8]) -> HeaderValue {
    let mut chain = Vec::with_capacity(64);
    for value in headers.get_all(name) {
        chain.extend_from_slice(value.as_bytes());
        chain.extend_from_slice(b", ");
    }
    chain.extend_from_slice(last);
    owned_value(chain)
}

/// A header value that takes `bytes` as they are (validated, not copied again): these values
/// are built once per proxied request.
fn owned_value(bytes: Vec<u8>) -> HeaderValue {
    HeaderValue::from_maybe_shared(bytes::Bytes::from(bytes))
        .expect("built from valid header bytes")
}

/// `for=…;proto=…;host="…"`: this hop's `Forwarded` element (RFC 7239 §4). The host is quoted
/// (a port's `:` is not a token character) with `"` and `\` escaped.
fn forwarded_element(node: &str, proto: &str, host: Option<&HeaderValue>) -> Vec<u8> {
    let mut element = Vec::with_capacity(64);
    element.extend_from_slice(node.as_bytes());
    element.extend_from_slice(b";proto=");
    element.extend_from_slice(proto.as_bytes());
    if let Some(host) = host {
        element.extend_from_slice(b";host=\"");
        for &byte in host.as_bytes() {
            if byte == b'"' || byte == b'\\' {
                element.push(b'\\');
            }
            element.push(byte);
        }
        element.push(b'"');
    }
    element
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IdentityHeader;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn connection_named_headers_are_removed() {
        let mut h = map(&[
            ("connection", "close, X-Foo"),
            ("x-foo", "1"),
            ("x-bar", "2"),
            ("keep-alive", "5"),
        ]);
        strip_hop_by_hop(&mut h);
        assert!(
            h.get("x-foo").is_none()
                && h.get("connection").is_none()
                && h.get("keep-alive").is_none()
        );
        assert_eq!(h["x-bar"], "2");
    }

    #[test]
    fn connection_naming_hop_by_hop_headers_removes_only_those() {
        let mut h = map(&[
            ("connection", "Keep-Alive, close, Upgrade, TE, X-Foo"),
            ("upgrade", "h2c"),
            ("te", "trailers"),
            ("keep-alive", "timeout=5"),
            ("close", "named by the option of the same name"),
            ("x-foo", "1"),
            ("x-bar", "2"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["x-bar"], "2");
    }

    #[test]
    fn connection_options_beside_a_non_ascii_element_are_removed() {
        let mut h = HeaderMap::new();
        h.append(
            header::CONNECTION,
            HeaderValue::from_bytes(b"X-Custom, \xcd").unwrap(),
        );
        h.append("x-custom", HeaderValue::from_static("1"));
        h.append("x-kept", HeaderValue::from_static("2"));
        strip_hop_by_hop(&mut h);
        assert!(h.get("x-custom").is_none(), "{h:?}");
        assert_eq!(h["x-kept"], "2");
    }

    #[test]
    fn ordinary_headers_pass_untouched() {
        let mut h = map(&[("host", "a.com"), ("accept", "*/*"), ("x-foo", "1")]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 3);
    }

    #[test]
    fn connection_cannot_remove_host() {
        let mut h = map(&[("connection", "host"), ("host", "a.com")]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h["host"], "a.com");
    }

    #[test]
    fn transfer_encoding_and_upgrade_are_hop_by_hop() {
        let mut h = map(&[
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("te", "trailers"),
        ]);
        strip_hop_by_hop(&mut h);
        assert!(h.is_empty());
    }

    fn identity() -> IdentityHeaders {
        let names = ["remote-user", "x-gatehouse-*"].map(|n| IdentityHeader(n.to_string()));
        IdentityHeaders::new(&names)
    }

    fn client(peer: &str, trusted: &[&str]) -> ClientInfo {
        let trusted: Vec<ipnet::IpNet> = trusted.iter().map(|t| t.parse().unwrap()).collect();
        ClientInfo::new(peer.parse().unwrap(), "http", trusted.into())
    }

    #[test]
    fn the_session_cookie_is_taken_out_and_lookalike_names_stay() {
        let mut headers = map(&[(
            "cookie",
            "theme=dark; gatehouse_session=tok; gatehouse_session2=x; gatehouse_sessionid=y",
        )]);
        strip_session_cookie(&mut headers, "gatehouse_session");
        assert_eq!(
            headers["cookie"],
            "theme=dark; gatehouse_session2=x; gatehouse_sessionid=y"
        );
        let mut only = map(&[("cookie", "gatehouse_session=tok")]);
        strip_session_cookie(&mut only, "gatehouse_session");
        assert!(!only.contains_key("cookie"));
    }

    #[test]
    fn spoofed_identity_headers_are_removed_in_any_spelling() {
        let mut h = map(&[
            ("x-forwarded-user", "admin"),
            ("X_Forwarded_Email", "a@b.c"),
            ("Remote_User", "root"),
            ("x-gatehouse-role", "admin"),
            ("x_other", "kept"),
        ]);
        strip_identity(&mut h, &identity());
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["x_other"], "kept");
    }

    #[test]
    fn one_pass_removes_every_value_of_every_match_and_what_connection_names() {
        let mut h = map(&[
            ("remote-user", "a"),
            ("accept", "*/*"),
            ("remote-user", "b"),
            ("connection", "x-foo"),
            ("x-foo", "1"),
            ("x-gatehouse-role", "admin"),
            ("x_forwarded_for", "6.6.6.6"),
            ("x-forwarded-user", "root"),
            ("x-gatehouse-assertion", "forged"),
            ("upgrade", "h2c"),
        ]);
        let mut separately = h.clone();
        strip_request(&mut h, &identity());
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["accept"], "*/*");
        strip_hop_by_hop(&mut separately);
        strip_identity(&mut separately, &identity());
        assert_eq!(h, separately);
    }

    #[test]
    fn connection_cannot_remove_the_request_id() {
        let mut h = map(&[("connection", "X-Request-Id"), ("x-request-id", "abc")]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h["x-request-id"], "abc");
    }

    #[test]
    fn underscored_forwarding_and_framing_headers_are_removed() {
        let mut h = map(&[
            ("x_forwarded_for", "6.6.6.6"),
            ("X-Forwarded_Host", "evil.test"),
            ("x_forwarded_proto", "https"),
            ("x_request_id", "forged"),
            ("transfer_encoding", "chunked"),
            ("content_length", "40"),
            ("x_real_ip", "6.6.6.6"),
            ("x_other", "kept"),
        ]);
        strip_identity(&mut h, &identity());
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["x_other"], "kept");
    }

    #[test]
    fn a_trusted_proxy_s_chains_are_extended() {
        let mut h = map(&[
            ("x-forwarded-for", "198.51.100.7"),
            ("x-forwarded-for", "10.0.0.2"),
            ("forwarded", "for=198.51.100.7"),
        ]);
        let host = HeaderValue::from_static("a.com:8080");
        add_forwarded(
            &mut h,
            &client("10.0.0.9:1", &["10.0.0.0/8"]),
            "http",
            Some(&host),
        );
        assert_eq!(h["x-forwarded-for"], "198.51.100.7, 10.0.0.2, 10.0.0.9");
        assert_eq!(h["x-real-ip"], "198.51.100.7");
        assert_eq!(
            h["forwarded"],
            "for=198.51.100.7, for=10.0.0.9;proto=http;host=\"a.com:8080\""
        );
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "a.com:8080");
    }

    #[test]
    fn an_untrusted_client_s_forwarding_headers_are_replaced_by_its_address() {
        let mut h = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6;host=evil.test"),
        ]);
        add_forwarded(&mut h, &client("[::1]:1", &["10.0.0.0/8"]), "https", None);
        assert_eq!(h["x-forwarded-for"], "::1");
        assert_eq!(h["x-real-ip"], "::1");
        assert_eq!(h["forwarded"], "for=\"[::1]\";proto=https");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h.get_all("forwarded").iter().count(), 1);
    }

    #[test]
    fn a_quote_in_the_host_is_escaped_in_forwarded() {
        let host = HeaderValue::from_static("a\"b");
        let element = forwarded_element("for=192.0.2.1", "http", Some(&host));
        assert_eq!(element, b"for=192.0.2.1;proto=http;host=\"a\\\"b\"");
    }
}
