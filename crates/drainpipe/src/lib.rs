//! drainpipe: tokio drivers (server, client and pool, proxy) for the sans-IO
//! protocol core in `drainpipe-proto`.

pub use proto;
