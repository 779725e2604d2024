//! Who the client is: the TCP peer, or, when the peer is a trusted proxy (an ingress controller,
//! a load balancer), the address that proxy reports in `X-Forwarded-For`.
//!
//! The chain is read from the right: each proxy appends the address it received the request
//! from, so the rightmost entry not itself a trusted proxy is the client. Entries to its left
//! are whatever the client sent and are never believed (a client cannot pick its own address by
//! prepending one). Without `trusted_proxies` the headers are not read at all.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// What the forwarder needs to know about the client side of a request; built once per
/// connection.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// `http` or `https`, as the client connected.
    pub proto: &'static str,
    /// The peer's IP rendered for `X-Forwarded-For`.
    pub peer_ip: HeaderValue,
    /// The peer as a `Forwarded` node (`for=192.0.2.1`, `for="[2001:db8::1]"`, RFC 7239 §6).
    pub peer_node: Box<str>,
    /// Proxies whose forwarding headers are believed (empty: none).
    trusted: Arc<[IpNet]>,
    /// Whether the peer is one of them.
    peer_trusted: bool,
}

impl ClientInfo {
    /// Describes a client connected from `peer` over `proto`; `trusted` lists the proxies whose
    /// `X-Forwarded-For` and `X-Forwarded-Proto` are believed.
    pub fn new(peer: SocketAddr, proto: &'static str, trusted: Arc<[IpNet]>) -> Self {
        let peer_trusted = is_trusted(&trusted, peer.ip());
        ClientInfo {
            peer,
            proto,
            peer_ip: ip_header_value(peer.ip()),
            peer_node: forwarded_node(peer.ip()),
            trusted,
            peer_trusted,
        }
    }

    /// Whether the peer is a trusted proxy, whose forwarding headers are believed and extended.
    pub fn peer_trusted(&self) -> bool {
        self.peer_trusted
    }

    /// The client's address for this request: the peer, or the rightmost untrusted address of
    /// `X-Forwarded-For` when the peer is a trusted proxy.
    pub fn ip(&self, headers: &HeaderMap) -> IpAddr {
        if !self.peer_trusted {
            return self.peer.ip();
        }
        let mut client = self.peer.ip();
        // Split as bytes: a proxy appends the address it saw to the line the client sent, so a
        // non-ASCII byte the client put there must not hide that address.
        let chain: Vec<&[u8]> = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .collect();
        for entry in chain.iter().rev() {
            let entry = std::str::from_utf8(entry).map(str::trim);
            match entry.ok().and_then(|e| e.parse::<IpAddr>().ok()) {
                Some(ip) if is_trusted(&self.trusted, ip) => client = ip,
                Some(ip) => return ip,
                // Garbage from here leftwards cannot be trusted: the last proxy's word stands.
                None => break,
            }
        }
        client
    }

    /// `http` or `https` as the client used it: a trusted proxy's `X-Forwarded-Proto`, else how
    /// it connected here.
    pub fn scheme(&self, headers: &HeaderMap) -> &'static str {
        if self.peer_trusted {
            match headers.get(X_FORWARDED_PROTO).map(HeaderValue::as_bytes) {
                Some(b"https") => return "https",
                Some(b"http") => return "http",
                _ => {}
            }
        }
        self.proto
    }
}

/// An IP address as a header value (`X-Forwarded-For`).
pub fn ip_header_value(ip: IpAddr) -> HeaderValue {
    HeaderValue::try_from(ip.to_string()).expect("an IP address is a valid header value")
}

/// `for=` and the address as RFC 7239 §6 writes a node: IPv6 bracketed and quoted.
fn forwarded_node(ip: IpAddr) -> Box<str> {
    match ip {
        IpAddr::V4(v4) => format!("for={v4}").into(),
        IpAddr::V6(v6) => format!("for=\"[{v6}]\"").into(),
    }
}

fn is_trusted(trusted: &[IpNet], ip: IpAddr) -> bool {
    // An IPv4 client over an IPv6 socket shows as ::ffff:a.b.c.d.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    trusted.iter().any(|net| net.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(peer: &str, trusted: &[&str]) -> ClientInfo {
        let trusted: Vec<IpNet> = trusted.iter().map(|t| t.parse().unwrap()).collect();
        ClientInfo::new(peer.parse().unwrap(), "http", trusted.into())
    }

    fn forwarded(chain: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in chain {
            headers.append(X_FORWARDED_FOR, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let c = client("203.0.113.9:5000", &["10.0.0.0/8"]);
        assert_eq!(
            c.ip(&forwarded(&["1.2.3.4"])),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn behind_a_trusted_proxy_the_rightmost_untrusted_entry_is_the_client() {
        let c = client("10.0.0.5:5000", &["10.0.0.0/8"]);
        let headers = forwarded(&["6.6.6.6, 198.51.100.7", "10.0.0.9"]);
        assert_eq!(c.ip(&headers), "198.51.100.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_chain_of_only_proxies_or_garbage_stops_at_the_last_believable_hop() {
        let c = client("10.0.0.5:5000", &["10.0.0.0/8"]);
        assert_eq!(
            c.ip(&forwarded(&["10.0.0.7"])),
            "10.0.0.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            c.ip(&forwarded(&["1.1.1.1, nonsense"])),
            "10.0.0.5".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            c.ip(&HeaderMap::new()),
            "10.0.0.5".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn a_non_ascii_byte_from_the_client_does_not_hide_the_address_its_proxy_appended() {
        let c = client("10.0.0.5:5000", &["10.0.0.0/8"]);
        let mut headers = HeaderMap::new();
        let line = HeaderValue::from_bytes(b"caf\xe9, 198.51.100.7").unwrap();
        headers.append(X_FORWARDED_FOR, line);
        assert_eq!(c.ip(&headers), "198.51.100.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn forwarded_nodes_quote_and_bracket_ipv6() {
        assert_eq!(
            &*forwarded_node("192.0.2.1".parse().unwrap()),
            "for=192.0.2.1"
        );
        assert_eq!(
            &*forwarded_node("2001:db8::1".parse().unwrap()),
            "for=\"[2001:db8::1]\""
        );
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_ranges() {
        let c = client("[::ffff:10.0.0.5]:5000", &["10.0.0.0/8"]);
        assert_eq!(
            c.ip(&forwarded(&["192.0.2.1"])),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn only_a_trusted_proxy_sets_the_scheme() {
        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        assert_eq!(
            client("10.0.0.5:1", &["10.0.0.0/8"]).scheme(&headers),
            "https"
        );
        assert_eq!(
            client("192.0.2.1:1", &["10.0.0.0/8"]).scheme(&headers),
            "http"
        );
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("gopher"));
        assert_eq!(
            client("10.0.0.5:1", &["10.0.0.0/8"]).scheme(&headers),
            "http"
        );
    }
}
