//! Process logs (stderr): text by default, one JSON object per line with
//! `--log-format json` (timestamp, level, message, the event's fields, target);
//! a bad value is a one-line usage error.

use std::process::Command;
use std::time::Duration;

mod common;

use common::{Proc, BIN};

/// An origin with `args`, sent SIGHUP (logged and ignored) then SIGTERM
/// (drained): its whole log.
fn origin_log(args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend_from_slice(&["origin", "--listen", "127.0.0.1:0"]);
    let mut origin = Proc::start(&all, 1);
    let pid = origin.pid().to_string();
    let _ = Command::new("kill").args(["-HUP", &pid]).status();
    origin.log_once("SIGHUP", Duration::from_secs(5));
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(origin.wait_exit(Duration::from_secs(10)).success());
    origin.kill_for_log()
}

#[test]
fn json_process_logs() {
    let log = origin_log(&["--log-format", "json"]);
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?} in\n{log}")))
        .collect();
    assert!(lines.len() >= 3, "{log}");
    for l in &lines {
        assert!(
            l["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{l}"
        );
        assert!(l["level"].is_string() && l["message"].is_string(), "{l}");
        assert!(
            l["target"].as_str().unwrap().starts_with("drainpipe"),
            "{l}"
        );
    }
    let hup = lines
        .iter()
        .find(|l| l["message"].as_str().unwrap().starts_with("SIGHUP"))
        .expect("the SIGHUP line");
    assert_eq!(hup["level"], "WARN");
    let drained = lines
        .iter()
        .find(|l| l["message"] == "drained")
        .expect("the drain report");
    // The event's fields are keys of the object itself.
    assert_eq!(drained["listener"], "origin");
    assert_eq!(drained["open"], 0);
}

#[test]
fn text_by_default_and_a_bad_format_is_refused() {
    let log = origin_log(&[]);
    let hup = log
        .lines()
        .find(|l| l.contains("SIGHUP"))
        .expect("SIGHUP line");
    assert!(hup.contains(" WARN ") && !hup.starts_with('{'), "{hup}");

    let out = Command::new(BIN)
        .args(["--log-format", "xml", "origin"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("drainpipe: invalid value 'xml' for '--log-format <LOG_FORMAT>'"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}
