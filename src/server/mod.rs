//! Listeners and connections: accept with a cap, serve HTTP/1.1 and h2c, drain on shutdown.

mod accept;
pub(crate) mod access_log;
mod preface;
mod workers;

pub use accept::ServerOptions;
pub use workers::serve_workers;
