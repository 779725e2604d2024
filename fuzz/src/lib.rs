//! The fuzz targets' entry points: each takes the fuzzer's bytes, drives Gatehouse's real
//! functions with them, and panics when one of the properties the code promises breaks (a
//! plain panic inside Gatehouse counts too).
//!
//! The targets in `fuzz_targets/` are one-line wrappers; `tests/it/fuzz_regressions.rs` includes
//! this file to replay the seed corpus and every past crash on stable, so nothing here may
//! depend on more than the gatehouse package itself does.

pub mod auth_bearer;
pub mod config_load;
pub mod forward_headers;
mod reads;
pub mod server_requests;
pub mod upstream_response;

pub use auth_bearer::auth_bearer;
pub use config_load::config_load;
pub use forward_headers::forward_headers;
pub use server_requests::server_requests;
pub use upstream_response::upstream_response;
