//! Connection slots under `max_connections`, and reclaiming them: when every
//! slot is taken and a connection waits to be accepted, the longest-idle
//! keep-alive connection is closed to make room (as nginx does), never one
//! with a request in flight, nor one that has not sent its first request.
//!
//! Each connection holds a [`ConnSlot`] for its whole life (across parking).
//! While it is idle between requests, in its task or parked, its slot says
//! since when; the accept loop, when it needs room, marks the slot idle the
//! longest as reclaimed and wakes its owner: the task closes, or the parker
//! closes the parked connection. A connection that leaves idle clears the
//! mark, so a request that arrives at the same moment is served and the
//! accept loop picks another.
//!
//! The slot is also how a connection's task hears of the server's drain
//! phases: a phase change wakes every slot ([`Slots::wake_all`]), and the
//! task looks at the phase (one atomic in `drain::Shared`). So a task waits
//! on one registration, its slot's waker, for everything that is not its
//! socket or its timer: re-registering the same task's waker costs a few
//! atomic operations per wait, where a `Notify` or a watch channel per
//! signal took a lock each.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::task::Waker;

use atomic_waker::AtomicWaker;
use tokio::sync::Semaphore;

/// `idle_since` of a connection not idle between requests.
const BUSY: u64 = 0;
/// `idle_since` of a connection asked to close to make room.
const RECLAIMED: u64 = u64::MAX;

/// The slots of one server.
#[derive(Debug)]
pub(crate) struct Slots {
    /// One per free slot.
    permits: Semaphore,
    table: Mutex<Table>,
    /// The order in which connections went idle: the next `idle_since`. Only
    /// the order matters (which was idle the longest), so a count serves
    /// instead of a clock reading turned into nanoseconds per request; the
    /// slots are per server and per worker, so it is never contended.
    idle_order: AtomicU64,
}

/// Every slot ever used (reused through `free`, so it grows only to the
/// highest number of connections open at once).
#[derive(Debug, Default)]
struct Table {
    all: Vec<Arc<Slot>>,
    free: Vec<usize>,
}

#[derive(Debug)]
struct Slot {
    /// Its place in [`Table::all`].
    index: usize,
    /// [`BUSY`], [`RECLAIMED`], or when the connection went idle (its place
    /// in [`Slots::idle_order`]).
    idle_since: AtomicU64,
    /// The connection's task, woken when its slot is reclaimed or the
    /// server's phase changes.
    waker: AtomicWaker,
}

impl Slots {
    pub(crate) fn new(max_connections: usize) -> Arc<Slots> {
        Arc::new(Slots {
            permits: Semaphore::new(max_connections),
            table: Mutex::new(Table::default()),
            idle_order: AtomicU64::new(BUSY + 1),
        })
    }

    /// A slot, once one is free.
    pub(crate) async fn acquire(self: &Arc<Self>) -> ConnSlot {
        // Given back by the slot's drop.
        self.permits
            .acquire()
            .await
            .expect("semaphore never closed")
            .forget();
        let mut table = self.table.lock().unwrap();
        let slot = match table.free.pop() {
            Some(index) => table.all[index].clone(),
            None => {
                let slot = Arc::new(Slot {
                    index: table.all.len(),
                    idle_since: AtomicU64::new(BUSY),
                    waker: AtomicWaker::new(),
                });
                table.all.push(slot.clone());
                slot
            }
        };
        ConnSlot {
            slot,
            slots: self.clone(),
        }
    }

    /// Marks the slot of the connection idle the longest as reclaimed and
    /// wakes its task; `false` when no connection is idle between requests.
    /// (A parked connection has no task: the parker closes it, see
    /// [`ConnSlot::is_reclaimed`].)
    pub(crate) fn reclaim_longest_idle(&self) -> bool {
        let table = self.table.lock().unwrap();
        // A few tries: each failed one saw a connection leave idle.
        for _ in 0..4 {
            let oldest = table
                .all
                .iter()
                .map(|s| (s.idle_since.load(Ordering::Acquire), s))
                .filter(|(since, _)| *since != BUSY && *since != RECLAIMED)
                .min_by_key(|(since, _)| *since);
            let Some((since, slot)) = oldest else {
                return false;
            };
            // Only if still idle since then (it may have just become busy).
            if slot
                .idle_since
                .compare_exchange(since, RECLAIMED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                slot.waker.wake();
                return true;
            }
        }
        false
    }
}

impl Slots {
    /// Wakes every connection's task (the server's phase changed: each looks
    /// at it).
    pub(crate) fn wake_all(&self) {
        for slot in &self.table.lock().unwrap().all {
            slot.waker.wake();
        }
    }
}

/// A connection's slot: its place under `max_connections`, and whether it may
/// be reclaimed. Given back when dropped.
#[derive(Debug)]
pub(crate) struct ConnSlot {
    slot: Arc<Slot>,
    slots: Arc<Slots>,
}

impl ConnSlot {
    /// The connection is idle between requests from now on (it may be
    /// reclaimed, the longest idle first).
    pub(crate) fn idle(&self) {
        let order = self.slots.idle_order.fetch_add(1, Ordering::Relaxed);
        self.slot
            .idle_since
            .store(order.min(RECLAIMED - 1), Ordering::Release);
    }

    /// The connection is no longer idle (it may not be reclaimed).
    pub(crate) fn busy(&self) {
        self.slot.idle_since.store(BUSY, Ordering::Release);
    }

    /// Whether the accept loop asked this connection to close.
    pub(crate) fn is_reclaimed(&self) -> bool {
        self.slot.idle_since.load(Ordering::Acquire) == RECLAIMED
    }

    /// A handle to register the task's waker with, held apart from the
    /// slot (one reference count).
    pub(crate) fn signal(&self) -> Signal {
        Signal(self.slot.clone())
    }

    /// Has `waker` woken when the slot is reclaimed or the server's phase
    /// changes. Register, then look at what woke it (a wake can be left over
    /// from a slot's earlier owner or a mark cleared since).
    pub(crate) fn register(&self, waker: &Waker) {
        self.slot.waker.register(waker);
    }
}

/// Wakes a connection's task when its slot is reclaimed or the server's
/// phase changes (see [`ConnSlot::register`]).
#[derive(Debug)]
pub(crate) struct Signal(Arc<Slot>);

impl Signal {
    /// Has `waker` woken on the slot's next signal.
    pub(crate) fn register(&self, waker: &Waker) {
        self.0.waker.register(waker);
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.busy();
        self.slots.table.lock().unwrap().free.push(self.slot.index);
        self.slots.permits.add_permits(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_longest_idle_is_reclaimed_never_a_busy_one() {
        let slots = Slots::new(3);
        let (a, b, c) = (
            slots.acquire().await,
            slots.acquire().await,
            slots.acquire().await,
        );
        assert!(!slots.reclaim_longest_idle(), "nothing idle");
        // b's task is woken when it is reclaimed.
        let (waker, woken) = counting_waker();
        b.register(&waker);
        b.idle();
        a.idle();
        // c stays busy (a request in flight) however long it has been open.
        assert!(slots.reclaim_longest_idle());
        assert!(b.is_reclaimed() && !a.is_reclaimed() && !c.is_reclaimed());
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        assert!(slots.reclaim_longest_idle());
        assert!(a.is_reclaimed());
        assert!(!slots.reclaim_longest_idle(), "only c is left, busy");
        // A slot given back is reused, clean.
        drop(b);
        let d = slots.acquire().await;
        assert!(!d.is_reclaimed());
        assert_eq!(slots.table.lock().unwrap().all.len(), 3);
        // A phase change wakes every task.
        let (waker, woken) = counting_waker();
        a.register(&waker);
        c.register(&waker);
        slots.wake_all();
        assert_eq!(woken.load(Ordering::SeqCst), 2);
        drop((a, c, d));
    }

    /// A waker that counts its wakes.
    fn counting_waker() -> (Waker, Arc<std::sync::atomic::AtomicUsize>) {
        struct Count(Arc<std::sync::atomic::AtomicUsize>);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let n = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        (Waker::from(Arc::new(Count(n.clone()))), n)
    }
}
