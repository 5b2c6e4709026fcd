//! The proxy's request path without sockets: arbitrary bytes go into a server
//! connection (as the proxy's server would read them); every request head it
//! yields is checked by the shared oracle
//! (`crates/drainpipe/tests/oracle/proxy_request.rs`, which the `cargo test`
//! suite `fuzz_proxy_path.rs` uses too).
#![no_main]

use std::sync::Arc;

use drainpipe::proto::{BodySize, Config, Connection, Event, Role, WriteBuf};
use libfuzzer_sys::fuzz_target;

#[path = "../../crates/drainpipe/tests/oracle/proxy_request.rs"]
mod oracle;

fuzz_target!(|data: &[u8]| {
    let config = Arc::new(Config {
        max_head_bytes: 8 * 1024,
        ..Config::default()
    });
    let mut server = Connection::new(Role::Server, config);
    server.receive(data);
    server.receive_eof();
    let (answer, ()) = http::Response::new(()).into_parts();
    let mut out = WriteBuf::new();
    for _ in 0..256 {
        match server.next_event() {
            Ok(Event::Request { head, body }) => {
                oracle::check(head, body);
            }
            Ok(Event::End { .. }) => {
                if server
                    .send_response(&answer, BodySize::Exact(0), &mut out)
                    .is_ok()
                {
                    let _ = server.send_end(None, &mut out);
                }
                out.clear();
            }
            Ok(Event::Data(_) | Event::Informational(_) | Event::Response { .. }) => {}
            Ok(Event::NeedData | Event::Paused | Event::Closed) | Err(_) => break,
        }
    }
});
