//! Command-line arguments.

use clap::{Parser, Subcommand, ValueEnum};
use http::{HeaderName, HeaderValue, Method};

use crate::addr::ListenAddr;

/// drainpipe: an HTTP/1.x connection engine.
#[derive(Debug, Parser)]
#[command(name = "drainpipe", version, about)]
pub struct Args {
    /// Workers: threads each running its own event loop and accepting its
    /// own connections (default: one per CPU this process may run on). For
    /// `bench`, its client threads.
    #[arg(long, global = true, value_parser = at_least_one)]
    pub threads: Option<usize>,
    /// How process logs (stderr) are written: text lines, or one JSON
    /// object per line.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// What to run; with none, the default config.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// A count of one or more.
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// The process logs' format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `2026-12-02T07:40:00.123Z  INFO drainpipe: message key=value`.
    Text,
    /// `{"timestamp":…,"level":"INFO","message":…,"key":value,"target":…}`.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the built-in origin routes (/, /echo, /bytes/N, /chunked/N,
    /// /delay/MS, /status/CODE, /close, /conn, /truncate/N, /reset).
    Origin {
        /// Address to listen on: HOST:PORT, [IPV6]:PORT, :PORT (every
        /// interface) or unix:/PATH (a Unix socket).
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: ListenAddr,
        /// Requests per connection before it closes.
        #[arg(long)]
        max_requests: Option<u32>,
        /// Seconds a drain waits for requests in progress.
        #[arg(long, default_value_t = 30)]
        drain_timeout: u64,
        /// TLS on the listener.
        #[command(flatten)]
        tls: TlsFlags,
    },
    /// Run the reverse proxy: `--listen ADDR --upstream ADDR...` for quick use,
    /// or `--config FILE` (TOML: listeners, routes, upstream groups, timeouts,
    /// limits, drain settings).
    Proxy {
        /// A TOML configuration file (instead of --listen/--upstream).
        #[arg(long, conflicts_with_all = ["listen", "upstream", "tls_cert", "tls_key"])]
        config: Option<std::path::PathBuf>,
        /// Address to listen on: HOST:PORT, [IPV6]:PORT, :PORT (every
        /// interface) or unix:/PATH (a Unix socket); default 127.0.0.1:8080.
        #[arg(long)]
        listen: Option<ListenAddr>,
        /// An upstream server `HOST:PORT`, `http://HOST:PORT` or
        /// `unix:/PATH` (repeat for several).
        #[arg(long = "upstream", value_name = "HOST:PORT")]
        upstream: Vec<String>,
        /// TLS on the listener.
        #[command(flatten)]
        tls: TlsFlags,
        /// PEM file of the roots that verify `https://` upstreams (instead
        /// of the system's).
        #[arg(long, value_name = "FILE", conflicts_with = "config")]
        upstream_ca: Option<std::path::PathBuf>,
        /// How requests are spread over the upstreams.
        #[arg(long, value_enum, default_value = "round-robin")]
        balance: BalanceArg,
        /// Address of the admin listener (/metrics, /status, /healthz, /ready).
        #[arg(long, conflicts_with = "config")]
        admin: Option<ListenAddr>,
        /// Log a line per request in the combined format to stdout (a config
        /// file sets the format and file: [access_log]).
        #[arg(long, conflicts_with = "config")]
        access_log: bool,
        /// Write the process id to this file (atomically); removed at exit,
        /// taken over by the successor of an upgrade or reload.
        #[arg(long, value_name = "FILE")]
        pid_file: Option<std::path::PathBuf>,
    },
    /// Run an explicit (forward) HTTP proxy: absolute-form requests and
    /// CONNECT tunnels; private addresses and CONNECT ports other than 443
    /// denied unless allowed.
    Forward {
        /// Address to listen on (HOST:PORT or unix:/PATH).
        #[arg(long, default_value = "127.0.0.1:3128")]
        listen: ListenAddr,
        /// Allow loopback and private destinations.
        #[arg(long)]
        allow_private: bool,
        /// Allow CONNECT to this port too (443 always is); repeat for several.
        #[arg(long = "allow-port", value_name = "PORT")]
        allow_port: Vec<u16>,
        /// A file of `user:password` lines: clients must authenticate
        /// (Proxy-Authorization: Basic).
        #[arg(long)]
        credentials: Option<std::path::PathBuf>,
        /// Address of the admin listener.
        #[arg(long)]
        admin: Option<ListenAddr>,
        /// Log a line per request.
        #[arg(long)]
        access_log: bool,
        /// Write the process id to this file (atomically); removed at exit,
        /// taken over by the successor of an upgrade or reload.
        #[arg(long, value_name = "FILE")]
        pid_file: Option<std::path::PathBuf>,
    },
    /// Ask a running drainpipe to hand its listening sockets to a new process
    /// started from the binary now on disk, and drain: a zero-downtime
    /// upgrade (same as SIGUSR2). Waits for the outcome; exits non-zero with
    /// the reason if the new process failed.
    Upgrade(Target),
    /// Ask a running drainpipe to re-read its configuration (same as
    /// SIGHUP): applied through a new process that takes over the listeners,
    /// or refused (the old configuration keeps serving). Waits for the
    /// outcome; exits non-zero with the reason if the reload failed.
    Reload(Target),
    /// Check a configuration file without serving it: parse and validate
    /// (addresses, host names, files, routes), print a short summary, exit 0;
    /// on error print one line naming the file, key and line, exit 1.
    Check {
        /// The file to check (default: the built-in default configuration).
        #[arg(long)]
        config: Option<std::path::PathBuf>,
    },
    /// Load-test a URL: serial, parallel, persistent or pipelined connections;
    /// requests/s, latency percentiles, connections opened, TIME_WAIT left.
    Bench(BenchArgs),
}

/// TLS on a listener: a certificate chain and its key, as PEM files.
#[derive(Debug, Clone, clap::Args)]
pub struct TlsFlags {
    /// PEM certificate chain (leaf first): the listener speaks TLS.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of --tls-cert (RSA, ECDSA or Ed25519).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
}

/// The running drainpipe `upgrade` and `reload` talk to.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// Its process id.
    pub pid: Option<i32>,
    /// The pid file it wrote (`--pid-file`).
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<std::path::PathBuf>,
}

/// Balancing rules for `drainpipe proxy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BalanceArg {
    /// In turn.
    RoundRobin,
    /// Fewest requests in flight.
    LeastConnections,
}

/// Connection strategies of `drainpipe bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Strategy {
    /// A new connection per request, one at a time (`Connection: close`).
    Serial,
    /// New connections per request, C at once (`Connection: close`).
    Parallel,
    /// C keep-alive connections, one request in flight on each.
    Persistent,
    /// C keep-alive connections, D requests in flight on each.
    Pipelined,
}

impl Strategy {
    /// All four, in the order `--compare` runs them.
    pub const ALL: [Strategy; 4] = [
        Strategy::Serial,
        Strategy::Parallel,
        Strategy::Persistent,
        Strategy::Pipelined,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Serial => "serial",
            Strategy::Parallel => "parallel",
            Strategy::Persistent => "persistent",
            Strategy::Pipelined => "pipelined",
        }
    }
}

/// Flags of `drainpipe bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The URL to load (http:// or https://).
    pub url: String,
    /// https://: a PEM file of the roots that verify the server (instead of
    /// the system's).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,
    /// https://: accept any server certificate (no verification).
    #[arg(long, conflicts_with = "ca")]
    pub insecure: bool,
    /// https://: a full handshake on every connection (no session
    /// resumption).
    #[arg(long)]
    pub no_resumption: bool,
    /// Connection strategy.
    #[arg(long, value_enum, default_value_t = Strategy::Persistent, conflicts_with = "compare")]
    pub strategy: Strategy,
    /// Run all four strategies and print one table.
    #[arg(long)]
    pub compare: bool,
    /// Concurrent connections (default 64; serial always uses 1).
    #[arg(long, short = 'c', value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub connections: Option<u32>,
    /// Requests in flight per connection (pipelined).
    #[arg(long, short = 'd', default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub depth: u32,
    /// Total requests to complete (across connections), instead of a duration.
    #[arg(long, short = 'n', conflicts_with = "duration", value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,
    /// Seconds to run each strategy (default 10 unless --requests is given).
    #[arg(long, value_parser = parse_seconds)]
    pub duration: Option<f64>,
    /// Request method.
    #[arg(long, short = 'm', default_value = "GET", value_parser = parse_method)]
    pub method: Method,
    /// A request header, "Name: value" (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE", value_parser = parse_header)]
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// A request body (sent with Content-Length).
    #[arg(long)]
    pub body: Option<String>,
    /// Seconds without progress before a request counts as timed out (also the
    /// connect timeout).
    #[arg(long, default_value = "10", value_parser = parse_seconds)]
    pub timeout: f64,
    /// Print one JSON object per strategy instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also print an ASCII bar chart of requests/s per strategy.
    #[arg(long)]
    pub chart: bool,
    /// Constant throughput: R requests per second across all connections,
    /// each due at its time; latencies run from when each was due (no
    /// coordinated omission).
    #[arg(long, value_name = "R", value_parser = parse_rate)]
    pub rate: Option<f64>,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && (0.001..=10_000_000.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "{s:?} is not a rate in requests per second (0.001 to 10000000)"
        )),
    }
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    let n: f64 = s
        .strip_suffix('s')
        .unwrap_or(s)
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if n.is_finite() && n > 0.0 && n <= 1e6 {
        Ok(n)
    } else {
        Err(format!("{s:?} is not a positive number of seconds"))
    }
}

fn parse_method(s: &str) -> Result<Method, String> {
    Method::from_bytes(s.as_bytes()).map_err(|_| format!("{s:?} is not a valid method"))
}

fn parse_header(s: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not \"Name: value\""))?;
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a valid header name"))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("{:?} is not a valid header value", value.trim()))?;
    Ok((name, value))
}
