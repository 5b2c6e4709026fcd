//! The workers API as an embedder uses it: a `SO_REUSEPORT` group served
//! by workers, each with its share of the sockets and of `max_connections`,
//! counters shared.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use drainpipe::origin::Origin;
use drainpipe::server::workers::{bind_reuseport, Worker, Workers};
use drainpipe::server::{DrainReport, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// `GET /conn` on a new connection, closed after: the origin's answer.
async fn conn_once(addr: std::net::SocketAddr) -> String {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /conn HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    tokio::time::timeout(Duration::from_secs(3), exchange)
        .await
        .expect("answered: no socket of the group is left without a worker")
}

/// A group of three sockets served by two workers (a successor that runs
/// fewer workers than its predecessor had sockets): every socket is
/// accepted on, so no connection waits forever in a queue nobody reads,
/// and both workers serve.
#[tokio::test]
async fn every_socket_of_a_group_is_accepted_on_by_fewer_workers() {
    let group: Vec<Arc<std::net::TcpListener>> =
        bind_reuseport("127.0.0.1:0".parse().unwrap(), 3, 64)
            .unwrap()
            .into_iter()
            .map(Arc::new)
            .collect();
    let addr = group[0].local_addr().unwrap();
    let server = Server::builder().max_connections(5).build();
    let stats = server.stats();
    let (stop, stopped) = watch::channel(false);
    // Each worker takes its sockets once, so none is held after its worker
    // stops.
    let shares: Vec<Mutex<Vec<Arc<std::net::TcpListener>>>> = (0..2)
        .map(|i| Mutex::new(Worker::new(i, 2).share(&group)))
        .collect();
    assert_eq!(shares[0].lock().unwrap().len(), 2);
    assert_eq!(shares[1].lock().unwrap().len(), 1);
    drop(group);
    let workers = Workers::start(2, move |worker| {
        let sockets = std::mem::take(&mut *shares[worker.index()].lock().unwrap());
        let server = server.for_worker(worker);
        let mut stopped = stopped.clone();
        async move {
            let until = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            server.serve(sockets, Origin, until).await
        }
    })
    .unwrap();

    let mut on = [0usize; 2];
    for _ in 0..60 {
        let res = conn_once(addr).await;
        assert!(res.starts_with("HTTP/1.1 200 OK\r\n"), "{res}");
        let worker: usize = res
            .rsplit_once("worker=")
            .and_then(|(_, w)| w.trim().parse().ok())
            .unwrap_or_else(|| panic!("no worker in {res}"));
        on[worker] += 1;
    }
    assert!(on[0] > 0 && on[1] > 0, "{on:?}");
    // Each worker counts in its own counters, listed in the server's; the
    // registry reads their total.
    let accepted =
        |s: &drainpipe::server::Stats| s.accepted.load(std::sync::atomic::Ordering::Relaxed);
    let counters = stats.workers();
    assert_eq!(counters.len(), 2);
    assert_eq!(accepted(&stats), 0);
    assert_eq!(accepted(&counters[0]) + accepted(&counters[1]), 60);
    // (Listed in the order the workers started.)
    let mut per_worker = [
        accepted(&counters[0]) as usize,
        accepted(&counters[1]) as usize,
    ];
    per_worker.sort_unstable();
    let mut served = on;
    served.sort_unstable();
    assert_eq!(per_worker, served);
    let registry = drainpipe::metrics::Registry::new().server("w", stats.clone());
    assert_eq!(registry.servers()[0].accepted, 60);
    assert_eq!(registry.servers()[0].requests, 60);
    let _ = stop.send(true);
    let reports: Vec<DrainReport> = workers.join().await;
    assert_eq!(reports.len(), 2);
    let mut total = DrainReport::default();
    for r in reports {
        total += r;
    }
    assert_eq!(total.cut, 0);
    // Every socket closed when its worker stopped accepting.
    assert_eq!(
        tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.kind())
            .err(),
        Some(std::io::ErrorKind::ConnectionRefused)
    );
}
