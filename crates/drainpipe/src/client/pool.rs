//! The per-origin pool: LIFO reuse (the warmest connection first), max idle per
//! origin, idle timeout, max lifetime, max connections per origin with a fair
//! (first come, first served) wait queue, and a check for a pending EOF before
//! a pooled connection is handed out.
//!
//! A connection is lent as a [`Checkout`]: giving it back
//! ([`Checkout::release`]) returns it to the pool only if it is still usable;
//! dropping it closes it. Either way the slot it held under the per-origin
//! limit passes to the oldest waiter.
//!
//! Never racing the server's idle close: each pool keeps a
//! [`proto::IdleEstimate`] of its server's idle timeout, fed with what the
//! pool sees (an idle connection closed by the server, and after how long; a
//! request on a reused connection answered or not; round trips). A connection
//! idle past the server's announced `Keep-Alive: timeout` or the learned one
//! (less a margin of about two round trips) is closed instead of lent (counted
//! as retired early), except that once in a while a request that is safe to
//! send again may take one past the learned limit to test it. The reaper task
//! watches every idle connection for the server's close (its waker is
//! registered on each one as it goes idle), so a close is seen when it
//! arrives, not at the next check.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use proto::IdleEstimate;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::config::Config;
use super::conn::Conn;
use super::connect::{connect, Origin};
use super::stats::Stats;
use crate::error::{Error, Kind};
use crate::metrics::histogram::Histogram;
use crate::upgrade::Upgraded;

/// The connections of one origin.
pub(crate) struct Pool {
    origin: Origin,
    config: Arc<Config>,
    state: Mutex<State>,
    stats: Arc<Stats>,
    /// Whom to wake when an idle connection becomes readable (the reaper).
    watcher: Arc<Watcher>,
    /// Connections closed before reuse because they had sat idle past the
    /// server's known or learned idle timeout.
    pub(crate) retired_early: AtomicU64,
    /// How long new connections took to open.
    pub(crate) connect_time: Histogram,
}

/// The reaper's waker, for connections going idle to register with.
#[derive(Default)]
pub(crate) struct Watcher {
    waker: Mutex<Option<Waker>>,
}

impl Watcher {
    fn set(&self, waker: &Waker) {
        let mut w = self.waker.lock().unwrap();
        if !w.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *w = Some(waker.clone());
        }
    }

    /// Has the reaper woken when `conn`'s server closes it (or sends
    /// anything), from now on.
    fn watch(&self, conn: &Conn) {
        let Some(waker) = self.waker.lock().unwrap().clone() else {
            return;
        };
        let mut cx = Context::from_waker(&waker);
        if conn.poll_readable(&mut cx).is_ready() {
            waker.wake();
        }
    }
}

#[derive(Default)]
struct State {
    /// Idle connections, the most recently used last.
    idle: Vec<Idle>,
    /// The server's idle timeout as learned, and the round trip.
    estimate: IdleEstimate,
    /// The server left its group: nothing is pooled any more.
    retired: bool,
    /// Connections open or being opened (idle, lent, connecting).
    open: usize,
    /// Callers waiting for a connection, oldest first.
    waiters: VecDeque<oneshot::Sender<Handoff>>,
}

struct Idle {
    conn: Box<Conn>,
    /// When its last response ended (else when it was given back).
    since: Instant,
}

impl Idle {
    /// How long it has been idle.
    fn idle_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.since)
    }
}

/// What the pool makes of an idle connection.
enum Verdict {
    Usable,
    /// Past the learned limit: usable only as a probe.
    PastLearned,
    /// Past the server's announced idle timeout (less the margin).
    PastAnnounced,
    /// Idle timeout, lifetime or an announced timeout passed, or closed.
    Spent,
}

/// What a waiter is given.
enum Handoff {
    /// A connection given back by another caller.
    Conn(Box<Conn>),
    /// A slot freed by a closed connection: open a new one.
    Slot,
}

/// A connection lent out by the pool.
pub(crate) struct Checkout {
    conn: Option<Box<Conn>>,
    pool: Arc<Pool>,
    /// How long the connection had been idle, when it came from the pool.
    reused_after: Option<Duration>,
}

impl Pool {
    pub(crate) fn new(
        origin: Origin,
        config: Arc<Config>,
        stats: Arc<Stats>,
        watcher: Arc<Watcher>,
    ) -> Pool {
        Pool {
            origin,
            config,
            state: Mutex::new(State::default()),
            stats,
            watcher,
            retired_early: AtomicU64::new(0),
            connect_time: Histogram::default(),
        }
    }

    /// Lends a connection: a pooled one if a usable one is idle (unless `fresh`
    /// asks for a new one), else a new one if the per-origin limit allows, else
    /// the next one given back, waiting in line. `may_probe`: the request is
    /// safe to send again, so it may test a connection idle past the learned
    /// limit (see the module docs).
    pub(crate) async fn checkout(
        self: &Arc<Self>,
        fresh: bool,
        may_probe: bool,
    ) -> Result<Checkout, Error> {
        let wait = {
            let mut state = self.state.lock().unwrap();
            if !fresh {
                let now = Instant::now();
                while let Some(idle) = state.idle.pop() {
                    let usable = match self.verdict(&idle, &state.estimate, now) {
                        Verdict::Usable => true,
                        Verdict::PastLearned => {
                            let probe = may_probe
                                && state
                                    .estimate
                                    .may_probe(now.into_std(), self.config.probe_every);
                            if !probe {
                                self.retired_early.fetch_add(1, Ordering::Relaxed);
                            }
                            probe
                        }
                        Verdict::PastAnnounced => {
                            self.retired_early.fetch_add(1, Ordering::Relaxed);
                            false
                        }
                        Verdict::Spent => false,
                    };
                    if usable {
                        self.stats.reused.fetch_add(1, Ordering::Relaxed);
                        let after = idle.idle_for(now);
                        let mut checkout = self.lend(idle.conn);
                        checkout.reused_after = Some(after);
                        return Ok(checkout);
                    }
                    state.open -= 1;
                }
            }
            if self.config.max_per_host.is_none_or(|max| state.open < max) {
                state.open += 1;
                None
            } else {
                let (tx, rx) = oneshot::channel();
                state.waiters.push_back(tx);
                Some(rx)
            }
        };
        if let Some(rx) = wait {
            let handoff = match self.config.pool_timeout {
                Some(t) => tokio::time::timeout(t, rx)
                    .await
                    .map_err(|_| Error::new(Kind::PoolTimeout))?,
                None => rx.await,
            };
            match handoff {
                Ok(Handoff::Conn(conn)) => {
                    self.stats.reused.fetch_add(1, Ordering::Relaxed);
                    return Ok(self.lend(conn));
                }
                Ok(Handoff::Slot) => {}
                Err(_) => return Err(Error::new(Kind::PoolTimeout)),
            }
        }
        let started = std::time::Instant::now();
        match connect(
            &*self.config.connector.0,
            &self.origin,
            self.config.connect_timeout,
        )
        .await
        {
            Ok(stream) => {
                let took = started.elapsed();
                self.connect_time.record(took);
                self.stats.opened.fetch_add(1, Ordering::Relaxed);
                let mut conn = Box::new(Conn::new(stream, self.config.proto.clone()));
                conn.connect_time = Some(took);
                Ok(self.lend(conn))
            }
            Err(e) => {
                self.free_slot();
                Err(e)
            }
        }
    }

    fn lend(self: &Arc<Self>, conn: Box<Conn>) -> Checkout {
        Checkout {
            conn: Some(conn),
            pool: self.clone(),
            reused_after: None,
        }
    }

    /// Whether an idle connection may be handed out: not past its idle
    /// timeout, its lifetime, or the server's announced or learned idle
    /// timeout (less a margin), and the server has not closed it meanwhile.
    fn verdict(&self, idle: &Idle, estimate: &IdleEstimate, now: Instant) -> Verdict {
        let config = &self.config;
        let idle_for = idle.idle_for(now);
        if idle_for >= config.idle_timeout {
            return Verdict::Spent;
        }
        if config
            .max_lifetime
            .is_some_and(|l| now.duration_since(idle.conn.created) >= l)
        {
            return Verdict::Spent;
        }
        if idle.conn.is_closed_by_peer() {
            return Verdict::Spent;
        }
        let margin = config
            .keep_alive_margin
            .unwrap_or_else(|| estimate.margin());
        let announced = idle.conn.announced_idle_timeout();
        if announced.is_some_and(|t| idle_for >= t.saturating_sub(margin)) {
            return Verdict::PastAnnounced;
        }
        if estimate
            .learned_timeout(now.into_std())
            .is_some_and(|t| idle_for >= t.saturating_sub(margin))
        {
            return Verdict::PastLearned;
        }
        Verdict::Usable
    }

    /// What the pool learns from a request sent on a connection reused after
    /// `idle`: answered (`true`) or closed before any answer.
    pub(crate) fn reuse_outcome(&self, idle: Duration, answered: bool) {
        let mut state = self.state.lock().unwrap();
        if answered {
            state.estimate.saw_answer_after(idle);
        } else {
            state
                .estimate
                .saw_failed_reuse(idle, std::time::Instant::now());
        }
    }

    /// A round trip measured on one of this pool's connections.
    pub(crate) fn round_trip(&self, rtt: Duration) {
        self.state.lock().unwrap().estimate.saw_round_trip(rtt);
    }

    /// The server's idle timeout as learned (the shortest idle time at which
    /// it was seen to close).
    pub(crate) fn learned_idle_timeout(&self) -> Option<Duration> {
        self.state
            .lock()
            .unwrap()
            .estimate
            .learned_timeout(std::time::Instant::now())
    }

    /// Takes back a connection after a response: pooled if still usable.
    fn checkin(&self, mut conn: Box<Conn>) {
        let mut state = self.state.lock().unwrap();
        let lifetime_over = self
            .config
            .max_lifetime
            .is_some_and(|l| conn.created.elapsed() >= l);
        if !conn.is_reusable() || lifetime_over || state.retired {
            drop(state);
            drop(conn);
            self.free_slot();
            return;
        }
        // The oldest waiter gets it directly (fair queue).
        while let Some(waiter) = state.waiters.pop_front() {
            match waiter.send(Handoff::Conn(conn)) {
                Ok(()) => return,
                Err(Handoff::Conn(back)) => conn = back,
                Err(Handoff::Slot) => unreachable!(),
            }
        }
        if self.config.max_idle_per_host == 0 {
            // Nothing may wait idle: this one closes.
            state.open -= 1;
            drop(state);
            drop(conn);
            return;
        }
        if state.idle.len() >= self.config.max_idle_per_host {
            // Too many idle: the coldest goes.
            state.idle.remove(0);
            state.open -= 1;
        }
        self.watcher.watch(&conn);
        // Idle since its response ended (read then: no clock read here).
        let since = conn.idle_since().unwrap_or_else(Instant::now);
        state.idle.push(Idle { conn, since });
    }

    /// A connection closed (or failed to open): its slot goes to the oldest
    /// waiter, who opens a new connection.
    fn free_slot(&self) {
        let mut state = self.state.lock().unwrap();
        while let Some(waiter) = state.waiters.pop_front() {
            if waiter.send(Handoff::Slot).is_ok() {
                return;
            }
        }
        state.open -= 1;
    }

    /// Closes idle connections past their time or closed by the server (a
    /// close seen here is what the estimate learns the timeout from); polls
    /// every remaining one with `cx`, so its close wakes the reaper. Returns
    /// how many stay idle.
    pub(crate) fn reap(&self, cx: &mut Context<'_>) -> usize {
        let mut state = self.state.lock().unwrap();
        let now = Instant::now();
        let before = state.idle.len();
        let idle = std::mem::take(&mut state.idle);
        let mut kept = Vec::with_capacity(idle.len());
        for i in idle {
            if i.conn.poll_readable(cx).is_ready() && i.conn.is_closed_by_peer() {
                // The server closed it (or sent something unasked) just now.
                state
                    .estimate
                    .saw_idle_close(i.idle_for(now), now.into_std());
                continue;
            }
            match self.verdict(&i, &state.estimate, now) {
                Verdict::Usable | Verdict::PastLearned => kept.push(i),
                Verdict::PastAnnounced => {
                    self.retired_early.fetch_add(1, Ordering::Relaxed);
                }
                Verdict::Spent => {}
            }
        }
        state.idle = kept;
        state.open -= before - state.idle.len();
        state.idle.len()
    }

    /// Closes every idle connection now, and keeps none given back later
    /// (the pool's server left its group).
    pub(crate) fn close_idle(&self) {
        let mut state = self.state.lock().unwrap();
        state.open -= state.idle.len();
        state.idle.clear();
        state.retired = true;
    }

    /// Connections open and idle now, read together (one consistent pair).
    pub(crate) fn counts(&self) -> (usize, usize) {
        let state = self.state.lock().unwrap();
        (state.open, state.idle.len())
    }
}

impl Checkout {
    /// How long the connection had sat idle before this request, if it came
    /// from the pool.
    pub(crate) fn reused_after(&self) -> Option<Duration> {
        self.reused_after
    }

    /// The pool it came from.
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    pub(crate) fn conn_mut(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("checkout holds a connection")
    }

    /// After a protocol switch: the raw connection, out of the pool for good.
    /// `Err(self)` if the protocol did not switch.
    pub(crate) fn into_upgraded(mut self) -> Result<Upgraded, Box<Checkout>> {
        if !self.conn_mut().is_switched() {
            return Err(Box::new(self));
        }
        let conn = self.conn.take().expect("checkout holds a connection");
        self.pool.free_slot();
        Ok(conn.into_upgraded())
    }

    /// Gives the connection back after its response ended.
    pub(crate) fn release(mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.checkin(conn);
        }
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if self.conn.take().is_some() {
            self.pool.free_slot();
        }
    }
}

/// Closes idle connections past their time, every `every`, and whenever one
/// of them becomes readable (the server closed it), while the client lives.
pub(crate) async fn reaper(
    pools: Weak<Mutex<std::collections::HashMap<Origin, Arc<Pool>>>>,
    every: Duration,
    watcher: Arc<Watcher>,
) {
    let mut tick = Box::pin(tokio::time::sleep(every));
    poll_fn(|cx| {
        watcher.set(cx.waker());
        let Some(pools) = pools.upgrade() else {
            return Poll::Ready(());
        };
        let list: Vec<Arc<Pool>> = pools.lock().unwrap().values().cloned().collect();
        drop(pools);
        for pool in list {
            pool.reap(cx);
        }
        while tick.as_mut().poll(cx).is_ready() {
            tick.as_mut().reset(Instant::now() + every);
        }
        Poll::Pending
    })
    .await
}
