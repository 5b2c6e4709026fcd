//! # drainpipe: HTTP/1.x connections done right, on tokio
//!
//! The drivers for the sans-IO protocol core [`proto`] (`drainpipe-proto`). The
//! core decides every framing and persistence rule; the drivers own sockets,
//! timers and tasks, and nothing else.
//!
//! | module | owns |
//! |---|---|
//! | [`server`] | the accept loop, one task per connection, timeouts, drain; thread-per-core [`server::workers`] |
//! | [`body`] | [`body::Incoming`], a received body with backpressure |
//! | [`error`] | the drivers' one opaque error, with predicates |
//! | [`transport`] | [`transport::Transport`]: what only some transports have |
//! | `io` | the only transport reads and writes (buffered in, coalesced out) |
//! | [`wire`] | the one read loop: the next protocol event, else one read, else EOF ([`wire::poll_step`]) |
//! | `sock` | the graceful close: half-close, discard input, linger |
//! | [`tls`] | TLS (rustls) listeners, upstreams and client connections |
//!
//! Handlers are `tower::Service<http::Request<Incoming>>` whose response body is
//! an `http_body::Body`, so an axum `Router` runs unchanged.
//!
//! # One driver for every transport
//!
//! Every driver runs on any `AsyncRead + AsyncWrite + Unpin + Send` stream
//! that implements [`transport::Transport`], the small trait for what only
//! some transports have: the peer's address, TCP_NODELAY, the kernel peek
//! for pending input or EOF, the reset-on-close of fault injection, and the
//! descriptor for idle parking ([`transport::Transport::parking`], `None`
//! for a transport that is never parked). Each method has a default that is
//! right for a plain in-memory stream; TCP and Unix sockets override them
//! and keep the socket fast paths (readiness before a read buffer is taken,
//! a write without a waker: `send` for one buffer, `writev` for several).
//! `tokio::io::duplex` streams use the defaults, which is how the drivers
//! are tested without sockets.
//!
//! ```text
//!  transport.rs      trait Transport: TcpStream, UnixStream, DuplexStream
//!  io.rs             read into proto's buffer / coalesced write, over any Transport
//!  wire.rs           the one read loop (event, else read, else EOF): server
//!                    body pump and head wait, client connection, bench
//!  sock.rs           graceful close over any Transport
//!  server/listener.rs  trait Listen (what serve takes) → trait Accept (yields a
//!                    Transport + peer address): TCP and Unix listeners, the
//!                    user's own; accept loop, max connections, EMFILE back-off
//!  server/conn.rs    the connection task, generic over the Transport
//!  server/park.rs    idle connections as bare descriptors (Transport::parking)
//!  client/connect.rs trait Connect: TCP by default, Unix (`unix:/path`), then
//!                    TLS for an https origin
//!  tls/              ServerTls + TlsListener (any Listen), ServerStream and the
//!                    client stream as Transports, ClientTls
//!  upgrade.rs        a switched connection: Box<dyn Transport>
//! ```
//!
//! A transport-specific fact is asked of the trait, never by naming a
//! socket type in a driver.
//!
//! # TLS
//!
//! [`tls`] adds TLS (rustls) as one more transport: [`tls::ServerTls`] wraps
//! any listener, and `https://` URLs work with the client, verified with the
//! system's roots by default or the roots given to [`client::Builder::tls`]:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use drainpipe::client::Client;
//! use drainpipe::server::Server;
//! use drainpipe::tls::{CertKey, ClientTls, ServerTls};
//! # let dir = std::env::temp_dir().join(format!("drainpipe-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! # let key = rcgen::KeyPair::generate()?;
//! # let cert = rcgen::CertificateParams::new(vec!["localhost".into()])?.self_signed(&key)?;
//! # std::fs::write(dir.join("cert.pem"), cert.pem())?;
//! # std::fs::write(dir.join("key.pem"), key.serialize_pem())?;
//!
//! // The built-in origin on a TLS listener, its certificate from PEM files.
//! let tls = ServerTls::from_files(&[CertKey {
//!     cert: dir.join("cert.pem"),
//!     key: dir.join("key.pem"),
//! }])?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let port = listener.local_addr()?.port();
//! tokio::spawn(async move {
//!     let server = Server::builder().build();
//!     let origin = drainpipe::origin::Origin;
//!     server.serve(tls.listen(listener), origin, std::future::pending()).await
//! });
//!
//! // A client trusting that certificate (instead of the system's roots).
//! let tls = ClientTls::builder().ca_file(&dir.join("cert.pem")).build()?;
//! let client = Client::builder().tls(tls).build();
//! let url = format!("https://localhost:{port}/");
//! let res = client.request(http::Request::get(url).body(())?).await?;
//! assert_eq!(res.status(), 200);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```

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
pub mod tls;
pub mod transport;
pub mod upgrade;
pub mod wire;

pub use error::{BoxError, Error};
pub use proto;
pub use sock::Linger;
