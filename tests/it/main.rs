//! The functional integration tests: one test binary, one module per area, all sharing
//! `tests/common`. Run one area with `cargo test --test it AREA::`, e.g.
//! `cargo test --test it tls::`.
//!
//! Tests here run two at a time (libtest's default on two cores) beside any other test of this
//! binary, so none of them may change process-wide state (environment, resource limits, a
//! global subscriber) or need the machine to themselves. The suites that do keep a binary of
//! their own in `tests/`:
//! - `exhaustion.rs`: raises the process's open-file limit, holds 10 000 connections, and
//!   bounds the proxy's memory and other clients' latency under each attack;
//! - `faults.rs`: kills backends, the store and Gatehouse itself under load, with latency and
//!   loss bounds measured during the fault;
//! - `account_load.rs`: a thousand registrations per store and a login storm, which keep both
//!   cores busy with argon2 for a minute or two and bound proxy latency meanwhile;
//! - `login_timing.rs`: compares login times for known and unknown emails, which only means
//!   something when the load around it is its own.

#[path = "../common/mod.rs"]
mod common;

mod access_log;
mod account_attacks;
mod accounts;
mod accounts_page;
mod api_keys;
mod audit;
mod auth;
mod balancing;
mod compose;
mod config_errors;
mod connections;
mod failures;
mod forged_tokens;
mod framing;
mod fuzz_regressions;
mod header_abuse;
mod headers;
mod helm;
mod http1_server;
mod identifiers;
mod jwt_attacks;
mod lifecycle;
mod limits;
mod lockout;
mod methods;
mod metrics;
mod monitoring;
mod paths;
mod policy;
mod pooling;
mod probe;
mod ready;
mod refresh;
mod replicas;
mod routes;
mod routing;
mod signin;
mod slow_bodies;
mod smuggling;
mod store;
mod streaming;
mod tls;
mod tokens;
mod traffic;
mod trusted_proxies;

// Signing keys and assertions (issue 17).
mod assertions;
