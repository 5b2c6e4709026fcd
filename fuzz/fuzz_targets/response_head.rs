//! Invariant: any bytes fed to a client connection awaiting a response parse
//! into a response head (informational or final) or give a typed error; never a
//! panic.
#![no_main]

use std::sync::Arc;

use drainpipe_proto::{BodySize, Config, Connection, Role, WriteBuf};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut conn = Connection::new(Role::Client, Arc::new(Config::default()));
    let method = match data.first() {
        Some(b) if b % 3 == 0 => http::Method::HEAD,
        Some(b) if b % 3 == 1 => http::Method::CONNECT,
        _ => http::Method::GET,
    };
    let uri = if method == http::Method::CONNECT { "a:443" } else { "http://a/" };
    let (parts, ()) = http::Request::builder()
        .method(method)
        .uri(uri)
        .body(())
        .unwrap()
        .into_parts();
    let mut out = WriteBuf::new();
    conn.send_request(&parts, BodySize::Exact(0), &mut out).unwrap();
    conn.send_end(None, &mut out).unwrap();
    conn.receive(data.get(1..).unwrap_or_default());
    conn.receive_eof();
    for _ in 0..64 {
        match conn.next_event() {
            Ok(drainpipe_proto::Event::NeedData | drainpipe_proto::Event::Paused | drainpipe_proto::Event::Closed) => break,
            Ok(_) => {}
            Err(_) => break,
        }
    }
});
