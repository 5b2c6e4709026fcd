//! Thread-per-core workers: N OS threads, each running its own
//! current-thread tokio runtime, each accepting its own connections and
//! serving them to the end. A connection never moves between workers.
//!
//! ```text
//!  control thread (signals, admin, health checks, DNS, hand-off)
//!        │ Workers::start(n, work)            │ Workers::join
//!        ▼                                    ▲ one output per worker
//!  worker 0: current-thread runtime ── work(Worker 0): serve its sockets
//!  worker 1: current-thread runtime ── work(Worker 1): serve its sockets
//!  …
//! ```
//!
//! What a worker owns alone is whatever `work` builds on it: the server's
//! accept loop, connection slots, parking set and counters
//! ([`Server::for_worker`]; the registry adds the workers' counters up), its
//! connection tasks and their buffers, and upstream pools
//! ([`Client::sibling`](crate::client::Client::sibling)). What stays shared is
//! what `work` is handed: upstream health, the access log writer, the
//! shutdown signal.
//!
//! # Accepting: one socket per worker (`SO_REUSEPORT`)
//!
//! [`bind_reuseport`] binds one listening socket per worker to the same
//! address; the kernel spreads new connections over them by a hash of the
//! connection's addresses. No worker is woken for a connection another one
//! takes (no thundering herd, no `accept4` failing with `EAGAIN` in N−1
//! workers), and no lock is shared. [`Worker::share`] gives each worker its
//! sockets out of a group of any size: a successor started with a different
//! worker count after a hand-off still accepts on every socket it was passed
//! (a socket of the group nobody accepted on would hold connections
//! forever). A group of one socket (a Unix socket, which has no
//! `SO_REUSEPORT`) is accepted on by every worker.
//!
//! # A handler that blocks
//!
//! A worker runs every task of its connections on one thread: a handler
//! that blocks that thread (a blocking call, a long computation without an
//! `.await`) stalls every connection of its worker, and only those, until it
//! returns, and the connections the kernel queues on its socket meanwhile
//! wait too. Run blocking work with `tokio::task::spawn_blocking`.
//!
//! [`Server::for_worker`]: super::Server::for_worker

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::oneshot;

thread_local! {
    static CURRENT: Cell<Option<Worker>> = const { Cell::new(None) };
}

/// One worker's place among its siblings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Worker {
    index: usize,
    count: usize,
}

impl Worker {
    /// Worker `index` of `count` (for code that runs the workers itself).
    pub fn new(index: usize, count: usize) -> Worker {
        let count = count.max(1);
        Worker {
            index: index % count,
            count,
        }
    }

    /// This worker's index, from 0.
    pub fn index(&self) -> usize {
        self.index
    }

    /// How many workers there are.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The worker running the calling thread (`None` outside a worker).
    pub fn current() -> Option<Worker> {
        CURRENT.get()
    }

    /// The items of `all` (the sockets of one listening address) this worker
    /// takes: the `i`-th goes to worker `i mod count`, so each worker gets
    /// its own and every item is taken; a worker left without any (fewer
    /// items than workers) shares item `index mod len` with the others.
    pub fn share<T: Clone>(&self, all: &[T]) -> Vec<T> {
        if all.is_empty() {
            return Vec::new();
        }
        let mine: Vec<T> = all
            .iter()
            .skip(self.index)
            .step_by(self.count)
            .cloned()
            .collect();
        if mine.is_empty() {
            vec![all[self.index % all.len()].clone()]
        } else {
            mine
        }
    }

    /// This worker's part of `total` (a limit for the whole process): the
    /// parts of all workers add up to `total`, and none is below one.
    pub fn share_of(&self, total: usize) -> usize {
        let base = total / self.count;
        let extra = usize::from(self.index < total % self.count);
        (base + extra).max(1)
    }
}

/// How many workers to run by default: the CPUs this process may run on
/// (its affinity mask and cgroup quota, as
/// [`std::thread::available_parallelism`] reads them).
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Workers started with [`Workers::start`], each running its `work` to the
/// end; [`Workers::join`] collects what each returned.
#[derive(Debug)]
pub struct Workers<T> {
    running: Vec<Running<T>>,
}

#[derive(Debug)]
struct Running<T> {
    thread: std::thread::JoinHandle<()>,
    done: oneshot::Receiver<std::thread::Result<T>>,
}

impl<T: Send + 'static> Workers<T> {
    /// Starts `count` workers (at least one). Each is an OS thread named
    /// `drainpipe-N` running a current-thread runtime (time and IO enabled)
    /// on which `work(worker)` runs until it resolves; its tasks end with
    /// it. `work` is called on the worker's thread, so the future it returns
    /// need not be `Send`: what it builds stays on that worker.
    pub fn start<F, Fut>(count: usize, work: F) -> io::Result<Workers<T>>
    where
        F: Fn(Worker) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = T> + 'static,
    {
        let count = count.max(1);
        let work = Arc::new(work);
        let mut running = Vec::with_capacity(count);
        for index in 0..count {
            let worker = Worker { index, count };
            // Built here: a runtime that cannot start is this call's error.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (tell, done) = oneshot::channel();
            let work = work.clone();
            let thread = std::thread::Builder::new()
                .name(format!("drainpipe-{index}"))
                .spawn(move || {
                    CURRENT.set(Some(worker));
                    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        runtime.block_on(work(worker))
                    }));
                    let _ = tell.send(out);
                })?;
            running.push(Running { thread, done });
        }
        Ok(Workers { running })
    }

    /// How many workers run.
    pub fn count(&self) -> usize {
        self.running.len()
    }

    /// Waits (without blocking the caller's runtime) for every worker's
    /// `work` to end, and returns their outputs in worker order. A worker
    /// whose `work` panicked passes the panic on here.
    pub async fn join(self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.running.len());
        for r in self.running {
            let result = r.done.await;
            let _ = r.thread.join();
            match result {
                Ok(Ok(value)) => out.push(value),
                Ok(Err(panic)) => std::panic::resume_unwind(panic),
                Err(_) => panic!("a worker thread ended without a result"),
            }
        }
        out
    }
}

/// Binds `count` TCP listening sockets (at least one) to `addr` in one
/// `SO_REUSEPORT` group, non-blocking, each with `backlog`: one per worker.
/// Port 0 binds the first to a free port and the others to the same one.
pub fn bind_reuseport(
    addr: SocketAddr,
    count: usize,
    backlog: u32,
) -> io::Result<Vec<std::net::TcpListener>> {
    let mut bound: Vec<std::net::TcpListener> = Vec::with_capacity(count.max(1));
    let mut at = addr;
    for _ in 0..count.max(1) {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(at),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.set_cloexec(true)?;
        socket.bind(&at.into())?;
        socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
        let listener: std::net::TcpListener = socket.into();
        if at.port() == 0 {
            at = listener.local_addr()?;
        }
        bound.push(listener);
    }
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_is_taken_whatever_the_counts() {
        for items in 1..7 {
            let all: Vec<usize> = (0..items).collect();
            for count in 1..7 {
                let mut taken: Vec<usize> = (0..count)
                    .flat_map(|i| Worker::new(i, count).share(&all))
                    .collect();
                // Every worker has at least one.
                assert!((0..count).all(|i| !Worker::new(i, count).share(&all).is_empty()));
                taken.sort_unstable();
                taken.dedup();
                assert_eq!(taken, all, "{items} items over {count} workers");
            }
        }
        // As many items as workers: one each.
        assert_eq!(Worker::new(1, 3).share(&[10, 11, 12]), vec![11]);
        // Fewer: shared.
        assert_eq!(Worker::new(2, 3).share(&[10]), vec![10]);
        // More: several.
        assert_eq!(Worker::new(0, 2).share(&[10, 11, 12]), vec![10, 12]);
    }

    #[test]
    fn limits_split_exactly() {
        for total in 1..20 {
            for count in 1..6 {
                let parts: Vec<usize> = (0..count)
                    .map(|i| Worker::new(i, count).share_of(total))
                    .collect();
                assert!(parts.iter().all(|&p| p >= 1));
                if total >= count {
                    assert_eq!(parts.iter().sum::<usize>(), total);
                }
            }
        }
    }

    #[tokio::test]
    async fn each_worker_runs_on_its_own_thread_and_knows_its_index() {
        assert_eq!(Worker::current(), None);
        let workers = Workers::start(3, |w: Worker| async move {
            let here = Worker::current().expect("on a worker");
            assert_eq!(here, w);
            // The runtime is a current-thread one with timers.
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            (w.index(), std::thread::current().id())
        })
        .unwrap();
        assert_eq!(workers.count(), 3);
        let out = workers.join().await;
        assert_eq!(
            out.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        let mut threads: Vec<_> = out.iter().map(|(_, t)| format!("{t:?}")).collect();
        threads.sort();
        threads.dedup();
        assert_eq!(threads.len(), 3);
    }

    #[test]
    fn a_reuseport_group_shares_one_port() {
        let group = bind_reuseport("127.0.0.1:0".parse().unwrap(), 3, 16).unwrap();
        let port = group[0].local_addr().unwrap().port();
        assert_ne!(port, 0);
        assert!(group.iter().all(|l| l.local_addr().unwrap().port() == port));
    }
}
