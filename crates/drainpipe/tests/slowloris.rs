//! Slowloris: a thousand connections each dripping one header byte per second
//! are closed by the head timeout, while ordinary requests keep succeeding.
//!
//! The head timeout counts from accept for a connection's first request (from
//! the first byte for later ones), so however slowly the bytes come, a head
//! that is not complete `head_timeout` after accept is answered `408` and the
//! connection closed.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use drainpipe::server::{CloseReason, Server};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const ATTACKERS: usize = 1000;
const HEAD_TIMEOUT: Duration = Duration::from_millis(1500);
/// Scheduling slack allowed past the head timeout (the server sweeps and the
/// test runtime is shared by 2,000 sockets on 2 cores).
const SLACK: Duration = Duration::from_millis(1000);

/// What one slow client saw.
struct Drip {
    /// From connect to the server's close (EOF or reset).
    closed_after: Option<Duration>,
    /// Bytes it sent before the close.
    sent: usize,
    /// What the server answered.
    answer: Vec<u8>,
}

/// Connects, waits `first_after`, then sends one byte of a request head per
/// second until the server closes (or `give_up` passes).
async fn drip(addr: SocketAddr, first_after: Duration, give_up: Duration) -> Drip {
    let head = b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let start = Instant::now();
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(first_after).await;
        let mut sent = 0;
        for b in head.iter().take(head.len() - 1) {
            if wr.write_all(&[*b]).await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        (sent, wr)
    });
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    let closed_after = loop {
        match tokio::time::timeout_at(start + give_up, rd.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break Some(start.elapsed()),
            Ok(Ok(n)) => answer.extend_from_slice(&chunk[..n]),
            Err(_) => break None,
        }
    };
    writer.abort();
    let sent = match writer.await {
        Ok((sent, _)) => sent,
        Err(_) => usize::MAX, // still dripping when aborted: count unknown
    };
    Drip {
        closed_after,
        sent,
        answer,
    }
}

/// Ordinary requests, new connection and persistent, until `stop`; returns
/// (ok, failed) with a description of each failure.
async fn ordinary(addr: SocketAddr, until: Instant) -> (usize, Vec<String>) {
    let mut ok = 0;
    let mut failed = Vec::new();
    let mut persistent = Raw::connect(addr).await;
    let mut n = 0;
    while Instant::now() < until {
        n += 1;
        // Alternate a fresh connection and the persistent one; each request
        // is bounded by WAIT inside Raw.
        let r = if n % 2 == 0 {
            let mut c = Raw::connect(addr).await;
            c.send(b"GET /bytes/1000 HTTP/1.1\r\nHost: a\r\n\r\n").await;
            tokio::time::timeout(WAIT, c.response()).await
        } else {
            persistent
                .send(b"GET /bytes/1000 HTTP/1.1\r\nHost: a\r\n\r\n")
                .await;
            tokio::time::timeout(WAIT, persistent.response()).await
        };
        match r {
            Ok(r) if r.status == 200 && r.body.len() == 1000 => ok += 1,
            Ok(r) => failed.push(format!("request {n}: {} {:?}", r.status, r.head)),
            Err(_) => failed.push(format!("request {n}: no answer in {WAIT:?}")),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (ok, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_slow_heads_are_cut_while_ordinary_requests_succeed() {
    let srv = TestServer::origin(Server::builder().head_timeout(HEAD_TIMEOUT)).await;
    let started = Instant::now();
    let attackers: Vec<_> = (0..ATTACKERS)
        .map(|_| {
            tokio::spawn(drip(
                srv.addr,
                Duration::ZERO,
                HEAD_TIMEOUT + SLACK + Duration::from_secs(2),
            ))
        })
        .collect();
    // Ordinary traffic from the moment the attack starts until past the
    // moment every slow connection must be gone.
    let normal = tokio::spawn(ordinary(srv.addr, started + HEAD_TIMEOUT + SLACK));

    let mut late = Vec::new();
    let mut answers_408 = 0;
    let mut slowest = Duration::ZERO;
    for (i, a) in attackers.into_iter().enumerate() {
        let d = a.await.unwrap();
        slowest = slowest.max(d.closed_after.unwrap_or(Duration::MAX));
        match d.closed_after {
            Some(t) if t <= HEAD_TIMEOUT + SLACK => {}
            other => late.push(format!(
                "#{i}: closed after {other:?}, {} bytes sent",
                d.sent
            )),
        }
        if d.answer.starts_with(b"HTTP/1.1 408 ") {
            answers_408 += 1;
        }
    }
    let (ok, failed) = normal.await.unwrap();

    assert!(
        late.is_empty(),
        "{} of {ATTACKERS} slow connections outlived the head timeout + slack: {:?}",
        late.len(),
        &late[..late.len().min(10)]
    );
    assert!(
        failed.is_empty(),
        "ordinary requests failed under slowloris ({ok} ok): {failed:?}"
    );
    assert!(
        ok >= 20,
        "only {ok} ordinary requests ran during the attack"
    );
    // Each slow client had sent part of a head, so it is told why: 408.
    assert_eq!(answers_408, ATTACKERS, "every slow head answered 408");
    assert!(
        eventually(WAIT, || srv.stats.closed(CloseReason::HeadTimeout)
            == ATTACKERS as u64)
        .await,
        "head-timeout closes: {}",
        srv.stats.closed(CloseReason::HeadTimeout)
    );
    assert!(
        eventually(WAIT, || srv.stats.open.load(Ordering::Relaxed) == 0).await,
        "{} connections still open",
        srv.stats.open.load(Ordering::Relaxed)
    );
    eprintln!(
        "slowloris: {ATTACKERS} slow connections cut (the last {slowest:?} after connect), \
{ok} ordinary requests OK, {:?} total",
        started.elapsed()
    );
}

// A slow client that first stays silent long enough for its connection to be
// parked (idle connections leave their task after `park_idle_after`, 1 s by
// default) and only then starts dripping: the head timeout still counts from
// accept, so the drip buys no extra time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_head_started_after_parking_gets_no_extra_time() {
    let srv = TestServer::origin(Server::builder().head_timeout(Duration::from_secs(2))).await;
    let clients: Vec<_> = (0..50)
        .map(|_| {
            tokio::spawn(drip(
                srv.addr,
                Duration::from_millis(1300),
                Duration::from_secs(6),
            ))
        })
        .collect();
    let mut closes = Vec::new();
    for c in clients {
        closes.push(c.await.unwrap().closed_after);
    }
    let late: Vec<_> = closes
        .iter()
        .filter(|t| t.is_none_or(|t| t > Duration::from_secs(2) + Duration::from_millis(700)))
        .collect();
    assert!(
        late.is_empty(),
        "head timeout 2 s from accept, but {} of 50 closed after {:?}",
        late.len(),
        &late[..late.len().min(5)]
    );
}
