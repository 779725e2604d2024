//! Files of the repository the deployment tests read: the compose stack, the Helm chart.

use std::path::{Path, PathBuf};

/// `path` (relative to the repository root) as an absolute path.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A YAML string; panics naming what it got instead.
pub fn yaml_text(value: &serde_yaml_ng::Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("expected a string, got {value:?}"))
}
