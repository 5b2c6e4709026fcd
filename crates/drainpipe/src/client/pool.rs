//! The per-origin pool: LIFO reuse (the warmest connection first), max idle per
//! origin, idle timeout, max lifetime, max connections per origin with a fair
//! (first come, first served) wait queue, and a check for a pending EOF before
//! a pooled connection is handed out.
//!
//! A connection is lent as a [`Checkout`]: giving it back
//! ([`Checkout::release`]) returns it to the pool only if it is still usable;
//! dropping it closes it. Either way the slot it held under the per-origin
//! limit passes to the oldest waiter.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::conn::Conn;
use super::connect::{connect, Origin};
use super::Config;
use crate::error::{Error, Kind};
use crate::upgrade::Upgraded;

/// The connections of one origin.
pub(crate) struct Pool {
    origin: Origin,
    config: Arc<Config>,
    state: Mutex<State>,
    stats: Arc<super::Stats>,
}

#[derive(Default)]
struct State {
    /// Idle connections, the most recently used last.
    idle: Vec<Idle>,
    /// Connections open or being opened (idle, lent, connecting).
    open: usize,
    /// Callers waiting for a connection, oldest first.
    waiters: VecDeque<oneshot::Sender<Handoff>>,
}

struct Idle {
    conn: Box<Conn>,
    since: Instant,
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
}

impl Pool {
    pub(crate) fn new(origin: Origin, config: Arc<Config>, stats: Arc<super::Stats>) -> Pool {
        Pool {
            origin,
            config,
            state: Mutex::new(State::default()),
            stats,
        }
    }

    /// Lends a connection: a pooled one if a usable one is idle (unless `fresh`
    /// asks for a new one), else a new one if the per-origin limit allows, else
    /// the next one given back, waiting in line.
    pub(crate) async fn checkout(self: &Arc<Self>, fresh: bool) -> Result<Checkout, Error> {
        let wait = {
            let mut state = self.state.lock().unwrap();
            if !fresh {
                while let Some(idle) = state.idle.pop() {
                    if self.usable(&idle) {
                        self.stats
                            .reused
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        return Ok(self.lend(idle.conn));
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
                    self.stats
                        .reused
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Ok(self.lend(conn));
                }
                Ok(Handoff::Slot) => {}
                Err(_) => return Err(Error::new(Kind::PoolTimeout)),
            }
        }
        match connect(&self.origin, self.config.connect_timeout).await {
            Ok(stream) => {
                self.stats
                    .opened
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(self.lend(Box::new(Conn::new(stream, self.config.proto.clone()))))
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
        }
    }

    /// Whether an idle connection may be handed out: not past its idle
    /// timeout, its lifetime, or the server's keep-alive timeout (minus a
    /// margin), and the server has not closed it meanwhile.
    fn usable(&self, idle: &Idle) -> bool {
        let now = Instant::now();
        let config = &self.config;
        if now.duration_since(idle.since) >= config.idle_timeout {
            return false;
        }
        if config
            .max_lifetime
            .is_some_and(|l| now.duration_since(idle.conn.created) >= l)
        {
            return false;
        }
        if idle
            .conn
            .reusable_until(config.keep_alive_margin)
            .is_some_and(|until| now >= until)
        {
            return false;
        }
        !idle.conn.is_closed_by_peer()
    }

    /// Takes back a connection after a response: pooled if still usable.
    fn checkin(&self, mut conn: Box<Conn>) {
        let mut state = self.state.lock().unwrap();
        let lifetime_over = self
            .config
            .max_lifetime
            .is_some_and(|l| conn.created.elapsed() >= l);
        if !conn.is_reusable() || lifetime_over {
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
        state.idle.push(Idle {
            conn,
            since: Instant::now(),
        });
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

    /// Closes idle connections past their time; returns how many stay idle.
    pub(crate) fn reap(&self) -> usize {
        let mut state = self.state.lock().unwrap();
        let before = state.idle.len();
        let idle = std::mem::take(&mut state.idle);
        state.idle = idle.into_iter().filter(|i| self.usable(i)).collect();
        state.open -= before - state.idle.len();
        state.idle.len()
    }

    /// Connections open now (idle, lent or connecting).
    pub(crate) fn open(&self) -> usize {
        self.state.lock().unwrap().open
    }

    /// Idle connections now.
    pub(crate) fn idle(&self) -> usize {
        self.state.lock().unwrap().idle.len()
    }
}

impl Checkout {
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

/// Closes idle connections past their time, every `every`, while the client
/// lives.
pub(crate) async fn reaper(
    pools: Weak<Mutex<std::collections::HashMap<Origin, Arc<Pool>>>>,
    every: Duration,
) {
    loop {
        tokio::time::sleep(every).await;
        let Some(pools) = pools.upgrade() else { return };
        let list: Vec<Arc<Pool>> = pools.lock().unwrap().values().cloned().collect();
        drop(pools);
        for pool in list {
            pool.reap();
        }
    }
}
