//! The layer check: every module has a layer, and no module imports from a layer above its own,
//! so the module graph has no circle. It reads the `crate::…` paths of every source file, the
//! way a reviewer would, and runs with the unit tests (`cargo test --lib`).
//!
//! Chosen over splitting the leaves into workspace crates: one crate keeps `pub(crate)`
//! meaning "inside Gatehouse", builds once (a crate per layer would link sqlx and rustls into
//! more units and slow every build), and a failure here names the file, the line and the rule,
//! where a crate split only says "unresolved import". `docs/architecture.md` explains the
//! layers; change both together.

use std::path::{Path, PathBuf};

/// Bottom layer first. A module may use modules of a lower layer, never of its own or a higher
/// one (two modules of one layer know nothing of each other).
const LAYERS: &[&[&str]] = &[
    &["allocator", "clock", "request", "file_watch", "http1"],
    &["store"],
    &["config"],
    &["metrics"],
    &["auth"],
    &["error"],
    &["policy"],
    &["balancer"],
    &["service"],
    &["forwarder"],
    &["router"],
    &["state"],
    &["control"],
    &["signin"],
    &["handler"],
    &["server"],
    &["reload"],
    &["cli"],
];

/// The crate root declares the modules and wires the top-level API, so it may use any of them.
const ROOTS: &[&str] = &["lib", "main", "layers"];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The top-level module a source file belongs to: `src/auth/jwt.rs` → `auth`.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("under src");
    let first = relative.components().next().expect("a file");
    let name = first.as_os_str().to_string_lossy();
    name.strip_suffix(".rs").unwrap_or(&name).to_string()
}

fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src") {
        let path = entry.expect("readable entry").path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// The code of a file without its unit tests (test setup may reach up a layer) and without
/// comments.
fn code_lines(text: &str) -> Vec<(usize, &str)> {
    let lines: Vec<&str> = text.lines().collect();
    let tests = lines
        .windows(2)
        .position(|w| w[0].trim() == "#[cfg(test)]" && w[1].trim_start().starts_with("mod "))
        .unwrap_or(lines.len());
    lines[..tests]
        .iter()
        .enumerate()
        .map(|(n, line)| (n + 1, line.split("//").next().unwrap_or("")))
        .collect()
}

/// The top-level modules a line of code names through `crate::`, including grouped imports
/// (`use crate::{a, b::C}`).
fn crate_paths(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let preceded_by_ident = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        rest = &rest[at + "crate::".len()..];
        if preceded_by_ident {
            continue; // `gatehouse_crate::`, not a path of this crate.
        }
        if let Some(group) = rest.strip_prefix('{') {
            let group = group.split('}').next().unwrap_or("");
            for item in group.split(',') {
                let name: String = item.trim().chars().take_while(is_ident).collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
        } else {
            let name: String = rest.chars().take_while(is_ident).collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
    }
    found
}

fn is_ident(c: &char) -> bool {
    c.is_alphanumeric() || *c == '_'
}

/// Every upward (or sideways) import, as `file:line: message`; empty when the layers hold.
fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    for file in files {
        let module = module_of(src, &file);
        if ROOTS.contains(&module.as_str()) {
            continue;
        }
        let Some(own) = layer_of(&module) else {
            problems.push(format!(
                "{}: module `{module}` has no layer; add it to LAYERS in src/layers.rs and to docs/architecture.md",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("readable source");
        for (number, line) in code_lines(&text) {
            for used in crate_paths(line) {
                if used == module || used == "self" || used == "super" {
                    continue;
                }
                match layer_of(&used) {
                    Some(layer) if layer < own => {}
                    Some(layer) => problems.push(format!(
                        "{}:{number}: `{module}` (layer {own}) uses `{used}` (layer {layer}): a module may only use lower layers",
                        file.display()
                    )),
                    None => {} // An item of the crate root (`crate::start`), not a module.
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
    }

    #[test]
    fn no_module_imports_from_its_own_or_a_higher_layer() {
        let problems = violations(&src());
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn every_layered_module_exists() {
        let mut files = Vec::new();
        rust_files(&src(), &mut files);
        let modules: Vec<String> = files.iter().map(|f| module_of(&src(), f)).collect();
        for name in LAYERS.iter().flat_map(|layer| layer.iter()) {
            assert!(modules.iter().any(|m| m == name), "no module `{name}`");
        }
    }

    #[test]
    fn grouped_and_nested_paths_are_read() {
        assert_eq!(
            crate_paths("use crate::{auth::Auth, config, store::{Role}};"),
            ["auth", "config", "store"]
        );
        assert_eq!(crate_paths("x: crate::metrics::Metrics,"), ["metrics"]);
        assert!(crate_paths("use gatehouse_crate::x;").is_empty());
    }

    #[test]
    fn an_upward_import_is_reported_with_its_file_and_line() {
        let dir = std::env::temp_dir().join(format!("gatehouse-layers-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("store")).unwrap();
        std::fs::write(dir.join("store/mod.rs"), "use crate::auth::Auth;\n").unwrap();
        std::fs::write(dir.join("widget.rs"), "fn f() {}\n").unwrap();
        let problems = violations(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        let mut problems = problems.into_iter();
        let first = problems.next().unwrap();
        assert!(
            first.ends_with("mod.rs:1: `store` (layer 1) uses `auth` (layer 4): a module may only use lower layers"),
            "{first}"
        );
        assert!(problems
            .next()
            .unwrap()
            .contains("module `widget` has no layer"));
    }

    #[test]
    fn tests_and_comments_do_not_count() {
        let text = "// crate::server\nuse crate::config;\n#[cfg(test)]\nfn f() { crate::auth::x() }\n#[cfg(test)]\nmod tests { use crate::server; }\n";
        let used: Vec<String> = code_lines(text)
            .into_iter()
            .flat_map(|(_, l)| crate_paths(l))
            .collect();
        assert_eq!(used, ["config", "auth"]);
    }
}
