//! The documentation in the repository holds together: every relative link in
//! the README and docs/ names a file of the repository (nothing outside it),
//! and the README's only commands are the two that run and test drainpipe.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The targets of `[text](target)` links in `text`.
fn links(text: &str) -> Vec<String> {
    text.split("](")
        .skip(1)
        .filter_map(|rest| rest.split_once(')').map(|(t, _)| t.to_string()))
        .collect()
}

#[test]
fn every_link_stays_inside_the_repository_and_resolves() {
    let root = root().canonicalize().unwrap();
    let mut files = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        files.push(entry.unwrap().path());
    }
    assert!(files.len() >= 4, "{files:?}");
    let mut checked = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains("shared/DESIGN"), "{}", file.display());
        for link in links(&text) {
            if link.starts_with("http://") || link.starts_with("https://") {
                continue;
            }
            let path = link.split('#').next().unwrap();
            let target = file.parent().unwrap().join(path);
            let target = target
                .canonicalize()
                .unwrap_or_else(|e| panic!("{}: link {link}: {e}", file.display()));
            assert!(
                target.starts_with(&root),
                "{}: link {link} points outside the repository",
                file.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} links found");
}

#[test]
fn the_readme_has_exactly_the_two_commands() {
    let text = std::fs::read_to_string(root().join("README.md")).unwrap();
    let blocks: Vec<&str> = text
        .split("```sh\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap().trim())
        .collect();
    assert_eq!(blocks, ["cargo run --release", "cargo test --workspace"]);
    assert_eq!(text.matches("```").count(), 4, "no other code block");
}
