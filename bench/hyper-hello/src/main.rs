//! hyper 1.x hello server for the side-by-side benchmarks in `bench/`.
//!
//! Usage: `hyper-hello [ADDR]` (default 127.0.0.1:8083). Answers every request with
//! `200 OK`, `content-type: text/plain`, body `Hello, World!`, on one current-thread
//! tokio runtime (one thread: the benchmark pins it to one CPU with taskset).
//! HTTP/1.1 keep-alive, TCP_NODELAY, and `pipeline_flush` so that responses to
//! pipelined requests leave together (hyper's best configuration for the pipelined
//! scenario).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

static HELLO: &[u8] = b"Hello, World!";

async fn hello(_req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut res = Response::new(Full::new(Bytes::from_static(HELLO)));
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(res)
}

fn main() {
    let addr: SocketAddr = match std::env::args().nth(1) {
        None => "127.0.0.1:8083".parse().unwrap(),
        Some(a) => match a.parse() {
            Ok(addr) => addr,
            Err(e) => {
                eprintln!("hyper-hello: bad listen address {a:?}: {e} (expected IP:PORT)");
                std::process::exit(2);
            }
        },
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let listener = match TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("hyper-hello: cannot listen on {addr}: {e}");
                std::process::exit(1);
            }
        };
        eprintln!("hyper-hello: listening on {addr}");
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: back off a little instead of spinning.
                    eprintln!("hyper-hello: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            tokio::task::spawn(async move {
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .pipeline_flush(true)
                    .serve_connection(TokioIo::new(stream), service_fn(hello))
                    .await;
            });
        }
    });
}
