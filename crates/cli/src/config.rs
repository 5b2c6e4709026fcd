//! The TOML configuration file, turned into the library's builders.
//!
//! Every error names the file and the key (`drainpipe.toml: server.idle_timeout:
//! invalid duration "ten" (use e.g. "500ms", "10s", "2m")`), on one line.
//!
//! ```toml
//! [[listener]]
//! listen = "127.0.0.1:8080"
//!
//! [[upstream]]
//! name = "app"
//! servers = ["127.0.0.1:8081"]
//! balance = "round_robin"          # or "least_connections"
//!
//! [[route]]
//! path = "/"                       # longest prefix wins; `host = "…"` optional
//! upstream = "app"
//! ```
//!
//! Optional sections: `[server]` (timeouts and limits of the listeners),
//! `[client]` (the upstream pools), `[proxy]` (`Via`, `X-Forwarded-*`, `Host`),
//! `[drain]`, `[origin]` (serve the built-in origin too), `[admin]`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use drainpipe::access::{AccessLog, Format, Target};
use drainpipe::client::Client;
use drainpipe::proxy::{
    Balance, Credentials, Ejection, ForwardProxy, Forwarding, Group, HealthCheck, Policy, Proxy,
    Resolver, Route,
};
use drainpipe::server::Server;
use serde::Deserialize;

use crate::addr::{self, ListenAddr};
use crate::tls::{ListenerTls, UpstreamTls};

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Addresses the proxy listens on.
    #[serde(default)]
    pub listener: Vec<Listener>,
    /// Upstream groups.
    #[serde(default)]
    pub upstream: Vec<UpstreamConf>,
    /// Routes from requests to groups.
    #[serde(default)]
    pub route: Vec<RouteConf>,
    /// Timeouts and limits of the listeners.
    #[serde(default)]
    pub server: ServerConf,
    /// The upstream connection pools.
    #[serde(default)]
    pub client: ClientConf,
    /// What the proxy adds to forwarded messages.
    #[serde(default)]
    pub proxy: ProxyConf,
    /// How a shutdown drains.
    #[serde(default)]
    pub drain: DrainConf,
    /// The built-in origin, served by this process too.
    pub origin: Option<ListenConf>,
    /// The admin listener.
    pub admin: Option<ListenConf>,
    /// The access log (none when absent).
    pub access_log: Option<AccessLogConf>,
    /// An explicit (forward) proxy.
    pub forward: Option<ForwardConf>,
    /// How upstream host names are resolved.
    #[serde(default)]
    pub resolver: ResolverConf,
}

/// How upstream host names are resolved.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolverConf {
    /// DNS servers (`IP` or `IP:PORT`, port 53 by default) asked directly,
    /// with no cache; empty: the system's resolver.
    #[serde(default)]
    pub nameservers: Vec<String>,
}

/// How often a group's host names are resolved again by default.
pub const RESOLVE_INTERVAL: Duration = Duration::from_secs(5);

/// The access log.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConf {
    /// `"combined"` (default), `"json"`, or a template of `$variables`.
    pub format: Option<String>,
    /// A file's path, `"stdout"` (default) or `"stderr"`.
    pub path: Option<String>,
}

/// The explicit (forward) proxy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConf {
    /// The address it listens on.
    pub listen: ListenAddr,
    /// Whether loopback and private addresses may be reached.
    #[serde(default)]
    pub allow_private: bool,
    /// Ports CONNECT may reach (default: 443 only).
    #[serde(default = "https_port")]
    pub allow_ports: Vec<u16>,
    /// A file of `user:password` lines; when set, clients must authenticate.
    pub credentials: Option<std::path::PathBuf>,
}

fn https_port() -> Vec<u16> {
    vec![443]
}

/// One listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// The address it listens on.
    pub listen: ListenAddr,
    /// TLS on this listener: `{ cert, key }`, or several chosen by SNI.
    #[serde(default)]
    pub tls: Option<ListenerTls>,
    /// The certificates as read when the file was checked.
    #[serde(skip)]
    pub server_tls: std::sync::OnceLock<drainpipe::tls::ServerTls>,
}

/// A section that only names an address.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConf {
    /// The address it listens on.
    pub listen: ListenAddr,
}

/// An upstream group.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConf {
    /// The name routes use.
    pub name: String,
    /// `HOST:PORT` of each server.
    pub servers: Vec<String>,
    /// `round_robin` (default) or `least_connections`.
    #[serde(default)]
    pub balance: BalanceConf,
    /// Active health checks (off when absent).
    pub health: Option<HealthConf>,
    /// Passive ejection.
    pub ejection: Option<EjectionConf>,
    /// Whether the servers' host names may fail to resolve at load (they are
    /// resolved when connecting); by default an unresolvable name is an
    /// error.
    #[serde(default)]
    pub lazy: bool,
    /// How often servers named by host are resolved again, each address a
    /// server of the group (`0s`: resolved by the client at each connect, one
    /// server per name). Default 5 s.
    #[serde(default, with = "duration")]
    pub resolve_interval: Option<Duration>,
    /// PEM file of the roots that verify the `https://` servers (instead of
    /// the system's).
    pub tls_ca: Option<std::path::PathBuf>,
    /// PEM certificate chain presented to `https://` servers that ask.
    pub tls_client_cert: Option<std::path::PathBuf>,
    /// The key of `tls_client_cert`.
    pub tls_client_key: Option<std::path::PathBuf>,
    /// The name sent as SNI and verified instead of each server's host.
    pub tls_server_name: Option<String>,
    /// The TLS settings as read when the file was checked (`None` inside:
    /// the system's roots).
    #[serde(skip)]
    pub client_tls: std::sync::OnceLock<Option<drainpipe::tls::ClientTls>>,
}

impl UpstreamConf {
    /// The group's TLS settings as written.
    fn tls(&self) -> UpstreamTls<'_> {
        UpstreamTls {
            ca: self.tls_ca.as_ref(),
            client_cert: self.tls_client_cert.as_ref(),
            client_key: self.tls_client_key.as_ref(),
            server_name: self.tls_server_name.as_deref(),
        }
    }
}

/// The balancing rule.
#[derive(Debug, Default, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum BalanceConf {
    /// In turn.
    #[default]
    RoundRobin,
    /// Fewest requests in flight.
    LeastConnections,
}

impl BalanceConf {
    /// The name as written in the file.
    pub fn name(self) -> &'static str {
        match self {
            BalanceConf::RoundRobin => "round_robin",
            BalanceConf::LeastConnections => "least_connections",
        }
    }
}

/// Active health checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConf {
    /// Path requested.
    #[serde(default = "slash")]
    pub path: String,
    /// Time between checks.
    #[serde(default, with = "duration")]
    pub interval: Option<Duration>,
    /// Time allowed for one check.
    #[serde(default, with = "duration")]
    pub timeout: Option<Duration>,
    /// Failed checks that mark a server down.
    pub fall: Option<u32>,
    /// Passed checks that mark it up.
    pub rise: Option<u32>,
}

/// Passive ejection.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EjectionConf {
    /// Consecutive failures that eject.
    pub max_fails: Option<u32>,
    /// How long a server stays out.
    #[serde(default, with = "duration")]
    pub eject_for: Option<Duration>,
}

/// A route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConf {
    /// Host matched (any when absent).
    pub host: Option<String>,
    /// Path prefix matched.
    #[serde(default = "slash")]
    pub path: String,
    /// Name of the upstream group.
    pub upstream: String,
}

/// Timeouts and limits of the listeners.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConf {
    /// Time for a whole request head.
    #[serde(default, with = "duration")]
    pub head_timeout: Option<Duration>,
    /// Keep-alive idle time.
    #[serde(default, with = "duration")]
    pub idle_timeout: Option<Duration>,
    /// Time between two reads of a request body.
    #[serde(default, with = "duration")]
    pub body_timeout: Option<Duration>,
    /// Time for a write to make progress.
    #[serde(default, with = "duration")]
    pub write_timeout: Option<Duration>,
    /// Idle time before a connection is parked (`"0s"`: never).
    #[serde(default, with = "duration")]
    pub park_idle_after: Option<Duration>,
    /// Connections open at once.
    pub max_connections: Option<usize>,
    /// Requests per connection.
    pub max_requests_per_connection: Option<u32>,
    /// Largest request head (431 beyond).
    pub max_head_bytes: Option<usize>,
    /// Longest request target (414 beyond).
    pub max_uri_bytes: Option<usize>,
    /// Largest request body (413 beyond).
    pub max_body_bytes: Option<u64>,
    /// Permission bits of the Unix socket files the listeners create.
    pub socket_mode: Option<addr::SocketMode>,
    /// Whether TCP listeners accept a connection only once its first bytes
    /// arrived (default `true`).
    pub defer_accept: Option<bool>,
}

/// The upstream pools.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConf {
    /// Time to connect.
    #[serde(default, with = "duration")]
    pub connect_timeout: Option<Duration>,
    /// Time from request written to response head, and between two reads of
    /// the response body (504 beyond). Default 60 s.
    #[serde(default, with = "duration")]
    pub response_timeout: Option<Duration>,
    /// Time a write of a request to the upstream may make no progress (504
    /// beyond, the connection closed). Default 60 s.
    #[serde(default, with = "duration")]
    pub send_timeout: Option<Duration>,
    /// Time an upstream connection may sit idle in its pool.
    #[serde(default, with = "duration")]
    pub idle_timeout: Option<Duration>,
    /// Idle connections kept per upstream.
    pub max_idle_per_host: Option<usize>,
    /// Connections per upstream (requests wait in line beyond).
    pub max_per_host: Option<usize>,
}

/// What the proxy adds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConf {
    /// The name in `Via` (`""`: no `Via`).
    #[serde(default = "via")]
    pub via: String,
    /// Whether to add `X-Forwarded-For`, `-Proto`, `-Host`.
    #[serde(default = "yes")]
    pub x_forwarded: bool,
    /// Whether `Host` goes upstream unchanged.
    #[serde(default = "yes")]
    pub preserve_host: bool,
}

impl Default for ProxyConf {
    fn default() -> Self {
        ProxyConf {
            via: via(),
            x_forwarded: true,
            preserve_host: true,
        }
    }
}

/// `[drain] delay` when the file does not say. Not 0: with 0, keep-alive
/// clients that send back to back lose the requests they write at the instant
/// the old process closes their idle connections (56-104 requests over five
/// upgrades under 32 such clients); a second of `Connection: close` on every
/// response first moves them all to new connections.
pub const DEFAULT_DRAIN_DELAY: Duration = Duration::from_secs(1);

/// `[drain] spread` when the file does not say: idle connections left after
/// the delay close over a second, not in one burst of reconnections.
pub const DEFAULT_DRAIN_SPREAD: Duration = Duration::from_secs(1);

/// How a shutdown drains.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainConf {
    /// The hard deadline for requests in flight.
    #[serde(default, with = "duration")]
    pub timeout: Option<Duration>,
    /// How long the listeners keep accepting (every response saying close)
    /// while load balancers notice the process is not ready (default
    /// [`DEFAULT_DRAIN_DELAY`]).
    #[serde(default, with = "duration")]
    pub delay: Option<Duration>,
    /// The window over which idle keep-alive connections are closed (default
    /// [`DEFAULT_DRAIN_SPREAD`]).
    #[serde(default, with = "duration")]
    pub spread: Option<Duration>,
}

fn slash() -> String {
    "/".into()
}

fn via() -> String {
    "drainpipe".into()
}

fn yes() -> bool {
    true
}

/// Durations written as `"500ms"`, `"10s"`, `"2m"`.
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid duration {text:?} (use e.g. \"500ms\", \"10s\", \"2m\")"
            ))
        })
    }

    pub fn parse(text: &str) -> Option<Duration> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit())?;
        let (number, unit) = text.split_at(split);
        let n: u64 = number.parse().ok()?;
        match unit {
            "ms" => Some(Duration::from_millis(n)),
            "s" => Some(Duration::from_secs(n)),
            "m" => Some(Duration::from_secs(n.checked_mul(60)?)),
            _ => None,
        }
    }
}

impl Config {
    /// The configuration `drainpipe proxy --listen ADDR --upstream ADDR...`
    /// stands for: one listener, one group, every path routed to it.
    #[allow(clippy::too_many_arguments)]
    pub fn quick(
        listen: Option<ListenAddr>,
        upstreams: &[String],
        balance: crate::args::BalanceArg,
        admin: Option<ListenAddr>,
        access_log: bool,
        tls: Option<ListenerTls>,
        upstream_ca: Option<std::path::PathBuf>,
    ) -> Result<Config, String> {
        if upstreams.is_empty() {
            return Err(
                "--upstream: at least one upstream HOST:PORT is needed (or --config FILE)".into(),
            );
        }
        for u in upstreams {
            let origin = addr::upstream(u).map_err(|e| format!("--upstream: {e}"))?;
            addr::resolve_upstream(&origin).map_err(|e| format!("--upstream: {u}: {e}"))?;
        }
        let listen = listen.unwrap_or_else(|| ListenAddr::ip(([127, 0, 0, 1], 8080).into()));
        let config = Config {
            listener: vec![Listener {
                listen,
                tls,
                server_tls: Default::default(),
            }],
            upstream: vec![UpstreamConf {
                name: "upstream".into(),
                servers: upstreams.to_vec(),
                balance: match balance {
                    crate::args::BalanceArg::RoundRobin => BalanceConf::RoundRobin,
                    crate::args::BalanceArg::LeastConnections => BalanceConf::LeastConnections,
                },
                health: None,
                ejection: None,
                lazy: false,
                resolve_interval: None,
                tls_ca: upstream_ca,
                tls_client_cert: None,
                tls_client_key: None,
                tls_server_name: None,
                client_tls: Default::default(),
            }],
            route: vec![RouteConf {
                host: None,
                path: "/".into(),
                upstream: "upstream".into(),
            }],
            admin: admin.map(|listen| ListenConf { listen }),
            access_log: access_log.then(AccessLogConf::default),
            ..Config::default()
        };
        config.check_tls().map_err(|e| {
            let flag = if e.key.starts_with("listener") {
                "--tls-cert"
            } else {
                "--upstream-ca"
            };
            format!("{flag}: {}", e.message)
        })?;
        Ok(config)
    }

    /// The configuration `drainpipe forward --listen ADDR …` stands for.
    pub fn quick_forward(
        listen: ListenAddr,
        allow_private: bool,
        allow_ports: &[u16],
        credentials: Option<std::path::PathBuf>,
        admin: Option<ListenAddr>,
        access_log: bool,
    ) -> Result<Config, String> {
        let mut ports = https_port();
        ports.extend_from_slice(allow_ports);
        let config = Config {
            forward: Some(ForwardConf {
                listen,
                allow_private,
                allow_ports: ports,
                credentials,
            }),
            admin: admin.map(|listen| ListenConf { listen }),
            access_log: access_log.then(AccessLogConf::default),
            ..Config::default()
        };
        config
            .check()
            .map_err(|e| format!("--credentials: {}", e.message))?;
        Ok(config)
    }

    /// Reads and checks `path`. The error is one line naming the file and the
    /// key.
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses and checks `text`; `name` is the file's name in errors.
    pub fn parse(text: &str, name: &str) -> Result<Config, String> {
        let de = toml::Deserializer::parse(text).map_err(|e| one_line(name, text, &e))?;
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let message = inner
                .message()
                .lines()
                .next()
                .unwrap_or("invalid value")
                .to_string();
            let at = inner
                .span()
                .map(|s| line_of(text, s.start))
                .map(|l| format!(" (line {l})"))
                .unwrap_or_default();
            if path.is_empty() || path == "." {
                format!("{name}: {message}{at}")
            } else {
                format!("{name}: {path}: {message}{at}")
            }
        })?;
        config.check().map_err(|e| {
            let at = line_of_key(text, &e.key)
                .map(|l| format!(" (line {l})"))
                .unwrap_or_default();
            format!("{name}: {}: {}{at}", e.key, e.message)
        })?;
        Ok(config)
    }

    /// Cross-references: every route names a known group, every group has
    /// servers that parse and resolve, the credentials file reads, routes
    /// need a listener. The error is the key at fault and what is wrong.
    fn check(&self) -> Result<(), Invalid> {
        self.access_log_format()?;
        self.check_tls()?;
        for (i, u) in self.upstream.iter().enumerate() {
            if u.servers.is_empty() {
                return Err(Invalid::new(
                    format!("upstream[{i}].servers"),
                    "a group needs at least one server",
                ));
            }
            for (j, s) in u.servers.iter().enumerate() {
                let at = |e| Invalid::new(format!("upstream[{i}].servers[{j}]"), e);
                let origin = addr::upstream(s).map_err(at)?;
                // One server listed twice would be two of the same series in
                // /metrics and a double share of the requests.
                let twice = u.servers[..j]
                    .iter()
                    .any(|o| addr::upstream(o).is_ok_and(|o| o == origin));
                if twice {
                    return Err(at(format!("{s} is listed twice in this group")));
                }
                // With name servers of its own, drainpipe resolves the names
                // when it starts (and fails then), not here.
                if !u.lazy && self.resolver.nameservers.is_empty() {
                    addr::resolve_upstream(&origin).map_err(|e| at(format!("{s}: {e}")))?;
                }
            }
            if self.upstream[..i].iter().any(|o| o.name == u.name) {
                return Err(Invalid::new(
                    format!("upstream[{i}].name"),
                    format!("{:?} is defined twice", u.name),
                ));
            }
        }
        for (i, n) in self.resolver.nameservers.iter().enumerate() {
            nameserver(n).map_err(|e| Invalid::new(format!("resolver.nameservers[{i}]"), e))?;
        }
        for (i, r) in self.route.iter().enumerate() {
            if !self.upstream.iter().any(|u| u.name == r.upstream) {
                return Err(Invalid::new(
                    format!("route[{i}].upstream"),
                    format!("no upstream named {:?}", r.upstream),
                ));
            }
            if !r.path.starts_with('/') {
                return Err(Invalid::new(
                    format!("route[{i}].path"),
                    "must start with '/'",
                ));
            }
        }
        self.credentials()?;
        if !self.route.is_empty() && self.listener.is_empty() {
            return Err(Invalid::new(
                "route",
                "routes are defined but no [[listener]] listens",
            ));
        }
        Ok(())
    }

    /// Reads every TLS file (the listeners' certificates, the groups' CA
    /// and client certificates) and keeps what it built for serving. The
    /// error is the key at fault and the file.
    fn check_tls(&self) -> Result<(), Invalid> {
        for (i, l) in self.listener.iter().enumerate() {
            if let Some(tls) = &l.tls {
                let built = tls
                    .server_tls()
                    .map_err(|e| Invalid::new(format!("listener[{i}].tls"), e))?;
                let _ = l.server_tls.set(built);
            }
        }
        for (i, u) in self.upstream.iter().enumerate() {
            let tls = u
                .tls()
                .client_tls()
                .map_err(|(key, e)| Invalid::new(format!("upstream[{i}].{key}"), e))?;
            let any_https = u
                .servers
                .iter()
                .any(|s| addr::upstream(s).is_ok_and(|o| o.tls.is_some()));
            if tls.is_some() && !any_https {
                return Err(Invalid::new(
                    format!("upstream[{i}].servers"),
                    "tls_* settings are given but no server is https://",
                ));
            }
            let _ = u.client_tls.set(tls);
        }
        Ok(())
    }

    /// The server builder for the listeners.
    pub fn server(&self) -> drainpipe::server::Builder {
        let s = &self.server;
        let mut b = Server::builder();
        if let Some(d) = s.head_timeout {
            b = b.head_timeout(d);
        }
        if let Some(d) = s.idle_timeout {
            b = b.idle_timeout(d);
        }
        if let Some(d) = s.body_timeout {
            b = b.body_timeout(d);
        }
        if let Some(d) = s.write_timeout {
            b = b.write_timeout(d);
        }
        if let Some(d) = s.park_idle_after {
            b = b.park_idle_after((!d.is_zero()).then_some(d));
        }
        if let Some(n) = s.max_connections {
            b = b.max_connections(n);
        }
        if let Some(n) = s.max_requests_per_connection {
            b = b.max_requests_per_connection(n);
        }
        if let Some(n) = s.max_head_bytes {
            b = b.max_head_bytes(n);
        }
        if let Some(n) = s.max_uri_bytes {
            b = b.max_uri_bytes(n);
        }
        if let Some(n) = s.max_body_bytes {
            b = b.max_body_bytes(n);
        }
        self.drain_settings(b)
    }

    /// The access log's format (combined when not set).
    fn access_log_format(&self) -> Result<Option<Format>, Invalid> {
        let Some(a) = &self.access_log else {
            return Ok(None);
        };
        let format = a.format.as_deref().unwrap_or("combined");
        format
            .parse::<Format>()
            .map(Some)
            .map_err(|e| Invalid::new("access_log.format", e.to_string()))
    }

    /// The access log, opened (none when not configured). The error names
    /// the key and the file.
    pub fn access_log(&self) -> Result<Option<AccessLog>, String> {
        let format = self
            .access_log_format()
            .map_err(|e| format!("{}: {}", e.key, e.message))?;
        let Some(format) = format else {
            return Ok(None);
        };
        let path = self
            .access_log
            .as_ref()
            .and_then(|a| a.path.as_deref())
            .unwrap_or("stdout");
        let target: Target = match path.parse() {
            Ok(t) => t,
            Err(never) => match never {},
        };
        AccessLog::new(format, target)
            .map(Some)
            .map_err(|e| format!("access_log.path: cannot open {path:?}: {e}"))
    }

    /// The server builder for the built-in origin: defaults, with this file's
    /// drain settings.
    pub fn origin_server(&self) -> drainpipe::server::Builder {
        self.drain_settings(Server::builder())
    }

    fn drain_settings(&self, mut b: drainpipe::server::Builder) -> drainpipe::server::Builder {
        if let Some(d) = self.drain.timeout {
            b = b.drain_timeout(d);
        }
        b.drain_delay(self.drain.delay.unwrap_or(DEFAULT_DRAIN_DELAY))
            .drain_spread(self.drain.spread.unwrap_or(DEFAULT_DRAIN_SPREAD))
    }

    /// The forward proxy's credentials file, read and parsed (`None` when
    /// none is configured); errors name the file and the problem.
    fn credentials(&self) -> Result<Option<Credentials>, Invalid> {
        let Some(path) = self.forward.as_ref().and_then(|f| f.credentials.as_ref()) else {
            return Ok(None);
        };
        let at = |e| Invalid::new("forward.credentials", e);
        let text = std::fs::read_to_string(path)
            .map_err(|e| at(format!("cannot read {}: {e}", path.display())))?;
        Credentials::parse(&text)
            .map(Some)
            .map_err(|e| at(format!("{}: {e}", path.display())))
    }

    /// The forward proxy service, if configured. The credentials file is
    /// read again here (it was checked when the configuration was loaded, and
    /// may have changed since): a file gone bad is an error, not a panic.
    pub fn forward_proxy(&self) -> Result<Option<ForwardProxy>, String> {
        let Some(f) = self.forward.as_ref() else {
            return Ok(None);
        };
        let credentials = self
            .credentials()
            .map_err(|e| format!("config: {}: {}", e.key, e.message))?;
        let policy = Policy {
            allow_private: f.allow_private,
            connect_ports: f.allow_ports.clone(),
            ..Policy::default()
        };
        Ok(Some(ForwardProxy::new(self.client(), policy, credentials)))
    }

    /// The client for upstream requests, from `[client]`.
    fn client(&self) -> Client {
        let c = &self.client;
        let mut client = Client::builder();
        if let Some(d) = c.response_timeout {
            client = client.response_timeout(Some(d));
        }
        if let Some(d) = c.send_timeout {
            client = client.send_timeout(Some(d));
        }
        if let Some(d) = c.connect_timeout {
            client = client.connect_timeout(d);
        }
        if let Some(d) = c.idle_timeout {
            client = client.idle_timeout(d);
        }
        if let Some(n) = c.max_idle_per_host {
            client = client.max_idle_per_host(n);
        }
        if c.max_per_host.is_some() {
            client = client.max_per_host(c.max_per_host);
        }
        client.build()
    }

    /// The proxy service (starts health checks: call inside the runtime).
    pub fn proxy(&self) -> Proxy {
        let resolver = self.resolver();
        let groups: Vec<(String, Arc<Group>)> = self
            .upstream
            .iter()
            .map(|u| (u.name.clone(), Arc::new(group(u, &resolver))))
            .collect();
        let mut builder = Proxy::builder()
            .client(self.client())
            .preserve_host(self.proxy.preserve_host)
            .forwarding(Forwarding {
                via: (!self.proxy.via.is_empty()).then(|| self.proxy.via.clone()),
                x_forwarded: self.proxy.x_forwarded,
            });
        for r in &self.route {
            let group = groups
                .iter()
                .find(|(n, _)| *n == r.upstream)
                .map(|(_, g)| g.clone())
                .expect("checked when loaded");
            builder = builder.route(Route {
                host: r.host.clone(),
                path_prefix: r.path.clone(),
                group,
            });
        }
        builder.build()
    }
}

impl Config {
    /// The resolver of upstream host names, from `[resolver]` (call inside
    /// the runtime).
    fn resolver(&self) -> Resolver {
        if self.resolver.nameservers.is_empty() {
            return Resolver::system();
        }
        let servers: Vec<SocketAddr> = self
            .resolver
            .nameservers
            .iter()
            .map(|n| nameserver(n).expect("checked when loaded"))
            .collect();
        Resolver::nameservers(&servers).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot use the configured name servers; using the system's resolver");
            Resolver::system()
        })
    }

    /// Resolves every group's host names before serving: a name that does
    /// not resolve is an error naming its group, unless the group is `lazy`.
    pub async fn resolve_upstreams(&self, proxy: &Proxy) -> Result<(), String> {
        for group in proxy.groups() {
            let lazy = self
                .upstream
                .iter()
                .any(|u| u.name == group.name() && u.lazy);
            match group.resolve_now(proxy.client()).await {
                Ok(()) => {}
                Err(e) if lazy => {
                    tracing::warn!(group = group.name(), error = %e, "upstream not resolved yet (lazy)")
                }
                Err(e) => return Err(format!("upstream {:?}: {e}", group.name())),
            }
        }
        Ok(())
    }
}

/// A name server: `IP` or `IP:PORT` (53 by default).
fn nameserver(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("{text:?} is not a name server address (IP or IP:PORT)"))
}

fn group(u: &UpstreamConf, resolver: &Resolver) -> Group {
    let origins = u
        .servers
        .iter()
        .map(|s| {
            let mut origin = addr::upstream(s).expect("checked when loaded");
            if let (Some(tls), Some(Some(mine))) = (&mut origin.tls, u.client_tls.get()) {
                *tls = mine.clone();
            }
            origin
        })
        .collect();
    let balance = match u.balance {
        BalanceConf::RoundRobin => Balance::RoundRobin,
        BalanceConf::LeastConnections => Balance::LeastConnections,
    };
    let mut g = Group::new(u.name.clone(), origins, balance);
    let interval = u.resolve_interval.unwrap_or(RESOLVE_INTERVAL);
    if !interval.is_zero() {
        g = g.resolve_every(interval, resolver.clone());
    }
    if let Some(h) = &u.health {
        let d = HealthCheck::default();
        g = g.health_check(HealthCheck {
            path: h.path.clone(),
            interval: h.interval.unwrap_or(d.interval),
            timeout: h.timeout.unwrap_or(d.timeout),
            fall: h.fall.unwrap_or(d.fall),
            rise: h.rise.unwrap_or(d.rise),
        });
    }
    if let Some(e) = &u.ejection {
        let d = Ejection::default();
        g = g.ejection(Ejection {
            max_fails: e.max_fails.unwrap_or(d.max_fails),
            eject_for: e.eject_for.unwrap_or(d.eject_for),
        });
    }
    g
}

/// A value that parsed but does not fit: the key (`route[0].upstream`) and
/// what is wrong.
#[derive(Debug)]
struct Invalid {
    key: String,
    message: String,
}

impl Invalid {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Invalid {
        Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The line of `key` (`upstream[0].servers[1]`) in the TOML `text`: of its
/// value, or of the nearest enclosing table or array present.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let mut at: Option<usize> = None;
    for part in key.split('.') {
        let (name, index) = match part.split_once('[') {
            Some((n, i)) => (n, i.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let Some((_, value)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == name) else {
            break;
        };
        at = Some(value.span().start);
        let mut value = value;
        if let (Some(i), DeValue::Array(items)) = (index, value.get_ref()) {
            match items.get(i) {
                Some(item) => {
                    at = Some(item.span().start);
                    value = item;
                }
                None => break,
            }
        }
        match value.get_ref() {
            DeValue::Table(t) => table = t,
            _ => break,
        }
    }
    at.map(|offset| line_of(text, offset))
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn one_line(name: &str, text: &str, e: &toml::de::Error) -> String {
    let at = e
        .span()
        .map(|s| format!(" (line {})", line_of(text, s.start)))
        .unwrap_or_default();
    let message = e.message().lines().next().unwrap_or("invalid TOML");
    format!("{name}: {message}{at}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[listener]]
listen = "127.0.0.1:8080"

[[upstream]]
name = "app"
servers = ["127.0.0.1:8081", "localhost:8082"]
balance = "least_connections"
health = { path = "/healthz", interval = "2s" }

[[route]]
path = "/"
upstream = "app"

[server]
idle_timeout = "30s"
head_timeout = "500ms"
max_requests_per_connection = 1000

[drain]
timeout = "1m"
"#;

    #[test]
    fn a_good_file_loads() {
        let c = Config::parse(GOOD, "good.toml").unwrap();
        assert_eq!(c.listener[0].listen.addrs[0].port(), 8080);
        assert_eq!(c.server.idle_timeout, Some(Duration::from_secs(30)));
        assert_eq!(c.server.head_timeout, Some(Duration::from_millis(500)));
        assert_eq!(c.drain.timeout, Some(Duration::from_secs(60)));
        assert_eq!(c.upstream[0].servers.len(), 2);
    }

    #[test]
    fn errors_name_the_file_and_the_key_on_one_line() {
        let cases = [
            (
                GOOD.replace("\"30s\"", "\"ten\""),
                "bad.toml: server.idle_timeout: invalid duration \"ten\"",
            ),
            (
                GOOD.replace("idle_timeout", "idel_timeout"),
                "bad.toml: server.idel_timeout: unknown field `idel_timeout`",
            ),
            (
                GOOD.replace("upstream = \"app\"", "upstream = \"nope\""),
                "bad.toml: route[0].upstream: no upstream named \"nope\"",
            ),
            (
                GOOD.replace("\"127.0.0.1:8081\"", "\"nowhere\""),
                "bad.toml: upstream[0].servers[0]: nowhere: no port",
            ),
            (
                GOOD.replace("least_connections", "random"),
                "bad.toml: upstream[0].balance: unknown variant `random`",
            ),
            (
                GOOD.replace("listen = \"127.0.0.1:8080\"", "listen = \"localhost\""),
                "bad.toml: listener[0].listen: localhost: no port",
            ),
            (GOOD.replace("[drain]", "[drain"), "bad.toml: "),
        ];
        for (text, want) in cases {
            let err = Config::parse(&text, "bad.toml").unwrap_err();
            assert!(
                err.starts_with(want),
                "{err:?} does not start with {want:?}"
            );
            assert_eq!(err.lines().count(), 1, "{err:?}");
        }
    }

    #[test]
    fn a_server_listed_twice_in_a_group_is_refused() {
        let text = "[[listener]]\nlisten = \"127.0.0.1:0\"\n\n[[upstream]]\nname = \"a\"\nservers = [\"127.0.0.1:9\", \"http://127.0.0.1:9\"]\n\n[[route]]\npath = \"/\"\nupstream = \"a\"\n";
        let e = Config::parse(text, "twice.toml").unwrap_err();
        assert!(
            e.starts_with("twice.toml: upstream[0].servers[1]: http://127.0.0.1:9 is listed twice"),
            "{e}"
        );
    }

    #[test]
    fn errors_found_after_parsing_name_the_line() {
        let cases = [
            (
                GOOD.replace("upstream = \"app\"", "upstream = \"nope\""),
                "bad.toml: route[0].upstream: no upstream named \"nope\" (line 13)",
            ),
            (
                GOOD.replace("\"localhost:8082\"", "\"nowhere.invalid:1\""),
                "bad.toml: upstream[0].servers[1]: nowhere.invalid:1: host name 'nowhere.invalid' does not resolve",
            ),
            (
                GOOD.replace("path = \"/\"", "path = \"api\""),
                "bad.toml: route[0].path: must start with '/' (line 12)",
            ),
            (
                format!("{GOOD}\n[[upstream]]\nname = \"app\"\nservers = [\"127.0.0.1:1\"]\n"),
                "bad.toml: upstream[1].name: \"app\" is defined twice (line 24)",
            ),
        ];
        for (text, want) in cases {
            let err = Config::parse(&text, "bad.toml").unwrap_err();
            assert!(
                err.starts_with(want),
                "{err:?} does not start with {want:?}"
            );
            assert_eq!(err.lines().count(), 1, "{err:?}");
        }
        let err = Config::parse(
            &GOOD.replace("\"localhost:8082\"", "\"nowhere.invalid:1\""),
            "bad.toml",
        )
        .unwrap_err();
        assert!(err.ends_with("(line 7)"), "{err}");
    }

    #[test]
    fn a_lazy_group_may_name_hosts_that_do_not_resolve_yet() {
        let text = GOOD.replace("\"localhost:8082\"", "\"nowhere.invalid:1\"");
        assert!(Config::parse(&text, "bad.toml").is_err());
        let text = text.replace("balance = ", "lazy = true\nbalance = ");
        let c = Config::parse(&text, "lazy.toml").unwrap();
        assert!(c.upstream[0].lazy);
        // Still parsed: a bad port is an error, lazy or not.
        let text = text.replace("nowhere.invalid:1", "nowhere.invalid:x");
        assert!(Config::parse(&text, "lazy.toml").is_err());
    }

    #[test]
    fn forward_section() {
        let c = Config::parse(
            "[forward]\nlisten = \"127.0.0.1:3128\"\nallow_private = true\nallow_ports = [443, 8443]\n",
            "fwd.toml",
        )
        .unwrap();
        let f = c.forward.as_ref().unwrap();
        assert!(f.allow_private);
        assert_eq!(f.allow_ports, [443, 8443]);
        let err = Config::parse(
            "[forward]\nlisten = \"127.0.0.1:3128\"\nallow_port = [1]\n",
            "fwd.toml",
        )
        .unwrap_err();
        assert!(
            err.starts_with("fwd.toml: forward.allow_port: unknown field"),
            "{err}"
        );
        let err = Config::parse(
            "[forward]\nlisten = \"127.0.0.1:3128\"\ncredentials = \"/nonexistent\"\n",
            "fwd.toml",
        )
        .unwrap_err();
        assert!(
            err.starts_with("fwd.toml: forward.credentials: cannot read /nonexistent"),
            "{err}"
        );
    }

    /// docs/configuration.md names every key the file accepts (a table row
    /// starting with the dotted key), and nothing the file does not accept.
    #[test]
    fn every_key_is_in_the_configuration_doc() {
        let doc = include_str!("../../../docs/configuration.md");
        let keys = crate::keys::keys::<Config>();
        assert!(keys.len() > 40, "{keys:?}");
        let rows: Vec<&str> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split_once('`'))
            .map(|(key, _)| key)
            .filter(|key| {
                key.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
            })
            .collect();
        let missing: Vec<&String> = keys
            .iter()
            .filter(|k| !rows.contains(&k.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "keys missing from docs/configuration.md: {missing:?}"
        );
        let unknown: Vec<&&str> = rows
            .iter()
            .filter(|r| !keys.iter().any(|k| k == *r))
            .collect();
        assert!(
            unknown.is_empty(),
            "docs/configuration.md documents unknown keys: {unknown:?}"
        );
    }

    /// The complete example in docs/configuration.md is a valid file.
    #[test]
    fn the_documented_example_loads() {
        let doc = include_str!("../../../docs/configuration.md");
        let example = doc
            .split("## A complete example")
            .nth(1)
            .and_then(|s| s.split("```toml\n").nth(1))
            .and_then(|s| s.split("```").next())
            .expect("a toml block after the heading");
        let c = Config::parse(example, "configuration.md").unwrap();
        assert_eq!(c.upstream[0].servers.len(), 2);
        assert_eq!(c.drain.delay, Some(Duration::from_secs(1)));
    }

    #[test]
    fn durations() {
        assert_eq!(duration::parse("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(duration::parse("3s"), Some(Duration::from_secs(3)));
        assert_eq!(duration::parse("2m"), Some(Duration::from_secs(120)));
        for bad in ["", "10", "s", "1h", "-1s", "1.5s"] {
            assert_eq!(duration::parse(bad), None, "{bad}");
        }
    }
}
