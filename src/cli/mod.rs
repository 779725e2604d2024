//! The commands beside `serve` that the binary runs: account administration, `explain` (what
//! the access rules decide for a request) and the container health probe. Argument parsing and the serving command live in `main.rs`.

pub mod accounts;
pub mod apikeys;
pub mod email_check;
pub mod explain;
pub mod probe;

pub mod keys;
