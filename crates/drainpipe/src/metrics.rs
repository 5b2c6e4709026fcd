//! What the admin listener reports: the live counters of every server
//! (connections by state, closes by reason, requests, bytes, latency,
//! responses by status class), every proxy (upstream connections opened and
//! reused, retries) and every upstream server (state, health checks,
//! connections, errors, latency), the process itself and the build, as
//! Prometheus text and as JSON for the live status page.

mod escape;
pub(crate) mod histogram;
mod process;
mod status;
pub(crate) mod upstream;
pub(crate) mod writers;

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use escape::esc;
pub use histogram::{
    Histogram, Snapshot as HistogramSnapshot, StatusClasses, LATENCY_BUCKETS_MICROS, STATUS_CLASSES,
};
pub use process::Process;
pub use status::Status;
pub use upstream::{CheckResult, ServerState, UpstreamError, UpstreamSnapshot, UpstreamStats};

use crate::proxy::Proxy;
use crate::server::{CloseReason, Stats, REQUESTS_PER_CONNECTION};

/// The sources the admin listener reads.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    servers: Vec<(String, Arc<Stats>)>,
    proxies: Vec<(String, Proxy)>,
    not_ready: Arc<AtomicBool>,
    /// The last five minutes, one sample a second (see [`Registry::sample`]).
    history: Arc<Mutex<status::History>>,
    /// Whether a sampler runs (one per registry, however many admin
    /// listeners serve it).
    sampling: Arc<AtomicBool>,
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
    /// Responses by status class, 1xx first.
    pub responses: [u64; 5],
    /// Request duration.
    pub latency: HistogramSnapshot,
    /// Each worker's own figures, in worker order (the order
    /// [`Server::for_worker`](crate::server::Server::for_worker) was called
    /// in); empty for a server that does not run on workers and for a
    /// worker's own snapshot.
    pub workers: Vec<ServerSnapshot>,
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
                .flat_map(|(_, s)| with_workers(s))
                .any(|s| s.draining.load(Ordering::Relaxed))
    }

    /// Claims the one sampler of this registry: true the first time.
    pub fn claim_sampling(&self) -> bool {
        !self.sampling.swap(true, Ordering::Relaxed)
    }

    /// Whether this is the last clone (the admin sampler stops then).
    pub fn is_orphaned(&self) -> bool {
        Arc::strong_count(&self.history) == 1
    }

    /// Every server's figures now (a server run on workers: their total, and
    /// each worker's in [`ServerSnapshot::workers`]).
    pub fn servers(&self) -> Vec<ServerSnapshot> {
        self.servers
            .iter()
            .map(|(name, s)| {
                let workers = s.workers();
                ServerSnapshot {
                    workers: workers
                        .iter()
                        .map(|w| snapshot(name, std::slice::from_ref(w)))
                        .collect(),
                    ..snapshot(name, &with_workers(s))
                }
            })
            .collect()
    }

    /// Everything in the Prometheus text exposition format: each family's
    /// `HELP` and `TYPE`, then all its samples together. Labels name only
    /// configured things (listeners, proxies, groups, servers) and fixed sets
    /// (states, reasons, status classes, error kinds), so their number is
    /// bounded by the configuration.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let servers = self.servers();
        let proxies = self.proxies();
        let upstreams = self.upstream_servers();
        let by_listener = |s: &ServerSnapshot| format!("listener=\"{}\"", esc(&s.name));
        let by_proxy = |p: &ProxySnapshot| format!("proxy=\"{}\"", esc(&p.name));
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
                    .map(move |(state, n)| (format!("{},state=\"{state}\"", by_listener(s)), n))
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
                s.closed
                    .iter()
                    .map(move |(reason, n)| (format!("{},reason=\"{reason}\"", by_listener(s)), *n))
            }),
        );
        family(
            &mut out,
            "drainpipe_requests_total",
            "counter",
            "Requests received.",
            servers.iter().map(|s| (by_listener(s), s.requests)),
        );
        family(
            &mut out,
            "drainpipe_responses_total",
            "counter",
            "Responses sent, by status class.",
            servers.iter().flat_map(|s| {
                STATUS_CLASSES
                    .iter()
                    .zip(s.responses)
                    .map(move |(class, n)| (format!("{},class=\"{class}\"", by_listener(s)), n))
            }),
        );
        help(
            &mut out,
            "drainpipe_request_duration_seconds",
            "histogram",
            "From a request's head received to its response queued, per listener.",
        );
        for s in &servers {
            s.latency.write_prometheus(
                &mut out,
                "drainpipe_request_duration_seconds",
                &by_listener(s),
            );
        }
        help(
            &mut out,
            "drainpipe_requests_per_connection",
            "histogram",
            "Requests served by each closed connection.",
        );
        for (name, stats) in &self.servers {
            let name = esc(name);
            let all = with_workers(stats);
            let mut buckets = vec![0; REQUESTS_PER_CONNECTION.len() + 1];
            for s in &all {
                for (sum, n) in buckets.iter_mut().zip(s.requests_per_connection()) {
                    *sum += n;
                }
            }
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
                "drainpipe_requests_per_connection_sum{{listener=\"{name}\"}} {}",
                all.iter()
                    .map(|s| s.requests_of_closed_connections())
                    .sum::<u64>()
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
                    (format!("{},direction=\"{direction}\"", by_listener(s)), n)
                })
            }),
        );
        // Per worker: separate families, so that the listener families keep
        // their series (a `worker` label there would change every existing
        // query, and mixing labelled and unlabelled samples in one family
        // would count each request twice under `sum`).
        let by_worker = |s: &ServerSnapshot, i: usize| format!("{},worker=\"{i}\"", by_listener(s));
        // One figure of every worker of every server, labelled.
        let per_worker = |value: fn(&ServerSnapshot) -> u64| {
            servers.iter().flat_map(move |s| {
                s.workers
                    .iter()
                    .enumerate()
                    .map(move |(i, w)| (by_worker(s, i), value(w)))
            })
        };
        family(
            &mut out,
            "drainpipe_worker_connections",
            "gauge",
            "Connections open now on each worker, by state.",
            servers.iter().flat_map(|s| {
                s.workers.iter().enumerate().flat_map(move |(i, w)| {
                    w.states.into_iter().map(move |(state, n)| {
                        (format!("{},state=\"{state}\"", by_worker(s, i)), n)
                    })
                })
            }),
        );
        family(
            &mut out,
            "drainpipe_worker_connections_open",
            "gauge",
            "Connections open now on each worker.",
            per_worker(|w| w.open),
        );
        family(
            &mut out,
            "drainpipe_worker_connections_accepted_total",
            "counter",
            "Connections accepted by each worker.",
            per_worker(|w| w.accepted),
        );
        family(
            &mut out,
            "drainpipe_worker_requests_total",
            "counter",
            "Requests received by each worker.",
            per_worker(|w| w.requests),
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
        self.upstream_families(&mut out, &upstreams);
        self.process_families(&mut out);
        help(
            &mut out,
            "drainpipe_ready",
            "gauge",
            "1 when ready to take traffic.",
        );
        let _ = writeln!(out, "drainpipe_ready {}", u8::from(self.is_ready()));
        out
    }

    /// The families of upstream groups and servers.
    fn upstream_families(&self, out: &mut String, upstreams: &[UpstreamSnapshot]) {
        // A group's figures are the sum of its servers'.
        let mut groups: Vec<(String, [u64; 5], HistogramSnapshot)> = Vec::new();
        for u in upstreams {
            let key = u.group_labels();
            match groups.iter_mut().find(|(k, ..)| *k == key) {
                Some((_, responses, latency)) => {
                    for (a, b) in responses.iter_mut().zip(u.responses) {
                        *a += b;
                    }
                    *latency = latency.plus(&u.latency);
                }
                None => groups.push((key, u.responses, u.latency)),
            }
        }
        family(
            out,
            "drainpipe_upstream_responses_total",
            "counter",
            "Upstream responses, by group and status class.",
            groups.iter().flat_map(|(labels, responses, _)| {
                STATUS_CLASSES
                    .iter()
                    .zip(responses)
                    .map(move |(class, n)| (format!("{labels},class=\"{class}\""), *n))
            }),
        );
        help(
            out,
            "drainpipe_upstream_request_duration_seconds",
            "histogram",
            "From choosing an upstream server to the end of its response body, per group.",
        );
        for (labels, _, latency) in &groups {
            latency.write_prometheus(out, "drainpipe_upstream_request_duration_seconds", labels);
        }
        family(
            out,
            "drainpipe_upstream_server_state",
            "gauge",
            "1 for the state each upstream server is in (up, down: failed its health checks, ejected: too many failed requests).",
            upstreams.iter().flat_map(|u| {
                ServerState::ALL.iter().map(move |s| {
                    (
                        format!("{},state=\"{}\"", u.labels(), s.as_str()),
                        u8::from(*s == u.state),
                    )
                })
            }),
        );
        family(
            out,
            "drainpipe_upstream_server_health_check_passed",
            "gauge",
            "1 if the last active health check passed, 0 if it failed (absent before the first).",
            upstreams
                .iter()
                .filter_map(|u| Some((u.labels(), u8::from(u.check.as_ref()?.ok)))),
        );
        family(
            out,
            "drainpipe_upstream_server_health_check_timestamp_seconds",
            "gauge",
            "When the last active health check ended.",
            upstreams
                .iter()
                .filter_map(|u| Some((u.labels(), unix(u.check.as_ref()?.at)))),
        );
        family(
            out,
            "drainpipe_upstream_server_connections",
            "gauge",
            "Connections to each upstream server: open, idle in the pool, active (lent to a request).",
            upstreams.iter().flat_map(|u| {
                [("open", u.open), ("idle", u.idle), ("active", u.active())]
                    .map(|(state, n)| (format!("{},state=\"{state}\"", u.labels()), n))
            }),
        );
        family(
            out,
            "drainpipe_upstream_server_requests_total",
            "counter",
            "Requests sent to each upstream server (retries included).",
            upstreams.iter().map(|u| (u.labels(), u.requests)),
        );
        family(
            out,
            "drainpipe_upstream_server_responses_total",
            "counter",
            "Responses from each upstream server, by status class.",
            upstreams.iter().flat_map(|u| {
                STATUS_CLASSES
                    .iter()
                    .zip(u.responses)
                    .map(move |(class, n)| (format!("{},class=\"{class}\"", u.labels()), n))
            }),
        );
        family(
            out,
            "drainpipe_upstream_server_errors_total",
            "counter",
            "Failed requests to each upstream server, by kind (connect, timeout, response, stale).",
            upstreams.iter().flat_map(|u| {
                u.errors
                    .map(|(kind, n)| (format!("{},kind=\"{}\"", u.labels(), kind.as_str()), n))
            }),
        );
        for (name, text, pick) in [
            (
                "drainpipe_upstream_server_request_duration_seconds",
                "From choosing the server to the end of its response body.",
                (|u: &UpstreamSnapshot| u.latency) as fn(&UpstreamSnapshot) -> HistogramSnapshot,
            ),
            (
                "drainpipe_upstream_server_first_byte_seconds",
                "From sending a request (a connect included when needed) to the response head.",
                |u| u.ttfb,
            ),
            (
                "drainpipe_upstream_server_connect_seconds",
                "Time to open a connection to the server.",
                |u| u.connect,
            ),
        ] {
            help(out, name, "histogram", text);
            for u in upstreams {
                pick(u).write_prometheus(out, name, &u.labels());
            }
        }
        family(
            out,
            "drainpipe_upstream_server_learned_idle_timeout_seconds",
            "gauge",
            "The idle timeout learned from the server's closes (absent when none).",
            upstreams
                .iter()
                .filter_map(|u| Some((u.labels(), u.learned_idle_timeout?))),
        );
        family(
            out,
            "drainpipe_upstream_server_retired_early_total",
            "counter",
            "Pooled connections closed instead of reused, idle past the server's idle timeout.",
            upstreams.iter().map(|u| (u.labels(), u.retired_early)),
        );
    }

    /// The process families and build information.
    fn process_families(&self, out: &mut String) {
        if let Some(p) = Process::read() {
            family(
                out,
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                [("", p.resident_bytes as f64)],
            );
            family(
                out,
                "process_open_fds",
                "gauge",
                "Number of open file descriptors.",
                [("", p.open_fds as f64)],
            );
            family(
                out,
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
                [("", p.cpu_seconds)],
            );
            family(
                out,
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
                [("", p.start_time_seconds)],
            );
        }
        family(
            out,
            "drainpipe_build_info",
            "gauge",
            "The version and git commit drainpipe was built from (always 1).",
            [(
                format!(
                    "version=\"{}\",commit=\"{}\"",
                    env!("CARGO_PKG_VERSION"),
                    esc(env!("DRAINPIPE_COMMIT"))
                ),
                1,
            )],
        );
    }

    /// Every upstream server's figures now, proxy by proxy, group by group.
    pub fn upstream_servers(&self) -> Vec<UpstreamSnapshot> {
        let mut out = Vec::new();
        for (proxy_name, proxy) in &self.proxies {
            let client = proxy.client();
            for group in proxy.groups() {
                for u in group.upstreams().iter() {
                    let (state, since, reason) = state_of(u, &group);
                    let stats = u.stats();
                    let origin = u.origin();
                    let (open, idle) = client.connection_counts(origin);
                    out.push(UpstreamSnapshot {
                        proxy: proxy_name.clone(),
                        group: group.name().to_string(),
                        server: origin.to_string(),
                        state,
                        since,
                        reason,
                        check: stats.last_check(),
                        open: open as u64,
                        idle: idle as u64,
                        in_flight: u.in_flight() as u64,
                        requests: u.requests(),
                        responses: stats.responses.snapshot(),
                        errors: stats.errors(),
                        latency: stats.latency.snapshot(),
                        ttfb: stats.ttfb.snapshot(),
                        connect: client.connect_time(origin).unwrap_or_default(),
                        learned_idle_timeout: client
                            .learned_idle_timeout(origin)
                            .map(|d| d.as_secs_f64()),
                        retired_early: client.retired_early(origin),
                    });
                }
            }
        }
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

/// The state of `upstream` in `group` now: which, since when and why.
fn state_of(
    upstream: &crate::proxy::upstream::Upstream,
    group: &crate::proxy::upstream::Group,
) -> (ServerState, SystemTime, String) {
    let stats = upstream.stats();
    let check = stats.last_check();
    let checked = |c: &Option<CheckResult>| {
        c.as_ref()
            .map_or_else(|| "not checked yet".to_string(), |c| c.detail.clone())
    };
    if !upstream.is_healthy() {
        let fall = group.health().map_or(0, |h| h.fall);
        return (
            ServerState::Down,
            stats.health_changed(),
            format!(
                "{fall} failed health check(s) in a row; last: {}",
                checked(&check)
            ),
        );
    }
    let ejection = stats.last_ejection();
    if upstream.is_ejected() {
        if let Some((at, until)) = ejection {
            let left = until.duration_since(SystemTime::now()).unwrap_or_default();
            return (
                ServerState::Ejected,
                at,
                format!(
                    "{} failed requests in a row; back in {:.0} s",
                    group.ejection.max_fails,
                    left.as_secs_f64().ceil()
                ),
            );
        }
    }
    let since = match ejection {
        Some((_, until)) => until.max(stats.health_changed()),
        None => stats.health_changed(),
    };
    let reason = match (group.health(), &check) {
        (None, _) => "serving (no active health checks)".to_string(),
        (Some(_), Some(c)) if c.ok => format!("health check passed: {}", c.detail),
        (Some(_), Some(c)) => format!("last health check failed: {}", c.detail),
        (Some(_), None) => checked(&check),
    };
    (ServerState::Up, since, reason)
}

/// The figures of `all` added up, under `name` (no per-worker rows).
fn snapshot(name: &str, all: &[Arc<Stats>]) -> ServerSnapshot {
    let g = |f: fn(&Stats) -> &AtomicUsize| -> u64 {
        all.iter()
            .map(|s| f(s).load(Ordering::Relaxed) as u64)
            .sum()
    };
    let c = |f: fn(&Stats) -> &AtomicU64| -> u64 {
        all.iter().map(|s| f(s).load(Ordering::Relaxed)).sum()
    };
    let mut responses = [0; 5];
    for s in all {
        for (sum, n) in responses.iter_mut().zip(s.responses.snapshot()) {
            *sum += n;
        }
    }
    ServerSnapshot {
        name: name.to_string(),
        states: [
            ("reading", g(|s| &s.reading)),
            ("writing", g(|s| &s.writing)),
            ("idle", g(|s| &s.idle)),
            ("parked", g(|s| &s.parked)),
            ("lingering", g(|s| &s.lingering)),
        ],
        open: g(|s| &s.open),
        accepted: c(|s| &s.accepted),
        requests: c(|s| &s.requests),
        writes: c(|s| &s.writes),
        bytes: (c(|s| &s.bytes_in), c(|s| &s.bytes_out)),
        closed: CloseReason::ALL
            .iter()
            .map(|r| (r.as_str(), all.iter().map(|s| s.closed(*r)).sum()))
            .collect(),
        draining: all.iter().any(|s| s.draining.load(Ordering::Relaxed)),
        responses,
        latency: all
            .iter()
            .map(|s| s.latency.snapshot())
            .reduce(|a, b| a.plus(&b))
            .unwrap_or_default(),
        workers: Vec::new(),
    }
}

/// A server's own counters and its workers' ([`Stats::workers`]).
fn with_workers(stats: &Arc<Stats>) -> Vec<Arc<Stats>> {
    let mut all = vec![stats.clone()];
    all.extend(stats.workers());
    all
}

/// Seconds since the Unix epoch.
pub(crate) fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A metric family's `HELP` and `TYPE` lines.
fn help(out: &mut String, name: &str, kind: &str, text: &str) {
    let _ = writeln!(out, "# HELP {name} {text}\n# TYPE {name} {kind}");
}

/// A metric family: its `HELP` and `TYPE`, then each sample (its labels and
/// value), all together as the exposition format asks.
fn family<L: AsRef<str>, V: std::fmt::Display>(
    out: &mut String,
    name: &str,
    kind: &str,
    text: &str,
    samples: impl IntoIterator<Item = (L, V)>,
) {
    help(out, name, kind, text);
    for (labels, value) in samples {
        match labels.as_ref() {
            "" => writeln!(out, "{name} {value}"),
            labels => writeln!(out, "{name}{{{labels}}} {value}"),
        }
        .unwrap_or(());
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

    // A server run on two workers: its snapshot is their total and lists
    // each worker's own figures; the worker families give the same per
    // worker, and nothing for a server without workers.
    #[test]
    fn workers_are_listed_and_add_up() {
        let server = Arc::new(Stats::default());
        let (w0, w1) = (server.for_worker(), server.for_worker());
        w0.requests.store(5, Ordering::Relaxed);
        w0.open.store(2, Ordering::Relaxed);
        w0.idle.store(2, Ordering::Relaxed);
        w1.requests.store(1, Ordering::Relaxed);
        w1.open.store(1, Ordering::Relaxed);
        w1.parked.store(1, Ordering::Relaxed);
        let registry = Registry::new()
            .server("a", server)
            .server("b", Arc::new(Stats::default()));
        let servers = registry.servers();
        let a = &servers[0];
        assert_eq!((a.requests, a.open), (6, 3));
        assert_eq!(
            a.workers
                .iter()
                .map(|w| (w.requests, w.open))
                .collect::<Vec<_>>(),
            [(5, 2), (1, 1)]
        );
        assert!(servers[1].workers.is_empty());
        let text = registry.prometheus();
        for line in [
            "drainpipe_worker_requests_total{listener=\"a\",worker=\"0\"} 5\n",
            "drainpipe_worker_requests_total{listener=\"a\",worker=\"1\"} 1\n",
            "drainpipe_worker_connections_open{listener=\"a\",worker=\"1\"} 1\n",
            "drainpipe_worker_connections{listener=\"a\",worker=\"0\",state=\"idle\"} 2\n",
            "drainpipe_worker_connections{listener=\"a\",worker=\"1\",state=\"parked\"} 1\n",
        ] {
            assert!(text.contains(line), "no {line} in:\n{text}");
        }
        assert!(!text.contains("listener=\"b\",worker="), "{text}");
        let status = registry.status();
        assert_eq!(status.listeners[0].workers.len(), 2);
        assert_eq!(status.listeners[0].workers[1].states["parked"], 1);
    }
}
