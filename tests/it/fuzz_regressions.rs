//! The fuzz targets' inputs on stable, without libFuzzer: every committed seed of
//! `fuzz/corpus/<target>/` and every past crash of `fuzz/regressions/<target>/` goes through the
//! same entry points the fuzzers run (`fuzz/src/lib.rs`, included below), with the same checks.
//! So CI exercises the targets even where nightly is missing, and a fixed crash stays fixed.
//!
//! How to run: cargo test --test it fuzz_regressions:: (the fuzzers themselves: scripts/fuzz).

#[path = "../../fuzz/src/lib.rs"]
mod fuzz;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// The files of `fuzz/<kind>/<target>/` that are committed: libFuzzer names what it adds to a
/// corpus by the SHA-1 of the content (40 hex digits), and those stay out of git.
fn committed_inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a readable directory").path())
        .filter(|path| path.is_file() && !generated(path))
        .collect();
    files.sort();
    files
}

fn generated(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Runs `entry` on every seed and regression input of `target`; a panic fails the test only
/// after every file ran, naming them all. Returns each seed's name and result.
fn replay<T>(target: &str, entry: fn(&[u8]) -> T) -> Vec<(String, T)> {
    let seeds = committed_inputs("corpus", target);
    assert!(
        seeds.len() >= 5,
        "fuzz/corpus/{target} lost its seeds: {seeds:?}"
    );
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for path in seeds.iter().chain(&committed_inputs("regressions", target)) {
        let data = std::fs::read(path).expect("a readable input");
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        match catch_unwind(AssertUnwindSafe(|| entry(&data))) {
            Ok(result) => results.push((name, result)),
            Err(_) => failures.push(path.display().to_string()),
        }
    }
    assert!(failures.is_empty(), "{target} panicked on: {failures:#?}");
    results
}

/// Seeds named `accept-…` / `refuse-…` (auth) or `errors-…` (config) must come out that way,
/// or the corpus stops reaching the code it was written for.
fn assert_named_outcomes(results: &[(String, Option<bool>)], accept: &str, refuse: &str) {
    for (name, result) in results {
        if name.starts_with(accept) {
            assert_eq!(*result, Some(true), "{name} was not accepted");
        }
        if name.starts_with(refuse) {
            assert_eq!(*result, Some(false), "{name} was not refused");
        }
    }
}

#[test]
fn config_seeds_and_past_crashes_replay_cleanly() {
    let results = replay("config_load", fuzz::config_load);
    for (name, result) in &results {
        let expected = !(name.starts_with("errors-") || name.starts_with("empty"));
        if name.ends_with(".yaml") {
            assert_eq!(*result, Some(expected), "{name}");
        }
    }
}

#[test]
fn bearer_seeds_and_past_crashes_replay_cleanly() {
    let results = replay("auth_bearer", fuzz::auth_bearer);
    // The fixture's stores stay open for the rest of the process, but only its deny-list feed
    // reads them, in the background, and nothing looks at that feed after this test.
    let _ = std::fs::remove_dir_all(fuzz::auth_bearer::fixture_dir());
    assert_named_outcomes(&results, "accept-", "refuse-");
    assert!(results.iter().any(|(_, r)| *r == Some(true)));
}

#[test]
fn header_seeds_and_past_crashes_replay_cleanly() {
    replay("forward_headers", fuzz::forward_headers);
}

#[test]
fn upstream_response_seeds_and_past_crashes_replay_cleanly() {
    replay("upstream_response", fuzz::upstream_response);
}

#[test]
fn server_requests_seeds_and_past_crashes_replay_cleanly() {
    replay("server_requests", fuzz::server_requests);
}

// Crashes the fuzzers found, as readable cases; the minimised inputs are under
// fuzz/regressions/<target>/.

/// `Connection` names headers to drop before forwarding (RFC 9110 §7.6.1). One element with a
/// non-ASCII byte made the whole line unreadable as text, so `X-Custom` reached the backend.
#[test]
fn a_connection_option_beside_a_non_ascii_element_is_still_removed() {
    fuzz::forward_headers(b"--\nConnection: close, X-Custom, caf\xe9\nX-Custom: dropped\n");
}

/// Behind a trusted load balancer the client is the rightmost untrusted `X-Forwarded-For`
/// entry. The balancer appends the address it saw to the client's own line, and a non-ASCII
/// byte the client put there hid that address: the client became the balancer itself,
/// sharing its rate-limit and login-throttle buckets.
#[test]
fn a_non_ascii_forwarded_for_element_does_not_hide_the_client_behind_it() {
    fuzz::forward_headers(
        b"peer 10.0.0.5\ntrusted 10.0.0.0/8\n--\nX-Forwarded-For: caf\xe9, 198.51.100.7\n",
    );
}

/// hyper's read buffer is bounded by `max_buf_size` (8 KiB here), so a longer head is refused
/// (431) however it arrives. The vendor patch copies a head's first read into a buffer of just
/// that size, and growing it doubled the capacity that the next read filled: after a first
/// read of 8000 bytes, a 9 KiB head was served, while the same bytes in one read got 431.
#[test]
fn a_head_over_the_read_buffer_is_refused_however_it_is_split() {
    let head = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "y".repeat(9000));
    fuzz::server_requests(format!("8000\n{head}").as_bytes());
    fuzz::server_requests(format!("8191 1\n{head}").as_bytes());
}

/// The YAML parser places an error at the end of a file without a final newline on the line
/// after the last: `gatehouse check` printed `PATH:3:1:` for this two-line file, a place no
/// editor or CI annotation can show.
#[test]
fn an_error_at_the_end_of_a_file_without_a_final_newline_points_inside_it() {
    assert_eq!(
        fuzz::config_load(b"listen: 127.0.0.1:8080\nservices"),
        Some(false)
    );
}

/// Any whole number of seconds is a valid `ttl`; at login `now + ttl` overflowed: a panic in
/// debug builds, and in release tokens that expired the moment they were issued. Found by the
/// config target's issue-and-verify check on a hand-written input (the fuzzer had not reached
/// such a number in its 6 minutes).
#[test]
fn a_token_lifetime_too_long_to_add_still_issues_tokens_that_verify() {
    let config = b"auth:\n  jwt: { ttl: 18446744073709551615s }\nservices: []\n";
    assert_eq!(fuzz::config_load(config), Some(true));
}
