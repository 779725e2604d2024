//! Listeners and connections: accept with a cap, serve HTTP/1.1 and h2c, drain on shutdown;
//! the optional admin listener.

mod accept;
pub(crate) mod access_log;
mod admin;
mod preface;
mod workers;

pub use accept::ServerOptions;
pub use admin::serve_admin;
pub use workers::serve_workers;
