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

    /// Everything in the Prometheus text exposition format: each family's
    /// `HELP` and `TYPE`, then all its samples together.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let servers = self.servers();
        let proxies = self.proxies();
        let by_listener = |s: &ServerSnapshot| format!("listener=\"{}\"", s.name);
        let by_proxy = |p: &ProxySnapshot| format!("proxy=\"{}\"", p.name);
        family(
            &mut out,
            "drainpipe_connections",
            "gauge",
            "Connections open now, by state.",
            servers.iter().flat_map(|s| {
                let draining = if s.draining { s.open } else { 0 };
                s.states
                    .into_iter()
                    .chain([("draining", draining)])
                    .map(move |(state, n)| {
                        (format!("listener=\"{}\",state=\"{state}\"", s.name), n)
                    })
            }),
        );
        family(
            &mut out,
            "drainpipe_connections_open",
            "gauge",
            "Connections open now.",
            servers.iter().map(|s| (by_listener(s), s.open)),
        );
        family(
            &mut out,
            "drainpipe_connections_accepted_total",
            "counter",
            "Connections accepted.",
            servers.iter().map(|s| (by_listener(s), s.accepted)),
        );
        family(
            &mut out,
            "drainpipe_connections_closed_total",
            "counter",
            "Connections closed, by reason.",
            servers.iter().flat_map(|s| {
                s.closed.iter().map(move |(reason, n)| {
                    (format!("listener=\"{}\",reason=\"{reason}\"", s.name), *n)
                })
            }),
        );
        family(
            &mut out,
            "drainpipe_requests_total",
            "counter",
            "Requests received.",
            servers.iter().map(|s| (by_listener(s), s.requests)),
        );
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
        family(
            &mut out,
            "drainpipe_writes_total",
            "counter",
            "Writes of the outgoing queue.",
            servers.iter().map(|s| (by_listener(s), s.writes)),
        );
        family(
            &mut out,
            "drainpipe_bytes_total",
            "counter",
            "Bytes read and written on client connections.",
            servers.iter().flat_map(|s| {
                [("in", s.bytes.0), ("out", s.bytes.1)].map(|(direction, n)| {
                    (
                        format!("listener=\"{}\",direction=\"{direction}\"", s.name),
                        n,
                    )
                })
            }),
        );
        family(
            &mut out,
            "drainpipe_upstream_connections_opened_total",
            "counter",
            "Upstream connections opened.",
            proxies.iter().map(|p| (by_proxy(p), p.opened)),
        );
        family(
            &mut out,
            "drainpipe_upstream_requests_reused_total",
            "counter",
            "Upstream requests on a reused connection.",
            proxies.iter().map(|p| (by_proxy(p), p.reused)),
        );
        family(
            &mut out,
            "drainpipe_upstream_reuse_ratio",
            "gauge",
            "Share of upstream requests on a reused connection.",
            proxies
                .iter()
                .map(|p| (by_proxy(p), format!("{:.4}", p.reuse_ratio()))),
        );
        family(
            &mut out,
            "drainpipe_retries_total",
            "counter",
            "Requests sent again after a safe-to-retry failure.",
            proxies.iter().map(|p| (by_proxy(p), p.retries)),
        );
        family(
            &mut out,
            "drainpipe_gateway_errors_total",
            "counter",
            "Requests answered 502 or 504.",
            proxies.iter().map(|p| (by_proxy(p), p.gateway_errors)),
        );
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

/// A metric family's `HELP` and `TYPE` lines.
fn help(out: &mut String, name: &str, kind: &str, text: &str) {
    let _ = writeln!(out, "# HELP {name} {text}\n# TYPE {name} {kind}");
}

/// A metric family: its `HELP` and `TYPE`, then each sample (its labels and
/// value), all together as the exposition format asks.
fn family<V: std::fmt::Display>(
    out: &mut String,
    name: &str,
    kind: &str,
    text: &str,
    samples: impl IntoIterator<Item = (String, V)>,
) {
    help(out, name, kind, text);
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // With several listeners, each family's samples follow its own TYPE line
    // and stay together (the text format's rule; a parser rejects a family
    // that reappears after another one's samples).
    #[test]
    fn each_family_is_one_group() {
        let a = Arc::new(Stats::default());
        a.requests.store(3, Ordering::Relaxed);
        let text = Registry::new()
            .server("a", a)
            .server("b", Arc::new(Stats::default()))
            .prometheus();
        let mut seen: Vec<&str> = Vec::new();
        let mut current = "";
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                current = rest.split(' ').next().unwrap();
                assert!(!seen.contains(&current), "{current} twice:\n{text}");
                seen.push(current);
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(
                name.starts_with(current),
                "{name} among {current}'s samples:\n{text}"
            );
        }
        assert!(text.contains("drainpipe_requests_total{listener=\"a\"} 3\n"));
        assert!(text.contains("drainpipe_bytes_total{listener=\"b\",direction=\"out\"} 0\n"));
        assert!(text.contains("drainpipe_connections{listener=\"a\",state=\"draining\"} 0\n"));
    }
}
