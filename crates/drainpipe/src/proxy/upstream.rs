//! Upstream groups: the servers a route forwards to, how one is chosen (round
//! robin or least connections), and which are fit to choose (active health
//! checks, passive ejection after consecutive failures). A group whose
//! servers are named by host may follow what the names resolve to
//! ([`Group::resolve_every`], see `resolve.rs`).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http::HeaderValue;
use tokio::time::Instant;

use super::resolve::Resolver;
use crate::client::{Client, Origin};
use crate::metrics::upstream::{UpstreamError, UpstreamStats};

/// How a group chooses among its upstreams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    /// In turn.
    #[default]
    RoundRobin,
    /// The one with the fewest requests in flight (ties in turn).
    LeastConnections,
}

/// Active health checks: a `GET path` to every upstream every `interval`.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    /// The path requested (any status below 500 counts as healthy).
    pub path: String,
    /// Time between checks.
    pub interval: Duration,
    /// Time allowed for one check.
    pub timeout: Duration,
    /// Consecutive failed checks that mark an upstream down.
    pub fall: u32,
    /// Consecutive passed checks that mark it up again.
    pub rise: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            path: "/".into(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            fall: 2,
            rise: 2,
        }
    }
}

/// Passive ejection: after `max_fails` consecutive failed requests an upstream
/// is left out for `eject_for`.
#[derive(Debug, Clone, Copy)]
pub struct Ejection {
    /// Consecutive failures (connect errors, broken responses) that eject.
    pub max_fails: u32,
    /// How long an ejected upstream is left out.
    pub eject_for: Duration,
}

impl Default for Ejection {
    fn default() -> Self {
        Ejection {
            max_fails: 3,
            eject_for: Duration::from_secs(10),
        }
    }
}

/// One upstream server and what is known of it.
#[derive(Debug)]
pub struct Upstream {
    origin: Origin,
    /// `Host` for requests sent to it when the client's is not kept (`None`
    /// if its name cannot be one).
    host_value: Option<HeaderValue>,
    addr: Arc<str>,
    in_flight: AtomicUsize,
    fails: AtomicU32,
    /// When it was created: the origin of `ejected_until`.
    created: Instant,
    /// Milliseconds after `created` until which it is left out (0: never
    /// ejected). An atomic, so choosing an upstream takes no lock.
    ejected_until: AtomicU64,
    healthy: AtomicBool,
    /// A health check of it is under way (the next waits for it).
    checking: AtomicBool,
    checks_passed: AtomicU32,
    checks_failed: AtomicU32,
    requests: AtomicU64,
    stats: UpstreamStats,
}

impl Upstream {
    /// An upstream at `origin`, healthy until shown otherwise.
    pub fn new(origin: Origin) -> Upstream {
        // A Unix socket has no host name: `localhost`, as nginx sends.
        let host_value = match origin.unix_path() {
            Some(_) => Some(HeaderValue::from_static("localhost")),
            None => HeaderValue::from_str(&origin.to_string()).ok(),
        };
        Upstream::with_host(origin, host_value)
    }

    /// An upstream at `origin` (an address `name` resolved to), whose `Host`
    /// is `name:port` when the client's is not kept.
    fn resolved(origin: Origin, name: &str) -> Upstream {
        let host_value = HeaderValue::from_str(&format!("{name}:{}", origin.port)).ok();
        Upstream::with_host(origin, host_value)
    }

    fn with_host(origin: Origin, host_value: Option<HeaderValue>) -> Upstream {
        Upstream {
            addr: origin.to_string().into(),
            origin,
            host_value,
            in_flight: AtomicUsize::new(0),
            fails: AtomicU32::new(0),
            created: Instant::now(),
            ejected_until: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            checking: AtomicBool::new(false),
            checks_passed: AtomicU32::new(0),
            checks_failed: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            stats: UpstreamStats::default(),
        }
    }

    /// Where it is.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Its `host:port` (made once).
    pub fn addr(&self) -> &Arc<str> {
        &self.addr
    }

    /// Its `host:port` as a `Host` value (made once).
    pub(crate) fn host_value(&self) -> Option<&HeaderValue> {
        self.host_value.as_ref()
    }

    /// Requests in flight to it now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests sent to it so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Its latency, responses, errors and health history.
    pub fn stats(&self) -> &UpstreamStats {
        &self.stats
    }

    /// Whether the last health checks passed.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Whether it is left out after failures.
    pub fn is_ejected(&self) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && self.millis_since_created() < until
    }

    fn millis_since_created(&self) -> u64 {
        u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn usable(&self) -> bool {
        self.is_healthy() && !self.is_ejected()
    }

    /// A request to it went well.
    pub(crate) fn succeeded(&self) {
        self.fails.store(0, Ordering::Relaxed);
    }

    /// A request to it failed; ejects it after too many in a row.
    pub(crate) fn failed(&self, ejection: &Ejection) {
        let fails = self.fails.fetch_add(1, Ordering::Relaxed) + 1;
        if fails >= ejection.max_fails {
            self.fails.store(0, Ordering::Relaxed);
            let until = self
                .millis_since_created()
                .saturating_add(u64::try_from(ejection.eject_for.as_millis()).unwrap_or(u64::MAX))
                .max(1);
            self.ejected_until.store(until, Ordering::Relaxed);
            self.stats.record_ejection(ejection.eject_for);
            tracing::warn!(upstream = %self.origin, fails, "upstream ejected");
        }
    }

    fn check_result(&self, ok: bool, detail: String, check: &HealthCheck) {
        let was = self.is_healthy();
        self.count_check(ok, check);
        self.stats
            .record_check(ok, detail, was != self.is_healthy());
    }

    fn count_check(&self, ok: bool, check: &HealthCheck) {
        if ok {
            self.checks_failed.store(0, Ordering::Relaxed);
            let passed = self.checks_passed.fetch_add(1, Ordering::Relaxed) + 1;
            if !self.is_healthy() && passed >= check.rise {
                self.healthy.store(true, Ordering::Relaxed);
                tracing::info!(upstream = %self.origin, "upstream healthy again");
            }
        } else {
            self.checks_passed.store(0, Ordering::Relaxed);
            let failed = self.checks_failed.fetch_add(1, Ordering::Relaxed) + 1;
            if self.is_healthy() && failed >= check.fall {
                self.healthy.store(false, Ordering::Relaxed);
                tracing::warn!(upstream = %self.origin, "upstream failed its health checks");
            }
        }
    }
}

/// Whether a host is an IP address (bracketed or not) rather than a name.
fn is_address(host: &str) -> bool {
    // A Unix socket path ([`Origin::unix`]) is an address: nothing to resolve.
    host.starts_with('/')
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok()
}

/// Counts a request in flight to an upstream until dropped; the request's
/// duration goes into the upstream's latency if it was answered.
#[derive(Debug)]
pub(crate) struct InFlight {
    upstream: Arc<Upstream>,
    started: std::time::Instant,
    answered: bool,
}

impl InFlight {
    fn new(upstream: Arc<Upstream>) -> InFlight {
        upstream.in_flight.fetch_add(1, Ordering::Relaxed);
        upstream.requests.fetch_add(1, Ordering::Relaxed);
        InFlight {
            upstream,
            started: std::time::Instant::now(),
            answered: false,
        }
    }

    pub(crate) fn upstream(&self) -> &Arc<Upstream> {
        &self.upstream
    }

    /// The upstream answered with `status`: returns the time to its
    /// response head, from the attempt's start (the request is sent right
    /// after the pick, so one clock read serves both).
    pub(crate) fn answered(&mut self, status: http::StatusCode) -> std::time::Duration {
        self.answered = true;
        let ttfb = self.started.elapsed();
        self.upstream.stats.ttfb.record(ttfb);
        self.upstream.stats.responses.record(status);
        ttfb
    }

    /// The attempt failed with `kind`.
    pub(crate) fn failed(&self, kind: UpstreamError) {
        self.upstream.stats.record_error(kind);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.answered {
            self.upstream.stats.latency.record(self.started.elapsed());
        }
        self.upstream.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A named set of upstreams with a balancing rule.
#[derive(Debug)]
pub struct Group {
    name: String,
    /// The servers as configured: addresses, or names to resolve.
    sources: Vec<Origin>,
    /// The servers now; replaced whole when a resolution changes them
    /// (requests keep the list they started with).
    members: RwLock<Arc<Vec<Arc<Upstream>>>>,
    balance: Balance,
    next: AtomicUsize,
    pub(crate) ejection: Ejection,
    health: Option<HealthCheck>,
    resolving: Option<(Duration, Resolver)>,
}

impl Group {
    /// A group of `origins` balanced by `balance`. An origin named by host is
    /// one server, whose name the client resolves when it connects (see
    /// [`Group::resolve_every`] for one server per address).
    pub fn new(name: impl Into<String>, origins: Vec<Origin>, balance: Balance) -> Group {
        let members = origins
            .iter()
            .map(|o| Arc::new(Upstream::new(o.clone())))
            .collect();
        Group {
            name: name.into(),
            sources: origins,
            members: RwLock::new(Arc::new(members)),
            balance,
            next: AtomicUsize::new(0),
            ejection: Ejection::default(),
            health: None,
            resolving: None,
        }
    }

    /// Makes every address a server named by host resolves to a server of
    /// the group, resolved with `resolver` by [`Group::resolve_now`] and again
    /// every `interval` once the proxy runs. Servers given as addresses stay
    /// as they are.
    pub fn resolve_every(mut self, interval: Duration, resolver: Resolver) -> Self {
        self.resolving = Some((interval, resolver));
        // Until their names resolve, named servers are no servers.
        let addresses: Vec<Arc<Upstream>> = self
            .upstreams()
            .iter()
            .filter(|u| is_address(&u.origin.host))
            .cloned()
            .collect();
        self.members = RwLock::new(Arc::new(addresses));
        self
    }

    /// Resolves the group's host names now and makes their addresses its
    /// servers (a no-op without [`Group::resolve_every`]). `Err` names the
    /// first host that did not resolve; the servers are then left as they
    /// were. `client` closes the idle connections of servers that left.
    pub async fn resolve_now(&self, client: &Client) -> Result<(), String> {
        let Some((_, resolver)) = &self.resolving else {
            return Ok(());
        };
        if !self.has_names() {
            return Ok(());
        }
        let mut wanted: Vec<(Origin, Option<&str>)> = Vec::new();
        for source in &self.sources {
            if is_address(&source.host) {
                wanted.push((source.clone(), None));
                continue;
            }
            let addrs = resolver
                .resolve(&source.host, source.port)
                .await
                .map_err(|e| format!("{}: {e}", source.host))?;
            for addr in addrs {
                // TLS goes on verifying the name, not the address.
                let origin = Origin {
                    host: addr.ip().to_string(),
                    port: addr.port(),
                    tls: source.tls.as_ref().map(|t| t.named(&source.host)),
                };
                if !wanted.iter().any(|(o, _)| *o == origin) {
                    wanted.push((origin, Some(&source.host)));
                }
            }
        }
        let mut members = self.members.write().unwrap();
        let next: Vec<Arc<Upstream>> = wanted
            .into_iter()
            .map(
                |(origin, name)| match members.iter().find(|u| u.origin == origin) {
                    Some(kept) => kept.clone(),
                    None => {
                        tracing::info!(group = %self.name, server = %origin, "server added");
                        Arc::new(match name {
                            Some(name) => Upstream::resolved(origin, name),
                            None => Upstream::new(origin),
                        })
                    }
                },
            )
            .collect();
        for gone in members
            .iter()
            .filter(|u| !next.iter().any(|n| n.origin == u.origin))
        {
            tracing::info!(group = %self.name, server = %gone.origin, "server removed");
            client.retire(&gone.origin);
        }
        *members = Arc::new(next);
        Ok(())
    }

    /// Whether some server is named by host.
    fn has_names(&self) -> bool {
        self.sources.iter().any(|s| !is_address(&s.host))
    }

    /// Re-resolves every `resolve_every` interval until the group is
    /// dropped.
    pub(crate) fn start_resolving(self: &Arc<Self>, client: Client) {
        let Some((interval, _)) = &self.resolving else {
            return;
        };
        if !self.has_names() {
            return;
        }
        let interval = *interval;
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(group) = weak.upgrade() else { return };
                if let Err(e) = group.resolve_now(&client).await {
                    tracing::warn!(group = %group.name, error = %e, "re-resolving failed; servers kept");
                }
            }
        });
    }

    /// Sets passive ejection.
    pub fn ejection(mut self, ejection: Ejection) -> Self {
        self.ejection = ejection;
        self
    }

    /// Turns on active health checks.
    pub fn health_check(mut self, check: HealthCheck) -> Self {
        self.health = Some(check);
        self
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its active health checks, if on.
    pub fn health(&self) -> Option<&HealthCheck> {
        self.health.as_ref()
    }

    /// Its upstreams now.
    pub fn upstreams(&self) -> Arc<Vec<Arc<Upstream>>> {
        self.members.read().unwrap().clone()
    }

    /// Chooses an upstream of `members` (the group's [`Group::upstreams`]
    /// when a request started) not in `tried`: among the healthy, not
    /// ejected ones by the balancing rule; if none is fit, any untried one
    /// (better a try than a certain 502). `None` when all were tried.
    pub(crate) fn pick(
        &self,
        members: &[Arc<Upstream>],
        tried: &[usize],
    ) -> Option<(usize, InFlight)> {
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let untried = |i: usize| !tried.contains(&i);
        let index = self
            .choose(members, turn, |i| untried(i) && members[i].usable())
            .or_else(|| self.choose(members, turn, untried))?;
        Some((index, Self::take(&members[index])))
    }

    fn take(upstream: &Arc<Upstream>) -> InFlight {
        InFlight::new(upstream.clone())
    }

    /// The upstream the balancing rule gives for `turn` among those
    /// `eligible`, in one pass with each load read once (other tasks change
    /// the loads meanwhile): round robin takes the first eligible one from
    /// position `turn` on; least connections the least loaded, ties going
    /// to the first from that position.
    fn choose(
        &self,
        members: &[Arc<Upstream>],
        turn: usize,
        eligible: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = members.len();
        let mut in_turn = (0..n)
            .map(|k| (turn.wrapping_add(k)) % n)
            .filter(|&i| eligible(i));
        match self.balance {
            Balance::RoundRobin => in_turn.next(),
            Balance::LeastConnections => in_turn
                .enumerate()
                .min_by_key(|&(order, i)| (members[i].in_flight(), order))
                .map(|(_, i)| i),
        }
    }

    /// The upstream at `index` of `members` once more (a retry on a fresh
    /// connection).
    pub(crate) fn pick_again(members: &[Arc<Upstream>], index: usize) -> InFlight {
        Self::take(&members[index])
    }

    /// Runs the active health checks until the group is dropped.
    pub(crate) fn start_health_checks(self: &Arc<Self>, client: Client) {
        let Some(check) = self.health.clone() else {
            return;
        };
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(group) = weak.upgrade() else { return };
                // Each server on its own: a check starts every interval
                // unless the server's last one is still waiting, so one that
                // does not answer (a black hole, until the check's timeout)
                // delays no other.
                for upstream in group.upstreams().iter() {
                    if upstream.checking.swap(true, Ordering::AcqRel) {
                        continue;
                    }
                    let (upstream, check, client) =
                        (upstream.clone(), check.clone(), client.clone());
                    tokio::spawn(async move {
                        let uri = format!("http://{}{}", upstream.origin, check.path);
                        let req = http::Request::get(uri).body(());
                        let started = std::time::Instant::now();
                        let attempt = async {
                            let req = req.map_err(|e| e.to_string())?;
                            let res = client.request(req).await.map_err(|e| e.to_string())?;
                            let status = res.status();
                            // Read the body to its end so the connection goes back
                            // to the pool.
                            http_body_util::BodyExt::collect(res.into_body())
                                .await
                                .map_err(|e| e.to_string())?;
                            Ok::<_, String>(status)
                        };
                        let (ok, detail) = match tokio::time::timeout(check.timeout, attempt).await
                        {
                            Ok(Ok(status)) => (
                                status.as_u16() < 500,
                                format!(
                                    "GET {} {} in {:.1} ms",
                                    check.path,
                                    status,
                                    started.elapsed().as_secs_f64() * 1e3
                                ),
                            ),
                            Ok(Err(e)) => (false, format!("GET {}: {e}", check.path)),
                            Err(_) => (
                                false,
                                format!("GET {}: no answer within {:?}", check.path, check.timeout),
                            ),
                        };
                        upstream.check_result(ok, detail, &check);
                        upstream.checking.store(false, Ordering::Release);
                    });
                }
                drop(group);
                tokio::time::sleep(check.interval).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(n: u16, balance: Balance) -> Group {
        Group::new(
            "g",
            (0..n)
                .map(|i| Origin {
                    host: "127.0.0.1".into(),
                    port: 9000 + i,
                    tls: None,
                })
                .collect(),
            balance,
        )
    }

    #[test]
    fn round_robin_takes_turns() {
        let g = group(3, Balance::RoundRobin);
        let m = g.upstreams();
        let picks: Vec<usize> = (0..6).map(|_| g.pick(&m, &[]).unwrap().0).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn least_connections_prefers_the_idle() {
        let g = group(3, Balance::LeastConnections);
        let m = g.upstreams();
        let (a, held_a) = g.pick(&m, &[]).unwrap();
        let (b, held_b) = g.pick(&m, &[]).unwrap();
        let (c, _) = g.pick(&m, &[]).unwrap();
        assert_ne!(a, b);
        assert_ne!(b, c);
        assert_ne!(a, c);
        drop(held_b);
        // b is now the only one with nothing in flight.
        let (d, _) = g.pick(&m, &[]).unwrap();
        assert_eq!(d, b);
        drop(held_a);
    }

    #[test]
    fn retries_skip_tried_and_ejected_upstreams() {
        let g = group(3, Balance::RoundRobin).ejection(Ejection {
            max_fails: 2,
            eject_for: Duration::from_secs(60),
        });
        let m = g.upstreams();
        m[1].failed(&g.ejection);
        assert!(!m[1].is_ejected());
        m[1].failed(&g.ejection);
        assert!(m[1].is_ejected());
        for _ in 0..6 {
            assert_ne!(g.pick(&m, &[]).unwrap().0, 1, "ejected upstream chosen");
        }
        assert_eq!(g.pick(&m, &[0]).unwrap().0, 2);
        // With every fit upstream tried, an unfit one is still tried.
        assert_eq!(g.pick(&m, &[0, 2]).unwrap().0, 1);
        assert!(g.pick(&m, &[0, 1, 2]).is_none());
    }

    #[test]
    fn least_connections_ties_take_turns() {
        let g = group(3, Balance::LeastConnections);
        // Nothing held: every pick is a tie, broken in turn.
        let m = g.upstreams();
        let picks: Vec<usize> = (0..6).map(|_| g.pick(&m, &[]).unwrap().0).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn ejection_ends() {
        let g = group(2, Balance::RoundRobin).ejection(Ejection {
            max_fails: 1,
            eject_for: Duration::from_millis(50),
        });
        let m = g.upstreams();
        m[0].failed(&g.ejection);
        assert!(m[0].is_ejected());
        std::thread::sleep(Duration::from_millis(80));
        assert!(!m[0].is_ejected());
        let picks: Vec<usize> = (0..2).map(|_| g.pick(&m, &[]).unwrap().0).collect();
        assert!(picks.contains(&0), "{picks:?}");
    }
}
