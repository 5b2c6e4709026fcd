//! Immutable limits and keep-alive policy, shared by every connection of a driver.
//!
//! Every buffer and count the protocol core keeps is bounded by a field here.

/// Limits and keep-alive policy for a [`Connection`](crate::Connection).
///
/// Built once by the driver and shared (cheaply cloned) between connections; it
/// never changes while a connection runs. Fields are public so a driver can set
/// them from its own builder; [`Config::default`] gives sane values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Largest head (start line + fields + final CRLF) accepted, in bytes. Beyond:
    /// 431.
    pub max_head_bytes: usize,
    /// Most field lines in a head or a trailer section. Beyond: 431.
    pub max_fields: usize,
    /// Longest request target, in bytes. Beyond: 414.
    pub max_uri_bytes: usize,
    /// Longest chunk-size line including extensions, in bytes. Beyond: 400.
    pub max_chunk_line_bytes: usize,
    /// Largest trailer section, in bytes. Beyond: 431.
    pub max_trailer_bytes: usize,
    /// Largest body accepted from the peer, in bytes (`None`: no limit). A declared
    /// `Content-Length` above it is refused at once; a chunked body when it crosses
    /// it. Beyond: 413.
    pub max_body_bytes: Option<u64>,
    /// Server: how many request body bytes still unread when the response starts
    /// may be read and discarded to keep the connection. A larger (or unknown)
    /// remainder makes the response carry `Connection: close`.
    pub max_discard_bytes: u64,
    /// Server: how many requests may be parsed ahead of their responses (the
    /// pipeline depth). When reached, [`Event::Paused`](crate::Event::Paused)
    /// asks the driver to stop reading.
    pub max_pipelined: usize,
    /// Client: informational (1xx) responses accepted ahead of one final
    /// response; beyond, the response is an error.
    pub max_informational: usize,
    /// Server: read `Proxy-Connection` as the client hop's `Connection` (the
    /// Netscape convention browsers use with a proxy they know about, RFC 9112
    /// Appendix C.2.2). Only an explicit (forward) proxy turns this on.
    pub honour_proxy_connection: bool,
    /// Keep-alive policy.
    pub keep_alive: KeepAlive,
}

/// When a connection stays open, and what a server advertises about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepAlive {
    /// Whether persistent connections are allowed at all. `false`: every
    /// response (server) or request (client) carries `Connection: close`.
    pub enabled: bool,
    /// Server: requests served on one connection before it closes (`None`: no
    /// limit). The last response carries `Connection: close`.
    pub max_requests: Option<u32>,
    /// Server: the idle timeout, in seconds, advertised as `Keep-Alive: timeout=T`
    /// to HTTP/1.0 keep-alive clients (`None`: not advertised). Enforcing it is the
    /// driver's business.
    pub timeout_secs: Option<u32>,
    /// Server: also announce `Keep-Alive: timeout=T` (and `max=M` when a
    /// request limit is set) on HTTP/1.1 keep-alive responses, as Node does,
    /// so clients that honour it never race the idle close. Off in the core
    /// by default; the drainpipe server turns it on.
    pub announce_to_http11: bool,
}

impl Default for KeepAlive {
    fn default() -> Self {
        KeepAlive {
            enabled: true,
            max_requests: None,
            timeout_secs: None,
            announce_to_http11: false,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_head_bytes: 32 * 1024,
            max_fields: 100,
            max_uri_bytes: 8 * 1024,
            max_chunk_line_bytes: 1024,
            max_trailer_bytes: 16 * 1024,
            max_body_bytes: None,
            max_discard_bytes: 64 * 1024,
            max_pipelined: 16,
            max_informational: 32,
            honour_proxy_connection: false,
            keep_alive: KeepAlive::default(),
        }
    }
}

/// The most field lines any configuration may allow (the parser's fixed array).
pub const FIELDS_CAP: usize = 128;
