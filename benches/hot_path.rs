//! How to run: cargo bench --bench hot_path
//!
//! What every proxied request pays for before and after the network: routing, the balancer's
//! pick, token checks, the header rewrite and the metrics it records. Everything is built the
//! way the proxy builds it (YAML → `Settings` → `Router`; keys and `Auth` from settings; tokens
//! from the issuer), so the numbers follow the real code. `cargo test --all-targets` runs each
//! bench once, as a smoke test; keep setup cheap for that.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use gatehouse::auth::{Auth, Identity, TokenKeys};
use gatehouse::clock::now_ms;
use gatehouse::config::{parse_str, Settings};
use gatehouse::forwarder::{add_identity, rewrite_request_headers};
use gatehouse::metrics::{method_slot, Metrics};
use gatehouse::request::ClientInfo;
use gatehouse::router::Router;
use gatehouse::service::IdentityHeaders;
use gatehouse::store::{Account, Credentials, Role};
use http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode, Version};
use ipnet::IpNet;

// The allocator the binary uses (src/main.rs), so allocation costs match production.
#[global_allocator]
static ALLOCATOR: gatehouse::allocator::Mimalloc = gatehouse::allocator::Mimalloc;

/// The HS256 secret of every bench token (32 bytes or more, as the config requires).
const SECRET: &[u8] = b"bench-secret-bench-secret-bench-secret!!";

/// The client every bench request comes from.
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

const STRATEGIES: [&str; 4] = ["round_robin", "random", "least_requests", "p2c"];

/// One `services:` entry: `backends` backends on distinct ports, weighted by `weight(index)`.
fn service_yaml(name: &str, strategy: &str, backends: usize, weight: fn(usize) -> u32) -> String {
    let mut yaml = format!(
        "  - name: {name}\n    hosts: [{name}.example.com]\n    strategy: {strategy}\n    auth: none\n    backends:\n"
    );
    for index in 0..backends {
        let port = 10_000 + index;
        let weight = weight(index);
        yaml.push_str(&format!(
            "      - {{url: 'http://127.0.0.1:{port}', weight: {weight}}}\n"
        ));
    }
    yaml
}

fn router(services: &[String]) -> Router {
    router_in(services, &Metrics::new())
}

/// The routing table of these services, its metric handles resolved in `metrics`.
fn router_in(services: &[String], metrics: &Metrics) -> Router {
    let yaml = format!("services:\n{}", services.concat());
    let settings = parse_str(&yaml, "bench").expect("bench config is valid");
    Router::build(&settings, metrics, None, false)
}

fn equal(_: usize) -> u32 {
    1
}

/// Uneven weights (1 to 5), so the schedule is longer than the pool.
fn uneven(index: usize) -> u32 {
    (index % 5 + 1) as u32
}

/// A table of `count` one-backend services named `svc0` … `svc{count-1}`.
fn table(count: usize) -> Router {
    let services: Vec<String> = (0..count)
        .map(|i| service_yaml(&format!("svc{i}"), "round_robin", 1, equal))
        .collect();
    router(&services)
}

fn router_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("router");
    for (label, count) in [("few", 4), ("many", 1000)] {
        let routes = table(count);
        let known = format!("svc{}.example.com", count / 2);
        let cases = [
            ("exact", known.clone()),
            ("with_port", format!("{known}:8443")),
            ("upper_case", known.to_ascii_uppercase()),
            ("unknown", "nobody.example.com".to_string()),
        ];
        for (case, host) in cases {
            assert_eq!(
                routes.lookup(&host).is_some(),
                case != "unknown",
                "{label}/{case}"
            );
            group.bench_with_input(BenchmarkId::new(label, case), &host, |b, host| {
                b.iter(|| routes.lookup(black_box(host)).is_some())
            });
        }
        // What the handler calls: the Host header read from the request, then the lookup.
        let request = Request::get("/api/items?page=2")
            .header(header::HOST, &known)
            .body(())
            .unwrap();
        group.bench_function(BenchmarkId::new(label, "route_request"), |b| {
            b.iter(|| routes.route(black_box(&request)).is_some())
        });
    }
    group.finish();
}

/// A pool to pick from: its label, its size and the weight of each backend.
type Pool = (&'static str, usize, fn(usize) -> u32);

const POOLS: [Pool; 3] = [
    ("2", 2, equal),
    ("64", 64, equal),
    ("64-weighted", 64, uneven),
];

/// The service of one strategy and pool (host names allow no `_`).
fn pool_name(strategy: &str, pool: &str) -> String {
    format!("{}-{pool}", strategy.replace('_', "-"))
}

fn strategy_pick(c: &mut Criterion) {
    let mut services = Vec::new();
    for strategy in STRATEGIES {
        for (pool, count, weight) in POOLS {
            services.push(service_yaml(
                &pool_name(strategy, pool),
                strategy,
                count,
                weight,
            ));
        }
    }
    let routes = router(&services);
    // Uneven load (0–2 requests in flight) so the load-aware strategies compare for real; the
    // guards live until the group ends.
    let mut in_flight = Vec::new();
    for strategy in STRATEGIES {
        for (pool, _, _) in POOLS {
            let service = routes.service(&pool_name(strategy, pool)).unwrap();
            for (index, backend) in service.backends.iter().enumerate() {
                in_flight.extend((0..index % 3).map(|_| backend.state.start_request()));
            }
        }
    }
    // One clock read per request in the forwarder, taken outside the pick.
    let now = now_ms();
    let mut group = c.benchmark_group("pick");
    for strategy in STRATEGIES {
        for (pool, count, _) in POOLS {
            let service = routes.service(&pool_name(strategy, pool)).unwrap();
            assert!(service.balancer.pick(&service.backends, now).unwrap() < count);
            group.bench_function(BenchmarkId::new(strategy, pool), |b| {
                b.iter(|| service.balancer.pick(black_box(&service.backends), now))
            });
        }
    }
    group.finish();
    drop(in_flight);
}

fn credentials() -> Credentials {
    Credentials {
        account: Account {
            id: "0197a3c2-5b1e-7c3d-9f10-2a4b6c8d0e12".into(),
            username: "alice.smith".into(),
            email: "alice.smith@my-company.com".into(),
            role: Role::User,
            created_at_ms: 0,
            disabled: false,
        },
        password_hash: String::new(),
        token_generation: 1,
    }
}

/// Scratch files (key, database) removed when dropped.
struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("gatehouse-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir is writable");
        ScratchDir(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Settings with these `auth.jwt` keys and no services.
fn jwt_settings(jwt: &str) -> Settings {
    let yaml = format!("auth:\n  jwt: {{issuer: gatehouse, ttl: 15m, {jwt}}}\nservices: []\n");
    parse_str(&yaml, "bench").expect("bench config is valid")
}

/// EdDSA keys loaded from a fresh PEM file, as `auth.jwt.key_file` names it.
fn eddsa_keys(scratch: &ScratchDir) -> TokenKeys {
    use aws_lc_rs::signature::Ed25519KeyPair;
    use base64::engine::{general_purpose::STANDARD, Engine};
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(pkcs8.as_ref())
    );
    let path = scratch.0.join("ed25519.pem");
    std::fs::write(&path, pem).unwrap();
    let settings = jwt_settings(&format!("algorithm: EdDSA, key_file: '{}'", path.display()));
    TokenKeys::from_settings(&settings.auth.jwt, None).expect("the key loads")
}

fn jwt_verify(c: &mut Criterion) {
    let scratch = ScratchDir::new();
    let hs256 = TokenKeys::hs256(SECRET, "gatehouse", Duration::from_secs(900));
    let eddsa = eddsa_keys(&scratch);
    let mut group = c.benchmark_group("jwt");
    for (name, keys) in [("verify_hs256", &hs256), ("verify_eddsa", &eddsa)] {
        let (token, claims) = keys.issue(&credentials()).unwrap();
        assert_eq!(keys.verify(&token).unwrap(), claims);
        group.bench_function(name, |b| b.iter(|| keys.verify(black_box(&token))));
    }
    // What each forged EdDSA token cost before the refused-token cache: a failed signature
    // check is as dear as a good one.
    let forged = forged(&eddsa.issue(&credentials()).unwrap().0);
    assert!(eddsa.verify(&forged).is_err());
    group.bench_function("verify_forged_eddsa", |b| {
        b.iter(|| eddsa.verify(black_box(&forged)))
    });
    let auth = bench_auth(&scratch);
    authenticate_cached(&mut group, &auth, &hs256);
    authenticate_refused(&mut group, &auth, &hs256);
    group.finish();
}

/// `token` with its signature's first character changed: well-formed, wrongly signed.
fn forged(token: &str) -> String {
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let first = if signature.starts_with('A') { 'B' } else { 'A' };
    format!("{signed}.{first}{}", &signature[1..])
}

/// An HS256 `Auth` on a scratch SQLite store, as `gatehouse serve` starts it.
fn bench_auth(scratch: &ScratchDir) -> Auth {
    let database = format!("sqlite://{}", scratch.0.join("accounts.db").display());
    let mut settings = jwt_settings("algorithm: HS256");
    settings.auth.jwt.set_secret_override(SECRET.to_vec());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(Auth::start(&settings.auth, &database, Metrics::new()))
        .expect("auth starts on a scratch SQLite file")
}

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let value = HeaderValue::try_from(format!("Bearer {token}")).unwrap();
    headers.insert(header::AUTHORIZATION, value);
    headers
}

/// What a forged token costs once refused: a repeat is answered from the refused-token cache
/// (`authenticate_cached_invalid`); a new one, once the network's bucket is empty, is refused
/// unchecked (`authenticate_throttled`). Compare with `verify_forged_eddsa`.
fn authenticate_refused(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    auth: &Auth,
    keys: &TokenKeys,
) {
    let headers = bearer(&forged(&keys.issue(&credentials()).unwrap().0));
    assert!(auth.authenticate(&headers, CLIENT).is_err());
    group.bench_function("authenticate_cached_invalid", |b| {
        b.iter(|| auth.authenticate(black_box(&headers), CLIENT).is_err())
    });
    // Distinct forgeries from one network until its bucket refuses them.
    let base = forged(&keys.issue(&credentials()).unwrap().0);
    let mut n = 0u64;
    let mut next = || {
        n += 1;
        bearer(&format!("{base}{n}"))
    };
    while !matches!(
        auth.authenticate(&next(), CLIENT),
        Err(gatehouse::auth::AuthError::Throttled(_))
    ) {}
    group.bench_function("authenticate_throttled", |b| {
        b.iter_batched(
            &mut next,
            |headers| auth.authenticate(black_box(&headers), CLIENT).is_err(),
            BatchSize::SmallInput,
        )
    });
}

/// What a request with a token already seen costs: `Auth::authenticate` finds it in the
/// verified-token cache and checks revocation; the signature is not checked again.
fn authenticate_cached(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    auth: &Auth,
    keys: &TokenKeys,
) {
    let (token, _) = keys.issue(&credentials()).unwrap();
    let headers = bearer(&token);
    let first = auth
        .authenticate(&headers, CLIENT)
        .expect("the token is accepted");
    assert_eq!(first.claims.username, "alice.smith");
    group.bench_function("authenticate_cached", |b| {
        b.iter(|| auth.authenticate(black_box(&headers), CLIENT).is_ok())
    });
}

/// A browser's API call as the proxy receives it.
///
/// `via_ingress`: over HTTP/1.1 from a trusted ingress that already added `X-Forwarded-*`
/// (and sends `Connection: keep-alive`, the hop-by-hop path); otherwise straight from the
/// client over HTTP/2, where the host comes as `:authority` and no hop-by-hop header exists.
fn browser_request(token: &str, via_ingress: bool) -> http::request::Parts {
    let path = "/api/v1/orders?status=open&page=2";
    let builder = if via_ingress {
        Request::get(path)
            .header(header::HOST, "app.my-company.com")
            .header(header::CONNECTION, "keep-alive")
            .header("x-forwarded-for", "203.0.113.7")
            .header("x-forwarded-proto", "https")
    } else {
        Request::get(format!("https://app.my-company.com{path}")).version(Version::HTTP_2)
    };
    builder
        .header(
            header::USER_AGENT,
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        )
        .header(header::ACCEPT, "application/json, text/plain, */*")
        .header(header::ACCEPT_LANGUAGE, "en-GB,en;q=0.9")
        .header(header::ACCEPT_ENCODING, "gzip, deflate, br, zstd")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::REFERER, "https://app.my-company.com/orders")
        .header(
            header::COOKIE,
            "theme=dark; _ga=GA1.2.1234567890.1700000000",
        )
        .header("sec-fetch-mode", "cors")
        .header("sec-fetch-site", "same-origin")
        .header("x-request-id", "0197a3c2-5b1e-7c3d-9f10-2a4b6c8d0e12")
        .body(())
        .unwrap()
        .into_parts()
        .0
}

/// What the forwarder does to an authenticated request's headers before sending it: the
/// rewrite (hop-by-hop and spoofed identity out, `X-Forwarded-*`, `X-Real-IP` and `Forwarded`
/// in), then the identity.
fn header_rewrite(c: &mut Criterion) {
    let keys = TokenKeys::hs256(SECRET, "gatehouse", Duration::from_secs(900));
    let (token, claims) = keys.issue(&credentials()).unwrap();
    let identity = Identity::new(claims).unwrap();
    let trusted: Arc<[IpNet]> = Arc::from(["10.0.0.0/8".parse::<IpNet>().unwrap()]);
    let ingress = ClientInfo::new("10.1.2.3:40000".parse().unwrap(), "http", trusted.clone());
    let direct = ClientInfo::new("198.51.100.9:51234".parse().unwrap(), "https", trusted);
    let defaults = parse_str("services: []\n", "defaults.yaml").unwrap();
    let identity_headers = IdentityHeaders::new(&defaults.identity_headers);
    let rewrite = |mut parts: http::request::Parts, client: &ClientInfo| {
        rewrite_request_headers(&mut parts, client, &identity_headers);
        add_identity(&mut parts.headers, &identity.caller, false);
        parts // dropped outside the timing
    };
    let forwarded = rewrite(browser_request(&token, true), &ingress);
    assert_eq!(
        forwarded.headers["x-forwarded-for"],
        "203.0.113.7, 10.1.2.3"
    );
    assert!(!forwarded.headers.contains_key(header::CONNECTION));
    let forwarded = rewrite(browser_request(&token, false), &direct);
    assert_eq!(forwarded.headers[header::HOST], "app.my-company.com");
    assert_eq!(forwarded.headers["x-forwarded-user"], "alice.smith");
    let mut group = c.benchmark_group("headers");
    for (name, via_ingress, client) in [
        ("rewrite_http1_via_ingress", true, &ingress),
        ("rewrite_h2_direct", false, &direct),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || browser_request(&token, via_ingress),
                |parts| rewrite(parts, client),
                // Small batches keep the headers in cache, as hyper's freshly parsed ones are
                // (large batches measured 10–20% more, from cache misses alone).
                BatchSize::NumIterations(16),
            )
        });
    }
    group.finish();
}

/// Per request: the service's request counter and latency histogram (handler), and the
/// answering backend's attempt counter and health bookkeeping (forwarder).
fn metrics_recording(c: &mut Criterion) {
    let metrics = Metrics::new();
    let routes = router_in(&[service_yaml("svc", "round_robin", 2, equal)], &metrics);
    let service = routes.service("svc").unwrap();
    let backend = &service.backends[0];
    let elapsed = Duration::from_micros(1_800);
    let mut group = c.benchmark_group("metrics");
    group.bench_function("service_record", |b| {
        b.iter(|| {
            let method = method_slot(black_box(&Method::GET));
            service
                .metrics
                .record(method, black_box(StatusCode::OK), elapsed);
        })
    });
    group.bench_function("backend_answered", |b| {
        b.iter(|| backend.state.answered(black_box(StatusCode::OK)))
    });
    group.bench_function("per_request", |b| {
        b.iter(|| {
            let method = method_slot(black_box(&Method::POST));
            backend.state.answered(black_box(StatusCode::CREATED));
            service.metrics.record(method, StatusCode::CREATED, elapsed);
        })
    });
    group.finish();
    // The benches counted on the service's and backend's real series.
    let text = String::from_utf8(metrics.encode()).unwrap();
    for series in [
        r#"gatehouse_requests_total{code="201",method="POST",service="svc"}"#,
        r#"gatehouse_upstream_requests_total{backend="127.0.0.1:10000",code="201",service="svc"}"#,
    ] {
        assert!(text.contains(series), "{series} missing");
    }
}

/// What `assertion: true` adds to a proxied request: the header rewrite as `header_rewrite`
/// measures it, with and without the cached `X-Gatehouse-Assertion` lookup and insert; and,
/// for scale, what signing one costs when the cache misses (once per caller and service every
/// few minutes).
fn assertion(c: &mut Criterion) {
    let scratch = ScratchDir::new();
    let database = format!("sqlite://{}", scratch.0.join("keys.db").display());
    let mut settings = jwt_settings("algorithm: HS256");
    settings.auth.jwt.set_secret_override(SECRET.to_vec());
    settings
        .auth
        .keys
        .set_secret_override(b"bench-key-secret-bench-key-secret-bench!".to_vec());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let auth = runtime
        .block_on(Auth::start(&settings.auth, &database, Metrics::new()))
        .expect("auth starts with signing keys on a scratch SQLite file");
    let assertions = auth.assertions.as_ref().expect("a keyring with a secret");
    let keyring = auth.keyring.as_ref().expect("a keyring with a secret");
    let (token, claims) = auth.keys.issue(&credentials()).unwrap();
    let identity = Identity::new(claims.clone()).unwrap();
    let direct = ClientInfo::new(
        "198.51.100.9:51234".parse().unwrap(),
        "https",
        Arc::from([]),
    );
    let identity_headers = IdentityHeaders::new(&settings.identity_headers);
    let first = assertions.header_for(&identity, "app").expect("signs");
    assert_eq!(assertions.header_for(&identity, "app"), Some(first));
    let mut group = c.benchmark_group("assertion");
    group.bench_function("headers_without", |b| {
        b.iter_batched(
            || browser_request(&token, false),
            |mut parts| {
                rewrite_request_headers(&mut parts, &direct, &identity_headers);
                add_identity(&mut parts.headers, &identity.caller, false);
                parts
            },
            BatchSize::NumIterations(16),
        )
    });
    group.bench_function("headers_with_cached", |b| {
        b.iter_batched(
            || browser_request(&token, false),
            |mut parts| {
                rewrite_request_headers(&mut parts, &direct, &identity_headers);
                add_identity(&mut parts.headers, &identity.caller, false);
                if let Some(value) = assertions.header_for(black_box(&identity), "app") {
                    parts.headers.insert("x-gatehouse-assertion", value);
                }
                parts
            },
            BatchSize::NumIterations(16),
        )
    });
    group.bench_function("cached_lookup", |b| {
        b.iter(|| assertions.header_for(black_box(&identity), black_box("app")))
    });
    let signer = keyring.signer(gatehouse::clock::unix_millis());
    group.bench_function("sign_uncached", |b| {
        b.iter(|| signer.sign(black_box(&claims)))
    });
    group.finish();
}

criterion_group!(
    benches,
    router_lookup,
    strategy_pick,
    jwt_verify,
    header_rewrite,
    metrics_recording,
    assertion
);
criterion_main!(benches);
