//! Invariant: any bytes fed to a server connection as a request head either
//! parse into a request or give a typed error with a 4xx/5xx status; never a
//! panic, and the buffer never grows past the head limit unnoticed.
#![no_main]

use std::sync::Arc;

use drainpipe_proto::{Config, Connection, Event, Role};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let config = Arc::new(Config::default());
    let mut conn = Connection::new(Role::Server, config.clone());
    conn.receive(data);
    match conn.next_event() {
        Ok(Event::Request { head, .. }) => {
            assert!(head.uri().to_string().len() <= config.max_uri_bytes + 16);
        }
        Ok(Event::NeedData) => assert!(conn.buffered() <= config.max_head_bytes + config.max_uri_bytes),
        Ok(_) => {}
        Err(e) => {
            let status = e.status().as_u16();
            assert!((400..600).contains(&status), "{e}");
        }
    }
});
