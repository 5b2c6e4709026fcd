//! What the status page shows: the overall state, one row per listener and
//! per upstream server with rates and percentiles over the last
//! [`WINDOW`], and chart series over the last five minutes, computed from a
//! history of one sample a second.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{
    unix, HistogramSnapshot, ProxySnapshot, Registry, ServerSnapshot, ServerState,
    UpstreamSnapshot, STATUS_CLASSES,
};

/// Samples kept: five minutes, one a second, and one more to difference.
const KEPT: usize = 301;

/// The window of the rates and percentiles in the tables.
pub const WINDOW: Duration = Duration::from_secs(10);

/// The samples of the last five minutes.
#[derive(Debug, Default)]
pub(crate) struct History {
    samples: VecDeque<Sample>,
}

/// The cumulative figures at one moment.
#[derive(Debug, Clone)]
struct Sample {
    at: SystemTime,
    /// Per listener, in registry order.
    listeners: Vec<ListenerSample>,
    /// Per upstream server, in [`Registry::upstream_servers`] order.
    servers: Vec<ServerSample>,
    opened: u64,
    reused: u64,
}

#[derive(Debug, Clone)]
struct ListenerSample {
    requests: u64,
    latency: HistogramSnapshot,
    states: [u64; 5],
    closed: Vec<(&'static str, u64)>,
    /// Each worker's requests and latency, in worker order.
    workers: Vec<(u64, HistogramSnapshot)>,
}

#[derive(Debug, Clone, Copy)]
struct ServerSample {
    requests: u64,
    errors: u64,
    latency: HistogramSnapshot,
}

impl Sample {
    fn of(
        at: SystemTime,
        servers: &[ServerSnapshot],
        proxies: &[ProxySnapshot],
        upstreams: &[UpstreamSnapshot],
    ) -> Sample {
        Sample {
            at,
            listeners: servers
                .iter()
                .map(|s| ListenerSample {
                    requests: s.requests,
                    latency: s.latency,
                    states: s.states.map(|(_, n)| n),
                    closed: s.closed.clone(),
                    workers: s.workers.iter().map(|w| (w.requests, w.latency)).collect(),
                })
                .collect(),
            servers: upstreams
                .iter()
                .map(|u| ServerSample {
                    requests: u.requests,
                    errors: u.errors_total(),
                    latency: u.latency,
                })
                .collect(),
            opened: proxies.iter().map(|p| p.opened).sum(),
            reused: proxies.iter().map(|p| p.reused).sum(),
        }
    }

    fn requests(&self) -> u64 {
        self.listeners.iter().map(|l| l.requests).sum()
    }

    fn latency(&self) -> HistogramSnapshot {
        self.listeners
            .iter()
            .fold(HistogramSnapshot::default(), |a, l| a.plus(&l.latency))
    }

    fn upstream_errors(&self) -> u64 {
        self.servers.iter().map(|s| s.errors).sum()
    }
}

/// Everything the status page shows.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// "ready"; "degraded" while any upstream server is down or ejected;
    /// "draining" once a drain began.
    pub state: &'static str,
    /// Whether `/ready` answers 200.
    pub ready: bool,
    /// When this was taken, in seconds since the Unix epoch.
    pub now: f64,
    /// The window of the rates and percentiles, in seconds.
    pub window: f64,
    /// One row per listener.
    pub listeners: Vec<ListenerRow>,
    /// One row per proxy.
    pub proxies: Vec<ProxyRow>,
    /// One row per upstream server.
    pub servers: Vec<ServerRow>,
    /// Series over the last five minutes.
    pub charts: Charts,
}

/// A listener's row.
#[derive(Debug, Clone, Serialize)]
pub struct ListenerRow {
    /// Its name.
    pub name: String,
    /// Connections open.
    pub open: u64,
    /// Connections accepted.
    pub accepted: u64,
    /// Requests received.
    pub requests: u64,
    /// Connections closed.
    pub closed: u64,
    /// Whether it is draining.
    pub draining: bool,
    /// Connections by state.
    pub states: BTreeMap<&'static str, u64>,
    /// Closed connections by reason.
    pub closed_by: BTreeMap<&'static str, u64>,
    /// Responses by status class.
    pub responses: BTreeMap<&'static str, u64>,
    /// Requests per second over the window.
    pub rps: f64,
    /// Median request duration over the window (all time when no history
    /// yet), in seconds.
    pub p50: Option<f64>,
    /// 99th percentile, likewise.
    pub p99: Option<f64>,
    /// One row per worker serving it, in worker order (empty when it does
    /// not run on workers): their figures add up to this row's.
    pub workers: Vec<WorkerRow>,
}

/// One worker's part of a listener's row: how its connections and requests
/// are spread (`SO_REUSEPORT` hashes connections over the workers' sockets).
#[derive(Debug, Clone, Serialize)]
pub struct WorkerRow {
    /// The worker's index, from 0.
    pub worker: usize,
    /// Connections open.
    pub open: u64,
    /// Connections accepted.
    pub accepted: u64,
    /// Requests received.
    pub requests: u64,
    /// Connections closed.
    pub closed: u64,
    /// Connections by state.
    pub states: BTreeMap<&'static str, u64>,
    /// Responses by status class.
    pub responses: BTreeMap<&'static str, u64>,
    /// Requests per second over the window.
    pub rps: f64,
    /// Median request duration over the window (all time when no history
    /// yet), in seconds.
    pub p50: Option<f64>,
    /// 99th percentile, likewise.
    pub p99: Option<f64>,
}

/// A proxy's row.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyRow {
    /// Its name.
    pub name: String,
    /// Upstream connections opened.
    pub opened: u64,
    /// Upstream requests on reused connections.
    pub reused: u64,
    /// Their share.
    pub reuse_ratio: f64,
    /// Retries.
    pub retries: u64,
    /// 502s and 504s.
    pub gateway_errors: u64,
}

/// An upstream server's row.
#[derive(Debug, Clone, Serialize)]
pub struct ServerRow {
    /// Its proxy.
    pub proxy: String,
    /// Its group.
    pub group: String,
    /// Its `host:port`.
    pub server: String,
    /// up, down or ejected.
    pub state: ServerState,
    /// Since when, in seconds since the Unix epoch.
    pub since: f64,
    /// Why.
    pub reason: String,
    /// The last health check.
    pub check: Option<CheckRow>,
    /// Connections open.
    pub open: u64,
    /// Idle pooled connections.
    pub idle: u64,
    /// Connections lent to a request.
    pub active: u64,
    /// Requests sent.
    pub requests: u64,
    /// Failed requests.
    pub errors: u64,
    /// Failed requests by kind.
    pub errors_by_kind: BTreeMap<&'static str, u64>,
    /// Requests per second over the window.
    pub rps: f64,
    /// Failed share of the window's requests (0 without requests).
    pub error_rate: f64,
    /// Median request duration over the window (all time when no history
    /// yet), in seconds.
    pub p50: Option<f64>,
    /// 99th percentile, likewise.
    pub p99: Option<f64>,
    /// The server's idle timeout as learned from its closes, in seconds.
    pub learned_idle_timeout: Option<f64>,
    /// Pooled connections closed instead of reused: idle past its known or
    /// learned idle timeout.
    pub retired_early: u64,
}

/// A health check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct CheckRow {
    /// Whether it passed.
    pub ok: bool,
    /// What was seen.
    pub detail: String,
    /// When, in seconds since the Unix epoch.
    pub at: f64,
}

/// Per-second series, one point per sample after the first.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Charts {
    /// Each point's time, in seconds since the Unix epoch.
    pub t: Vec<f64>,
    /// Requests per second, all listeners.
    pub rps: Vec<f64>,
    /// Median request duration in the second, in seconds.
    pub p50: Vec<Option<f64>>,
    /// 99th percentile.
    pub p99: Vec<Option<f64>>,
    /// Connections by state.
    pub connections: BTreeMap<&'static str, Vec<u64>>,
    /// Share of upstream requests on reused connections in the second.
    pub reuse: Vec<Option<f64>>,
    /// Closed connections per second by reason.
    pub closes: BTreeMap<&'static str, Vec<f64>>,
    /// Failed upstream requests per second.
    pub upstream_errors: Vec<f64>,
}

fn classes(counts: [u64; 5]) -> BTreeMap<&'static str, u64> {
    STATUS_CLASSES.iter().copied().zip(counts).collect()
}

fn seconds(later: SystemTime, earlier: SystemTime) -> f64 {
    later
        .duration_since(earlier)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Registry {
    /// Adds a sample to the five-minute history (the admin listener calls it
    /// every second).
    pub fn sample(&self) {
        let sample = Sample::of(
            SystemTime::now(),
            &self.servers(),
            &self.proxies(),
            &self.upstream_servers(),
        );
        let mut history = self.history.lock().unwrap();
        if history.samples.len() == KEPT {
            history.samples.pop_front();
        }
        history.samples.push_back(sample);
    }

    /// Samples held (at most five minutes' worth).
    pub fn samples(&self) -> usize {
        self.history.lock().unwrap().samples.len()
    }

    /// Everything the status page shows, now.
    pub fn status(&self) -> Status {
        let now = SystemTime::now();
        let servers = self.servers();
        let proxies = self.proxies();
        let upstreams = self.upstream_servers();
        let current = Sample::of(now, &servers, &proxies, &upstreams);
        let history = self.history.lock().unwrap();
        // The oldest sample inside the window: the rates' starting point.
        let base = history
            .samples
            .iter()
            .find(|s| seconds(now, s.at) <= WINDOW.as_secs_f64() + 0.5)
            .filter(|s| s.listeners.len() == current.listeners.len())
            .filter(|s| s.servers.len() == current.servers.len());
        let span = base.map_or(0.0, |b| seconds(now, b.at));
        let rate = |n: u64| if span > 0.0 { n as f64 / span } else { 0.0 };
        let listeners = servers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (requests, latency) = match base {
                    Some(b) => (
                        s.requests.saturating_sub(b.listeners[i].requests),
                        s.latency.since(&b.listeners[i].latency),
                    ),
                    None => (0, s.latency),
                };
                // The window's start for each worker, when the sample has
                // the same workers.
                let worker_base = base
                    .map(|b| &b.listeners[i].workers)
                    .filter(|w| w.len() == s.workers.len());
                let workers = s
                    .workers
                    .iter()
                    .enumerate()
                    .map(|(k, w)| {
                        let (requests, latency) = match worker_base {
                            Some(b) => {
                                (w.requests.saturating_sub(b[k].0), w.latency.since(&b[k].1))
                            }
                            None => (0, w.latency),
                        };
                        WorkerRow {
                            worker: k,
                            open: w.open,
                            accepted: w.accepted,
                            requests: w.requests,
                            closed: w.closed.iter().map(|(_, n)| n).sum(),
                            states: w.states.into_iter().collect(),
                            responses: classes(w.responses),
                            rps: rate(requests),
                            p50: latency.quantile(0.5),
                            p99: latency.quantile(0.99),
                        }
                    })
                    .collect();
                ListenerRow {
                    name: s.name.clone(),
                    open: s.open,
                    accepted: s.accepted,
                    requests: s.requests,
                    closed: s.closed.iter().map(|(_, n)| n).sum(),
                    draining: s.draining,
                    states: s.states.into_iter().collect(),
                    closed_by: s.closed.iter().copied().collect(),
                    responses: classes(s.responses),
                    rps: rate(requests),
                    p50: latency.quantile(0.5),
                    p99: latency.quantile(0.99),
                    workers,
                }
            })
            .collect();
        let rows = upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let (requests, errors, latency) = match base {
                    Some(b) => (
                        u.requests.saturating_sub(b.servers[i].requests),
                        u.errors_total().saturating_sub(b.servers[i].errors),
                        u.latency.since(&b.servers[i].latency),
                    ),
                    None => (0, 0, u.latency),
                };
                ServerRow {
                    proxy: u.proxy.clone(),
                    group: u.group.clone(),
                    server: u.server.clone(),
                    state: u.state,
                    since: unix(u.since),
                    reason: u.reason.clone(),
                    check: u.check.as_ref().map(|c| CheckRow {
                        ok: c.ok,
                        detail: c.detail.clone(),
                        at: unix(c.at),
                    }),
                    open: u.open,
                    idle: u.idle,
                    active: u.active(),
                    requests: u.requests,
                    errors: u.errors_total(),
                    errors_by_kind: u.errors.iter().map(|(k, n)| (k.as_str(), *n)).collect(),
                    rps: rate(requests),
                    error_rate: if requests == 0 {
                        0.0
                    } else {
                        (errors as f64 / requests as f64).min(1.0)
                    },
                    p50: latency.quantile(0.5),
                    p99: latency.quantile(0.99),
                    learned_idle_timeout: u.learned_idle_timeout,
                    retired_early: u.retired_early,
                }
            })
            .collect::<Vec<_>>();
        let charts = charts(&history.samples);
        drop(history);
        let ready = self.is_ready();
        let state = if !ready {
            "draining"
        } else if upstreams.iter().any(|u| u.state != ServerState::Up) {
            "degraded"
        } else {
            "ready"
        };
        Status {
            state,
            ready,
            now: unix(now),
            window: WINDOW.as_secs_f64(),
            listeners,
            proxies: proxies
                .iter()
                .map(|p| ProxyRow {
                    name: p.name.clone(),
                    opened: p.opened,
                    reused: p.reused,
                    reuse_ratio: p.reuse_ratio(),
                    retries: p.retries,
                    gateway_errors: p.gateway_errors,
                })
                .collect(),
            servers: rows,
            charts,
        }
    }

    /// [`Registry::status`] as JSON.
    pub fn status_json(&self) -> String {
        serde_json::to_string(&self.status())
            .unwrap_or_else(|e| format!("{{\"error\":{:?}}}", e.to_string()))
    }
}

/// The chart series: one point per pair of consecutive samples of the same
/// shape.
fn charts(samples: &VecDeque<Sample>) -> Charts {
    let mut c = Charts::default();
    const STATES: [&str; 5] = ["reading", "writing", "idle", "parked", "lingering"];
    for (a, b) in samples.iter().zip(samples.iter().skip(1)) {
        let dt = seconds(b.at, a.at);
        if dt <= 0.0 || a.listeners.len() != b.listeners.len() || a.servers.len() != b.servers.len()
        {
            continue;
        }
        let per_second = |n: u64| n as f64 / dt;
        c.t.push(unix(b.at));
        c.rps
            .push(per_second(b.requests().saturating_sub(a.requests())));
        let latency = b.latency().since(&a.latency());
        c.p50.push(latency.quantile(0.5));
        c.p99.push(latency.quantile(0.99));
        for (k, state) in STATES.iter().enumerate() {
            let n = b.listeners.iter().map(|l| l.states[k]).sum();
            c.connections.entry(state).or_default().push(n);
        }
        let opened = b.opened.saturating_sub(a.opened);
        let reused = b.reused.saturating_sub(a.reused);
        c.reuse.push(if opened + reused == 0 {
            None
        } else {
            Some(reused as f64 / (opened + reused) as f64)
        });
        let mut closes: BTreeMap<&'static str, u64> = BTreeMap::new();
        for (la, lb) in a.listeners.iter().zip(&b.listeners) {
            for ((reason, na), (_, nb)) in la.closed.iter().zip(&lb.closed) {
                *closes.entry(reason).or_default() += nb.saturating_sub(*na);
            }
        }
        for (reason, n) in closes {
            c.closes.entry(reason).or_default().push(per_second(n));
        }
        c.upstream_errors.push(per_second(
            b.upstream_errors().saturating_sub(a.upstream_errors()),
        ));
    }
    c
}
