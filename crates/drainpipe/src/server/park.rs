//! Parking: a connection idle for longer than `park_after` leaves its task and
//! the runtime's reactor, and waits as a few dozen bytes in one shared epoll set.
//!
//! A task per connection plus the reactor's per-socket registration costs about
//! 1 KiB even when idle; ten thousand idle keep-alive connections would hold
//! ten megabytes doing nothing. So a connection that goes quiet is handed here:
//! its socket is deregistered from tokio and registered with the parker's own
//! `mio::Poll`, and its state shrinks to a [`Parked`] entry (the socket, its
//! connection slot, its id, how many requests it served, its deadline). Busy
//! connections never come here: a keep-alive client sending its next request
//! within `park_after` stays in its task with its buffers.
//!
//! - bytes (or the peer's close) on a parked socket → the entry leaves, the
//!   socket goes back to tokio and a fresh task picks up where the old one
//!   stopped ([`Resume`]);
//! - the idle (or head) deadline passes → the socket is closed;
//! - a drain starts → every parked connection is closed at once (they are idle).
//!
//! A socket that already holds bytes when it is parked is reported at once
//! (registering a ready socket with epoll queues an event), so nothing is lost
//! between the last read and the hand-over.

use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Interest, Token};
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;
use tokio::time::Instant;

use super::drain::{CloseReason, Phase, Shared};
use super::slots::ConnSlot;
use crate::transport::peek_input;

/// What a connection's next task needs to carry on.
#[derive(Debug)]
pub(crate) struct Resume {
    pub(crate) id: u64,
    pub(crate) requests_started: u32,
    /// The client's IP address (`None` for a peer without one).
    pub(crate) peer: Option<SocketAddr>,
    /// When the first request head must be complete (counted from accept, so
    /// parking a silent new connection does not extend it).
    pub(crate) head_deadline: Option<Instant>,
    /// The connection's slot under `max_connections`, held until it closes.
    pub(crate) slot: ConnSlot,
    /// How far its writes went (when TCP_NODELAY goes on).
    pub(crate) writes: Writes,
}

/// How far a connection's writes went, for TCP_NODELAY. Nagle's algorithm
/// as Linux runs it (with Minshall's rule) holds a small segment back only
/// while an earlier small one is unacknowledged, so a connection's first
/// write never waits; Nagle is turned off just before the second (the next
/// response to a keep-alive or pipelining client), or when the connection
/// is handed over as a tunnel, as nginx turns it off for keep-alive
/// connections. A connection answered once and closed makes no
/// `setsockopt`, and one resumed from parking does not make it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Writes {
    /// Nothing written yet.
    None,
    /// One write made, Nagle still on.
    One,
    /// TCP_NODELAY is on.
    NoDelay,
}

/// A parked connection.
#[derive(Debug)]
struct Parked {
    /// The socket, out of the runtime's reactor.
    stream: OwnedFd,
    resume: Resume,
    /// When it closes if nothing arrives, and why.
    deadline: Instant,
    expiry: CloseReason,
}

/// Starts the connection's next task on the socket (its transport puts it
/// back into the reactor, see [`Parking`](crate::transport::Parking)).
pub(crate) type Respawn = Arc<dyn Fn(OwnedFd, Resume, &Arc<Parker>) + Send + Sync>;

/// The shared set of parked connections.
pub(crate) struct Parker {
    registry: mio::Registry,
    slots: Mutex<Slots>,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Slots {
    entries: Vec<Option<Parked>>,
    free: Vec<usize>,
    /// Set once a drain closed everything: nothing more is parked.
    closed: bool,
}

/// How often parked deadlines are checked.
const SWEEP_EVERY: Duration = Duration::from_millis(250);

impl Parker {
    /// A parker and the task that runs it (spawn the future; it ends when the
    /// server is cut, or when dropped).
    pub(crate) fn start(
        shared: Arc<Shared>,
        respawn: Respawn,
    ) -> std::io::Result<(Arc<Parker>, impl std::future::Future<Output = ()> + Send)> {
        let poll = mio::Poll::new()?;
        let parker = Arc::new(Parker {
            registry: poll.registry().try_clone()?,
            slots: Mutex::new(Slots::default()),
            shared,
        });
        let task = parker.clone().run(poll, respawn);
        Ok((parker, task))
    }

    /// Parks `stream` (out of the reactor already) until bytes arrive or
    /// `deadline` (closing it as `expiry` then). On failure the socket comes
    /// back to the caller to serve or close.
    pub(crate) fn park(
        &self,
        std_stream: OwnedFd,
        resume: Resume,
        deadline: Instant,
        expiry: CloseReason,
    ) -> Result<(), (OwnedFd, Resume)> {
        let mut slots = self.slots.lock().unwrap();
        let back = |s, r| Err((s, r));
        if slots.closed {
            return back(std_stream, resume);
        }
        let index = slots.free.pop().unwrap_or_else(|| {
            slots.entries.push(None);
            slots.entries.len() - 1
        });
        let fd = std_stream.as_raw_fd();
        if self
            .registry
            .register(&mut SourceFd(&fd), Token(index), Interest::READABLE)
            .is_err()
        {
            slots.free.push(index);
            return back(std_stream, resume);
        }
        slots.entries[index] = Some(Parked {
            stream: std_stream,
            resume,
            deadline,
            expiry,
        });
        self.shared
            .stats
            .parked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn take(&self, index: usize) -> Option<Parked> {
        let mut slots = self.slots.lock().unwrap();
        self.take_locked(&mut slots, index)
    }

    fn take_locked(&self, slots: &mut Slots, index: usize) -> Option<Parked> {
        let parked = slots.entries.get_mut(index)?.take()?;
        slots.free.push(index);
        let _ = self
            .registry
            .deregister(&mut SourceFd(&parked.stream.as_raw_fd()));
        self.shared
            .stats
            .parked
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        Some(parked)
    }

    /// Closes a parked connection (it is idle: nothing unread, nothing owed).
    fn close(&self, parked: Parked, reason: CloseReason) {
        let _ = socket2::SockRef::from(&parked.stream).shutdown(Shutdown::Write);
        let requests = parked.resume.requests_started;
        drop(parked);
        self.shared.closed_now(reason, requests);
    }

    async fn run(self: Arc<Self>, poll: mio::Poll, respawn: Respawn) {
        // SAFETY: the AsyncFd owns the Poll, so the epoll fd it registers stays
        // open for exactly as long as the registration (both end when it drops).
        let registered =
            unsafe { AsyncFd::register_with_interest(poll, tokio::io::Interest::READABLE) };
        let Ok(mut poll) = registered else {
            return;
        };
        let mut events = mio::Events::with_capacity(256);
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut phase: watch::Receiver<Phase> = self.shared.subscribe();
        loop {
            tokio::select! {
                ready = poll.readable_mut() => {
                    let Ok(mut guard) = ready else { return };
                    loop {
                        events.clear();
                        if guard.get_inner_mut().poll(&mut events, Some(Duration::ZERO)).is_err() {
                            break;
                        }
                        if events.is_empty() {
                            break;
                        }
                        for event in events.iter() {
                            if let Some(parked) = self.take(event.token().0) {
                                self.wake(parked, &respawn);
                            }
                        }
                    }
                    guard.clear_ready();
                }
                _ = sweep.tick() => self.close_expired(&respawn),
                changed = phase.changed() => {
                    let now = if changed.is_err() { Phase::Cut } else { *phase.borrow_and_update() };
                    match now {
                        Phase::Running | Phase::Closing => {}
                        Phase::Draining => self.drain_all(&respawn),
                        Phase::Cut => {
                            self.close_all();
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Input arrived: the connection carries on in a new task.
    fn wake(self: &Arc<Self>, parked: Parked, respawn: &Respawn) {
        respawn(parked.stream, parked.resume, self);
    }

    /// Closes the connections whose deadline passed, except one whose input
    /// arrived before the reactor reported it: that one is woken instead.
    fn close_expired(self: &Arc<Self>, respawn: &Respawn) {
        let now = Instant::now();
        let expired: Vec<usize> = {
            let slots = self.slots.lock().unwrap();
            slots
                .entries
                .iter()
                .enumerate()
                .filter_map(|(i, e)| e.as_ref().filter(|p| p.deadline <= now).map(|_| i))
                .collect()
        };
        for index in expired {
            if let Some(parked) = self.take(index) {
                if peek_input(parked.stream.as_fd()) {
                    self.wake(parked, respawn);
                } else {
                    let reason = parked.expiry;
                    self.close(parked, reason);
                }
            }
        }
    }

    /// A drain: a parked connection between requests closes at its spread
    /// moment (at once without a spread); one that has not sent its first
    /// request keeps its head deadline, as a running one does. Nothing more is
    /// parked.
    fn drain_all(self: &Arc<Self>, respawn: &Respawn) {
        let spread = self.shared.config.drain_spread;
        let now = Instant::now();
        {
            let mut slots = self.slots.lock().unwrap();
            slots.closed = true;
            for parked in slots.entries.iter_mut().flatten() {
                if parked.resume.requests_started > 0 {
                    parked.deadline = now + super::drain::spread_delay(parked.resume.id, spread);
                    parked.expiry = CloseReason::Drain;
                }
            }
        }
        self.close_expired(respawn);
    }

    /// Closes the parked connections whose slot was reclaimed (see
    /// [`Slots::reclaim_longest_idle`](super::slots::Slots::reclaim_longest_idle)),
    /// except one whose input arrived: that one stays, unmarked, for the
    /// parker's task to wake (its socket is reported ready).
    pub(crate) fn close_reclaimed(&self) {
        let closing: Vec<Parked> = {
            let mut slots = self.slots.lock().unwrap();
            let mut closing = Vec::new();
            for index in 0..slots.entries.len() {
                let Some(parked) = &slots.entries[index] else {
                    continue;
                };
                if !parked.resume.slot.is_reclaimed() {
                    continue;
                }
                if peek_input(parked.stream.as_fd()) {
                    parked.resume.slot.busy();
                    continue;
                }
                if let Some(parked) = self.take_locked(&mut slots, index) {
                    closing.push(parked);
                }
            }
            closing
        };
        for parked in closing {
            self.close(parked, CloseReason::Reclaimed);
        }
    }

    /// Every parked connection closes at once; nothing more is parked.
    fn close_all(&self) {
        let indexes: Vec<usize> = {
            let mut slots = self.slots.lock().unwrap();
            slots.closed = true;
            (0..slots.entries.len()).collect()
        };
        for index in indexes {
            if let Some(parked) = self.take(index) {
                self.close(parked, CloseReason::Drain);
            }
        }
    }
}

impl Drop for Parker {
    fn drop(&mut self) {
        let slots = self.slots.get_mut().unwrap();
        for parked in slots.entries.drain(..).flatten() {
            let requests = parked.resume.requests_started;
            drop(parked);
            self.shared.closed_now(CloseReason::Cut, requests);
        }
    }
}
