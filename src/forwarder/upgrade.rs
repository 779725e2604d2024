//! `Upgrade` (WebSocket and friends) as a tunnel: the request goes to the backend with its
//! `Upgrade` header, and only when the backend really answers `101 Switching Protocols` are the
//! two connections joined, byte for byte, until either side closes.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::request::ConnectionSlot;

/// Whether the client asks to switch to WebSocket (HTTP/1.1 `Connection: upgrade` +
/// `Upgrade: websocket`). Other protocols are not tunnelled: an `h2c` upgrade through a lenient
/// backend would let the client speak HTTP/2 past the proxy's authentication and header rules
/// (h2c smuggling), so their `Upgrade` header is dropped like any hop-by-hop header.
pub(super) fn requested<B>(request: &Request<B>) -> bool {
    request.version() == Version::HTTP_11
        && request
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
        && request
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// The client side of a tunnel: its upgrade handle, and its connection's slot, which the
/// tunnel holds so it counts as a connection for as long as it lives.
pub(super) struct ClientSide {
    upgrade: OnUpgrade,
    slot: Option<ConnectionSlot>,
}

/// Takes the client connection's upgrade handle (and slot) out of the request.
pub(super) fn client_side(request: &mut Request<Incoming>) -> ClientSide {
    ClientSide {
        slot: request.extensions_mut().remove::<ConnectionSlot>(),
        upgrade: hyper::upgrade::on(request),
    }
}

/// The protocol asked for, before the hop-by-hop headers are stripped.
pub(super) fn protocol(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(header::UPGRADE)
        .cloned()
        .unwrap_or(HeaderValue::from_static("websocket"))
}

/// Puts back the two headers the backend needs to switch (stripping removed them as hop-by-hop).
pub(super) fn restore_request_headers(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// When the backend switched protocols, keeps the 101's `Upgrade`/`Connection` for the client
/// and joins the two connections in a task of their own; any other answer is passed on as a
/// plain response (with hop-by-hop headers removed) and the client's upgrade is dropped.
pub(super) fn tunnel_if_switched(response: &mut Response<Incoming>, client_side: ClientSide) {
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        super::headers::strip_hop_by_hop(response.headers_mut());
        return;
    }
    let upstream_side = hyper::upgrade::on(&mut *response);
    tokio::spawn(async move {
        let _slot = client_side.slot;
        let (client, upstream) = tokio::join!(client_side.upgrade, upstream_side);
        match (client, upstream) {
            (Ok(client), Ok(upstream)) => {
                let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
                if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await
                {
                    tracing::debug!(%error, "upgraded connection ended with an error");
                }
            }
            (client, upstream) => tracing::debug!(
                client_ok = client.is_ok(),
                upstream_ok = upstream.is_ok(),
                "upgrade did not complete"
            ),
        }
    });
}
