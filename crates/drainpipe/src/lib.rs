//! # drainpipe: HTTP/1.x connections done right, on tokio
//!
//! The drivers for the sans-IO protocol core [`proto`] (`drainpipe-proto`). The
//! core decides every framing and persistence rule; the drivers own sockets,
//! timers and tasks, and nothing else.
//!
//! | module | owns |
//! |---|---|
//! | [`server`] | the accept loop, one task per connection, timeouts, drain |
//! | [`body`] | [`body::Incoming`], a received body with backpressure |
//! | [`error`] | the drivers' one opaque error, with predicates |
//! | `io` | the only socket reads and writes (buffered in, coalesced out) |
//! | `sock` | TCP_NODELAY, graceful close |
//!
//! Handlers are `tower::Service<http::Request<Incoming>>` whose response body is
//! an `http_body::Body`, so an axum `Router` runs unchanged.

pub mod access;
pub mod admin;
pub mod body;
pub mod client;
pub mod error;
pub mod handoff;
mod io;
pub mod metrics;
pub mod origin;
pub mod proxy;
pub mod server;
mod sock;
pub mod upgrade;

pub use error::{BoxError, Error};
pub use proto;
pub use sock::Linger;
