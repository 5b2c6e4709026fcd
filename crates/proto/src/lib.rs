//! # drainpipe-proto: HTTP/1.x without IO
//!
//! Every rule about where an HTTP/1.x message ends and whether its connection
//! lives on, in one place, tested without a network. No sockets, no tasks, no
//! clocks: bytes go in, events come out; calls go in, bytes come out. The tokio
//! drivers in the `drainpipe` crate own sockets, timers and tasks and nothing
//! else.
//!
//! ## The parts
//!
//! - [`Connection`] — one connection in either [`Role`]; the only stateful type.
//! - [`Event`] — what the peer's bytes meant: a head, body data, the end of a
//!   message (with trailers), need-data, paused, closed.
//! - [`WriteBuf`] — where our bytes go; heads are copied in, large payloads queued
//!   by reference; the driver writes it out in one vectored write.
//! - [`framing`] — RFC 9112 §6.3 body length, step by step; [`decode`] and
//!   [`encode`] — the length, chunked and close-delimited codecs.
//! - [`fields`] — one helper per header rule (`Connection` tokens across lines,
//!   `Content-Length`, `Transfer-Encoding`, `Keep-Alive`) and the one hop-by-hop
//!   set; [`persist`] — the keep-alive decisions.
//! - [`head`] — head parsing (via `httparse`, strict) and serialising.
//! - [`lines`] — [`FieldLines`]: end-to-end fields kept as text, so a proxy
//!   passes a head on without building a header map (asked for per request
//!   with [`Relay`]; written after the head's map by the senders).
//! - [`Config`] — immutable limits and keep-alive policy; [`Error`] — typed
//!   errors naming the side at fault and the status code to answer with.
//!
//! ## Call order
//!
//! ```text
//!            peer bytes                                 our calls
//!                │                                          │
//!   receive(&[u8]) / recv_buf() / receive_eof()   send_request | send_response
//!                │                                  send_continue (server)
//!                ▼                                  send_data* ; send_end
//!   ┌─────────────────────────────────────────────────────────┴──────┐
//!   │ Recv half: Head ─▶ Body ─▶ (Head | Done | Switched | Closed)   │
//!   │ Send half: Head ─▶ Body ─▶ (Head | Done | Switched)            │
//!   │ exchanges: request/response pairs in flight, oldest first      │
//!   └──────────────┬──────────────────────────────────┬──────────────┘
//!                  ▼                                  ▼
//!     next_event() -> Event                  bytes appended to WriteBuf
//! ```
//!
//! A driver loops: feed what the socket gave, then call
//! [`Connection::next_event`] until it returns [`Event::NeedData`] (read more),
//! [`Event::Paused`] (answer first: the pipeline is full, or the connection
//! will close after the current response, or the protocol switched), or
//! [`Event::Closed`]. A message is a head event, zero or more [`Event::Data`],
//! and [`Event::End`] — also for a message with no body.
//!
//! To send, call [`Connection::send_request`] (client) or
//! [`Connection::send_response`] (server) with the head and what is known of the
//! body's size; it returns the [`Framing`] chosen. Then [`Connection::send_data`]
//! for each piece and [`Connection::send_end`]. Write out the [`WriteBuf`]
//! whenever convenient; responses to pipelined requests can pile up in it and
//! leave in one write.
//!
//! Afterwards ask [`Connection::must_close`] (close now, gracefully),
//! [`Connection::is_idle`] (nothing in flight) and [`Connection::keep_alive`].
//! A client pooling the connection asks [`Connection::is_reusable`] (which
//! also honours the server's `Keep-Alive: max`) and, with the time it read the
//! response, [`Connection::peer_reusable_until`] (the server's
//! `Keep-Alive: timeout`). A drain calls [`Connection::close_after_current`].
//!
//! ## The two halves
//!
//! The receiving half says what the peer's next bytes are; the sending half what
//! our next call may be. They move independently (a server may answer before the
//! request body is read; a client may read an early response while still
//! sending), tied by the queue of exchanges: a server pushes one per request head
//! received and pops it when its response ends; a client pushes one per request
//! sent and pops it when the response ends. So a server reads pipelined requests
//! ahead of its responses (up to [`Config::max_pipelined`], then
//! [`Event::Paused`]), always answers the oldest, and a client always knows which
//! request a response answers (and which were left unanswered when the server
//! closed: [`Connection::in_flight`]).
//!
//! Persistence is decided here, never in a driver: a request or response that
//! says `close`, an HTTP/1.0 message without `keep-alive`, a body delimited by the
//! close, the request limit, a drain, an error. Once decided, the server's next
//! response head carries `Connection: close` and no further request is read.
//!
//! ## Errors
//!
//! Every refusal is an [`Error`] with a [`Side`] (the peer's bytes, or our
//! misuse) and a [`ErrorKind`] whose [`ErrorKind::status`] is the code a server
//! answers with (400, 413, 414, 431, 501, 505). Receive errors are sticky. A
//! server whose request could not be parsed may still answer it: the error leaves
//! an exchange to answer, marked to close.
//!
//! ## What is absent
//!
//! No IO, no timeouts (time is the driver's), no body buffering beyond the
//! receive buffer, no content codings, no HTTP/2.
//!
//! ## Example: a client and a server in memory
//!
//! ```
//! use std::sync::Arc;
//! use bytes::{Buf, Bytes};
//! use drainpipe_proto::{BodySize, Config, Connection, Event, Framing, Role, WriteBuf};
//!
//! let config = Arc::new(Config::default());
//! let mut client = Connection::new(Role::Client, config.clone());
//! let mut server = Connection::new(Role::Server, config);
//! let mut wire = WriteBuf::new();
//!
//! // The client sends a GET.
//! let req = http::Request::get("http://example.com/hello").body(()).unwrap();
//! let (parts, ()) = req.into_parts();
//! client.send_request(&parts, BodySize::Exact(0), &mut wire).unwrap();
//! client.send_end(None, &mut wire).unwrap();
//! server.receive(&wire.copy_to_bytes(wire.remaining()));
//!
//! // The server sees the request and its end, and answers.
//! let Event::Request { head, body } = server.next_event().unwrap() else { panic!() };
//! assert_eq!(head.uri().path(), "/hello");
//! assert_eq!(body, Framing::None);
//! assert!(matches!(server.next_event().unwrap(), Event::End { .. }));
//! let (parts, ()) = http::Response::new(()).into_parts();
//! server.send_response(&parts, BodySize::Exact(5), &mut wire).unwrap();
//! server.send_data(Bytes::from_static(b"hello"), &mut wire).unwrap();
//! server.send_end(None, &mut wire).unwrap();
//! let bytes = wire.copy_to_bytes(wire.remaining());
//! assert_eq!(&bytes[..], b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello");
//!
//! // The client reads it; the connection stays open for the next request.
//! client.receive(&bytes);
//! assert!(matches!(client.next_event().unwrap(), Event::Response { .. }));
//! assert!(matches!(client.next_event().unwrap(), Event::Data(d) if d == "hello"));
//! assert!(matches!(client.next_event().unwrap(), Event::End { .. }));
//! assert!(client.keep_alive() && client.is_idle() && server.is_idle());
//! ```

pub mod config;
mod conn;
pub mod decode;
pub mod encode;
pub mod error;
mod event;
pub mod fields;
pub mod framing;
pub mod head;
mod idle;
pub mod lines;
pub mod persist;
mod role;
mod state;
mod write_buf;

pub use config::{Config, KeepAlive};
pub use conn::Connection;
pub use error::{Error, ErrorKind, Side};
pub use event::Event;
pub use fields::{ConnectionTokens, HopByHop, KeepAliveParams};
pub use framing::{BodySize, Framing};
pub use idle::IdleEstimate;
pub use lines::{FieldLines, Relay};
pub use role::Role;
pub use write_buf::WriteBuf;
