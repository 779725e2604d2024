//! Rebuild when a migration is added: `sqlx::migrate!` embeds the `migrations/` folder, and
//! cargo otherwise notices only edits to files it already knows.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
