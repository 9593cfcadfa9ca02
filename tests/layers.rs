//! The layering rule of docs/architecture.md, checked on the source: a
//! top-level module imports only from layers below its own, and the
//! sibling files inside a module import each other without a loop.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Bottom up; a module may use the modules of lower layers only.
const LAYERS: &[&[&str]] = &[
    &["bittorrent"],
    &["placement", "protocol"],
    &["config"],
    &["storage", "middleware", "private"],
    &["tracker"],
    &["net", "metrics"],
    &["shard"],
    &["server"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its comments (doc comments name modules
/// freely).
fn code(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The identifiers that follow `prefix` in `text` (e.g. `crate::` ->
/// `config`), including those inside `use prefix{a, b::c}` groups.
fn names_after(text: &str, prefix: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut names = BTreeSet::new();
    for (i, _) in text.match_indices(prefix) {
        let rest = &text[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                let name = ident(item.trim());
                if !name.is_empty() {
                    names.insert(name);
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names
}

/// The top-level module a file belongs to (`src/shard/udp.rs` -> `shard`).
fn top_module(path: &Path) -> String {
    let rel = path.strip_prefix(src()).unwrap();
    let first = rel.components().next().unwrap().as_os_str();
    first.to_string_lossy().trim_end_matches(".rs").to_owned()
}

#[test]
fn every_module_imports_from_lower_layers_only() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut wrong = Vec::new();
    for path in &files {
        let module = top_module(path);
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(own) = layer_of(&module) else {
            wrong.push(format!("{module} is in no layer of LAYERS"));
            continue;
        };
        for used in names_after(&code(path), "crate::") {
            if used == module {
                continue;
            }
            match layer_of(&used) {
                Some(l) if l < own => {}
                _ => wrong.push(format!(
                    "{} uses crate::{used}, which is not below {module}",
                    path.strip_prefix(src()).unwrap().display()
                )),
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn sibling_files_import_each_other_without_loops() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    // Per directory: each child file (not mod.rs, which ties its children
    // together) and the siblings it names through `super::`.
    let mut graphs: BTreeMap<PathBuf, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for path in &files {
        let dir = path.parent().unwrap().to_path_buf();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "mod" || dir == src() {
            continue;
        }
        let siblings: BTreeSet<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                p.file_stem().unwrap().to_string_lossy().into_owned()
            })
            .filter(|s| s != "mod" && *s != name)
            .collect();
        let used = names_after(&code(path), "super::")
            .into_iter()
            .filter(|u| siblings.contains(u))
            .collect();
        graphs.entry(dir).or_default().insert(name, used);
    }
    for (dir, graph) in &graphs {
        // Kahn's algorithm: whatever cannot be ordered sits on a loop.
        let mut left = graph.clone();
        while let Some(free) = left
            .iter()
            .find(|(_, uses)| uses.iter().all(|u| !left.contains_key(u)))
            .map(|(n, _)| n.clone())
        {
            left.remove(&free);
        }
        assert!(
            left.is_empty(),
            "{}: these files import each other in a loop: {left:?}",
            dir.display()
        );
    }
}

#[test]
fn the_checker_sees_groups_and_paths() {
    let text = "use crate::{config::X, storage};\nlet a = crate::tracker::f();";
    let names: Vec<_> = names_after(text, "crate::").into_iter().collect();
    assert_eq!(names, ["config", "storage", "tracker"]);
}
