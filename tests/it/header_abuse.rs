//! Headers a client uses to steer the proxy: `Connection` naming the headers Gatehouse sets,
//! client-made identity and forwarding headers (in any spelling), and disagreeing hosts. Run
//! against the real binary, with an `auth: required` service, judged by what the echo backend
//! received.
//!
//! `headers.rs` covers the basics on an open service (spoofed identity headers dropped,
//! `Connection`-named client headers dropped, `X-Forwarded-*` set); `routing.rs` covers an
//! absolute-form URI routing an open service. This file covers the authenticated path, the
//! headers Gatehouse adds itself, underscore spellings of forwarding headers, duplicate `Host`
//! and HTTP/2 `:authority`.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::setup::Setup;
use common::RawReply;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// Bound on an HTTP/2 answer: generous for a loaded 2-core CI machine, where the proxy still
/// answers in milliseconds.
const REPLY_WITHIN: Duration = Duration::from_secs(10);

/// What the echo backend received: its `headers` object.
fn received(reply: &RawReply) -> serde_json::Map<String, serde_json::Value> {
    reply.json()["headers"]
        .as_object()
        .expect("headers object")
        .clone()
}

/// A header the backend received, all its values joined by `, ` (so one value means one line).
fn received_header(reply: &RawReply, name: &str) -> Option<String> {
    received(reply)
        .get(name)
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

// ---------------------------------------------------------------------------------------------
// Connection: as a weapon

/// `Connection` may name headers the client sent (RFC 9110 §7.6.1) and Gatehouse drops those,
/// but it runs before Gatehouse adds its own: the client can neither strip the identity and
/// forwarding headers, nor keep its own copies in their place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cannot_strip_or_replace_the_headers_gatehouse_sets() {
    let setup = Setup::start().await;

    let reply = setup
        .send(&format!(
            "GET /who HTTP/1.1\r\nHost: private.test\r\nAuthorization: Bearer {}\r\n\
             X-Forwarded-User: mallory\r\nX-Forwarded-Email: mallory@evil.test\r\n\
             X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil.test\r\n\
             Connection: Authorization, X-Forwarded-User, X-Forwarded-Email\r\n\
             Connection: X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host\r\n",
            setup.token
        ))
        .await;

    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("x-backend"), Some("b0"));
    assert_eq!(
        received_header(&reply, "x-forwarded-user").as_deref(),
        Some("alice")
    );
    assert_eq!(
        received_header(&reply, "x-forwarded-email").as_deref(),
        Some("alice@example.com")
    );
    let chain = received_header(&reply, "x-forwarded-for").expect("x-forwarded-for");
    assert_eq!(
        chain.rsplit(',').next().map(str::trim),
        Some("127.0.0.1"),
        "the real client must be the last entry: {chain}"
    );
    assert_eq!(
        received_header(&reply, "x-forwarded-proto").as_deref(),
        Some("http")
    );
    assert_eq!(
        received_header(&reply, "x-forwarded-host").as_deref(),
        Some("private.test")
    );
    assert!(received_header(&reply, "authorization").is_none());
}

/// The request id (the client's or a new one) is passed to the backend as well as returned to
/// the client. Naming it in `Connection` must not take it away from the backend while the
/// client still gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cannot_hide_the_request_id_from_the_backend() {
    let setup = Setup::start().await;

    let generated = setup
        .send("GET /id HTTP/1.1\r\nHost: open.test\r\nConnection: X-Request-Id\r\n")
        .await;
    let chosen = setup
        .send(
            "GET /id HTTP/1.1\r\nHost: open.test\r\nX-Request-Id: client-id-7\r\n\
             Connection: x-request-id\r\n",
        )
        .await;

    assert_eq!(generated.status, 200, "{generated:?}");
    let id = generated.header("x-request-id").expect("x-request-id");
    assert_eq!(
        received_header(&generated, "x-request-id").as_deref(),
        Some(id)
    );
    assert_eq!(chosen.status, 200, "{chosen:?}");
    assert_eq!(chosen.header("x-request-id"), Some("client-id-7"));
    assert_eq!(
        received_header(&chosen, "x-request-id").as_deref(),
        Some("client-id-7")
    );
}

/// Identity headers that other auth proxies set, and the forwarding headers Gatehouse writes,
/// never reach a backend as the client sent them, in any spelling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_and_forwarding_headers_from_a_client_never_reach_the_backend() {
    let setup = Setup::start().await;
    let reply = setup
        .send(
            "GET /who HTTP/1.1\r\nHost: open.test\r\nRemote-User: admin\r\nRemote_User: admin\r\n\
             X-Auth-Request-User: admin\r\nX-Auth-Request-Email: admin@corp.test\r\n\
             X-Forwarded-Preferred-Username: admin\r\nX-Gatehouse-Role: admin\r\n\
             X-Real-IP: 10.0.0.1\r\nX_Real_IP: 10.0.0.1\r\nForwarded: for=10.0.0.1\r\n\
             X-Forwarded-For: 10.0.0.1\r\nX-Kept: yes\r\n",
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let received = received(&reply);
    for name in [
        "remote-user",
        "remote_user",
        "x-auth-request-user",
        "x-auth-request-email",
        "x-forwarded-preferred-username",
        "x-gatehouse-role",
        "x_real_ip",
    ] {
        assert!(
            received.get(name).is_none(),
            "{name} reached the backend: {received:?}"
        );
    }
    assert_eq!(received["x-real-ip"], "127.0.0.1");
    assert_eq!(received["x-forwarded-for"], "127.0.0.1");
    assert_eq!(
        received["forwarded"],
        "for=127.0.0.1;proto=http;host=\"open.test\""
    );
    assert_eq!(received["x-kept"], "yes");
}

/// A client's id is kept only if it is one plain token of at most 128 visible ASCII characters:
/// with a space or a quote it could forge fields in a text log line, so a fresh id replaces it,
/// for the client and the backend alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_that_is_not_a_plain_token_is_replaced() {
    let setup = Setup::start().await;
    let longest = "a".repeat(128);
    let kept = setup
        .send(&format!(
            "GET /id HTTP/1.1\r\nHost: open.test\r\nX-Request-Id: {longest}\r\n"
        ))
        .await;
    assert_eq!(kept.header("x-request-id"), Some(longest.as_str()));

    let too_long = "a".repeat(129);
    for forged in ["abc user=\"admin\"", "it's", too_long.as_str()] {
        let reply = setup
            .send(&format!(
                "GET /id HTTP/1.1\r\nHost: open.test\r\nX-Request-Id: {forged}\r\n"
            ))
            .await;
        assert_eq!(reply.status, 200, "{forged}: {reply:?}");
        let id = reply.header("x-request-id").expect("x-request-id");
        assert!(
            common::is_generated_request_id(id),
            "{forged}: kept as {id}"
        );
        assert_eq!(received_header(&reply, "x-request-id").as_deref(), Some(id));
    }
}

// ---------------------------------------------------------------------------------------------
// Client-made identity

/// Headers that name a user or a client address are never credentials: without a token the
/// request is refused before any backend is contacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_identity_headers_never_authenticate() {
    let setup = Setup::start().await;

    let attempts = [
        "X-Forwarded-User: alice\r\nX-Forwarded-Email: alice@example.com\r\n",
        "X_Forwarded_User: alice\r\nx_forwarded_email: alice@example.com\r\n",
        "X-Forwarded-For: 127.0.0.1\r\nX-Real-IP: 127.0.0.1\r\nX-Forwarded-Proto: https\r\n",
        "Connection: Authorization\r\nX-Forwarded-User: alice\r\n",
        "Authorization: Basic YWxpY2U6Y29ycmVjdCBob3JzZSBiYXR0ZXJ5\r\n",
    ];
    for headers in attempts {
        let reply = setup
            .send(&format!(
                "GET /private HTTP/1.1\r\nHost: private.test\r\n{headers}"
            ))
            .await;

        assert_eq!(reply.status, 401, "{headers}: {reply:?}");
        assert_eq!(
            reply.header("www-authenticate"),
            Some("Bearer"),
            "{headers}"
        );
    }
    assert_eq!(setup.reached(), (0, 0));
}

/// With a token, the identity the backend gets is Gatehouse's alone: one value each, and no
/// client copy in another spelling (`X_Forwarded_User` is `HTTP_X_FORWARDED_USER` to a CGI-style
/// backend, the same variable as the real header).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authenticated_backend_sees_only_gatehouses_identity_in_any_spelling() {
    let setup = Setup::start().await;

    let reply = setup
        .send(&format!(
            "GET /me HTTP/1.1\r\nHost: private.test\r\nAuthorization: Bearer {}\r\n\
             X-Forwarded-User: mallory\r\nX_Forwarded_User: root\r\nX-Forwarded_User: root\r\n\
             x_forwarded_email: root@evil.test\r\nX_FORWARDED-EMAIL: root@evil.test\r\n",
            setup.token
        ))
        .await;

    assert_eq!(reply.status, 200, "{reply:?}");
    let headers = received(&reply);
    let identity: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| {
            let folded = name.replace('_', "-");
            folded == "x-forwarded-user" || folded == "x-forwarded-email"
        })
        .map(|(name, value)| (name.clone(), value.as_str().unwrap_or_default().to_string()))
        .collect();
    // The echo's header object is sorted by name.
    let expected = [
        ("x-forwarded-email", "alice@example.com"),
        ("x-forwarded-user", "alice"),
    ]
    .map(|(n, v)| (n.to_string(), v.to_string()));
    assert_eq!(identity, expected, "{headers:?}");
}

/// The same folding applies to the forwarding headers and the request id: a client's
/// `X_Forwarded_For` would become the client address a CGI-style backend reads. Gatehouse
/// drops them, like nginx drops underscored names by default; other underscored names pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn underscored_forwarding_headers_never_reach_the_backend() {
    let setup = Setup::start().await;

    let reply = setup
        .send(
            "GET /fwd HTTP/1.1\r\nHost: open.test\r\nX_Forwarded_For: 6.6.6.6\r\n\
             x_forwarded_host: evil.test\r\nX_Forwarded_Proto: https\r\n\
             X_Request_Id: forged\r\nX-Forwarded_For: 6.6.6.6\r\nX_Custom: kept\r\n",
        )
        .await;

    assert_eq!(reply.status, 200, "{reply:?}");
    let headers = received(&reply);
    let underscored: Vec<&String> = headers
        .keys()
        .filter(|name| {
            let folded = name.replace('_', "-");
            name.contains('_')
                && [
                    "x-forwarded-for",
                    "x-forwarded-host",
                    "x-forwarded-proto",
                    "x-request-id",
                ]
                .contains(&folded.as_str())
        })
        .collect();
    assert!(
        underscored.is_empty(),
        "forwarded: {underscored:?}: {headers:?}"
    );
    assert_eq!(
        received_header(&reply, "x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(received_header(&reply, "x_custom").as_deref(), Some("kept"));
}

// ---------------------------------------------------------------------------------------------
// Which host

/// RFC 9112 §3.2: more than one Host line is a 400. Otherwise the route follows one line while
/// a backend that reads the other serves a host the request was never checked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_host_lines_are_refused_with_400() {
    let setup = Setup::start().await;

    for hosts in [
        ["open.test", "private.test"],
        ["private.test", "open.test"],
        ["open.test", "open.test"],
    ] {
        let reply = setup
            .send(&format!(
                "GET /hosts HTTP/1.1\r\nHost: {}\r\nHost: {}\r\n",
                hosts[0], hosts[1]
            ))
            .await;

        assert_eq!(reply.status, 400, "{hosts:?}: {reply:?}");
    }
    assert_eq!(setup.reached(), (0, 0));
}

/// RFC 9112 §3.2.2: an absolute-form target's authority wins over `Host`. Authentication
/// follows the route, and the backend gets the host that was routed, not the `Host` line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absolute_form_authority_decides_route_auth_and_forwarded_host() {
    let setup = Setup::start().await;

    let anonymous = setup
        .send("GET http://private.test/x HTTP/1.1\r\nHost: open.test\r\n")
        .await;
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    assert_eq!(setup.reached(), (0, 0));

    let signed_in = setup
        .send(&format!(
            "GET http://private.test/x HTTP/1.1\r\nHost: open.test\r\n\
             Authorization: Bearer {}\r\n",
            setup.token
        ))
        .await;
    assert_eq!(signed_in.status, 200, "{signed_in:?}");
    assert_eq!(signed_in.header("x-backend"), Some("b0"));
    assert_eq!(
        received_header(&signed_in, "host").as_deref(),
        Some("private.test")
    );
    assert_eq!(
        received_header(&signed_in, "x-forwarded-host").as_deref(),
        Some("private.test")
    );

    // Userinfo makes the authority match no service: the control plane answers, no backend.
    let userinfo = setup
        .send("GET http://open.test@private.test/x HTTP/1.1\r\nHost: private.test\r\n")
        .await;
    assert_eq!(userinfo.status, 404, "{userinfo:?}");
    assert_eq!(userinfo.header("x-backend"), None);
    assert_eq!(setup.reached(), (1, 0));
}

/// An HTTP/2 request whose `:authority` and `host` disagree is routed by `:authority` (the
/// request's target, as for an absolute-form URI), and the backend's `Host` is that authority.
/// RFC 9113 §8.3.1 would also allow refusing it; Gatehouse routes and forwards one host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_authority_decides_route_auth_and_forwarded_host() {
    let setup = Setup::start().await;
    let addr = setup.gatehouse.addr;

    let (status, _) = h2_get(addr, "private.test", "open.test", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(setup.reached(), (0, 0));

    let (status, body) = h2_get(addr, "open.test", "private.test", None).await;
    assert_eq!(status, StatusCode::OK);
    let echo: serde_json::Value = serde_json::from_slice(&body).expect("JSON echo");
    assert_eq!(echo["backend"], "b1");
    assert_eq!(echo["headers"]["host"], "open.test");
    assert_eq!(setup.reached(), (0, 1));

    let (status, body) = h2_get(addr, "private.test", "open.test", Some(&setup.token)).await;
    assert_eq!(status, StatusCode::OK);
    let echo: serde_json::Value = serde_json::from_slice(&body).expect("JSON echo");
    assert_eq!(echo["backend"], "b0");
    assert_eq!(echo["headers"]["host"], "private.test");
    assert_eq!(echo["headers"]["x-forwarded-user"], "alice");
}

/// `GET /h2` over h2c (prior knowledge) with `:authority` and a separate `host` header.
async fn h2_get(
    addr: SocketAddr,
    authority: &str,
    host: &str,
    token: Option<&str>,
) -> (StatusCode, Bytes) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(connection);
    let mut request = Request::get(format!("http://{authority}/h2")).header("host", host);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request.body(Empty::<Bytes>::new()).expect("valid request");
    let response = tokio::time::timeout(REPLY_WITHIN, sender.send_request(request))
        .await
        .expect("an h2 answer in time")
        .expect("h2 response");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("h2 body")
        .to_bytes();
    (status, body)
}
