//! hyper 1.x hello server for the side-by-side benchmarks in `bench/`.
//!
//! Usage: `hyper-hello [ADDR [CERT KEY]]` (default 127.0.0.1:8083; with a PEM
//! certificate chain and key, TLS through tokio-rustls with the ring provider, ALPN
//! `http/1.1`, the rustls defaults for resumption). Answers every request with
//! `200 OK`, `content-type: text/plain`, body `Hello, World!`, on one current-thread
//! tokio runtime (one thread: the benchmark pins it to one CPU with taskset).
//! HTTP/1.1 keep-alive, TCP_NODELAY, and `pipeline_flush` so that responses to
//! pipelined requests leave together (hyper's best configuration for the pipelined
//! scenario).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

static HELLO: &[u8] = b"Hello, World!";

async fn hello(_req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut res = Response::new(Full::new(Bytes::from_static(HELLO)));
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(res)
}

/// The TLS acceptor for `CERT KEY` (arguments 2 and 3), if given.
fn tls_acceptor() -> Option<tokio_rustls::TlsAcceptor> {
    let cert = std::env::args().nth(2)?;
    let key = std::env::args().nth(3).unwrap_or_else(|| {
        eprintln!("hyper-hello: CERT needs KEY");
        std::process::exit(2);
    });
    let fail = |what: &str, e: &dyn std::fmt::Display| -> ! {
        eprintln!("hyper-hello: {what}: {e}");
        std::process::exit(2);
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .unwrap_or_else(|e| fail(&cert, &e))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| fail(&cert, &e));
    let key = PrivateKeyDer::from_pem_file(&key).unwrap_or_else(|e| fail(&key, &e));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| fail("TLS versions", &e))
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap_or_else(|e| fail("certificate", &e));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

fn main() {
    let tls = tls_acceptor();
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
            let tls = tls.clone();
            tokio::task::spawn(async move {
                let mut http = http1::Builder::new();
                http.keep_alive(true).pipeline_flush(true);
                match tls {
                    None => {
                        let _ = http
                            .serve_connection(TokioIo::new(stream), service_fn(hello))
                            .await;
                    }
                    Some(tls) => {
                        if let Ok(stream) = tls.accept(stream).await {
                            let _ = http
                                .serve_connection(TokioIo::new(stream), service_fn(hello))
                                .await;
                        }
                    }
                }
            });
        }
    });
}
