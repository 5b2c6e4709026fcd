//! Helpers shared by the proto integration tests: connections, a comparable
//! event form, and the wire bytes of a `WriteBuf`.
#![allow(dead_code)]

use std::sync::Arc;

use bytes::{Buf, Bytes};
use drainpipe_proto::{BodySize, Config, Connection, ErrorKind, Event, Framing, Role, WriteBuf};

pub fn server() -> Connection {
    Connection::new(Role::Server, Arc::new(Config::default()))
}

pub fn server_with(config: Config) -> Connection {
    Connection::new(Role::Server, Arc::new(config))
}

pub fn client() -> Connection {
    Connection::new(Role::Client, Arc::new(Config::default()))
}

/// An event in a form tests can compare: heads as text, data merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    Request {
        method: String,
        target: String,
        version: String,
        fields: Vec<(String, String)>,
        body: Framing,
    },
    Informational(u16),
    Response {
        status: u16,
        version: String,
        fields: Vec<(String, String)>,
        body: Framing,
    },
    Data(Vec<u8>),
    End(Vec<(String, String)>),
    NeedData,
    Paused,
    Closed,
    Error(ErrorKind),
}

fn fields(h: &http::HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

pub fn convert(e: Result<Event, drainpipe_proto::Error>) -> Ev {
    match e {
        Err(e) => Ev::Error(e.kind().clone()),
        Ok(Event::Request { head, body }) => Ev::Request {
            method: head.method().to_string(),
            target: head.uri().to_string(),
            version: format!("{:?}", head.version()),
            fields: fields(head.headers()),
            body,
        },
        Ok(Event::Informational(r)) => Ev::Informational(r.status().as_u16()),
        Ok(Event::Response { head, body }) => Ev::Response {
            status: head.status().as_u16(),
            version: format!("{:?}", head.version()),
            fields: fields(head.headers()),
            body,
        },
        Ok(Event::Data(d)) => Ev::Data(d.to_vec()),
        Ok(Event::End { trailers }) => Ev::End(trailers.as_ref().map(fields).unwrap_or_default()),
        Ok(Event::NeedData) => Ev::NeedData,
        Ok(Event::Paused) => Ev::Paused,
        Ok(Event::Closed) => Ev::Closed,
    }
}

/// Pulls events until one that needs the caller (need-data, paused, closed, an
/// error), merging adjacent data. The stopping event is included.
pub fn events(conn: &mut Connection) -> Vec<Ev> {
    let mut out: Vec<Ev> = Vec::new();
    for _ in 0..10_000 {
        let ev = convert(conn.next_event());
        let stop = matches!(ev, Ev::NeedData | Ev::Paused | Ev::Closed | Ev::Error(_));
        match (out.last_mut(), ev) {
            (Some(Ev::Data(prev)), Ev::Data(more)) => prev.extend_from_slice(&more),
            (_, ev) => out.push(ev),
        }
        if stop {
            return out;
        }
    }
    panic!("no stopping event in 10000 calls");
}

/// Feeds `bytes` and pulls events.
pub fn feed(conn: &mut Connection, bytes: &[u8]) -> Vec<Ev> {
    conn.receive(bytes);
    events(conn)
}

/// Everything waiting in `out`, as one byte vector.
pub fn wire(out: &mut WriteBuf) -> Vec<u8> {
    out.copy_to_bytes(out.remaining()).to_vec()
}

/// The server answers the oldest request with `status`, `fields` and `body`
/// (exact size), returning the bytes written.
pub fn respond(
    server: &mut Connection,
    status: u16,
    fields: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = WriteBuf::new();
    let mut res = http::Response::builder().status(status);
    for (n, v) in fields {
        res = res.header(*n, *v);
    }
    let (parts, ()) = res.body(()).unwrap().into_parts();
    let framing = server
        .send_response(&parts, BodySize::Exact(body.len() as u64), &mut out)
        .unwrap();
    if framing != Framing::None {
        server
            .send_data(Bytes::copy_from_slice(body), &mut out)
            .unwrap();
    }
    server.send_end(None, &mut out).unwrap();
    wire(&mut out)
}

/// The client sends a request and returns the bytes written.
pub fn request(client: &mut Connection, req: http::Request<&[u8]>) -> Vec<u8> {
    let mut out = WriteBuf::new();
    let (parts, body) = req.into_parts();
    let framing = client
        .send_request(&parts, BodySize::Exact(body.len() as u64), &mut out)
        .unwrap();
    if framing != Framing::None {
        client
            .send_data(Bytes::copy_from_slice(body), &mut out)
            .unwrap();
    }
    client.send_end(None, &mut out).unwrap();
    wire(&mut out)
}

/// A request event's head fields, or panics.
pub fn request_fields(ev: &Ev) -> &[(String, String)] {
    match ev {
        Ev::Request { fields, .. } | Ev::Response { fields, .. } => fields,
        other => panic!("not a head: {other:?}"),
    }
}

pub fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
