//! `crates/drainpipe` has no import cycles between its files: every path a
//! file names (`use crate::…`, `use super::…`, or written out in the code) is
//! an edge to the file that defines the module it names, and the graph of
//! those edges has no cycle. A parent `mod.rs` that re-exports its children
//! is not a place to import from: a child naming `super::Item` would close a
//! cycle through it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file (`server/conn.rs` → `[server, conn]`,
/// `server/mod.rs` → `[server]`, `lib.rs` → `[]`).
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The file defining the deepest module named by `path`.
fn file_of(path: &[String]) -> String {
    for n in (1..=path.len()).rev() {
        let joined = path[..n].join("/");
        for candidate in [format!("{joined}.rs"), format!("{joined}/mod.rs")] {
            if src().join(&candidate).exists() {
                return candidate;
            }
        }
    }
    "lib.rs".into()
}

/// Expands `a::{b, c::{d}}` into `a::b`, `a::c::d`.
fn expand(path: &str) -> Vec<String> {
    let Some(open) = path.find('{') else {
        return vec![path.to_string()];
    };
    let prefix = &path[..open];
    let inner = &path[open + 1..path.rfind('}').unwrap_or(path.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand(&format!("{prefix}{p}")))
        .collect()
}

/// The paths starting with `crate::`, `super::` or one of `children` (the
/// file's own submodules, `NAME::`) in `code` (a `use` statement whole, with
/// its braces; elsewhere the path's segments).
fn paths(code: &str, children: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    let mut starts = vec!["crate::".to_string(), "super::".to_string()];
    starts.extend(children.iter().map(|c| format!("{c}::")));
    while let Some(at) = starts.iter().filter_map(|k| rest.find(k.as_str())).min() {
        // Not the tail of a longer identifier.
        let before = rest[..at].chars().last();
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_alphanumeric() || "_:{}, ".contains(c)))
            .unwrap_or(tail.len());
        let mut path = tail[..end].trim_end_matches([',', ' ']).to_string();
        // Braces only in a use statement's own group.
        if !path.contains('{') || path.matches('{').count() != path.matches('}').count() {
            path = path.split(['{', ' ', ',', '}']).next().unwrap().to_string();
        }
        if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            found.extend(expand(&path));
        }
        rest = &tail[end.max(1)..];
    }
    found
}

/// Edges known to close a cycle, not broken yet: each one is ignored, and
/// any other cycle fails the test. `metrics/status.rs` reads the
/// `Registry` (and its snapshots) that `metrics.rs` defines and that holds
/// the status sampler.
const KNOWN: &[(&str, &str)] = &[("metrics/status.rs", "metrics.rs")];

/// Edges from each file to the files it imports from.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut all = Vec::new();
    files(&src(), &mut all);
    let mut edges = BTreeMap::new();
    for file in all {
        let me = file_of(&module_of(&file));
        let module = module_of(&file);
        let text = std::fs::read_to_string(&file).unwrap();
        // Submodules declared here (`mod x;`, `pub(crate) mod x;`).
        let children: Vec<String> = text
            .lines()
            .filter_map(|l| {
                let l = l.trim();
                let rest = l.strip_suffix(';')?;
                let name = rest.rsplit_once("mod ")?.1;
                (rest.starts_with("mod ") || rest.starts_with("pub")).then(|| name.to_string())
            })
            .collect();
        let mut targets = BTreeSet::new();
        // Depth of braces inside an inline `mod name { … }`, where `super`
        // is this file's own module.
        let mut inline: Option<i32> = None;
        for line in text.lines() {
            let code = line.trim_start();
            if let Some(depth) = inline.as_mut() {
                *depth += code.matches('{').count() as i32 - code.matches('}').count() as i32;
                if *depth <= 0 {
                    inline = None;
                }
                continue;
            }
            if code.contains("mod ") && code.trim_end().ends_with('{') && !code.starts_with("//") {
                inline = Some(1);
                continue;
            }
            if code.starts_with("#[cfg(test)]") {
                // The file's own tests, at its end.
                break;
            }
            if code.starts_with("//") {
                continue;
            }
            for path in paths(code, &children) {
                let segs: Vec<String> = path
                    .split("::")
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                let resolved = match segs.first().map(String::as_str) {
                    Some("crate") => segs[1..].to_vec(),
                    Some("super") => {
                        let mut base = module.clone();
                        base.pop();
                        base.extend(segs[1..].iter().cloned());
                        base
                    }
                    Some(child) if children.iter().any(|c| c == child) => {
                        let mut base = module.clone();
                        base.extend(segs.iter().cloned());
                        base
                    }
                    _ => continue,
                };
                let target = file_of(&resolved);
                if target != me && !KNOWN.contains(&(me.as_str(), target.as_str())) {
                    targets.insert(target);
                }
            }
        }
        edges.insert(me, targets);
    }
    edges
}

/// A cycle through `from`, if any (depth first).
fn cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|n| n == node) {
            let mut found = stack[i..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        if let Some(c) = visit(node, edges, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn the_path_reader_sees_what_a_file_imports() {
    assert_eq!(
        paths("use super::{date, Abort, conn::{run, Exit}};", &[]),
        [
            "super::date",
            "super::Abort",
            "super::conn::run",
            "super::conn::Exit"
        ]
    );
    assert_eq!(
        paths(
            "let d = super::drain::spread(id); crate::io::read_buf(s, b)",
            &[]
        ),
        ["super::drain::spread", "crate::io::read_buf"]
    );
    assert!(paths("pub(super) fn f() {}", &[]).is_empty());
    let children = ["drain".to_string()];
    assert_eq!(
        paths("pub use drain::{Stats, X}; x::drain::y", &children),
        ["drain::Stats", "drain::X"]
    );
    let edges = graph();
    assert!(edges["server/conn.rs"].contains("io.rs"), "{edges:?}");
    assert!(edges["server/listener.rs"].contains("server/conn.rs"));
    assert!(
        edges["server/mod.rs"].contains("server/drain.rs"),
        "{edges:?}"
    );
}

#[test]
fn no_file_imports_in_a_cycle() {
    let edges = graph();
    assert!(edges.len() > 30, "{}", edges.len());
    if let Some(c) = cycle(&edges) {
        panic!("import cycle: {}", c.join(" -> "));
    }
}
