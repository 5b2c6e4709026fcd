//! Addresses as an operator writes them, through the binary: an upstream as
//! `http://HOST:PORT` serves; a bad address, on the command line or in a
//! config file, is refused with one line that says what is wrong with it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

mod common;

use common::{Proc, BIN};

fn get(addr: std::net::SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    got
}

#[test]
fn an_upstream_written_as_an_http_url_serves() {
    let origin = Proc::start(&["origin", "--listen", "127.0.0.1:0"], 1);
    let upstream = format!("http://{}", origin.addr("origin"));
    let proxy = Proc::start(
        &["proxy", "--listen", "127.0.0.1:0", "--upstream", &upstream],
        1,
    );
    let got = get(proxy.addr("proxy"));
    assert!(
        got.starts_with("HTTP/1.1 200 OK") && got.ends_with("Hello, World!"),
        "{got}"
    );
}

/// `args` fails with exit status `code` and one stderr line starting `want`.
fn refused(args: &[&str], code: i32, want: &str) {
    let out = Command::new(BIN).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    assert!(
        err.starts_with(want),
        "{args:?}: {err:?} does not start with {want:?}"
    );
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
}

#[test]
fn bad_addresses_are_refused_with_what_is_wrong() {
    let up = ["--upstream", "127.0.0.1:1"];
    for (listen, want) in [
        ("127.0.0.1:abc", "127.0.0.1:abc: port 'abc' is not a number"),
        ("localhost", "localhost: no port (use HOST:PORT or :PORT)"),
        (
            "::1:8080",
            "::1:8080: an IPv6 address needs brackets: [::1]:PORT",
        ),
        (
            "unix:tmp/d.sock",
            "unix:tmp/d.sock: the socket path must be absolute (use unix:/PATH)",
        ),
        (
            "nowhere.invalid:80",
            "nowhere.invalid:80: host name 'nowhere.invalid' does not resolve",
        ),
    ] {
        let mut args = vec!["proxy", "--listen", listen];
        args.extend(up);
        refused(
            &args,
            2,
            &format!("drainpipe: invalid value '{listen}' for '--listen <LISTEN>': {want}"),
        );
    }
    for (upstream, want) in [
        ("127.0.0.1:abc", "127.0.0.1:abc: port 'abc' is not a number"),
        (
            "ftp://127.0.0.1:21",
            "ftp://127.0.0.1:21: scheme ftp is not supported",
        ),
        (
            "https://127.0.0.1:443/api",
            "https://127.0.0.1:443/api: an upstream is a server, not a URL: no path, query or user (use HOST:PORT)",
        ),
        ("unix:", "unix:: no socket path (use unix:/PATH)"),
        (
            "nowhere.invalid:80",
            "nowhere.invalid:80: host name 'nowhere.invalid' does not resolve",
        ),
    ] {
        refused(
            &["proxy", "--listen", "127.0.0.1:0", "--upstream", upstream],
            1,
            &format!("drainpipe: --upstream: {want}"),
        );
    }
}

#[test]
fn bad_addresses_in_a_config_file_name_the_key_and_the_line() {
    let dir = std::env::temp_dir().join(format!("drainpipe-addr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    let path = file.display().to_string();
    for (listen, server, want) in [
        (
            ":abc",
            "127.0.0.1:1",
            "listener[0].listen: :abc: port 'abc' is not a number (line 2)",
        ),
        (
            "127.0.0.1:0",
            "ftp://h:21",
            "upstream[0].servers[0]: ftp://h:21: scheme ftp is not supported",
        ),
        (
            "127.0.0.1:0",
            "https://h/api",
            "upstream[0].servers[0]: https://h/api: an upstream is a server, not a URL",
        ),
    ] {
        std::fs::write(
            &file,
            format!(
                "[[listener]]\nlisten = \"{listen}\"\n\n[[upstream]]\nname = \"a\"\nservers = [\"{server}\"]\n\n\
[[route]]\nupstream = \"a\"\n"
            ),
        )
        .unwrap();
        refused(
            &["proxy", "--config", &path],
            1,
            &format!("drainpipe: {path}: {want}"),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
