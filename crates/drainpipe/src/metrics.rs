//! What the admin listener reports: the live counters of every server
//! (connections by state, closes by reason, requests, bytes) and every proxy
//! (upstream connections opened and reused, retries), as Prometheus text and
//! as JSON for the live status page.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::proxy::Proxy;
use crate::server::{CloseReason, Stats, REQUESTS_PER_CONNECTION};

/// The sources the admin listener reads.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    servers: Vec<(String, Arc<Stats>)>,
    proxies: Vec<(String, Proxy)>,
    not_ready: Arc<AtomicBool>,
}

/// One listener's figures at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSnapshot {
    /// The listener's name.
    pub name: String,
    /// Connections by state: reading, writing, idle, parked, lingering.
    pub states: [(&'static str, u64); 5],
    /// Connections open.
    pub open: u64,
    /// Connections accepted.
    pub accepted: u64,
    /// Requests received.
    pub requests: u64,
    /// Writes of the outgoing queue.
    pub writes: u64,
    /// Bytes in and out.
    pub bytes: (u64, u64),
    /// Closed connections by reason.
    pub closed: Vec<(&'static str, u64)>,
    /// Whether it is draining.
    pub draining: bool,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds a server's counters under `name`.
    pub fn server(mut self, name: impl Into<String>, stats: Arc<Stats>) -> Self {
        self.servers.push((name.into(), stats));
        self
    }

    /// Adds a proxy's counters under `name`.
    pub fn proxy(mut self, name: impl Into<String>, proxy: Proxy) -> Self {
        self.proxies.push((name.into(), proxy));
        self
    }

    /// Marks the process not ready (`/ready` answers 503) — the first step of
    /// a drain, before the listeners close.
    pub fn set_not_ready(&self) {
        self.not_ready.store(true, Ordering::Relaxed);
    }

    /// Whether `/ready` answers 200: not marked not ready, and no server
    /// draining.
    pub fn is_ready(&self) -> bool {
        !self.not_ready.load(Ordering::Relaxed)
            && !self
                .servers
                .iter()
                .any(|(_, s)| s.draining.load(Ordering::Relaxed))
    }

    /// Every server's figures now.
    pub fn servers(&self) -> Vec<ServerSnapshot> {
        self.servers
            .iter()
            .map(|(name, s)| {
                let g = |a: &std::sync::atomic::AtomicUsize| a.load(Ordering::Relaxed) as u64;
                ServerSnapshot {
                    name: name.clone(),
                    states: [
                        ("reading", g(&s.reading)),
                        ("writing", g(&s.writing)),
                        ("idle", g(&s.idle)),
                        ("parked", g(&s.parked)),
                        ("lingering", g(&s.lingering)),
                    ],
                    open: g(&s.open),
                    accepted: s.accepted.load(Ordering::Relaxed),
                    requests: s.requests.load(Ordering::Relaxed),
                    writes: s.writes.load(Ordering::Relaxed),
                    bytes: (
                        s.bytes_in.load(Ordering::Relaxed),
                        s.bytes_out.load(Ordering::Relaxed),
                    ),
                    closed: CloseReason::ALL
                        .iter()
                        .map(|r| (r.as_str(), s.closed(*r)))
                        .collect(),
                    draining: s.draining.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Everything in the Prometheus text exposition format.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let help = |out: &mut String, name: &str, kind: &str, text: &str| {
            let _ = writeln!(out, "# HELP {name} {text}\n# TYPE {name} {kind}");
        };
        let servers = self.servers();
        help(
            &mut out,
            "drainpipe_connections",
            "gauge",
            "Connections open now, by state.",
        );
        for s in &servers {
            for (state, n) in s.states {
                let _ = writeln!(
                    out,
                    "drainpipe_connections{{listener=\"{}\",state=\"{state}\"}} {n}",
                    s.name
                );
            }
            let draining = if s.draining { s.open } else { 0 };
            let _ = writeln!(
                out,
                "drainpipe_connections{{listener=\"{}\",state=\"draining\"}} {draining}",
                s.name
            );
        }
        help(
            &mut out,
            "drainpipe_connections_open",
            "gauge",
            "Connections open now.",
        );
        for s in &servers {
            let _ = writeln!(
                out,
                "drainpipe_connections_open{{listener=\"{}\"}} {}",
                s.name, s.open
            );
        }
        help(
            &mut out,
            "drainpipe_connections_accepted_total",
            "counter",
            "Connections accepted.",
        );
        for s in &servers {
            let _ = writeln!(
                out,
                "drainpipe_connections_accepted_total{{listener=\"{}\"}} {}",
                s.name, s.accepted
            );
        }
        help(
            &mut out,
            "drainpipe_connections_closed_total",
            "counter",
            "Connections closed, by reason.",
        );
        for s in &servers {
            for (reason, n) in &s.closed {
                let _ = writeln!(
                    out,
                    "drainpipe_connections_closed_total{{listener=\"{}\",reason=\"{reason}\"}} {n}",
                    s.name
                );
            }
        }
        help(
            &mut out,
            "drainpipe_requests_total",
            "counter",
            "Requests received.",
        );
        for s in &servers {
            let _ = writeln!(
                out,
                "drainpipe_requests_total{{listener=\"{}\"}} {}",
                s.name, s.requests
            );
        }
        help(
            &mut out,
            "drainpipe_requests_per_connection",
            "histogram",
            "Requests served by each closed connection.",
        );
        for (name, stats) in &self.servers {
            let buckets = stats.requests_per_connection();
            let mut cumulative = 0;
            for (i, bound) in REQUESTS_PER_CONNECTION.iter().enumerate() {
                cumulative += buckets[i];
                let _ = writeln!(
                    out,
                    "drainpipe_requests_per_connection_bucket{{listener=\"{name}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            cumulative += buckets[REQUESTS_PER_CONNECTION.len()];
            let _ = writeln!(
                out,
                "drainpipe_requests_per_connection_bucket{{listener=\"{name}\",le=\"+Inf\"}} {cumulative}"
            );
            let _ = writeln!(
                out,
                "drainpipe_requests_per_connection_count{{listener=\"{name}\"}} {cumulative}"
            );
        }
        help(
            &mut out,
            "drainpipe_writes_total",
            "counter",
            "Writes of the outgoing queue.",
        );
        help(
            &mut out,
            "drainpipe_bytes_total",
            "counter",
            "Bytes read and written on client connections.",
        );
        for s in &servers {
            let _ = writeln!(
                out,
                "drainpipe_writes_total{{listener=\"{}\"}} {}",
                s.name, s.writes
            );
            let _ = writeln!(
                out,
                "drainpipe_bytes_total{{listener=\"{}\",direction=\"in\"}} {}",
                s.name, s.bytes.0
            );
            let _ = writeln!(
                out,
                "drainpipe_bytes_total{{listener=\"{}\",direction=\"out\"}} {}",
                s.name, s.bytes.1
            );
        }
        help(
            &mut out,
            "drainpipe_upstream_connections_opened_total",
            "counter",
            "Upstream connections opened.",
        );
        help(
            &mut out,
            "drainpipe_upstream_requests_reused_total",
            "counter",
            "Upstream requests on a reused connection.",
        );
        help(
            &mut out,
            "drainpipe_upstream_reuse_ratio",
            "gauge",
            "Share of upstream requests on a reused connection.",
        );
        help(
            &mut out,
            "drainpipe_retries_total",
            "counter",
            "Requests sent again after a safe-to-retry failure.",
        );
        help(
            &mut out,
            "drainpipe_gateway_errors_total",
            "counter",
            "Requests answered 502 or 504.",
        );
        for p in self.proxies() {
            let _ = writeln!(
                out,
                "drainpipe_upstream_connections_opened_total{{proxy=\"{}\"}} {}",
                p.name, p.opened
            );
            let _ = writeln!(
                out,
                "drainpipe_upstream_requests_reused_total{{proxy=\"{}\"}} {}",
                p.name, p.reused
            );
            let _ = writeln!(
                out,
                "drainpipe_upstream_reuse_ratio{{proxy=\"{}\"}} {:.4}",
                p.name,
                p.reuse_ratio()
            );
            let _ = writeln!(
                out,
                "drainpipe_retries_total{{proxy=\"{}\"}} {}",
                p.name, p.retries
            );
            let _ = writeln!(
                out,
                "drainpipe_gateway_errors_total{{proxy=\"{}\"}} {}",
                p.name, p.gateway_errors
            );
        }
        help(
            &mut out,
            "drainpipe_ready",
            "gauge",
            "1 when ready to take traffic.",
        );
        let _ = writeln!(out, "drainpipe_ready {}", u8::from(self.is_ready()));
        out
    }

    /// Every proxy's figures now.
    pub fn proxies(&self) -> Vec<ProxySnapshot> {
        self.proxies
            .iter()
            .map(|(name, p)| {
                let c = p.client().stats();
                ProxySnapshot {
                    name: name.clone(),
                    opened: c.opened.load(Ordering::Relaxed),
                    reused: c.reused.load(Ordering::Relaxed),
                    retries: c.retries.load(Ordering::Relaxed)
                        + p.stats().retries.load(Ordering::Relaxed),
                    gateway_errors: p.stats().gateway_errors.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// The figures the status page shows, as JSON.
    pub fn status_json(&self) -> String {
        let mut out = String::from("{\"ready\":");
        out.push_str(if self.is_ready() { "true" } else { "false" });
        out.push_str(",\"listeners\":[");
        for (i, s) in self.servers().iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let closed: u64 = s.closed.iter().map(|(_, n)| n).sum();
            let _ = write!(
                out,
                "{{\"name\":{:?},\"open\":{},\"accepted\":{},\"requests\":{},\"closed\":{},\"draining\":{},\"states\":{{",
                s.name, s.open, s.accepted, s.requests, closed, s.draining
            );
            for (j, (state, n)) in s.states.iter().enumerate() {
                let _ = write!(out, "{}\"{state}\":{n}", if j > 0 { "," } else { "" });
            }
            out.push_str("},\"closed_by\":{");
            for (j, (reason, n)) in s.closed.iter().enumerate() {
                let _ = write!(out, "{}\"{reason}\":{n}", if j > 0 { "," } else { "" });
            }
            out.push_str("}}");
        }
        out.push_str("],\"proxies\":[");
        for (i, p) in self.proxies().iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"name\":{:?},\"opened\":{},\"reused\":{},\"reuse_ratio\":{:.4},\"retries\":{},\"gateway_errors\":{}}}",
                p.name,
                p.opened,
                p.reused,
                p.reuse_ratio(),
                p.retries,
                p.gateway_errors
            );
        }
        out.push_str("]}");
        out
    }
}

/// One proxy's figures at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySnapshot {
    /// The proxy's name.
    pub name: String,
    /// Upstream connections opened.
    pub opened: u64,
    /// Upstream requests on a reused connection.
    pub reused: u64,
    /// Retries (client and proxy).
    pub retries: u64,
    /// 502s and 504s.
    pub gateway_errors: u64,
}

impl ProxySnapshot {
    /// Share of upstream requests that reused a connection.
    pub fn reuse_ratio(&self) -> f64 {
        let total = self.opened + self.reused;
        if total == 0 {
            0.0
        } else {
            self.reused as f64 / total as f64
        }
    }
}
