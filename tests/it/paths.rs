//! Path tricks (`..%2f`, `%2e%2e`, `//`, `;params`, control-plane names) against the real
//! binary. Gatehouse decides by host alone, so no path can change a route or skip
//! authentication; the control plane matches its paths exactly, so no spelling of one reaches
//! a handler; and a backend receives the target exactly as the proxy read it, so both decide on
//! the same bytes. `headers.rs` checks that an ordinary path and query pass unchanged;
//! `routing.rs` that unknown hosts get the control plane.

use crate::common;

use common::setup::Setup;

/// Request targets that some servers normalise onto another path, and the control plane's own
/// paths, which a service host must not serve.
const TRICKY_TARGETS: [&str; 20] = [
    "/",
    "/..%2f",
    "/..%2F..%2Faccounts",
    "/%2e%2e/",
    "/%2E%2E%2Faccounts",
    "/..;/admin",
    "/public/..;/private",
    "//",
    "//accounts",
    "/;jsessionid=x",
    "/./",
    "/%2F",
    "/%00",
    "/a\\..\\b",
    "/health",
    "/login",
    "/accounts",
    "/accounts_page",
    "/.well-known/jwks.json",
    "/public?next=/private",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_path_on_a_service_host_skips_authentication() {
    let setup = Setup::start().await;

    for target in TRICKY_TARGETS {
        let reply = setup.request("GET", target, "private.test", "").await;

        assert_eq!(reply.status, 401, "{target}: {reply:?}");
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"), "{target}");
    }
    // Other request-target forms: asterisk (OPTIONS *), authority (CONNECT) and absolute.
    // CONNECT is never proxied, so it is refused (405) before authentication is even asked.
    let other_forms = [
        ("OPTIONS", "*", 401),
        ("CONNECT", "private.test:443", 405),
        ("GET", "http://private.test/..%2f", 401),
        ("POST", "http://private.test/login", 401),
    ];
    for (method, target, status) in other_forms {
        let reply = setup.request(method, target, "private.test", "").await;

        assert_eq!(reply.status, status, "{method} {target}: {reply:?}");
    }
    assert_eq!(
        setup.private.connections(),
        0,
        "a request reached the backend"
    );
}

/// The backend gets the target byte for byte: no decoding, no dot-segment or slash merging, no
/// stripping of `;params`. Only an absolute-form target is rewritten, to its path and query
/// (origin form, RFC 9112 §3.2.1), and a fragment, which no client should send, is cut by the
/// parser before routing sees it, so the proxy and the backend still agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_receives_the_target_byte_for_byte() {
    let setup = Setup::start().await;
    let bearer = format!("Authorization: Bearer {}\r\n", setup.token);

    let mut cases: Vec<(&str, &str)> = TRICKY_TARGETS.iter().map(|t| (*t, *t)).collect();
    cases.extend([
        ("/a/./b/../c", "/a/./b/../c"),
        ("/A/%2e%2E/B%2f%2F", "/A/%2e%2E/B%2f%2F"),
        ("//x//y///", "//x//y///"),
        ("/a;p=1/b;q=2?x=;y&z=%26", "/a;p=1/b;q=2?x=;y&z=%26"),
        ("/%252e%252e/", "/%252e%252e/"),
        ("/caf%C3%A9/café", "/caf%C3%A9/café"),
        ("/a%20b+c", "/a%20b+c"),
        ("//evil.test/x", "//evil.test/x"),
        (
            "http://private.test//a/..%2fb;c?q=%2F",
            "//a/..%2fb;c?q=%2F",
        ),
        ("/frag#..%2f..%2faccounts", "/frag"),
    ]);
    for (target, expected) in cases {
        let reply = setup.request("GET", target, "private.test", &bearer).await;

        assert_eq!(reply.status, 200, "{target}: {reply:?}");
        let echo = reply.json();
        assert_eq!(echo["path"], expected, "{target}");
        assert_eq!(echo["headers"]["x-forwarded-user"], "alice", "{target}");
    }
    let asterisk = setup.request("OPTIONS", "*", "private.test", &bearer).await;
    assert_eq!(asterisk.status, 200, "{asterisk:?}");
    assert_eq!(asterisk.json()["path"], "*");
    assert_eq!(asterisk.json()["method"], "OPTIONS");
}

/// The control plane matches its paths exactly: `/accounts` needs a token (401), and no other
/// spelling of it (encoded, dotted, doubled slashes, `;params`, case) reaches that handler or
/// any other; each is a 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_paths_match_exactly() {
    let setup = Setup::start().await;

    let exact = setup.request("GET", "/accounts", "control.test", "").await;
    assert_eq!(exact.status, 401, "{exact:?}");
    let with_query = setup
        .request("GET", "/accounts?q=a", "control.test", "")
        .await;
    assert_eq!(with_query.status, 401, "{with_query:?}");

    let spellings = [
        "/accounts/",
        "//accounts",
        "/./accounts",
        "/x/../accounts",
        "/x/..%2faccounts",
        "/%2e/accounts",
        "/%61ccounts",
        "/accounts%2f",
        "/accounts;x",
        "/accounts%00",
        "/accounts%20",
        "/ACCOUNTS",
        "/accounts/.",
        "/accounts_page/..",
        "/health/../accounts",
    ];
    for target in spellings {
        let reply = setup.request("GET", target, "control.test", "").await;

        assert_eq!(reply.status, 404, "{target}: {reply:?}");
        assert_eq!(reply.json()["error"], "not_found", "{target}");
    }
    let absolute = setup
        .request("GET", "http://control.test/%61ccounts", "private.test", "")
        .await;
    assert_eq!(absolute.status, 404, "{absolute:?}");
    assert_eq!(setup.private.connections(), 0);
}
