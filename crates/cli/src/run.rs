//! Puts the library's pieces to work for a command: binds the listeners (or
//! takes them over from a predecessor), starts the servers, waits for a signal,
//! drains.
//!
//! Signals: SIGTERM and SIGINT drain and exit; SIGUSR2 starts a successor from
//! the same binary and arguments, hands it the listening sockets, and drains
//! once it serves (a zero-downtime upgrade); SIGHUP does the same once the
//! configuration, read again, validates (a reload: the successor reads the
//! new file). A hand-off that fails leaves this process serving as before;
//! its outcome is reported for `drainpipe upgrade|reload` (see
//! [`control`](crate::control)).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Child;
use std::sync::{Arc, Weak};
use std::time::Duration;

use drainpipe::admin::Admin;
use drainpipe::body::Incoming;
use drainpipe::handoff::{self, Handed, Successor};
use drainpipe::metrics::Registry;
use drainpipe::origin::Origin;
use drainpipe::proxy::{ForwardProxy, Proxy};
use drainpipe::server::workers::{self, Worker, Workers};
use drainpipe::server::{DrainReport, Server};
use drainpipe::tls::ServerTls;
use drainpipe::BoxError;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::addr::{ListenAddr, SocketMode};
use crate::config::Config;
use crate::control;
use crate::pidfile::PidFile;

/// Backlog of the listening sockets drainpipe binds.
const BACKLOG: u32 = 4096;

/// Listening sockets: taken over from a predecessor when it offered some by
/// that name, bound otherwise (a TCP address: one socket per worker, in one
/// `SO_REUSEPORT` group; a Unix socket: one, which every worker accepts on).
/// The workers accepting on a socket hold its only strong handles, so the
/// socket closes (every fd of it in this process) the moment they stop
/// accepting and a new client is refused at once; only a weak handle is kept
/// here, from which a hand-off copies the sockets still open: every socket
/// of every address, under the address's name.
struct Listeners {
    inherited: Vec<Handed>,
    kept: Vec<(String, Kept)>,
    /// Permission bits of the Unix socket files bound here.
    mode: Option<SocketMode>,
    /// Whether TCP sockets, bound or inherited, defer accepts until a
    /// connection's first bytes ([`drainpipe::server::defer_accept`]).
    defer_accept: bool,
    /// The Unix socket files this process serves, removed when it exits
    /// (not after a hand-off: the successor serves them).
    files: Vec<SocketFile>,
}

impl Listeners {
    fn new(inherited: Vec<Handed>, mode: Option<SocketMode>, defer_accept: bool) -> Listeners {
        Listeners {
            inherited,
            kept: Vec::new(),
            mode,
            defer_accept,
            files: Vec::new(),
        }
    }

    /// The listening sockets for `role` at `addr`: an IP address (bound as
    /// `sockets` sockets), or a Unix socket. Inherited ones are all taken,
    /// however many the predecessor had (its worker count may differ), and
    /// none is added: every socket of a `SO_REUSEPORT` group may have
    /// connections queued on it, so each must be accepted on; and a socket
    /// added by a successor that then fails would reset the connections
    /// the kernel had queued on it.
    fn take(&mut self, role: &str, addr: Addr<'_>, sockets: usize) -> Result<Bound, String> {
        let name = format!("{role} {addr}");
        let (inherited, rest): (Vec<Handed>, Vec<Handed>) = std::mem::take(&mut self.inherited)
            .into_iter()
            .partition(|h| h.name == name);
        self.inherited = rest;
        let mut tcp = Vec::new();
        let mut unix = Vec::new();
        for h in inherited {
            match h.listener {
                handoff::Listener::Tcp(l) => tcp.push(Arc::new(l)),
                handoff::Listener::Unix(l) => unix.push(Arc::new(l)),
            }
        }
        let bound = match addr {
            Addr::Ip(_) if !tcp.is_empty() => Bound::Tcp(tcp),
            Addr::Unix(path) if !unix.is_empty() => {
                self.files.push(SocketFile::of(path));
                Bound::Unix(unix)
            }
            Addr::Ip(addr) => Bound::Tcp(
                workers::bind_reuseport(addr, sockets, BACKLOG)
                    .map_err(|e| format!("cannot listen on {addr}: {e}"))?
                    .into_iter()
                    .map(Arc::new)
                    .collect(),
            ),
            Addr::Unix(path) => {
                let l = bind_unix(path, self.mode)?;
                self.files.push(SocketFile::of(path));
                Bound::Unix(vec![Arc::new(l)])
            }
        };
        if let Bound::Tcp(sockets) = &bound {
            // Inherited ones too: the setting is this configuration's.
            for s in sockets {
                drainpipe::server::defer_accept(s, self.defer_accept)
                    .map_err(|e| format!("cannot defer accepts on {addr}: {e}"))?;
            }
        }
        self.kept
            .extend(bound.downgrade().map(|k| (name.clone(), k)));
        Ok(bound)
    }

    /// The sockets still accepting, for a hand-off (held only while it runs).
    fn offer(&self) -> Vec<(String, Socket)> {
        self.kept
            .iter()
            .filter_map(|(n, l)| Some((n.clone(), l.upgrade()?)))
            .collect()
    }

    /// Removes the Unix socket files (at exit, unless handed over).
    fn remove_files(&self) {
        for f in &self.files {
            f.remove();
        }
    }
}

/// Where a listener listens.
#[derive(Clone, Copy)]
enum Addr<'a> {
    Ip(SocketAddr),
    Unix(&'a Path),
}

impl std::fmt::Display for Addr<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Addr::Ip(a) => write!(f, "{a}"),
            Addr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// The listening sockets of one address: TCP (one per worker, or as many
/// as a predecessor passed) or Unix (one).
#[derive(Clone)]
enum Bound {
    Tcp(Vec<Arc<std::net::TcpListener>>),
    Unix(Vec<Arc<std::os::unix::net::UnixListener>>),
}

/// One listening socket, for a hand-off.
enum Socket {
    Tcp(Arc<std::net::TcpListener>),
    Unix(Arc<std::os::unix::net::UnixListener>),
}

/// A weak handle of one socket of a [`Bound`].
enum Kept {
    Tcp(Weak<std::net::TcpListener>),
    Unix(Weak<std::os::unix::net::UnixListener>),
}

impl Bound {
    fn downgrade(&self) -> impl Iterator<Item = Kept> + '_ {
        let (tcp, unix) = match self {
            Bound::Tcp(all) => (&all[..], &[][..]),
            Bound::Unix(all) => (&[][..], &all[..]),
        };
        tcp.iter()
            .map(|l| Kept::Tcp(Arc::downgrade(l)))
            .chain(unix.iter().map(|l| Kept::Unix(Arc::downgrade(l))))
    }

    /// The sockets `worker` accepts on ([`Worker::share`]).
    fn share(&self, worker: Worker) -> Bound {
        match self {
            Bound::Tcp(all) => Bound::Tcp(worker.share(all)),
            Bound::Unix(all) => Bound::Unix(worker.share(all)),
        }
    }

    /// Serves `service` on these sockets until `until`, then drains; with
    /// TLS when `tls` is given. The sockets close when accepting stops,
    /// unless something else holds them.
    async fn serve<S, B>(
        self,
        server: Server,
        service: S,
        until: impl Future<Output = ()>,
        tls: Option<ServerTls>,
    ) -> DrainReport
    where
        S: tower_service::Service<http::Request<Incoming>, Response = http::Response<B>>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        match (self, tls) {
            (Bound::Tcp(all), None) => server.serve(all, service, until).await,
            (Bound::Unix(all), None) => server.serve(all, service, until).await,
            (Bound::Tcp(all), Some(tls)) => server.serve(tls.listen(all), service, until).await,
            (Bound::Unix(all), Some(tls)) => server.serve(tls.listen(all), service, until).await,
        }
    }

    /// Its address as a URL prefix: `http://ADDR` (`https://` with `tls`)
    /// or `unix:PATH`.
    fn url(&self, tls: bool) -> String {
        match self {
            Bound::Tcp(all) if tls => format!("https://{}", local(&all[0])),
            Bound::Tcp(all) => format!("http://{}", local(&all[0])),
            Bound::Unix(all) => match all[0]
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(Path::to_path_buf))
            {
                Some(p) => format!("unix:{}", p.display()),
                None => "unix:?".into(),
            },
        }
    }
}

impl Kept {
    fn upgrade(&self) -> Option<Socket> {
        match self {
            Kept::Tcp(l) => l.upgrade().map(Socket::Tcp),
            Kept::Unix(l) => l.upgrade().map(Socket::Unix),
        }
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Socket::Tcp(l) => l.as_fd(),
            Socket::Unix(l) => l.as_fd(),
        }
    }
}

/// A Unix socket file this process serves: removed at exit only while it is
/// still the same file (a process that replaced it keeps its own).
struct SocketFile {
    path: PathBuf,
    inode: Option<(u64, u64)>,
}

impl SocketFile {
    fn of(path: &Path) -> SocketFile {
        SocketFile {
            path: path.to_path_buf(),
            inode: inode(path),
        }
    }

    fn remove(&self) {
        if self.inode.is_some() && inode(&self.path) == self.inode {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn inode(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// Binds a Unix socket at `path` with `mode`. A file left there by a process
/// that is gone (nothing accepts on it) is replaced; a socket something still
/// listens on, or a file that is not a socket, is an error.
fn bind_unix(
    path: &Path,
    mode: Option<SocketMode>,
) -> Result<std::os::unix::net::UnixListener, String> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let at = format!("cannot listen on unix:{}", path.display());
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(format!("{at}: the file exists and is not a socket"));
        }
        Ok(_) => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(format!("{at}: a running process listens on it"));
            }
            // Stale: left by a process that is gone.
            std::fs::remove_file(path).map_err(|e| format!("{at}: cannot replace it: {e}"))?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{at}: {e}")),
    }
    let fail = |e: io::Error| format!("{at}: {e}");
    let socket =
        socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).map_err(fail)?;
    socket
        .bind(&socket2::SockAddr::unix(path).map_err(fail)?)
        .map_err(fail)?;
    if let Some(SocketMode(mode)) = mode {
        // Before listen: nobody connects with the default mode.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(fail)?;
    }
    socket.listen(BACKLOG as i32).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    Ok(socket.into())
}

/// `drainpipe origin`: the built-in origin on the listener (one per address
/// its host name resolves to), on `workers` workers.
pub async fn origin(
    listen: ListenAddr,
    max_requests: Option<u32>,
    drain_timeout: Duration,
    workers: usize,
    tls: Option<ServerTls>,
) -> Result<(), String> {
    let signals = Signals::new();
    let mut bound = Listeners::new(Vec::new(), None, true);
    let listeners = take_all(&mut bound, "origin", &listen, workers)?;
    let mut builder = Server::builder().drain_timeout(drain_timeout);
    if let Some(n) = max_requests {
        builder = builder.max_requests_per_connection(n);
    }
    let (stop, stopped) = watch::channel(false);
    let mut jobs = Vec::new();
    for listener in listeners {
        println!(
            "drainpipe origin listening on {}",
            listener.url(tls.is_some())
        );
        jobs.push(Job {
            name: "origin".into(),
            bound: listener,
            server: builder.clone().build(),
            service: Service::Origin,
            tls: tls.clone(),
        });
    }
    let running = start_workers(workers, jobs, stopped)?;
    shutdown_signal(signals).await;
    let _ = stop.send(true);
    join_workers(running).await;
    bound.remove_files();
    Ok(())
}

/// What a listener serves.
#[derive(Clone)]
enum Service {
    Origin,
    Proxy(Proxy),
    Forward(ForwardProxy),
}

/// A listener to serve on every worker: its name (in logs), its sockets,
/// its server (whose counters the workers share) and what it serves.
struct Job {
    name: String,
    bound: Bound,
    server: Server,
    service: Service,
    /// TLS on its connections, when its listener has it.
    tls: Option<ServerTls>,
}

/// What each worker returns: the drain of each of its listeners.
type Drained = Vec<(String, DrainReport)>;

/// Starts `count` workers, each serving its share of every job's sockets
/// until `stopped` turns true, then draining. Each worker has its own
/// server state (accept loop, connection slots, parking set) and its own
/// upstream pools; counters, upstream health and the access log are shared.
fn start_workers(
    count: usize,
    jobs: Vec<Job>,
    stopped: watch::Receiver<bool>,
) -> Result<Workers<Drained>, String> {
    // Each worker's sockets, taken by it at start: nothing else keeps a
    // strong handle, so a socket closes as soon as its workers stop
    // accepting on it.
    let shares: Vec<std::sync::Mutex<Vec<Job>>> = (0..count.max(1))
        .map(|i| {
            let worker = Worker::new(i, count.max(1));
            let share = jobs
                .iter()
                .map(|job| Job {
                    name: job.name.clone(),
                    bound: job.bound.share(worker),
                    server: job.server.for_worker(worker),
                    service: job.service.clone(),
                    tls: job.tls.clone(),
                })
                .collect();
            std::sync::Mutex::new(share)
        })
        .collect();
    drop(jobs);
    Workers::start(count, move |worker| {
        let jobs = std::mem::take(&mut *shares[worker.index()].lock().unwrap());
        let stopped = stopped.clone();
        async move {
            crate::alloc::spawn_housekeeping();
            let mut serving = JoinSet::new();
            for job in jobs {
                let Job {
                    name,
                    bound,
                    server,
                    service,
                    tls,
                } = job;
                let until = wait(stopped.clone());
                match service {
                    Service::Origin => serving.spawn(async move {
                        (name, bound.serve(server, Origin, until, tls).await)
                    }),
                    Service::Proxy(p) => {
                        let service = p.for_worker();
                        serving.spawn(async move {
                            (name, bound.serve(server, service, until, tls).await)
                        })
                    }
                    Service::Forward(f) => {
                        let service = f.for_worker();
                        serving.spawn(async move {
                            (name, bound.serve(server, service, until, tls).await)
                        })
                    }
                };
            }
            serving.join_all().await
        }
    })
    .map_err(|e| format!("cannot start the workers: {e}"))
}

/// Waits for every worker's drain and logs each listener's, added up over
/// the workers.
async fn join_workers(running: Workers<Drained>) {
    let mut total: Vec<(String, DrainReport)> = Vec::new();
    for (name, report) in running.join().await.into_iter().flatten() {
        match total.iter_mut().find(|(n, _)| *n == name) {
            Some((_, sum)) => *sum += report,
            None => total.push((name, report)),
        }
    }
    for (name, report) in &total {
        log_report(name, report);
    }
}

/// Resolves once `stopped` turns true.
async fn wait(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// Binds (or inherits) every address of `listen` for `role`, each TCP one
/// as `sockets` sockets (one per worker that accepts on it).
fn take_all(
    listeners: &mut Listeners,
    role: &str,
    listen: &ListenAddr,
    sockets: usize,
) -> Result<Vec<Bound>, String> {
    if let Some(path) = &listen.unix {
        return Ok(vec![listeners.take(role, Addr::Unix(path), sockets)?]);
    }
    listen
        .addrs
        .iter()
        .map(|a| listeners.take(role, Addr::Ip(*a), sockets))
        .collect()
}

/// Runs what a configuration describes: the proxy listeners, the built-in
/// origin and the admin listener if configured, until a signal.
///
/// `load` reads the configuration (again on SIGHUP). In a successor, an error
/// before serving is also reported to the old process, which keeps serving.
pub async fn config(load: Loader, pid_file: Option<PathBuf>, workers: usize) -> Result<(), String> {
    // First of all: SIGHUP's default action (exit) must never hit a process
    // that is starting or serving.
    let signals = Signals::new();
    let inherited =
        handoff::inherit().map_err(|e| format!("cannot take over the listeners: {e}"))?;
    let (handed, mut successor) = match inherited {
        Some((handed, successor)) => (handed, Some(successor)),
        None => (Vec::new(), None),
    };
    let result = serve_config(&load, handed, &mut successor, pid_file, signals, workers).await;
    if let (Err(e), Some(s)) = (&result, successor.take()) {
        let _ = s.fail(e);
    }
    result
}

/// [`config`]'s work: load, bind or inherit, serve until the end, drain.
async fn serve_config(
    load: &Loader,
    handed: Vec<Handed>,
    successor: &mut Option<Successor>,
    pid_file: Option<PathBuf>,
    mut signals: Signals,
    workers: usize,
) -> Result<(), String> {
    let config = load()?;
    let access_log = config.access_log()?;
    if let Some(log) = &access_log {
        tokio::spawn(reopen_on_sigusr1(signals.usr1.take(), log.clone()));
    }
    let mut listeners = Listeners::new(
        handed,
        config.server.socket_mode,
        config.server.defer_accept.unwrap_or(true),
    );
    // One socket per worker for what the workers serve; admin, served on
    // this thread, has one.
    // Bind everything first: a bad address fails before anything serves.
    let mut origin = Vec::new();
    if let Some(o) = &config.origin {
        origin = take_all(&mut listeners, "origin", &o.listen, workers)?;
    }
    let mut proxies = Vec::new();
    for l in &config.listener {
        let tls = l.server_tls.get().cloned();
        proxies.extend(
            take_all(&mut listeners, "proxy", &l.listen, workers)?
                .into_iter()
                .map(|b| (b, tls.clone())),
        );
    }
    let mut forward = Vec::new();
    if let Some(f) = &config.forward {
        forward = take_all(&mut listeners, "forward", &f.listen, workers)?;
    }
    let mut admin = Vec::new();
    if let Some(a) = &config.admin {
        admin = take_all(&mut listeners, "admin", &a.listen, 1)?;
    }
    // Inherited listeners the configuration no longer names close now (and
    // their socket files go: nothing serves them any more).
    for handed in std::mem::take(&mut listeners.inherited) {
        if let handoff::Listener::Unix(l) = &handed.listener {
            if let Some(path) = l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(Path::to_path_buf))
            {
                SocketFile::of(&path).remove();
            }
        }
    }
    // Written once bound; a successor takes the file over only once nothing
    // can fail any more (its failure must leave the old process's file).
    let create_pid_file = || pid_file.as_deref().map(PidFile::create).transpose();
    let mut _pid_file = None;
    if successor.is_none() {
        _pid_file = create_pid_file()?;
    }

    // Everything that can still fail comes before the first accept: a
    // successor that accepted connections and then gave up would drop them.
    let proxy = if proxies.is_empty() {
        None
    } else {
        let proxy = config.proxy();
        config.resolve_upstreams(&proxy).await?;
        Some(proxy)
    };
    let service = if forward.is_empty() {
        None
    } else {
        config.forward_proxy()?
    };
    if successor.is_some() {
        _pid_file = create_pid_file()?;
    }

    let (stop, stopped) = watch::channel(false);
    let mut registry = Registry::new();
    let mut jobs = Vec::new();
    let many = origin.len() > 1;
    for listener in origin {
        let server = config.origin_server().build();
        let name = role_name("origin", &listener, many);
        registry = registry.server(name, server.stats());
        println!("drainpipe origin listening on {}", listener.url(false));
        jobs.push(Job {
            name: "origin".into(),
            bound: listener,
            server,
            service: Service::Origin,
            tls: None,
        });
    }
    if let Some(proxy) = proxy {
        registry = registry.proxy("proxy", proxy.clone());
        let many = proxies.len() > 1;
        for (listener, tls) in proxies {
            let name = role_name("proxy", &listener, many);
            let server = config.server().access_log(access_log.clone()).build();
            registry = registry.server(name.clone(), server.stats());
            println!(
                "drainpipe proxy listening on {}",
                listener.url(tls.is_some())
            );
            jobs.push(Job {
                name,
                bound: listener,
                server,
                service: Service::Proxy(proxy.clone()),
                tls,
            });
        }
    }
    let many = forward.len() > 1;
    for listener in forward {
        let Some(service) = service.clone() else {
            break;
        };
        let server = config
            .server()
            .honour_proxy_connection(true)
            .access_log(access_log.clone())
            .build();
        registry = registry.server(role_name("forward", &listener, many), server.stats());
        println!(
            "drainpipe forward proxy listening on {}",
            listener.url(false)
        );
        jobs.push(Job {
            name: "forward".into(),
            bound: listener,
            server,
            service: Service::Forward(service),
            tls: None,
        });
    }
    let running = start_workers(workers, jobs, stopped)?;
    let (admin_stop, admin_stopped) = watch::channel(false);
    let mut admin_tasks = JoinSet::new();
    // The admin listener runs on this (the control) thread, not on a
    // worker: /metrics and /status answer even while a worker is stalled.
    for listener in admin {
        println!("drainpipe admin listening on {}", listener.url(false));
        let service = Admin::new(registry.clone());
        let until = wait(admin_stopped.clone());
        admin_tasks.spawn(async move {
            listener
                .serve(Server::builder().build(), service, until, None)
                .await
        });
    }
    if let Some(successor) = successor.take() {
        successor
            .ready()
            .map_err(|e| format!("cannot tell the old process this one is serving: {e}"))?;
        tracing::info!("took over the listeners; serving");
    }

    let handed_over = signals.wait_for_the_end(&listeners, load).await;
    registry.set_not_ready();
    let _ = stop.send(true);
    join_workers(running).await;
    let _ = admin_stop.send(true);
    admin_tasks.join_all().await;
    if let Some(log) = &access_log {
        log.flush();
    }
    if !handed_over {
        listeners.remove_files();
    }
    Ok(())
}

/// Reads the configuration: from its file, the flags, or the built-in
/// default.
pub type Loader = std::sync::Arc<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// A hand-off under way: resolves to the successor once it serves.
type HandOver = Pin<Box<dyn Future<Output = io::Result<Child>>>>;

/// How long a successor has to report it serves.
const HAND_OVER_TIMEOUT: Duration = Duration::from_secs(30);

/// The signals a serving process handles, registered once at start.
struct Signals {
    term: Option<Signal>,
    int: Option<Signal>,
    hup: Option<Signal>,
    usr2: Option<Signal>,
    /// Reopens the access log (logrotate); ignored without one.
    usr1: Option<Signal>,
}

impl Signals {
    fn new() -> Signals {
        Signals {
            term: signal(SignalKind::terminate()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
            hup: signal(SignalKind::hangup()).ok(),
            usr2: signal(SignalKind::user_defined2()).ok(),
            usr1: signal(SignalKind::user_defined1()).ok(),
        }
    }

    /// Serves signals until SIGTERM/SIGINT, or until a hand-off (SIGUSR2:
    /// upgrade; SIGHUP: reload, once the configuration validates) has a
    /// successor serving. A failed hand-off is logged with the successor's
    /// reason and this process goes on; SIGTERM/SIGINT while one is pending
    /// stops the successor, then drains. `true`: a successor serves the
    /// listeners now.
    async fn wait_for_the_end(&mut self, listeners: &Listeners, load: &Loader) -> bool {
        let mut pending: Option<(&str, HandOver)> = None;
        loop {
            let asked = tokio::select! {
                () = recv(&mut self.term) => break,
                () = recv(&mut self.int) => break,
                () = recv(&mut self.usr2) => "upgrade",
                () = recv(&mut self.hup) => "reload",
                done = async { pending.as_mut().expect("guarded").1.as_mut().await }, if pending.is_some() => {
                    let (what, _) = pending.take().expect("guarded");
                    match done {
                        Ok(child) => {
                            tracing::info!(successor = child.id(), "{what}: successor serving; draining");
                            control::report(Ok(child.id()));
                            return true;
                        }
                        Err(e) => {
                            tracing::error!("{what} failed: {e}; still serving as before");
                            control::report(Err(&e.to_string()));
                        }
                    }
                    continue;
                }
            };
            if let Some((what, _)) = &pending {
                tracing::warn!("{asked} asked while a {what} is under way: ignored");
                continue;
            }
            if asked == "reload" {
                // Checked here first: a bad file never starts a successor.
                // Off the runtime's thread: loading resolves host names,
                // which may block for the resolver's timeout.
                let check = load.clone();
                let checked = tokio::task::spawn_blocking(move || check().map(drop))
                    .await
                    .unwrap_or_else(|e| Err(format!("the configuration check failed: {e}")));
                if let Err(e) = checked {
                    tracing::error!("reload refused: {e}; still serving as before");
                    control::report(Err(&e));
                    continue;
                }
            }
            let program = match std::env::current_exe() {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "cannot find this binary; {asked} abandoned");
                    control::report(Err(&format!("cannot find this binary: {e}")));
                    continue;
                }
            };
            tracing::info!("{asked}: starting a successor to hand the listeners to");
            let args: Vec<_> = std::env::args_os().skip(1).collect();
            // The listeners still accepting, held only while the hand-off runs.
            let offer = listeners.offer();
            pending = Some((
                asked,
                Box::pin(async move {
                    handoff::hand_over(&offer, &program, &args, HAND_OVER_TIMEOUT).await
                }),
            ));
        }
        if let Some((what, _)) = pending.take() {
            tracing::info!("{what} abandoned: the successor is stopped");
        }
        tracing::info!("signal received: draining");
        false
    }
}

/// On each SIGUSR1, reopens the access log file by its name (after
/// logrotate moved it away).
async fn reopen_on_sigusr1(mut usr1: Option<Signal>, log: drainpipe::access::AccessLog) {
    loop {
        recv(&mut usr1).await;
        match log.reopen() {
            Ok(()) => tracing::info!("SIGUSR1: access log reopened"),
            Err(e) => {
                tracing::error!(error = %e, "SIGUSR1: cannot reopen the access log; lines are dropped")
            }
        }
    }
}

async fn recv(s: &mut Option<Signal>) {
    match s.as_mut() {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// A listener's name in metrics and logs: its role, and its address when
/// the role has several.
fn role_name(role: &str, listener: &Bound, many: bool) -> String {
    if many {
        let url = listener.url(false);
        format!("{role} {}", url.strip_prefix("http://").unwrap_or(&url))
    } else {
        role.into()
    }
}

fn local(listener: &std::net::TcpListener) -> String {
    listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into())
}

fn log_report(name: &str, report: &DrainReport) {
    tracing::info!(
        listener = name,
        open = report.open_at_start,
        clean = report.clean,
        cut = report.cut,
        elapsed_ms = report.elapsed.as_millis() as u64,
        "drained"
    );
}

/// Resolves on SIGTERM or SIGINT: the cue to drain. SIGHUP and SIGUSR2
/// (`drainpipe origin` has no file to reload, no hand-off) are logged and
/// ignored, never fatal.
async fn shutdown_signal(mut signals: Signals) {
    loop {
        tokio::select! {
            () = recv(&mut signals.term) => break,
            () = recv(&mut signals.int) => break,
            () = recv(&mut signals.hup) => {
                tracing::warn!("SIGHUP: nothing to reload (no configuration file); ignored");
            }
            () = recv(&mut signals.usr2) => {
                tracing::warn!("SIGUSR2: drainpipe origin does not hand over its listener; ignored");
            }
        }
    }
    tracing::info!("signal received: draining");
}
