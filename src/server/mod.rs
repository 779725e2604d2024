//! Listeners and connections: accept with a cap, serve HTTP/1.1 and h2c (or HTTP/1.1 and h2
//! over TLS), request limits, drain on shutdown; a listening socket a reload can move; the
//! optional admin listener.

mod accept;
mod admin_listener;
mod h1;
mod listen;
mod preface;
mod replay;
mod stream;
mod tls;
mod workers;

pub use accept::ServerOptions;
pub use admin_listener::serve_admin;
pub use h1::taken_heads;
pub use listen::{bind, Listen};
pub use tls::{CertWatch, Reloaded, ServerTls, TlsError};
pub use workers::serve_workers;
