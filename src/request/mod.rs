//! What every layer knows about one request: who the client is (address, scheme, trust), who
//! the caller is once authenticated, its cookies, the request id, the host it is for, the network throttles
//! count it in, and the connection slot it holds. A leaf: it imports nothing from the rest of the crate.

mod caller;
mod client;
mod cookie;
mod host;
mod id;
mod network;
mod path;
mod slot;

pub use caller::Caller;
pub use client::{ip_header_value, ClientInfo};
pub use cookie::{cookie, remove_cookie};
pub use host::request_host;
pub use id::{RequestIds, X_REQUEST_ID};
pub use network::ClientNetwork;
pub use path::{normalize_path, PathError};
pub use slot::ConnectionSlot;
