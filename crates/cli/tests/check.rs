//! `drainpipe check`: a valid file gets a summary and exit 0 (serving
//! nothing); each kind of invalid file gets one line naming the file, the key
//! and the line, and exit 1.

use std::process::Command;

mod common;

use common::BIN;

struct Dir(std::path::PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dir(test: &str) -> Dir {
    let d = std::env::temp_dir().join(format!("drainpipe-check-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    Dir(d)
}

const GOOD: &str = "[[listener]]\nlisten = \"127.0.0.1:8080\"\n\n[[upstream]]\nname = \"app\"\n\
servers = [\"127.0.0.1:8081\", \"http://localhost:8082\"]\n\n[[route]]\npath = \"/\"\nupstream = \"app\"\n\n\
[admin]\nlisten = \"127.0.0.1:9901\"\n";

#[test]
fn a_valid_file_gets_a_summary_and_exit_0() {
    let d = dir("good");
    let file = d.0.join("good.toml");
    std::fs::write(&file, GOOD).unwrap();
    let path = file.display().to_string();
    let out = Command::new(BIN)
        .args(["check", "--config", &path])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout,
        format!(
            "{path}: ok\n  listeners: proxy 127.0.0.1:8080, admin 127.0.0.1:9901\n  \
upstream app: 127.0.0.1:8081, http://localhost:8082 (round_robin)\n  routes: / -> app\n"
        )
    );
    // Without --config: the built-in default.
    let out = Command::new(BIN).arg("check").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("config/default.toml: ok\n"));
}

#[test]
fn an_invalid_file_gets_one_line_naming_file_key_and_line_and_exit_1() {
    let d = dir("bad");
    let file = d.0.join("bad.toml");
    let path = file.display().to_string();
    let cases = [
        (
            GOOD.replace("upstream = \"app\"", "upstream = \"ap\""),
            "route[0].upstream: no upstream named \"ap\" (line 10)".to_string(),
        ),
        (
            GOOD.replace("localhost:8082", "nowhere.invalid:8082"),
            "upstream[0].servers[1]: http://nowhere.invalid:8082: host name 'nowhere.invalid' does not resolve"
                .to_string(),
        ),
        (
            GOOD.replace("127.0.0.1:9901", "127.0.0.1:99x"),
            "admin.listen: 127.0.0.1:99x: port '99x' is not a number (line 13)".to_string(),
        ),
        (
            format!("{GOOD}\n[forward]\nlisten = \"127.0.0.1:3128\"\ncredentials = \"/nonexistent/users\"\n"),
            "forward.credentials: cannot read /nonexistent/users".to_string(),
        ),
        (
            GOOD.replace("[admin]", "[admin\n"),
            String::new(),
        ),
    ];
    for (text, want) in cases {
        std::fs::write(&file, &text).unwrap();
        let out = Command::new(BIN)
            .args(["check", "--config", &path])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text}: {err}");
        assert!(out.stdout.is_empty(), "{out:?}");
        let want = format!("drainpipe: {path}: {want}");
        assert!(
            err.starts_with(&want),
            "{err:?} does not start with {want:?}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let out = Command::new(BIN)
        .args(["check", "--config", "/nonexistent/d.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .starts_with("drainpipe: cannot read config file /nonexistent/d.toml"));
}
