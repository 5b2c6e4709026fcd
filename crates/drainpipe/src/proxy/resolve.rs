//! Upstream servers named by host: every address the name resolves to is a
//! server of its group, and the name is resolved again every
//! `resolve_interval`, so a fleet behind DNS (a Kubernetes headless Service,
//! an autoscaled group) is followed. An address that appears becomes a new
//! server (its own health, ejection and pool); one that disappears takes no
//! new request, and once three answers in a row lacked it, it leaves: its
//! pooled connections close once idle (requests in flight finish). A failed
//! lookup keeps the servers known.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

/// How host names become addresses.
#[derive(Clone, Default)]
pub struct Resolver {
    dns: Option<Arc<hickory_resolver::Resolver<TokioRuntimeProvider>>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.dns {
            None => f.write_str("Resolver::System"),
            Some(_) => f.write_str("Resolver::Nameservers"),
        }
    }
}

impl Resolver {
    /// The system's resolver (`getaddrinfo`: `/etc/hosts`, `/etc/resolv.conf`).
    pub fn system() -> Resolver {
        Resolver::default()
    }

    /// DNS queries (UDP, then TCP) to `servers`, in order, with no cache: each
    /// lookup asks again. Call inside a tokio runtime.
    pub fn nameservers(servers: &[SocketAddr]) -> io::Result<Resolver> {
        if servers.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no name server given",
            ));
        }
        let name_servers = servers
            .iter()
            .map(|s| {
                let mut config = NameServerConfig::udp_and_tcp(s.ip());
                for c in &mut config.connections {
                    c.port = s.port();
                }
                config
            })
            .collect();
        let mut options = ResolverOpts::default();
        options.cache_size = 0;
        options.timeout = Duration::from_secs(2);
        options.attempts = 2;
        let resolver = hickory_resolver::Resolver::builder_with_config(
            ResolverConfig::from_name_servers(name_servers),
            TokioRuntimeProvider::default(),
        )
        .with_options(options)
        .build()
        .map_err(io::Error::other)?;
        Ok(Resolver {
            dns: Some(Arc::new(resolver)),
        })
    }

    /// The addresses of `host` (an IP address is itself), with `port`,
    /// sorted and without repeats.
    pub async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let mut addrs: Vec<SocketAddr> = match &self.dns {
            None => tokio::net::lookup_host((bare, port)).await?.collect(),
            Some(dns) => dns
                .lookup_ip(format!("{bare}."))
                .await
                .map_err(|e| io::Error::new(io::ErrorKind::NotFound, e))?
                .iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect(),
        };
        addrs.sort_unstable();
        addrs.dedup();
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{bare} has no address"),
            ));
        }
        Ok(addrs)
    }
}
