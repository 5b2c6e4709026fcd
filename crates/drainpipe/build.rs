//! Records the git commit the crate is built from (`DRAINPIPE_COMMIT`, shown by
//! `drainpipe_build_info`), or "unknown" outside a git checkout.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=DRAINPIPE_COMMIT={commit}");
    // Built again when HEAD moves: HEAD itself (a branch switch) and the
    // branch it names (a commit).
    for path in [
        Some("HEAD".to_string()),
        git(&["symbolic-ref", "-q", "HEAD"]),
    ]
    .into_iter()
    .flatten()
    {
        // A packed ref has no file of its own (a missing file would make
        // every build run this again).
        if let Some(file) =
            git(&["rev-parse", "--git-path", &path]).filter(|f| std::path::Path::new(f).exists())
        {
            println!("cargo:rerun-if-changed={file}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
